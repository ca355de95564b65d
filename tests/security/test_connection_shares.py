"""Fair shares of connections (issue 10, item 5): the pure bookkeeping, and one loopback address
holding its share of the HTTP and the SMPP listener while a second one (127.0.0.2) is still
served, over real sockets."""

from __future__ import annotations

import functools

import trio
from support.smpp import AcceptingBackend, raw_bind
from support.sockets import open_from

from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.shares import ConnectionShares
from edgegw.smpp import SmppAccount, SmppConfig, serve_smpp

ACCOUNTS = [SmppAccount(system_id="demo", password="demo", service=1000)]


def test_an_address_gets_a_quarter_by_default_and_gives_back() -> None:
    shares = ConnectionShares(total=10)
    assert [shares.take("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert shares.take("10.0.0.2")
    shares.give_back("10.0.0.1")
    assert shares.take("10.0.0.1")
    assert shares.refused_total == 1


def test_loopback_can_be_exempted_and_no_address_is_never_capped() -> None:
    shares = ConnectionShares(total=4, per_address=1, exempt_loopback=True)
    assert all(shares.take("127.0.0.1") for _ in range(5))
    assert all(shares.take("::1") for _ in range(5))
    assert all(shares.take(None) for _ in range(5))
    assert shares.take("192.0.2.1") and not shares.take("192.0.2.1")


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


async def test_one_address_at_its_http_share_does_not_stop_another(nursery: trio.Nursery) -> None:
    limits = HttpLimits(max_connections=8)  # a share of 2
    port = await nursery.start(serve_http, hello, "127.0.0.1", 0, limits)
    # Two idle connections (a slowloris sends nothing) hold the first address's share.
    held = [await open_from(port, "127.0.0.1") for _ in range(2)]
    third = await open_from(port, "127.0.0.1")
    assert await status_of_get(third) == b"HTTP/1.1 503"
    other = await open_from(port, "127.0.0.2")
    assert await status_of_get(other) == b"HTTP/1.1 200"
    for stream in (*held, third, other):
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
