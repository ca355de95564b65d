"""Every send example of the API reference (/work/shared/spec/puzzel-smsgw-api.md sections 2.3,
2.4 and 2.5; the files of tests/vectors/http and tests/vectors/soap), sent as written to a running
gateway whose service has the example's login. Its answer is compared with the reference's
response byte for byte, once the ids the gateway made up are put in: status, content type, names,
order, namespaces, types. Also what the example asked for, as the store keeps it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
from support.db import read_only
from support.gateway import example_config, store_file

from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"
MESSAGE_ID = re.compile(r"[0-9a-z]{12}")

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
# Spec 2.4, "Examples (ours)": the vectors hold the query strings, sent as written after `?`.
GET_MINIMAL = (VECTORS / "http" / "request-get-minimal.txt").read_text()
GET_SETTINGS = (VECTORS / "http" / "request-get-settings.txt").read_text()


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


async def start(tmp_path: Path, nursery: trio.Nursery, username: str, password: str) -> Gateway:
    """A running gateway whose service 1000 logs in as the example does."""
    gateway = Gateway(example_config(tmp_path, username=username, password=password))
    await nursery.start(gateway.run)
    return gateway


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


def stored(gateway: Gateway, message_id: str) -> dict[str, Any]:
    """What the store keeps of the message that a client asked for."""
    with read_only(store_file(gateway)) as conn:
        conn.row_factory = lambda cursor, row: {
            column[0]: value for column, value in zip(cursor.description, row, strict=True)
        }
        row: dict[str, Any] = conn.execute(
            "SELECT content, originator, originator_type, priority, validity_minutes, pid, flash"
            " FROM messages WHERE id = ?",
            (message_id,),
        ).fetchone()
        return row


def xml_ids(answer: bytes) -> tuple[str, str]:
    """The batchReference and the one messageId of an XML answer; the id has the spec's shape."""
    batch = re.search(rb"<batchReference>([^<]+)</batchReference>", answer)
    message = re.search(rb"<messageId>([^<]+)</messageId>", answer)
    assert batch is not None and message is not None, answer
    assert MESSAGE_ID.fullmatch(message[1].decode())
    return batch[1].decode(), message[1].decode()


# What the store keeps of a message sent with the service's defaults (config.example.toml).
DEFAULTS: dict[str, Any] = {
    "originator": "EdgeGW",
    "originator_type": "ALPHANUMERIC",
    "priority": 2,
    "validity_minutes": 10080,  # validity 173: 7 days
    "pid": 0,
    "flash": 0,
}


@pytest.mark.parametrize(
    ("example", "client_reference", "kept"),
    [
        ("http/request-minimal.json", b"null", {"content": "Hello"}),
        (
            "http/request-full.json",
            b'"otp-1"',
            {
                "content": "Din kode er 1234",
                "originator": "MyShop",
                "priority": 3,
                "validity_minutes": 15,  # validity 2: (2 + 1) x 5 minutes (spec 7.4)
                "flash": 1,
            },
        ),
    ],
    ids=["minimal", "full"],
)
async def test_the_json_examples_answer_the_spec_response(
    tmp_path: Path,
    nursery: trio.Nursery,
    example: str,
    client_reference: bytes,
    kept: dict[str, Any],
) -> None:
    gateway = await start(tmp_path, nursery, "user", "pw")
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND,
            content=vector(example),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    batch, message_id = body["batchReference"], body["messageStatus"][0]["messageId"]
    assert MESSAGE_ID.fullmatch(message_id)
    # Spec 2.3's "JSON response": all seven keys in order, null where unset (spec 2.2).
    expected = vector("http/response.json").replace(b'"otp-1"', client_reference)
    expected = expected.replace(b'"campaign-7"', msgspec.json.encode(batch))
    assert answer.content == expected.replace(b"7b00a1c2d300", message_id.encode())
    assert stored(gateway, message_id) == DEFAULTS | kept


@pytest.mark.parametrize(
    ("request_line", "login", "answer_type", "recipient", "kept"),
    [
        (
            ("POST", SEND, "application/xml", vector("http/request.xml")),
            ("user", "pw"),
            "application/xml",
            b"+4741000000",
            {"content": "Hello", "originator": "MyShop", "pid": 65},
        ),
        (
            ("POST", SEND, "application/x-www-form-urlencoded", vector("http/request-form.txt")),
            ("user", "pw"),
            "application/xml",
            b"+4741000000",
            {"content": "Hello there"},
        ),
        (
            ("GET", f"{SEND}?{GET_MINIMAL}", None, b""),
            ("u", "p"),
            "text/xml",
            b"+4799999999",
            {"content": "Hei på deg"},
        ),
        (
            ("GET", f"{SEND}?{GET_SETTINGS}", None, b""),
            ("u", "p"),
            "text/xml",
            b"+4799999999",
            {"content": "Test", "originator": "MyShop", "pid": 68},
        ),
    ],
    ids=["xml", "form", "get-minimal", "get-settings"],
)
async def test_the_xml_form_and_get_examples_answer_the_xml_response_without_accept(
    tmp_path: Path,
    nursery: trio.Nursery,
    request_line: tuple[str, str, str | None, bytes],
    login: tuple[str, str],
    answer_type: str,
    recipient: bytes,
    kept: dict[str, Any],
) -> None:
    method, target, content_type, body = request_line
    gateway = await start(tmp_path, nursery, *login)
    headers = {"Content-Type": content_type} if content_type else {}
    async with httpx.AsyncClient() as client:
        # As written: a GET's raw brackets, not the %5B/%5D that httpx's params would make.
        sent = httpx.Request(
            method, httpx.URL(url(gateway) + target), headers=headers, content=body
        )
        answer = await client.send(sent)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == answer_type
    batch, message_id = xml_ids(answer.content)
    # Spec 2.3's "XML response" without the clientReference these requests do not give (the
    # docs' examples leave it out when unset).
    expected = vector("http/response.xml").replace(b"<clientReference>otp-1</clientReference>", b"")
    expected = expected.replace(b"+4741000000", recipient)
    expected = expected.replace(b"0c2c002f-ccc6-4c7b-86e1-c7871b1c98b3", batch.encode())
    assert answer.content == expected.replace(b"7b00a1c2d300", message_id.encode())
    assert stored(gateway, message_id) == DEFAULTS | kept


async def test_the_soap_example_answers_the_spec_response(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = await start(tmp_path, nursery, "u", "p")
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            "/gw/ws/SMSGatewayV10",
            content=vector("soap/request-spec.xml"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/xml; charset=utf-8"
    batch, message_id = xml_ids(answer.content)
    expected = vector("soap/response.xml").replace(
        b"<batchReference>b-1<", f"<batchReference>{batch}<".encode()
    )
    assert answer.content == expected.replace(b"7a0081hfe800", message_id.encode())
