"""The HTTP/1.1 listener: a thin trio shell that moves bytes between sockets and h11 and hands
each complete request to an `App`. It owns the limits and timeouts and never parses a payload;
what a request means is the app's business (spec section 2.3 is served through `app.py`).
"""

from __future__ import annotations

import collections
import email.utils
import enum
import functools
import http
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import h11
import msgspec
import trio

from edgegw.http.forwarded import client_address, first_forwarded
from edgegw.http.inputs import framing_refusal, request_target
from edgegw.http.limits import HttpLimits
from edgegw.loglimit import LogLimiter, log_limited, log_refused, write_overdue_summaries
from edgegw.networks import Networks
from edgegw.shares import ConnectionShares

__all__ = [
    "App",
    "BodyWriter",
    "ErrorRenderer",
    "HttpLimits",
    "Request",
    "Response",
    "plain_error",
    "reason_phrase",
    "serve_connection",
    "serve_http",
]

log = logging.getLogger(__name__)


# A request's body: bytes when it came in one read, else the buffer it grew in (read only).
Body = bytes | bytearray
# Sends one piece of a streamed body (`Response.stream`).
BodyWriter = Callable[[bytes], Awaitable[None]]


class Request(msgspec.Struct, kw_only=True):
    method: str  # upper case, as sent
    path: str  # the target's path (before `?`), not percent-decoded
    query: str  # the target after `?`, not percent-decoded; "" when absent
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Body
    # The address the request came from: the TCP peer's, or the client's that a trusted
    # reverse proxy forwarded (edgegw.http.forwarded).
    client: str | None = None
    # True when the TCP peer is a trusted reverse proxy that named no client (no readable
    # X-Forwarded-For): `client` is then the proxy's own address, which counts and throttles
    # the request but says nothing of where its client is (the loopback rule, management).
    client_unnamed: bool = False
    # True when the TCP peer is a trusted reverse proxy, whose X-Forwarded-* headers may then
    # be read: the URL its client used (a WSDL's address) is the proxy's, not ours.
    proxied: bool = False
    # Set by a wrapper whose rows must commit with what the request writes (the answer of an
    # Idempotency-Key, edgegw.http.idempotency): the route that commits the request's effects
    # calls it with the answer it will send and writes what it returns (an edgegw.store.Write)
    # in the same job; None leaves nothing to add.
    commit_with: Callable[[Response], Callable[[Any], None] | None] | None = None

    def forwarded(self, name: str) -> str | None:
        """A trusted proxy's X-Forwarded-`name` (its leftmost entry); None from anyone else."""
        return first_forwarded(self.headers.get(f"x-forwarded-{name}")) if self.proxied else None

    def host(self) -> str:
        """The host (and port) the client asked for: behind a trusted proxy the one it
        forwarded, else the Host header."""
        return self.forwarded("host") or self.headers.get("host", "")


class Response(msgspec.Struct, kw_only=True):
    status: int
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    body: bytes = b""
    # Set by a route whose credentials check failed: the account tried ("" when unknown), for
    # the failed-login throttle (edgegw.http.guard). Never sent.
    auth_failure: str | None = None
    # A body written piece by piece instead of `body` (chunked): called once the head is out,
    # with the function that sends a piece. A big batch's answer goes out as its chunks commit.
    stream: Callable[[BodyWriter], Awaitable[None]] | None = None


App = Callable[[Request], Awaitable[Response]]
# The answer to a request the listener refuses itself (413, 431, 408, a broken request): given
# the request's head when it was read (body empty), else None, so the app can answer in the
# format the client asked for.
ErrorRenderer = Callable[[Request | None, int, str], Response]


# The phrases RFC 9110 renamed, which Python before 3.13 still gives as RFC 7231 had them.
_RFC_9110_PHRASES: Final = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def reason_phrase(status: int) -> str:
    """The reason phrase of `status` (RFC 9110 section 15), the same on every Python: the
    status line's, and the title of a problem of that status (edgegw.http.problems). Empty for
    a code it does not name."""
    try:
        return _RFC_9110_PHRASES.get(status) or http.HTTPStatus(status).phrase
    except ValueError:
        return ""


@functools.cache
def _reason(status: int) -> bytes:
    return reason_phrase(status).encode("ascii")


def plain_error(request: Request | None, status: int, reason: str) -> Response:
    """The listener's own error answer: the reason as plain text."""
    return Response(
        status=status,
        headers=[("content-type", "text/plain; charset=utf-8")],
        body=reason.encode("utf-8") + b"\n",
    )


_RECEIVE_BYTES: Final = 65536
# After an error response the client may still be sending (a refused body, say). Closing with
# unread input makes the kernel send RST, which can destroy our response before the client
# reads it; so the write side is shut and input is read and dropped for a short while first.
_LINGER_SECONDS: Final = 1.0
_SERVER_HEADER: Final = (b"server", b"edgegw")
# A response body up to this size goes out with its head in one write; a bigger one is written
# after the head as it is, rather than copied into one buffer with it.
_COALESCE_BYTES: Final = 65536
# A client's states once its whole request is in (MUST_CLOSE when it said `Connection: close`).
_REQUEST_READ: Final = frozenset({h11.DONE, h11.MUST_CLOSE})


class _Date:
    """The `Date` header value, formatted once per second rather than once per response."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode("ascii")
        return self._value


_date = _Date()


class _Drain:
    """What a listener's connections share: who is idle and who is busy at shutdown, and the
    limiter of the failures they log (at most once a minute per kind and peer)."""

    def __init__(self) -> None:
        self.draining = False
        self.connections: set[_HttpConnection] = set()
        self.failures = LogLimiter()

    def begin(self, grace: float) -> None:
        self.draining = True
        deadline = trio.current_time() + grace
        for connection in self.connections:
            if connection.idle:
                connection.scope.cancel()
            else:
                connection.scope.deadline = min(connection.scope.deadline, deadline)


class _Phase(enum.Enum):
    """Where a connection is, which decides what a timeout there means."""

    IDLE = "idle"  # waiting for the first byte of a request
    HEAD = "head"
    BODY = "body"
    APP = "app"
    SEND = "send"


class _Closed(Exception):
    """The connection is finished; its close has been arranged."""


class _HttpConnection:
    def __init__(
        self,
        stream: trio.abc.Stream,
        app: App,
        limits: HttpLimits,
        drain: _Drain,
        peer: tuple[str, int] | None,
        errors: ErrorRenderer,
        trusted_proxies: Networks | None,
    ) -> None:
        self.stream = stream
        self.app = app
        self.errors = errors
        self.head: Request | None = None  # the request being served, once its head is in
        self.limits = limits
        self.drain = drain
        self.peer = peer
        self.trusted_proxies = trusted_proxies
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.scope = trio.CancelScope(shield=True)
        self.timer = trio.CancelScope()
        self.phase = _Phase.IDLE
        self.idle = True
        self.served = 0

    async def run(self) -> None:
        # One timer scope for the connection's whole life, its deadline moved before each wait:
        # cheaper on the hot path than a scope per wait, and any expiry ends the connection.
        timer = self.timer
        try:
            with timer:
                await self._serve_requests()
            if timer.cancelled_caught:
                await self._timed_out()
        except _Closed:
            return
        except h11.RemoteProtocolError as exc:
            await self._reject(exc.error_status_hint, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client went away mid-exchange; nobody is left to answer.
            return
        except Exception:
            self._log_failure("connection", "HTTP connection with %s failed")
            await self._reject(500, "internal server error")

    async def _serve_requests(self) -> None:
        conn = self.conn
        while not self.drain.draining:
            request = await self._receive_head()
            if request is None:
                return
            body = await self._receive_body(request)
            self.phase = _Phase.APP
            if self.timer.deadline != math.inf:
                self.timer.deadline = math.inf  # the app's time is the app's business
            response = await self._call_app(body)
            self.phase = _Phase.SEND
            self.timer.deadline = trio.current_time() + self.limits.body_timeout
            await self._send_response(response, head_only=request.method == b"HEAD")
            self.served += 1
            if conn.their_state not in _REQUEST_READ:
                await self._linger_close()  # we answered before reading it all
                return
            if conn.our_state is h11.MUST_CLOSE:
                if conn.trailing_data[0]:
                    await self._linger_close()
                return
            conn.start_next_cycle()

    async def _timed_out(self) -> None:
        if self.phase is _Phase.HEAD:
            await self._reject(408, "request headers took too long")
        elif self.phase is _Phase.BODY:
            await self._reject(408, "request body took too long")
        # Idle: a quiet client gets a quiet close. Sending: a client that does not read its
        # response is dropped.

    async def _receive_head(self) -> h11.Request | None:
        """The next request's head; None when the client closed."""
        conn = self.conn
        self.head = None
        self.phase = _Phase.HEAD if conn.trailing_data[0] else _Phase.IDLE
        self.idle = self.phase is _Phase.IDLE
        waiting = False
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if not waiting:
                        waiting = True
                        timeout = (
                            self.limits.keep_alive_timeout
                            if self.idle and self.served
                            else self.limits.header_timeout
                        )
                        self.timer.deadline = trio.current_time() + timeout
                    data = await self.stream.receive_some(_RECEIVE_BYTES)
                    if self.idle and data:
                        self.idle = False
                        self.phase = _Phase.HEAD
                        self.timer.deadline = trio.current_time() + self.limits.header_timeout
                    conn.receive_data(bytes(data))
                elif isinstance(event, h11.Request):
                    self.head = self._request(event)
                    refusal = framing_refusal(event.http_version, event.headers, event.target)
                    if refusal is not None:
                        await self._reject(*refusal)
                        raise _Closed
                    # h11 bounds only a head that is still incomplete; one that arrived whole in
                    # a single read is measured here.
                    size = len(event.method) + len(event.target)
                    for name, value in event.headers:
                        size += len(name) + len(value) + 4
                    if size > self.limits.max_header_bytes:
                        await self._reject(431, "request headers are too large")
                        raise _Closed
                    return event
                else:
                    return None  # ConnectionClosed (or PAUSED after a close)
        finally:
            self.idle = False

    async def _receive_body(self, request: h11.Request) -> Body:
        conn = self.conn
        limit = self.limits.max_body_bytes
        length = 0  # as declared by Content-Length; 0 when chunked
        for name, value in request.headers:
            if name == b"content-length":
                length = int(value)
                if length > limit:
                    await self._reject(413, f"request body is over {limit} bytes")
                    raise _Closed
        self.phase = _Phase.BODY
        waiting = False
        if conn.they_are_waiting_for_100_continue:
            waiting = True
            self.timer.deadline = trio.current_time() + self.limits.body_timeout
            await self.stream.send_all(
                conn.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=_reason(100))
                )
                or b""
            )
        # A body that came in one piece is that piece; a longer one is copied into one buffer
        # rather than being joined from a list of its pieces at the end, which held it twice.
        # The buffer is made at the declared length (growing it would leave up to an eighth
        # of it as slack); only a chunked body grows.
        first = b""
        more: bytearray | None = None
        size = 0
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                data = event.data
                start, size = size, size + len(data)
                if size > limit:
                    await self._reject(413, f"request body is over {limit} bytes")
                    raise _Closed
                if more is not None:
                    more[start:size] = data
                elif first:
                    more = bytearray(max(length, size))
                    more[:start] = first
                    more[start:size] = data
                    first = b""
                else:
                    first = data
            elif isinstance(event, h11.EndOfMessage):
                return first if more is None else more
            elif event is h11.NEED_DATA:
                if not waiting:
                    waiting = True
                    self.timer.deadline = trio.current_time() + self.limits.body_timeout
                conn.receive_data(bytes(await self.stream.receive_some(_RECEIVE_BYTES)))
            else:
                raise _Closed  # the client closed mid-body

    def _request(self, event: h11.Request) -> Request:
        path, query, authority = request_target(event.target.decode("ascii", "replace"))
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name = raw_name.decode("ascii", "replace")
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if authority is not None:
            headers["host"] = authority  # RFC 9112 section 3.2.2: the target's, not the header's
        peer = self.peer[0] if self.peer is not None else None
        client, proxied = peer, False
        trusted = self.trusted_proxies
        if peer is not None and trusted is not None and peer in trusted:
            client, proxied = client_address(peer, headers.get("x-forwarded-for"), trusted), True
        return Request(
            method=event.method.decode("ascii", "replace"),
            path=path,
            query=query,
            headers=headers,
            body=b"",
            client=client or peer,
            client_unnamed=peer is not None and client is None,
            proxied=proxied,
        )

    async def _call_app(self, body: Body) -> Response:
        request = self.head
        assert request is not None  # _receive_head set it with the head it returned
        request.body = body
        try:
            return await self.app(request)
        except Exception:
            # The app's failure is this request's, not the connection's: answer and go on.
            self._log_failure(
                "handler",
                "HTTP handler failed for %s %s from %s",
                request.method,
                request.path[:200],
            )
            return self.errors(request, 500, "internal server error")

    def _log_failure(self, kind: str, message: str, *args: object) -> None:
        """A bug a client reached, with its traceback the first time; `message`'s last %s is
        the client (the request's, behind a trusted proxy too). A client repeating it is
        summarized once a minute instead of filling the disk."""
        if self.head is not None:
            client = self.head.client
        else:
            client = self.peer[0] if self.peer is not None else None
        now = trio.current_time()
        failures = self.drain.failures
        log_limited(
            log,
            failures,
            logging.ERROR,
            kind,
            client,
            now,
            message,
            *args,
            client,
            exc_info=True,
            stacklevel=3,  # where the failure was caught
        )

    async def _send_response(self, response: Response, *, head_only: bool = False) -> None:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
        ]
        if response.stream is not None:
            await self._send_streamed(response.status, headers, response.stream, head_only)
            return
        headers.append((b"content-length", str(len(response.body)).encode("ascii")))
        headers.append((b"date", _date.header()))
        headers.append(_SERVER_HEADER)
        if self.drain.draining:
            headers.append((b"connection", b"close"))
        conn = self.conn
        pieces = [
            conn.send(
                h11.Response(
                    status_code=response.status, headers=headers, reason=_reason(response.status)
                )
            )
            or b""
        ]
        if response.body and not head_only:
            # Passed through, not copied: a big batch's answer is several times its request.
            pieces += conn.send_with_data_passthrough(h11.Data(data=response.body)) or []
        pieces.append(conn.send(h11.EndOfMessage()) or b"")
        if len(response.body) <= _COALESCE_BYTES:
            await self.stream.send_all(b"".join(pieces))
        else:
            for piece in pieces:
                await self.stream.send_all(piece)

    async def _send_streamed(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        stream: Callable[[BodyWriter], Awaitable[None]],
        head_only: bool,
    ) -> None:
        """The head, then each piece as the producer gives it: chunked for an HTTP/1.1 client,
        delimited by the close for HTTP/1.0 (h11 decides). The producer's own waits have no
        deadline; a client that does not take a piece within `body_timeout` is dropped."""
        headers.append((b"date", _date.header()))
        headers.append(_SERVER_HEADER)
        if self.drain.draining:
            headers.append((b"connection", b"close"))
        conn = self.conn
        timer = self.timer

        async def send(data: bytes) -> None:
            timer.deadline = trio.current_time() + self.limits.body_timeout
            await self.stream.send_all(data)
            timer.deadline = math.inf

        await send(
            conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
            or b""
        )

        async def write(piece: bytes) -> None:
            if piece and not head_only:
                await send(conn.send(h11.Data(data=piece)) or b"")

        await stream(write)
        await send(conn.send(h11.EndOfMessage()) or b"")

    async def _reject(self, status: int, reason: str) -> None:
        """Answer with an error (if the exchange still allows an answer) and close."""
        if self.conn.our_state in {h11.IDLE, h11.SEND_RESPONSE}:
            try:
                response = self.errors(self.head, status, reason)
            except Exception:
                log.exception("HTTP error renderer failed for %d %s", status, reason)
                response = plain_error(None, status, reason)
            response.headers.append(("connection", "close"))
            try:
                with trio.move_on_after(self.limits.body_timeout) as scope:
                    await self._send_response(response)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if scope.cancelled_caught:
                return
        await self._linger_close()

    async def _linger_close(self) -> None:
        try:
            with trio.move_on_after(_LINGER_SECONDS):
                if isinstance(self.stream, trio.abc.HalfCloseableStream):
                    await self.stream.send_eof()
                await _discard_until_eof(self.stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _discard_until_eof(stream: trio.abc.ReceiveStream) -> None:
    chunk = b"unread"
    while chunk:
        chunk = bytes(await stream.receive_some(_RECEIVE_BYTES))


async def serve_connection(
    stream: trio.abc.Stream,
    app: App,
    limits: HttpLimits,
    *,
    peer: tuple[str, int] | None = None,
    errors: ErrorRenderer = plain_error,
    trusted_proxies: Networks | None = None,
    _drain: _Drain | None = None,
) -> None:
    """Serve HTTP/1.1 on one stream from `peer` (its address and port) until the client leaves, a
    limit is hit or shutdown ends it. A request from a peer in `trusted_proxies` is from the
    client its X-Forwarded-For names (edgegw.http.forwarded). The connection is its own error
    boundary: nothing it meets escapes except cancellation."""
    drain = _drain if _drain is not None else _Drain()
    connection = _HttpConnection(stream, app, limits, drain, peer, errors, trusted_proxies)
    drain.connections.add(connection)
    try:
        with connection.scope:
            await connection.run()
    finally:
        drain.connections.discard(connection)
        await trio.aclose_forcefully(stream)


async def _refuse_busy(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    body = b"too many connections\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
        _SERVER_HEADER,
    ]
    data = conn.send(h11.Response(status_code=503, headers=headers)) or b""
    data += (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
    try:
        with trio.move_on_after(_LINGER_SECONDS):
            await stream.send_all(data)
            await stream.send_eof()
            await _discard_until_eof(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await trio.aclose_forcefully(stream)


async def serve_http(
    app: App,
    host: str,
    port: int,
    limits: HttpLimits,
    *,
    errors: ErrorRenderer = plain_error,
    trusted_proxies: Networks | None = None,
    refused: collections.Counter[str] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on host:port (0 picks a free port, reported through `task_status.started`) and
    serve until cancelled. On cancellation it stops accepting at once, lets requests in
    progress finish within `limits.shutdown_grace`, then closes whatever is left. Requests
    through a proxy in `trusted_proxies` are from the client it forwarded; connections are
    counted against `limits.max_connections_per_address` by the TCP peer all the same, as
    they are taken before any header is read. A refused connection is logged (loglimit's
    log_refused) and counted in `refused` under "http", when given."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port: int = listeners[0].socket.getsockname()[1]
    drain = _Drain()
    shares = ConnectionShares(
        limits.max_connections,
        limits.max_connections_per_address,
        exempt_loopback=limits.exempt_loopback,
        door="http",
        refused=refused,
    )

    async def serve_one(stream: trio.SocketStream) -> None:
        try:
            name = stream.socket.getpeername()
            peer = (str(name[0]), int(name[1]))
        except OSError:
            peer = None
        address = peer[0] if peer is not None else None
        refusal = shares.admit(address, len(drain.connections))
        if refusal is not None:
            log_refused(log, drain.failures, shares, address, refusal, len(drain.connections))
            await _refuse_busy(stream)
            return
        try:
            await serve_connection(
                stream,
                app,
                limits,
                peer=peer,
                errors=errors,
                trusted_proxies=trusted_proxies,
                _drain=drain,
            )
        finally:
            shares.give_back(address)

    async with trio.open_nursery() as nursery:
        try:
            # Connection tasks live in this nursery too; each shields itself (see _Drain), so
            # cancelling us stops the accept loop but only drains the connections.
            nursery.start_soon(
                functools.partial(
                    trio.serve_listeners, serve_one, listeners, handler_nursery=nursery
                )
            )
            nursery.start_soon(write_overdue_summaries, log, drain.failures)
            task_status.started(bound_port)
            await trio.sleep(math.inf)
        finally:
            drain.begin(limits.shutdown_grace)
            log.info("HTTP on port %d draining %d connections", bound_port, len(drain.connections))
