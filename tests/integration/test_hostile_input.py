"""Client bytes that once reached unhandled exceptions (HTTP 500 and a traceback at ERROR) get a
4xx through the whole running gateway, and nothing is logged at ERROR (issue 10, item 1)."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"
GOOD_JSON = (
    b'{"serviceId": 1000, "username": "demo", "password": "demo",'
    b' "message": [{"recipient": "+4741000000", "content": "Hello"}]}'
)
XML_HEAD = b'<?xml version="1.0" encoding="%s"?>'


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


async def raw_exchange(gateway: Gateway, request: bytes) -> bytes:
    """Send `request` as is and read until the gateway closes."""
    assert gateway.bound is not None
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.bound.http_port)
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
    return received


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []


@pytest.mark.parametrize(
    "path", ["/api/messages/x", "/api/messages", "/mgmt/rs/service/1000/batch", "/api/inbound"]
)
async def test_non_ascii_authorization_is_401(
    gateway: Gateway, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        for value in (b"Basic \xe9\xe9\xe9", "Basic ZGVtbzpkZW1v\u00ff".encode("latin-1")):
            answer = await client.get(path, headers={b"Authorization": value})
            assert answer.status_code == 401
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    "charset", ["base64", "hex", "rot13", "zlib", "uu", "punycode", "bogus-enc", "utf"]
)
async def test_a_charset_that_is_no_text_encoding_is_415(
    gateway: Gateway, charset: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND,
            content=GOOD_JSON,
            headers={
                "Content-Type": f"application/json; charset={charset}",
                "Accept": "application/json",
            },
        )
    if charset == "utf":  # a real alias of UTF-8
        assert answer.status_code == 200
    else:
        assert answer.status_code == 415
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == 5
        assert "charset" in status["statusMessage"]
    no_errors_logged(caplog)


@pytest.mark.parametrize("encoding", [b"bogus-enc", b"base64", b"rot13"])
async def test_an_xml_declaration_with_no_text_encoding_is_415(
    gateway: Gateway, encoding: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    body = XML_HEAD % encoding + b"<request><serviceId>1000</serviceId></request>"
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, content=body, headers={"Content-Type": "application/xml"})
    assert answer.status_code == 415
    no_errors_logged(caplog)


async def test_json_nested_100000_deep_is_400(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        for body in (deep, b'{"serviceId": 1000, "x": ' + deep + b"}"):
            answer = await client.post(
                SEND, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 400
            assert b"nested too deeply" in answer.content
    no_errors_logged(caplog)


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "9" * 5000, "-1", "+5", " 5"])
@pytest.mark.parametrize("path", ["/api/messages", "/api/inbound"])
async def test_a_limit_of_other_than_ascii_digits_is_400(
    gateway: Gateway, limit: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway), auth=("demo", "demo")) as client:
        answer = await client.get(path, params={"limit": limit})
        assert answer.status_code == 400
        assert "limit" in answer.json()["detail"]
    no_errors_logged(caplog)


@pytest.mark.parametrize("service", ["\u00b2", "9" * 5000])
async def test_a_service_id_of_other_than_ascii_digits_is_404(
    gateway: Gateway, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway), auth=("demo", "demo")) as client:
        answer = await client.get(f"/mgmt/rs/service/{service}/batch")
        assert answer.status_code == 404
    no_errors_logged(caplog)


async def test_a_since_in_other_digits_is_400(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway), auth=("demo", "demo")) as client:
        answer = await client.get("/api/inbound", params={"since": "\u0661\u0662"})
        assert answer.status_code == 400
    no_errors_logged(caplog)


async def test_a_pid_in_other_digits_is_status_5(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    body = (
        b'{"serviceId": 1000, "username": "demo", "password": "demo", "message": [{'
        b'"recipient": "+4741000000", "content": "Hi", "settings": {"parameter":'
        b' [{"key": "pid", "value": "\\u0036\\u00b2"}]}}]}'
    )
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND,
            content=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    assert answer.status_code == 200
    (status,) = answer.json()["messageStatus"]
    assert status["statusCode"] == 5
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", b"505"),
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
        (
            b"POST /gw/rs/sendMessages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n0\r\n\r\n",
            b"400",
        ),
        # RFC 9112 section 6.1: HTTP/1.0 has no transfer codings; a proxy speaking it frames
        # this body otherwise, so its framing is faulty, however good the send inside it.
        (
            b"POST /gw/rs/sendMessages HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (len(GOOD_JSON), GOOD_JSON),
            b"400",
        ),
        # RFC 9112 section 3.2: a Host that is no host and port is 400.
        (b"GET /health HTTP/1.1\r\nHost: gw.example evil\r\n\r\n", b"400"),
        (b"GET /health HTTP/1.1\r\nHost: user@gw.example\r\n\r\n", b"400"),
        (b"GET /health HTTP/1.0\r\nHost: gw.example/x\r\n\r\n", b"400"),
        (b"GET /health HTTP/1.1\r\nHost: gw.example:80a\r\n\r\n", b"400"),
        # An absolute-form target's authority stands for the Host (RFC 9112 section 3.2.2):
        # the same rule, and userinfo is an error (RFC 9110 section 4.2.4).
        (b"GET http://user@gw.example/health HTTP/1.1\r\nHost: gw.example\r\n\r\n", b"400"),
        (b"GET http://gw.example:80a/health HTTP/1.1\r\nHost: gw.example\r\n\r\n", b"400"),
    ],
)
async def test_bad_framing_is_refused_before_the_app(
    gateway: Gateway, request_bytes: bytes, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await raw_exchange(gateway, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"connection: close" in answer.lower()
    no_errors_logged(caplog)
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize(
    "host",
    [b"", b"gw.example", b"gw_1.example.:8080", b"127.0.0.1:1", b"[::1]", b"[fe80::1%25eth0]:80"],
)
async def test_a_host_of_every_form_rfc_3986_allows_is_served(
    gateway: Gateway, host: bytes
) -> None:
    answer = await raw_exchange(
        gateway, b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
