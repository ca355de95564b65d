"""Fair shares of connections (issue 10, item 5): the pure bookkeeping, and one loopback address
holding its share of the HTTP and the SMPP listener while a second one (127.0.0.2) is still
served, over real sockets."""

from __future__ import annotations

import collections
import functools
import logging

import pytest
import trio
import trio.testing
from support.smpp import AcceptingBackend, raw_bind
from support.sockets import open_from

from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.shares import ConnectionShares, Refusal
from edgegw.smpp import SmppAccount, SmppConfig, serve_smpp

ACCOUNTS = [SmppAccount(system_id="demo", password="demo", service=1000)]


def test_an_address_gets_a_quarter_by_default_and_gives_back() -> None:
    shares = ConnectionShares(total=10, door="http")
    assert [shares.admit("10.0.0.1", 0) for _ in range(3)] == [None, None, Refusal.SHARE]
    assert shares.admit("10.0.0.2", 2) is None
    shares.give_back("10.0.0.1")
    assert shares.admit("10.0.0.1", 2) is None
    assert shares.refused == {"http": 1}


def test_a_full_listener_refuses_everyone_into_the_counter_it_shares() -> None:
    refused: collections.Counter[str] = collections.Counter()
    http = ConnectionShares(total=4, door="http", refused=refused)
    smtp = ConnectionShares(total=4, exempt_loopback=True, door="smtp", refused=refused)
    assert http.admit("10.0.0.1", 4) is Refusal.FULL
    assert smtp.admit("127.0.0.1", 4) is Refusal.FULL  # exempt from its share, not from the whole
    assert smtp.admit(None, 4) is Refusal.FULL
    assert http.open == {} and smtp.open == {}
    assert refused == {"http": 1, "smtp": 2}


def test_loopback_can_be_exempted_and_no_address_is_never_capped() -> None:
    shares = ConnectionShares(total=4, per_address=1, exempt_loopback=True)
    assert all(shares.admit("127.0.0.1", 0) is None for _ in range(5))
    assert all(shares.admit("::1", 0) is None for _ in range(5))
    assert all(shares.admit(None, 0) is None for _ in range(5))
    assert shares.admit("192.0.2.1", 0) is None
    assert shares.admit("192.0.2.1", 1) is Refusal.SHARE


async def status_of_get(stream: trio.SocketStream) -> bytes:
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"\r\n" not in answer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        answer += chunk
    return answer[:12]


async def hello(request: Request) -> Response:
    return Response(status=200, body=b"hi")


async def test_one_address_at_its_http_share_does_not_stop_another(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    limits = HttpLimits(max_connections=8)  # a share of 2
    refused: collections.Counter[str] = collections.Counter()
    port = await nursery.start(
        functools.partial(serve_http, hello, "127.0.0.1", 0, limits, refused=refused)
    )
    # Two idle connections (a slowloris sends nothing) hold the first address's share.
    held = [await open_from(port, "127.0.0.1") for _ in range(2)]
    third = await open_from(port, "127.0.0.1")
    assert await status_of_get(third) == b"HTTP/1.1 503"
    other = await open_from(port, "127.0.0.2")
    assert await status_of_get(other) == b"HTTP/1.1 200"
    assert refused == {"http": 1}
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "HTTP connection from 127.0.0.1 refused: 2 connections open, 2 from it")
    ]
    for stream in (*held, third, other):
        await stream.aclose()


async def test_a_full_listener_logs_a_flood_from_many_addresses_once_with_its_count(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Refused for its share, an address is its own line; refused because the listener is full,
    # every address is the same line, or a flood from a network would log a line per address.
    limits = HttpLimits(max_connections=3, max_connections_per_address=1)
    refused: collections.Counter[str] = collections.Counter()
    port = await nursery.start(
        functools.partial(serve_http, hello, "127.0.0.1", 0, limits, refused=refused)
    )
    held = [await open_from(port, "127.0.0.1"), await open_from(port, "127.0.0.2")]
    over_share = await open_from(port, "127.0.0.1")
    assert await status_of_get(over_share) == b"HTTP/1.1 503"
    held.append(await open_from(port, "127.0.0.3"))
    for last in range(4, 14):
        flood = await open_from(port, f"127.0.0.{last}")
        assert await status_of_get(flood) == b"HTTP/1.1 503"
        await flood.aclose()
    assert refused == {"http": 11}
    await trio.sleep(61)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "HTTP connection from 127.0.0.1 refused: 2 connections open, 1 from it"),
        (logging.WARNING, "HTTP connection from 127.0.0.4 refused: 3 connections open, 0 from it"),
        (
            logging.WARNING,
            "HTTP connection from 127.0.0.13 refused: 3 connections open, 0 from it"
            " (9 more like it since the last one, not logged)",
        ),
    ]
    # A refusal's record names the listener that refused, not the logging helper.
    assert [r.funcName for r in caplog.records[:2]] == ["serve_one"] * 2
    for stream in (*held, over_share):
        await stream.aclose()


async def test_one_address_at_its_smpp_share_does_not_stop_another(
    nursery: trio.Nursery,
) -> None:
    config = SmppConfig(port=0, accounts=ACCOUNTS, max_connections=12)  # a share of 3
    port = await nursery.start(functools.partial(serve_smpp, config, AcceptingBackend(ACCOUNTS)))
    # Idle connections that never bind hold the first address's share (accepted in order).
    idle = [await open_from(port, "127.0.0.1") for _ in range(3)]
    fourth = await open_from(port, "127.0.0.1")
    assert await raw_bind(fourth) is None
    other = await open_from(port, "127.0.0.2")
    assert await raw_bind(other) == 0
    for stream in (*idle, fourth, other):
        await stream.aclose()


async def test_a_full_smpp_listener_logs_refusals_once_a_minute_whatever_the_address(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SmppConfig(port=0, accounts=ACCOUNTS, max_connections=2)  # a share of 1
    refused: collections.Counter[str] = collections.Counter()
    port = await nursery.start(
        functools.partial(serve_smpp, config, AcceptingBackend(ACCOUNTS), refused=refused)
    )
    held = [await open_from(port, f"127.0.0.{last}") for last in (1, 2)]
    for stream in held:
        assert await raw_bind(stream) == 0
    for last in range(3, 13):
        flood = await open_from(port, f"127.0.0.{last}")
        assert await raw_bind(flood) is None
        await flood.aclose()
    assert refused == {"smpp": 10}
    await trio.sleep(61)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == [
        "SMPP connection from 127.0.0.3 refused: 2 connections open, 0 from it",
        "SMPP connection from 127.0.0.12 refused: 2 connections open, 0 from it"
        " (9 more like it since the last one, not logged)",
    ]
    for stream in held:
        await stream.aclose()
