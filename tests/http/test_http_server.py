"""The h11/trio listener: real sockets on 127.0.0.1 (httpx and raw trio sockets for the nasty
cases) and in-memory streams under the virtual clock for every timeout and the drain."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import AsyncIterator

import h11
import httpx
import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegw.http.server import (
    HttpLimits,
    Request,
    Response,
    _Drain,
    serve_connection,
    serve_http,
)
from edgegw.networks import Networks

LIMITS = HttpLimits(max_header_bytes=4096, max_body_bytes=1000)


class Echo(msgspec.Struct):
    method: str
    path: str
    query: str
    body: str
    client: str | None
    content_type: str | None


async def echo_app(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    echo = Echo(
        method=request.method,
        path=request.path,
        query=request.query,
        body=request.body.decode(),
        client=request.client,
        content_type=request.headers.get("content-type"),
    )
    return Response(
        status=200, headers=[("content-type", "application/json")], body=msgspec.json.encode(echo)
    )


async def start(nursery: trio.Nursery, limits: HttpLimits = LIMITS, app: object = None) -> int:
    port: int = await nursery.start(serve_http, app or echo_app, "127.0.0.1", 0, limits)
    return port


class Reply(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes


async def read_replies(stream: trio.abc.ReceiveStream, count: int = 1) -> list[Reply]:
    """Parse `count` responses (informational ones included) with an h11 client."""
    client = h11.Connection(h11.CLIENT)
    replies: list[Reply] = []
    current: Reply | None = None
    # The h11 client must have sent a request before it parses a response; the bytes we
    # actually sent were written by hand.
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    while len(replies) < count:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.InformationalResponse | h11.Response):
            current = Reply(
                status=event.status_code,
                headers={k.decode(): v.decode() for k, v in event.headers},
                body=b"",
            )
            if isinstance(event, h11.InformationalResponse):
                replies.append(current)
        elif isinstance(event, h11.Data):
            assert current is not None
            current.body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert current is not None
            replies.append(current)
            if client.our_state is h11.DONE and client.their_state is h11.DONE:
                client.start_next_cycle()
                client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                client.send(h11.EndOfMessage())
        else:
            raise AssertionError(f"unexpected {event!r}")
    return replies


async def receive_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


# ---------------------------------------------------------------------------------------------
# Real sockets


async def test_keep_alive_reuses_the_connection(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        first = await client.post("/a?x=1", content=b"one", headers={"content-type": "t/a"})
        first_socket = first.extensions["network_stream"].get_extra_info("client_addr")
        second = await client.get("/b")
        second_socket = second.extensions["network_stream"].get_extra_info("client_addr")
    one = msgspec.json.decode(first.content, type=Echo)
    two = msgspec.json.decode(second.content, type=Echo)
    assert (one.method, one.path, one.query, one.body, one.content_type) == (
        "POST",
        "/a",
        "x=1",
        "one",
        "t/a",
    )
    assert (two.method, two.path, two.query, two.body) == ("GET", "/b", "", "")
    assert first_socket == second_socket
    assert one.client == two.client == "127.0.0.1"
    assert first.headers["server"] == "edgegw"
    assert "date" in first.headers


async def test_chunked_body(nursery: trio.Nursery) -> None:
    port = await start(nursery)

    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"def", b"g"):
            yield piece

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        reply = await client.post("/c", content=chunks())
    assert msgspec.json.decode(reply.content, type=Echo).body == "abcdefg"


async def test_body_over_the_limit_is_refused_unread(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    [reply] = await read_replies(stream)
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert await receive_until_eof(stream) == b""
    await stream.aclose()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.post("/after", content=b"x" * 1000)).status_code == 200


async def test_chunked_body_over_the_limit(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    chunk = b"400\r\n" + b"x" * 0x400 + b"\r\n"
    await stream.send_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
    )
    [reply] = await read_replies(stream)
    assert reply.status == 413
    await stream.aclose()


async def test_httpx_sees_413_for_a_large_body(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        reply = await client.post("/big", content=b"x" * 5000)
        assert reply.status_code == 413
        assert (await client.get("/again")).status_code == 200


async def test_oversized_headers(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    [reply] = await read_replies(stream)
    assert reply.status == 431
    await stream.aclose()


@pytest.mark.parametrize(
    "garbage",
    [
        b"HELLO\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    ],
)
async def test_malformed_request_gets_400(nursery: trio.Nursery, garbage: bytes) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(garbage)
    [reply] = await read_replies(stream)
    assert reply.status in {400, 505}
    assert await receive_until_eof(stream) == b""
    await stream.aclose()


async def test_handler_error_is_500_and_the_connection_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with caplog.at_level(logging.ERROR, logger="edgegw.http.server"):
        await stream.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        [failed] = await read_replies(stream)
    await stream.send_all(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
    [after] = await read_replies(stream)
    assert failed.status == 500
    assert (after.status, msgspec.json.decode(after.body, type=Echo).path) == (200, "/fine")
    [record] = [r for r in caplog.records if "handler bug" in (r.exc_text or "")]
    # The record names where the failure was caught, not the logging helper.
    assert record.funcName == "_call_app"
    await stream.aclose()


async def test_expect_100_continue(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    [interim] = await read_replies(stream)
    assert interim.status == 100
    await stream.send_all(b"hello")
    # The interim response was consumed above; the final one follows on the same stream.
    data = b""
    while b"hello" not in data:
        data += await stream.receive_some(65536)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    await stream.aclose()


async def test_connections_past_the_cap_get_503(nursery: trio.Nursery) -> None:
    port = await start(nursery, msgspec.structs.replace(LIMITS, max_connections=1))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/held")).status_code == 200  # stays open, keep-alive
        second = await trio.open_tcp_stream("127.0.0.1", port)
        await second.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [reply] = await read_replies(second)
        assert (reply.status, reply.headers["retry-after"]) == (503, "1")
        await second.aclose()
        assert (await client.get("/still")).status_code == 200


async def test_shutdown_lets_the_request_in_progress_finish() -> None:
    entered = trio.Event()
    release = trio.Event()

    async def slow_app(request: Request) -> Response:
        entered.set()
        await release.wait()
        return Response(status=200, body=b"finished")

    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await serve_http(slow_app, "127.0.0.1", 0, LIMITS, task_status=task_status)

        port: int = await nursery.start(run_server)
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await entered.wait()
        server_scope.cancel()
        # The idle connection is closed at once, the listener is gone ...
        assert await receive_until_eof(idle) == b""
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
        # ... and the request in progress still gets its answer, with the connection closing.
        release.set()
        [reply] = await read_replies(busy)
        assert (reply.status, reply.body, reply.headers["connection"]) == (
            200,
            b"finished",
            "close",
        )
        await idle.aclose()
        await busy.aclose()


# ---------------------------------------------------------------------------------------------
# In-memory streams and virtual time

TIMEOUTS = HttpLimits(
    header_timeout=10, body_timeout=30, keep_alive_timeout=75, shutdown_grace=5, max_body_bytes=100
)


async def test_slow_headers_get_408(autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
        await trio.sleep(3)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        [reply] = await read_replies(client)
        assert reply.status == 408
        assert trio.current_time() == pytest.approx(13)


async def test_slow_body_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
        await client.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        await trio.sleep(20)
        await client.send_all(b"de")  # trickling does not extend the body deadline
        [reply] = await read_replies(client)
        assert reply.status == 408
        assert trio.current_time() == pytest.approx(30)


async def test_idle_keep_alive_closes_quietly(autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
        await client.send_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        [reply] = await read_replies(client)
        assert reply.status == 200
        served_at = trio.current_time()
        assert await receive_until_eof(client) == b""
        assert trio.current_time() - served_at == pytest.approx(75)


async def test_silent_new_connection_closes_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
        assert await receive_until_eof(client) == b""
        assert trio.current_time() == pytest.approx(10)


async def test_a_body_in_several_reads_is_held_once_at_its_declared_length(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each read lands in one buffer made at the Content-Length, without the slack that
    growing it read by read would leave (sys.getsizeof counts a bytearray's allocation); what
    follows the body is the next request's."""
    bodies: list[bytes | bytearray] = []

    async def keep_body(request: Request) -> Response:
        bodies.append(request.body)
        return await echo_app(request)

    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, keep_body, TIMEOUTS)
        await client.send_all(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n")
        for piece in [b"a" * 40, *[b"b"] * 19, b"c" + b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"]:
            await client.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()  # the server has read it
        replies = await read_replies(client, 2)
        nursery.cancel_scope.cancel()
    assert [msgspec.json.decode(r.body, type=Echo).path for r in replies] == ["/1", "/2"]
    body = bodies[0]
    assert body == b"a" * 40 + b"b" * 19 + b"c"
    assert isinstance(body, bytearray)
    assert sys.getsizeof(body) == sys.getsizeof(bytearray(60))


async def test_pipelined_requests_are_answered_in_order() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
        await client.send_all(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
            b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        replies = await read_replies(client, 3)
        paths = [msgspec.json.decode(r.body, type=Echo).path for r in replies]
        assert paths == ["/1", "/2", "/3"]
        assert await receive_until_eof(client) == b""


async def test_an_absolute_form_target_is_served_as_its_path_for_its_host() -> None:
    """RFC 9112 section 3.2.2: a server MUST accept `GET http://host/path` (a client set up
    with the gateway as its proxy sends it), and the target's host replaces the Host header."""
    seen: list[tuple[str, str, str | None]] = []

    async def app(request: Request) -> Response:
        seen.append((request.path, request.query, request.headers.get("host")))
        return Response(status=204)

    targets = [
        b"http://gw.example:8080/api/messages/a%2Fb?limit=5",
        b"HTTPS://gw.example",
        b"http://gw.example?wsdl",
        b"/plain?x=1",
    ]
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, app, TIMEOUTS)
        await client.send_all(
            b"".join(b"GET " + target + b" HTTP/1.1\r\nHost: other\r\n\r\n" for target in targets)
        )
        assert [reply.status for reply in await read_replies(client, 4)] == [204] * 4
        await client.send_eof()
    assert seen == [
        ("/api/messages/a%2Fb", "limit=5", "gw.example:8080"),
        ("/", "", "gw.example"),
        ("/", "wsdl", "gw.example"),
        ("/plain", "x=1", "other"),
    ]


async def test_a_trusted_proxys_repeated_forwarded_lines_are_read_in_the_order_sent() -> None:
    # Two X-Forwarded-For lines are one list, the first line's entries first (RFC 9110 5.3):
    # read the other way round, the client would be 198.51.100.1, the address it wrote itself.
    seen: list[tuple[str | None, bool]] = []

    async def app(request: Request) -> Response:
        seen.append((request.client, request.client_unnamed))
        return Response(status=204)

    requests = [
        b"X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.2\r\n",
        b"",  # the proxy names no client
        b"X-Forwarded-For: unknown\r\n",
    ]
    trusted = Networks(["127.0.0.1", "10.0.0.0/8"])
    for peer, expected in [
        ("127.0.0.1", [("203.0.113.7", False), ("127.0.0.1", True), ("127.0.0.1", True)]),
        ("192.0.2.5", [("192.0.2.5", False)] * 3),  # no proxy: its header is never read
        (None, [(None, False)] * 3),  # a stream without a peer: no proxy either
    ]:
        seen.clear()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    serve_connection,
                    server,
                    app,
                    TIMEOUTS,
                    peer=None if peer is None else (peer, 4711),
                    trusted_proxies=trusted,
                )
            )
            await client.send_all(
                b"".join(b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n" for lines in requests)
            )
            assert [reply.status for reply in await read_replies(client, 3)] == [204] * 3
            await client.send_eof()
        assert seen == expected


async def test_drain_grace_cancels_a_request_that_overruns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled_at: list[float] = []
    entered = trio.Event()

    async def stuck_app(request: Request) -> Response:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled_at.append(trio.current_time())

    drain = _Drain()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_connection(server, stuck_app, TIMEOUTS, _drain=drain))
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await entered.wait()
        await trio.sleep(1)
        drain.begin(TIMEOUTS.shutdown_grace)
        assert await receive_until_eof(client) == b""
    assert cancelled_at == [pytest.approx(6)]
    assert not drain.connections


async def test_drain_closes_idle_connections_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    drain = _Drain()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_connection(server, echo_app, TIMEOUTS, _drain=drain))
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_replies(client)
        await trio.sleep(2)
        drain.begin(TIMEOUTS.shutdown_grace)
        assert await receive_until_eof(client) == b""
        assert trio.current_time() == pytest.approx(2)


@pytest.mark.parametrize("fields", [{"max_body": 5}, {"header_timeout": 0}, {"max_connections": 0}])
def test_limits_refuse_unknown_fields_and_nonsense(fields: dict[str, float]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, HttpLimits)


def test_limits_from_config() -> None:
    limits = msgspec.toml.decode(b"max_body_bytes = 5\nshutdown_grace = 0.5", type=HttpLimits)
    assert (limits.max_body_bytes, limits.shutdown_grace, limits.max_connections) == (5, 0.5, 512)


async def test_client_that_does_not_read_its_response_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    big = Response(status=200, body=b"x" * 1_000_000)

    async def big_app(request: Request) -> Response:
        return big

    client, server = trio.testing.lockstep_stream_pair()
    with trio.fail_after(TIMEOUTS.body_timeout * 2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, server, big_app, TIMEOUTS)
            await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # The nursery closed only because the server gave up on the send.
    assert trio.current_time() == pytest.approx(TIMEOUTS.body_timeout)


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (404, b"HTTP/1.1 404 Not Found"),
        (599, b"HTTP/1.1 599 "),
    ],
)
async def test_the_status_line_carries_its_reason_phrase(status: int, line: bytes) -> None:
    async def app(request: Request) -> Response:
        return Response(status=status, body=b"")

    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, app, TIMEOUTS)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = await receive_until_eof(client)
    assert head.partition(b"\r\n")[0] == line


async def test_head_gets_headers_only() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
        await client.send_all(b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = await receive_until_eof(client)
    status_line, _, rest = head.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK"
    assert rest.endswith(b"\r\n\r\n")
    assert b"content-length: " in rest


@given(st.binary(max_size=300))
@settings(max_examples=60, deadline=None)
def test_arbitrary_bytes_never_break_the_connection_boundary(garbage: bytes) -> None:
    async def one_connection() -> bytes:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, server, echo_app, TIMEOUTS)
            await client.send_all(garbage)
            await client.send_eof()
            return await receive_until_eof(client)

    answer = trio.run(one_connection, clock=trio.testing.MockClock(autojump_threshold=0))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
