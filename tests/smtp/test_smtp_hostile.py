"""What a hostile-input probe found at the SMTP door, over real sockets on 127.0.0.1 under the
virtual clock: a mail nesting MIME a thousand levels deep is refused with 554 and the session
goes on, with nothing logged at ERROR."""

from __future__ import annotations

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

DOMAIN = "sms.localhost"


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


async def gateway_smtp(tmp_path: Path, nursery: trio.Nursery, config: SmtpConfig) -> int:
    """An SMTP listener on the gateway's own backend (the example's service 1000, which takes
    mail from 127.0.0.1); its port."""
    services = example_config(tmp_path).services
    store = await start_store(tmp_path / "smtp.db", nursery)
    backend = GatewaySmtpBackend(
        services,
        Submitter(services, store, Clock(start_epoch=START)),
        store,
        lambda username, password: None,
        domain=DOMAIN,
    )
    port: int = await nursery.start(functools.partial(serve_smtp, config, backend))
    return port


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
