"""Failed logins through the real doors on 127.0.0.1 under the virtual clock: the HTTP guard and
SMPP binds slow an address down, then refuse it, while the right login from another loopback
address still works; SMPP answers an unknown system_id like a wrong password (issue 10, item 6).
"""

from __future__ import annotations

import base64
import functools
import logging

import pytest
import trio
import trio.testing
from support.smpp import AcceptingBackend, raw_bind
from support.sockets import open_from

from edgegw.http.guard import guard_logins
from edgegw.http.server import HttpLimits, Request, Response, plain_error, serve_http
from edgegw.smpp import CommandStatus, SmppAccount, SmppConfig, serve_smpp
from edgegw.smpp.pdu import SmppDecoder
from edgegw.throttle import AuthThrottle, AuthThrottleConfig

POLICY = AuthThrottleConfig(
    window=60.0, free_failures=2, base_delay=1.0, max_delay=4.0, lockout_failures=6, cooldown=300.0
)
GOOD = "Basic " + base64.b64encode(b"demo:demo").decode()
ACCOUNTS = [SmppAccount(system_id="demo", password="demo", service=1000)]
BAD = "Basic " + base64.b64encode(b"demo:guess").decode()


async def protected(request: Request) -> Response:
    if request.headers.get("authorization") == GOOD:
        return Response(status=200, body=b"hello")
    return Response(status=401)


async def http_get(port: int, authorization: str, *, source: str = "127.0.0.1") -> bytes:
    """One GET on a fresh connection from `source`; the status line and headers."""
    async with await open_from(port, source) as stream:
        request = f"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: {authorization}\r\n\r\n"
        await stream.send_all(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some(4096)
    return answer


async def test_http_failures_are_slowed_then_refused_but_not_elsewhere(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    throttle = AuthThrottle(POLICY)
    app = guard_logins(protected, throttle, plain_error)
    port = await nursery.start(serve_http, app, "127.0.0.1", 0, HttpLimits())
    took = []
    for _ in range(6):
        start = trio.current_time()
        assert (await http_get(port, BAD)).startswith(b"HTTP/1.1 401")
        took.append(trio.current_time() - start)
    # Free, free, then the answer waits 1, 2, 4, 4 s, and each attempt after a slowed one
    # waits what the last one earned before it is even looked at.
    assert took == pytest.approx([0, 0, 1, 1 + 2, 2 + 4, 4 + 4], abs=0.01)
    refused = await http_get(port, GOOD)
    assert refused.startswith(b"HTTP/1.1 429")
    # What is left of the 300 s cool-down, which began before the last answer's 4 s delay.
    assert b"retry-after: 296\r\n" in refused.lower()
    # The right login from another address is not refused (the account is only slowed).
    assert (await http_get(port, GOOD, source="127.0.0.2")).startswith(b"HTTP/1.1 200")
    assert throttle.failures_total == {"http": 6}
    assert throttle.refusals_total == {"http": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first failure of the window and the lockout
    assert "refused for 300 s" in warnings[1]


async def test_smpp_bind_failures_are_blind_slowed_then_refused(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    throttle = AuthThrottle(POLICY)
    config = SmppConfig(port=0, accounts=ACCOUNTS)
    port = await nursery.start(
        functools.partial(serve_smpp, config, AcceptingBackend(ACCOUNTS), throttle=throttle)
    )
    stream = await open_from(port)
    decoder = SmppDecoder()

    async def bind(system_id: str, password: str) -> int | None:
        return await raw_bind(stream, decoder, system_id=system_id, password=password)

    # Unknown system_id and wrong password look alike.
    assert await bind("nobody", "demo") == CommandStatus.ESME_RINVPASWD
    assert await bind("demo", "wrong") == CommandStatus.ESME_RINVPASWD
    took = []
    for _ in range(4):
        start = trio.current_time()
        assert await bind("demo", "wrong") == CommandStatus.ESME_RINVPASWD
        took.append(trio.current_time() - start)
    assert took == pytest.approx([1, 1 + 2, 2 + 4, 4 + 4], abs=0.01)
    # Locked out: even the right password is refused from this address, at once.
    start = trio.current_time()
    assert await bind("demo", "demo") == CommandStatus.ESME_RBINDFAIL
    assert trio.current_time() - start == pytest.approx(0, abs=0.01)
    other = await open_from(port, "127.0.0.2")
    assert await raw_bind(other, system_id="demo", password="demo") == CommandStatus.ESME_ROK
    assert throttle.failures_total == {"smpp": 6}
    await other.aclose()
    await stream.aclose()
