"""A route fuzzer: hypothesis-made requests (methods, paths from the route table, queries,
Authorization, Content-Type with charsets, JSON/XML/form/SOAP/garbage bodies) sent raw over a
real socket to the running gateway. No answer may be a 5xx and nothing may be logged at ERROR
or with a traceback (issue 10, item 2). Settings: tests/support/fuzz.py."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote

import h11
import msgspec
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import FUZZ

from edgegw.config import Config
from edgegw.gateway import Gateway
from edgegw.throttle import AuthThrottleConfig

SERVICE = "1000"
SEGMENT = st.one_of(
    st.sampled_from(["m00000000001", "b1", "", "..", "%2F", "\u00b2", "9" * 30]),
    st.text(max_size=12),
)
PATH = st.one_of(
    st.sampled_from(
        [
            "/gw/rs/sendMessages",
            "/api/messages",
            "/api/inbound",
            "/api/modems",
            "/health",
            "/mgmt/rs/service/1000/batch",
            "/management/1000/batch/",
        ]
    ),
    st.builds("/api/messages/{}".format, SEGMENT),
    st.builds("/api/inbound/{}".format, SEGMENT),
    st.builds("/mgmt/rs/service/{}/batch/{}".format, st.one_of(st.just(SERVICE), SEGMENT), SEGMENT),
    st.builds("/management/{}/batch/{}".format, st.one_of(st.just(SERVICE), SEGMENT), SEGMENT),
    st.text(max_size=30).map(lambda text: "/" + text),
)
NUMBERISH = st.one_of(
    st.integers(-5, 2000).map(str),
    st.sampled_from(["\u00b2", "\u0663", "9" * 5000, "1e999", "nan", "inf", " 1", "0x10"]),
    st.text(max_size=10),
)
QUERY_KEYS = [
    "limit", "since", "until", "state", "cursor", "recipient", "batch", "serviceId",
    "username", "password", "message[0].recipient", "message[0].content",
    "message[0].settings.parameter[0].key", "message[0].settings.parameter[0].value",
    "message[99999].content",
]  # fmt: skip
QUERY = st.lists(
    st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=8)), NUMBERISH), max_size=6
).map(lambda pairs: "&".join(f"{quote(k, safe='[].')}={quote(v)}" for k, v in pairs))
CREDENTIALS = st.one_of(
    st.just(b"demo:demo"), st.binary(max_size=20), st.text(max_size=20).map(str.encode)
)
AUTHORIZATION = st.one_of(
    st.none(),
    CREDENTIALS.map(lambda c: b"Basic " + base64.b64encode(c)),
    st.binary(max_size=30).map(lambda raw: b"Basic " + raw.replace(b"\r", b"").replace(b"\n", b"")),
)
MEDIA_TYPE = st.sampled_from(
    [
        "application/json",
        "application/xml",
        "text/xml",
        "application/x-www-form-urlencoded",
        "application/soap+xml",
        "text/plain",
        "",
    ]
)
CHARSET = st.one_of(
    st.sampled_from(
        [
            "utf-8",
            "latin-1",
            "utf-16",
            "utf-32",
            "base64",
            "hex",
            "rot13",
            "zlib",
            "uu",
            "punycode",
            "idna",
            "unicode_escape",
            "undefined",
            "bogus-enc",
            "cp1252",
            "utf-7",
        ]
    ),
    st.text(max_size=12),
)
CONTENT_TYPE = st.one_of(
    st.none(),
    MEDIA_TYPE,
    st.builds("{}; charset={}".format, MEDIA_TYPE, CHARSET),
)
ACCEPT = st.sampled_from([None, "application/json", "application/xml", "text/xml", "*/*", "x"])
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), NUMBERISH
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "recipient": st.one_of(st.just("+4741000000"), JSON_LEAF),
        "content": st.one_of(st.just("Hello"), JSON_LEAF),
        "originatorSettings": JSON_VALUE,
        "settings": st.one_of(
            JSON_VALUE,
            st.fixed_dictionaries(
                {
                    "parameter": st.lists(
                        st.fixed_dictionaries({"key": JSON_LEAF, "value": JSON_LEAF}), max_size=2
                    )
                }
            ),
        ),
        "price": JSON_LEAF,
        "clientReference": JSON_LEAF,
    },
)
SEND_REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "serviceId": st.one_of(st.just(1000), JSON_LEAF),
        "username": st.one_of(st.just("demo"), JSON_LEAF),
        "password": st.one_of(st.just("demo"), JSON_LEAF),
        "batchReference": JSON_LEAF,
        "message": st.one_of(st.lists(MESSAGE, max_size=3), JSON_VALUE),
    },
)
XML_TEXT = st.text(max_size=20).map(
    lambda t: t.replace("&", "&amp;").replace("<", "&lt;").encode("utf-8", "surrogatepass")
)


def _xml(encoding: str, service: bytes, recipient: bytes, soap: bool) -> bytes:
    inner = (
        b"<req:request xmlns:req='http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02'>"
        b"<serviceId>" + service + b"</serviceId><username>demo</username>"
        b"<password>demo</password><message><recipient>" + recipient + b"</recipient>"
        b"<content>Hi</content></message></req:request>"
    )
    if soap:
        inner = (
            b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body>"
            + inner
            + b"</soap:Body></soap:Envelope>"
        )
    return f"<?xml version='1.0' encoding='{encoding}'?>".encode() + inner


BODY = st.one_of(
    st.just(b""),
    st.one_of(SEND_REQUEST, JSON_VALUE).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.builds(_xml, CHARSET, XML_TEXT, XML_TEXT, st.booleans()),
    QUERY.map(str.encode),
    st.binary(max_size=200),
)
METHOD = st.one_of(
    st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH"]),
    st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    method = draw(METHOD)
    path = quote(draw(PATH), safe="/%")
    query = draw(QUERY)
    target = f"{path}?{query}" if query else path
    headers = [(b"host", b"127.0.0.1")]
    for name, value in (
        (b"authorization", draw(AUTHORIZATION)),
        (b"content-type", draw(CONTENT_TYPE)),
        (b"accept", draw(ACCEPT)),
    ):
        if value is not None:
            raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
            headers.append((name, raw.replace(b"\r", b"").replace(b"\n", b"").strip()))
    body = draw(BODY) if method not in ("GET", "HEAD") or draw(st.booleans()) else b""
    return method.encode(), target.encode("ascii"), headers, body


async def exchange(
    port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> int:
    """One request on a fresh connection, framed by h11 the client; the answer's status."""
    conn = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        data = conn.send(
            h11.Request(
                method=method,
                target=target,
                headers=[*headers, (b"content-length", str(len(body)).encode())],
            )
        )
        data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        with trio.fail_after(10):
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Response):
                    return event.status_code
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.ConnectionClosed):
                    raise AssertionError(f"no answer to {method!r} {target!r}")


def request_is_valid_for_h11(method: bytes, target: bytes, headers: Any) -> bool:
    try:
        h11.Request(method=method, target=target, headers=headers)
    except h11.LocalProtocolError:
        return False
    return True


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=8))
async def test_fuzz_routes_never_answer_5xx_nor_log_a_traceback(
    config: Config,
    caplog: pytest.LogCaptureFixture,
    batch: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]],
) -> None:
    caplog.clear()
    async with trio.open_nursery() as nursery:
        # Started here, not by the `gateway` fixture: every example runs in its own trio.run.
        # Wrong credentials are the fuzzer's daily bread: no login throttle for it.
        security = msgspec.structs.replace(
            config.security,
            auth=AuthThrottleConfig(free_failures=1_000_000, lockout_failures=1_000_000),
        )
        gateway = Gateway(msgspec.structs.replace(config, security=security))
        bound = await nursery.start(gateway.run)
        for method, target, headers, body in batch:
            if not request_is_valid_for_h11(method, target, headers):
                continue  # not HTTP at all: the listener's own tests cover broken framing
            status = await exchange(bound.http_port, method, target, headers, body)
            assert status < 500, (method, target, headers, body[:200])
        gateway.stop()
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
