"""The SMTP listener: a thin trio shell that moves bytes between a socket (TLS after STARTTLS)
and `SmtpSession`, owns the idle and DATA timeouts and the connection limit, and asks the
backend for each decision. One address holds at most its share of the connections
(`edgegw.shares`); a refused connection is logged as the SMPP listener logs one, at most once a
minute per address (`edgegw.loglimit`). AUTH goes through the gateway's shared `AuthThrottle`
(the policy lives there; this only consults it and waits). One failing connection never touches
another. Spec section 2.6.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import ssl
from collections.abc import Sequence
from typing import Final, Protocol

import trio

from edgegw.logins import admit, login_failed
from edgegw.loglimit import LogLimiter, log_refused, write_overdue_summaries
from edgegw.networks import is_loopback
from edgegw.shares import ConnectionShares, Refusal
from edgegw.smtp.config import SmtpConfig
from edgegw.smtp.protocol import (
    NEED_DATA,
    AuthRequested,
    ConnectionClosed,
    MessageReceived,
    Phase,
    RecipientRequested,
    Reply,
    SmtpSession,
    StartTlsRequested,
)
from edgegw.throttle import AuthThrottle
from edgegw.tls import server_context

__all__ = ["SmtpBackend", "serve_connection", "serve_smtp"]

log = logging.getLogger(__name__)

_RECEIVE_BYTES: Final = 65536
_LINGER_SECONDS: Final = 1.0
_BUSY: Final = Reply(421, "4.3.2 too many connections, try again later")
_OVER_SHARE: Final = Reply(421, "4.3.2 too many connections from your address, try again later")
_DOOR: Final = "smtp"  # the label of its failed logins in edgegw.throttle and /metrics


class SmtpBackend(Protocol):
    """What the listener needs from the core; edgegw.pipeline.smtp_backend implements it."""

    # The service id for these credentials, or None.
    async def authenticate(self, username: str, password: str) -> int | None: ...

    # The RCPT decision for a client address (and the service it authenticated as).
    def recipient(self, address: str, client: str, authenticated: int | None) -> Reply: ...

    # The end-of-DATA decision for a mail from `sender` sent by a client address; a 250 only
    # after the messages are committed.
    async def deliver(
        self, sender: str, recipients: Sequence[str], content: bytes, client: str
    ) -> Reply: ...


def _tls_context(config: SmtpConfig) -> ssl.SSLContext | None:
    if not config.tls_cert_file:
        return None
    return server_context(config.tls_cert_file, config.tls_key_file)


async def serve_smtp(
    config: SmtpConfig,
    backend: SmtpBackend,
    *,
    throttle: AuthThrottle | None = None,
    refused: collections.Counter[str] | None = None,
    limiter: LogLimiter | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on config.host:config.port; reports the bound port through `task_status`.
    Failed AUTH is slowed and locked out by `throttle` (one of default policy if None).
    Refused connections are counted in `refused` under "smtp", when given. `limiter` bounds
    the door's repeating log lines (one of its own if None); the backend's may share it, so that
    the count of lines it left out is written too."""
    tls = _tls_context(config)
    throttle = throttle or AuthThrottle()
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    port: int = listeners[0].socket.getsockname()[1]
    active = 0
    limiter = limiter or LogLimiter()
    shares = ConnectionShares(
        config.max_connections,
        config.max_connections_per_address,
        exempt_loopback=config.exempt_loopback,
        door="smtp",
        refused=refused,
    )

    async def connection(stream: trio.SocketStream) -> None:
        nonlocal active
        try:
            client = str(stream.socket.getpeername()[0])
        except OSError:  # gone before we looked
            await trio.aclose_forcefully(stream)
            return
        refusal = shares.admit(client, active)
        if refusal is not None:
            log_refused(log, limiter, shares, client, refusal, active)
            with trio.move_on_after(1):
                await _refuse(stream, _BUSY if refusal is Refusal.FULL else _OVER_SHARE)
            return
        active += 1
        try:
            await serve_connection(stream, client, config, backend, throttle, tls)
        finally:
            active -= 1
            shares.give_back(client)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_overdue_summaries, log, limiter)
        log.info("smtp listening on %s:%d for @%s", config.host, port, config.domain)
        task_status.started(port)
        await trio.serve_listeners(connection, listeners)


async def _refuse(stream: trio.SocketStream, reply: Reply) -> None:
    try:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(reply.encode())
    finally:
        await trio.aclose_forcefully(stream)


async def serve_connection(
    stream: trio.abc.Stream,
    client: str,
    config: SmtpConfig,
    backend: SmtpBackend,
    throttle: AuthThrottle,
    tls: ssl.SSLContext | None = None,
) -> None:
    """One client's dialogue on `stream` from address `client`, until it ends; never raises
    (but for cancellation). The stream is closed at the end. AUTH is checked through
    `throttle`, the listener's, which every connection shares."""
    session = SmtpSession(
        config.domain,
        config.limits(),
        tls_available=tls is not None,
        auth_available=is_loopback(client),
        auth_required=config.require_auth,
    )
    authenticated: int | None = None
    step, step_phase, deadline = -1, session.phase, math.inf
    send = functools.partial(_send, seconds=config.idle_timeout)
    try:
        while True:
            event = session.next_event()
            # The replies the session queued (the greeting, its own answers, the last
            # decision), before waiting for more input or handing the stream to TLS.
            await send(stream, session.data_to_send())
            if event is NEED_DATA:
                # One deadline per step (a command, or a whole message after DATA), however
                # the client spreads its bytes.
                if session.steps != step or session.phase is not step_phase:
                    step, step_phase = session.steps, session.phase
                    data_phase = step_phase is Phase.DATA
                    timeout = config.data_timeout if data_phase else config.idle_timeout
                    deadline = trio.current_time() + timeout
                data = None
                with trio.move_on_at(deadline):
                    data = await stream.receive_some(_RECEIVE_BYTES)
                if data is None:
                    session.timed_out()
                else:
                    session.receive_data(data)
            elif isinstance(event, RecipientRequested):
                session.answer(backend.recipient(event.address, client, authenticated))
            elif isinstance(event, MessageReceived):
                reply = await backend.deliver(event.sender, event.recipients, event.content, client)
                session.answer(reply)
            elif isinstance(event, AuthRequested):
                authenticated, reply = await _login(throttle, backend, client, event)
                session.answer(reply)
            elif isinstance(event, StartTlsRequested):
                assert tls is not None
                secure = trio.SSLStream(stream, tls, server_side=True)
                with trio.fail_after(config.idle_timeout):
                    await secure.do_handshake()
                stream = secure
                authenticated = None
                session.tls_started()
            elif isinstance(event, ConnectionClosed):
                await _linger(stream)
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        log.debug("smtp: connection from %s dropped", client)
    except Exception:
        log.exception("smtp: connection from %s failed", client)
    finally:
        await trio.aclose_forcefully(stream)


async def _login(
    throttle: AuthThrottle, backend: SmtpBackend, client: str, auth: AuthRequested
) -> tuple[int | None, Reply]:
    """The service `auth` logs in as (or None) and the reply, by the rule of every door: a
    locked-out address is refused without its credentials being checked, and the answer to a
    slowed address or account waits what the throttle says (only this connection's task)."""
    refused_for = await admit(throttle, _DOOR, client)
    if refused_for:
        # RFC 4954 section 6: 454 is a temporary authentication failure.
        wait = math.ceil(refused_for)
        return None, Reply(454, f"4.7.0 too many failed logins from {client}, try in {wait} s")
    service = await backend.authenticate(auth.username, auth.password)
    if service is not None:
        return service, Reply(235, "2.7.0 authentication successful")
    await login_failed(throttle, _DOOR, "SMTP", client, auth.username, log)
    return None, Reply(535, "5.7.8 authentication credentials invalid")


async def _linger(stream: trio.abc.Stream) -> None:
    """Close our side, then read and drop what the client still sends for a moment: closing
    with unread input makes the kernel send RST, which can destroy our last reply (a 421 to a
    flooding client) before the client reads it."""
    with trio.move_on_after(_LINGER_SECONDS):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        dropped: bytes | bytearray = b"-"
        while dropped:  # until the client closes its side too
            dropped = await stream.receive_some(_RECEIVE_BYTES)


async def _send(stream: trio.abc.Stream, data: bytes, *, seconds: float) -> None:
    if data:
        with trio.fail_after(seconds):
            await stream.send_all(data)
