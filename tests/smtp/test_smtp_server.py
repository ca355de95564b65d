"""The SMTP shell on in-memory streams with virtual time: idle and DATA timeouts end with 421
at the configured second, a garbage client is cut off, AUTH reaches the backend, and a stuck
or hostile client never delays another."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from edgegw.smtp.config import SmtpConfig
from edgegw.smtp.protocol import Reply
from edgegw.smtp.server import serve_connection
from edgegw.throttle import AuthThrottle


class Backend:
    """Accepts every recipient, records every mail and the session's authenticated service."""

    def __init__(self) -> None:
        self.mails: list[tuple[tuple[str, ...], bytes]] = []
        self.seen_auth: list[int | None] = []

    async def authenticate(self, username: str, password: str) -> int | None:
        return 1000 if (username, password) == ("demo", "demo") else None

    def recipient(self, address: str, client: str, authenticated: int | None) -> Reply:
        self.seen_auth.append(authenticated)
        return Reply(250, "2.1.5 OK")

    async def deliver(
        self, sender: str, recipients: Sequence[str], content: bytes, client: str
    ) -> Reply:
        self.mails.append((tuple(recipients), content))
        return Reply(250, "2.0.0 queued as m1")


CONFIG = SmtpConfig(domain="sms.test", idle_timeout=300.0, data_timeout=600.0)


async def read_all(stream: trio.abc.Stream) -> bytes:
    """Everything the server sends until it closes its side; then the client closes too (so
    the server's linger ends at once)."""
    received = bytearray()
    while chunk := await stream.receive_some(65536):
        received += chunk
    await stream.aclose()
    return bytes(received)


async def test_a_client_that_never_finishes_data_gets_421_after_data_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Backend()
    stuck, stuck_server = trio.testing.memory_stream_pair()
    good, good_server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            serve_connection, stuck_server, "192.0.2.7", CONFIG, backend, AuthThrottle()
        )
        nursery.start_soon(
            serve_connection, good_server, "192.0.2.8", CONFIG, backend, AuthThrottle()
        )
        started = trio.current_time()
        await stuck.send_all(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\npartial line")
        await trio.sleep(100)
        # The stuck client holds nothing up: the other one sends a whole mail meanwhile.
        await good.send_all(
            b"HELO g\r\nMAIL FROM:<>\r\nRCPT TO:<z@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
        )
        good_replies = await read_all(good)
        assert good_replies.endswith(b"250 2.0.0 queued as m1\r\n221 2.0.0 sms.test closing\r\n")
        assert trio.current_time() - started < 101
        stuck_replies = await read_all(stuck)
    assert stuck_replies.endswith(b"421 4.4.2 sms.test timeout, closing the connection\r\n")
    assert 600 <= trio.current_time() - started < 601
    assert backend.mails == [(("z@y",), b"hi\r\n")]


async def test_a_silent_client_is_closed_after_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, "192.0.2.7", CONFIG, Backend(), AuthThrottle())
        started = trio.current_time()
        replies = await read_all(client)
    assert replies.startswith(b"220 sms.test ESMTP edgegw\r\n")
    assert replies.endswith(b"421 4.4.2 sms.test timeout, closing the connection\r\n")
    assert trio.current_time() - started == 300


async def test_garbage_is_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, "192.0.2.7", CONFIG, Backend(), AuthThrottle())
        await client.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 200 + b"\r\n" * 20)
        replies = await read_all(client)
    assert replies.endswith(b"421 4.7.0 sms.test too many errors, closing\r\n")
    assert trio.current_time() < 1


async def test_auth_on_loopback_reaches_the_backend(autojump_clock: trio.testing.MockClock) -> None:
    backend = Backend()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, "127.0.0.1", CONFIG, backend, AuthThrottle())
        await client.send_all(
            b"EHLO c\r\nAUTH PLAIN AGRlbW8AZGVtbw==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nQUIT\r\n"
        )
        replies = await read_all(client)
    assert b"235 2.7.0 authentication successful\r\n" in replies
    assert backend.seen_auth == [1000]
    # Not on loopback and without TLS, AUTH is not offered at all.
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, "192.0.2.7", CONFIG, backend, AuthThrottle())
        await client.send_all(b"EHLO c\r\nAUTH PLAIN AGRlbW8AZGVtbw==\r\nQUIT\r\n")
        replies = await read_all(client)
    assert b"AUTH PLAIN LOGIN" not in replies
    assert b"502 5.5.1 AUTH is not available\r\n" in replies


async def test_a_trickling_client_cannot_stretch_its_deadlines(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, "192.0.2.7", CONFIG, Backend(), AuthThrottle())
        await client.send_all(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n")
        started = trio.current_time()

        async def trickle() -> None:
            while True:
                await trio.sleep(100)
                try:
                    await client.send_all(b"z")
                except trio.BrokenResourceError:
                    return

        nursery.start_soon(trickle)
        replies = await read_all(client)
        nursery.cancel_scope.cancel()
    assert replies.endswith(b"421 4.4.2 sms.test timeout, closing the connection\r\n")
    assert trio.current_time() - started == 600
    # A command line dribbled out gets the idle timeout, counted from its first byte.
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, "192.0.2.7", CONFIG, Backend(), AuthThrottle())
        started = trio.current_time()
        for _ in range(2):
            await trio.sleep(100)
            await client.send_all(b"N")
        replies = await read_all(client)
    assert replies.endswith(b"421 4.4.2 sms.test timeout, closing the connection\r\n")
    assert trio.current_time() - started == 300
