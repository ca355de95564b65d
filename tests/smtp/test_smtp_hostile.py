"""What a hostile-input probe found at the SMTP door, over real sockets on 127.0.0.1 under the
virtual clock: a mail nesting MIME a thousand levels deep is refused with 554 and the session
goes on, with nothing logged at ERROR; AUTH guesses are slowed, then refused, by the shared
login throttle like every other door's; one address holding its share of the connections does
not shut another out, and its refused connections are logged once a minute, not each."""

from __future__ import annotations

import base64
import functools
import logging
from pathlib import Path

import pytest
import trio
import trio.testing
from support.gateway import example_config
from support.sockets import open_from
from support.store import START, start_store

from edgegw.clock import Clock
from edgegw.pipeline.smtp_backend import GatewaySmtpBackend
from edgegw.pipeline.submit import Submitter
from edgegw.smtp.config import SmtpConfig
from edgegw.smtp.server import serve_smtp
from edgegw.throttle import AuthThrottle, AuthThrottleConfig

DOMAIN = "sms.localhost"
POLICY = AuthThrottleConfig(
    window=60.0, free_failures=2, base_delay=1.0, max_delay=4.0, lockout_failures=6, cooldown=300.0
)


async def reply(stream: trio.SocketStream) -> bytes:
    """The next whole reply (every line of a multiline one)."""
    received = b""
    while not received.endswith(b"\r\n") or received.split(b"\r\n")[-2][3:4] != b" ":
        chunk = await stream.receive_some(65536)
        assert chunk, received
        received += chunk
    return received


async def command(stream: trio.SocketStream, line: bytes) -> bytes:
    await stream.send_all(line + b"\r\n")
    return await reply(stream)


async def authenticate(username: str, password: str) -> int | None:
    return 1000 if (username, password) == ("demo", "demo") else None


async def gateway_smtp(
    tmp_path: Path,
    nursery: trio.Nursery,
    config: SmtpConfig,
    throttle: AuthThrottle | None = None,
) -> int:
    """An SMTP listener on the gateway's own backend (the example's service 1000, which takes
    mail from 127.0.0.1; demo/demo logs in as it); its port."""
    services = example_config(tmp_path).services
    store = await start_store(tmp_path / "smtp.db", nursery)
    backend = GatewaySmtpBackend(
        services,
        Submitter(services, store, Clock(start_epoch=START)),
        store,
        authenticate,
        domain=DOMAIN,
    )
    port: int = await nursery.start(
        functools.partial(serve_smtp, config, backend, throttle=throttle)
    )
    return port


async def greeted(port: int, source: str = "127.0.0.1") -> trio.SocketStream:
    """A connection from `source` past the greeting and EHLO (AUTH is offered on loopback)."""
    stream = await open_from(port, source)
    assert (await reply(stream)).startswith(b"220 ")
    assert (await command(stream, b"EHLO probe")).endswith(b"250 AUTH PLAIN LOGIN\r\n")
    return stream


def auth_plain(username: str, password: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"\0{username}\0{password}".encode())


async def test_deeply_nested_mime_is_refused_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = await gateway_smtp(tmp_path, nursery, SmtpConfig(port=0, domain=DOMAIN))
    stream = await open_from(port)
    assert (await reply(stream)).startswith(b"220 ")
    assert (await command(stream, b"EHLO probe")).startswith(b"250-")
    assert await command(stream, b"MAIL FROM:<a@b.test>") == b"250 2.1.0 sender OK\r\n"
    rcpt = await command(stream, f"RCPT TO:<4741000000-1000@{DOMAIN}>".encode())
    assert rcpt == b"250 2.1.5 recipient OK\r\n"
    assert (await command(stream, b"DATA")).startswith(b"354 ")
    nested = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(1000)
    )
    body = (nested + "Content-Type: text/plain\r\n\r\nhi\r\n.").encode()
    refused = await command(stream, body)
    assert refused.startswith(b"554 5.6.0 MIME parts nested too deeply")
    # The session goes on.
    assert await command(stream, b"NOOP") == b"250 2.0.0 OK\r\n"
    assert await command(stream, b"QUIT") == b"221 2.0.0 sms.localhost closing\r\n"
    await stream.aclose()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_auth_guesses_are_slowed_then_refused_but_not_elsewhere(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = AuthThrottle(POLICY)
    port = await gateway_smtp(tmp_path, nursery, SmtpConfig(port=0, domain=DOMAIN), throttle)
    stream = await greeted(port)
    took = []
    for _ in range(6):
        start = trio.current_time()
        answer = await command(stream, auth_plain("demo", "guess"))
        assert answer == b"535 5.7.8 authentication credentials invalid\r\n"
        took.append(trio.current_time() - start)
    # As the HTTP and SMPP doors: free, free, then the answer waits 1, 2, 4, 4 s, and each
    # attempt after a slowed one first waits what the last one earned.
    assert took == pytest.approx([0, 0, 1, 1 + 2, 2 + 4, 4 + 4], abs=0.01)
    # Locked out: even the right password is refused from this address, unchecked and at once,
    # with what is left of the 300 s cool-down (it began before the last answer's 4 s delay).
    start = trio.current_time()
    refused = await command(stream, auth_plain("demo", "demo"))
    assert refused == b"454 4.7.0 too many failed logins from 127.0.0.1, try in 296 s\r\n"
    assert trio.current_time() - start == pytest.approx(0, abs=0.01)
    # The account is only slowed, never locked: its owner logs in from another address.
    other = await greeted(port, "127.0.0.2")
    start = trio.current_time()
    assert await command(other, auth_plain("demo", "demo")) == (
        b"235 2.7.0 authentication successful\r\n"
    )
    assert trio.current_time() - start == pytest.approx(0, abs=0.01)
    assert throttle.failures_total == {"smtp": 6}
    assert throttle.refusals_total == {"smtp": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first failure of the window and the lockout
    assert warnings[0].startswith("SMTP login failed from 127.0.0.1 for account 'demo'")
    assert warnings[1] == "SMTP logins from 127.0.0.1 refused for 300 s: too many failures"
    for client in (stream, other):
        await client.aclose()


async def test_one_address_at_its_share_does_not_shut_another_out(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    # The defaults: 64 connections, a quarter of them (16) per address.
    config = SmtpConfig(port=0, domain=DOMAIN)
    assert config.max_connections == 64 and config.max_connections_per_address == 0
    port = await gateway_smtp(tmp_path, nursery, config)
    held = []
    for _ in range(16):  # idle sockets that never send a command
        stream = await open_from(port)
        assert (await reply(stream)).startswith(b"220 ")
        held.append(stream)
    over = await open_from(port)
    assert (
        await reply(over)
        == b"421 4.3.2 too many connections from your address, try again later\r\n"
    )
    assert await over.receive_some(4096) == b""  # and closed
    await over.aclose()
    other = await open_from(port, "127.0.0.2")
    assert (await reply(other)).startswith(b"220 sms.localhost ESMTP")
    assert await command(other, b"QUIT") == b"221 2.0.0 sms.localhost closing\r\n"
    await other.aclose()
    # A connection that ends gives its slot back.
    first = held.pop()
    assert await command(first, b"QUIT") == b"221 2.0.0 sms.localhost closing\r\n"
    await first.aclose()
    await trio.sleep(2)  # past the server's linger after QUIT
    again = await open_from(port)
    assert (await reply(again)).startswith(b"220 ")
    for stream in (*held, again):
        await stream.aclose()


async def test_refusals_over_the_share_are_logged_once_a_minute_with_their_count(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SmtpConfig(port=0, domain=DOMAIN, max_connections_per_address=1)
    port = await gateway_smtp(tmp_path, nursery, config)
    held = await open_from(port)
    assert (await reply(held)).startswith(b"220 ")
    for _ in range(20):
        over = await open_from(port)
        assert (
            await reply(over)
            == b"421 4.3.2 too many connections from your address, try again later\r\n"
        )
        await over.aclose()
    # The client stops; its count is written once the minute of its first refusal is over.
    await trio.sleep(61.0)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edgegw.smtp.server"]
    first = "SMTP connection from 127.0.0.1 refused: 1 connections open, 1 from it"
    assert lines == [
        (logging.WARNING, first),
        (logging.WARNING, f"{first} (19 more like it since the last one, not logged)"),
    ]
    await held.aclose()


async def test_a_full_listener_logs_refusals_once_a_minute_whatever_the_address(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SmtpConfig(port=0, domain=DOMAIN, max_connections=2, max_connections_per_address=1)
    port = await gateway_smtp(tmp_path, nursery, config)
    held = [await open_from(port, f"127.0.0.{last}") for last in (1, 2)]
    for stream in held:
        assert (await reply(stream)).startswith(b"220 ")
    for last in range(3, 13):
        over = await open_from(port, f"127.0.0.{last}")
        assert (await reply(over)).startswith(b"421 ")
        await over.aclose()
    await trio.sleep(61.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "edgegw.smtp.server"]
    first = "SMTP connection from 127.0.0.3 refused: 2 connections open, 0 from it"
    assert lines == [
        first,
        "SMTP connection from 127.0.0.12 refused: 2 connections open, 0 from it"
        " (9 more like it since the last one, not logged)",
    ]
    for stream in held:
        await stream.aclose()


async def test_exempt_loopback_lifts_the_share(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = SmtpConfig(
        port=0,
        domain=DOMAIN,
        max_connections=4,
        max_connections_per_address=1,
        exempt_loopback=True,
    )
    port = await gateway_smtp(tmp_path, nursery, config)
    streams = [await open_from(port) for _ in range(4)]
    for stream in streams:
        assert (await reply(stream)).startswith(b"220 ")
    # The listener's own limit still holds.
    busy = await open_from(port, "127.0.0.2")
    assert await reply(busy) == b"421 4.3.2 too many connections, try again later\r\n"
    for stream in (*streams, busy):
        await stream.aclose()
