"""A big batch over a real socket does not stall the gateway's event loop, and the memory it
takes is bounded (issue 10 item 7). The gateway runs from config.example.toml with a raised
body limit; the client speaks raw HTTP so that its own parsing stays out of the measurement.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import struct
import time
import tracemalloc
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import httpx
import msgspec
import pytest
import trio

from edgegw import passwords
from edgegw.__main__ import freeze_start_up_heap
from edgegw.config import Config
from edgegw.gateway import Gateway
from edgegw.http.puzzel import MAX_INDEX, REQUEST_NAMESPACE
from edgegw.passwords import hash_password

SEND = "/gw/rs/sendMessages"
# A batch of 25,000 messages is about 1.2 MB of JSON; the default body limit is 1 MiB.
BODY_LIMIT = 4 * 1024 * 1024
# /health must answer within this at the 99th percentile while the batch is taken.
HEALTH_P99_SECONDS = 0.050
# The peak of memory allocated while the gateway takes a batch, beyond what it held before,
# as a multiple of the batch's body (issue 10 item 7's bound). The batch is streamed: split
# into runs of 100 messages, each run decoded, stored and answered in turn; the body (1x) and
# two runs in flight are held. A JSON batch is split by offsets into the body: 1.8 to 1.9x
# with these 50-byte messages, 1.2 to 1.4x with 160-character texts (the README's "Memory of
# a batch" says more). An XML or form batch keeps its messages packed (msgpack) beside the
# body, 0.6 to 1x more, and a form's text is decoded while its pairs are read: 2.3 and 2.4x
# for XML, 2.9 and 3.2x for a form (10 and 4.6x, 12.6 and 6.1x when they were decoded whole).
MEMORY_FACTORS = {"json": 2.0, "xml": 2.6, "form": 3.5}
# Messages a gateway has taken before the measured batch, streamed, so that what every running
# gateway holds after its first few thousand messages is baseline: msgspec keeps freed structs
# and CPython freed tuples on free lists (up to 2000 of a size; here about 0.45 MB, mostly
# NewMessage structs and their row tuples), which a first batch fills (the 10,000-message one
# then peaks at 2.6 to 2.7x with 50-byte messages, 1.5x with 160-character texts).
WARM_UP_MESSAGES = 2500


@pytest.fixture
def big_config(config: Config) -> Config:
    limits = msgspec.structs.replace(config.http.limits, max_body_bytes=BODY_LIMIT)
    return msgspec.structs.replace(config, http=msgspec.structs.replace(config.http, limits=limits))


FORMATS = ["json", "xml", "form"]
CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
    "form": "application/x-www-form-urlencoded",
}


def encoded(fmt: str, request: dict[str, Any]) -> bytes:
    """A send request (its fields as text, its messages' as text) as a JSON, XML or form body."""
    if fmt == "json":
        return json.dumps(request).encode()
    head = {name: value for name, value in request.items() if name != "message"}
    if fmt == "xml":
        fields = "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in head.items())
        for message in request["message"]:
            inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in message.items())
            fields += f"<message>{inner}</message>"
        return f'<r:request xmlns:r="{REQUEST_NAMESPACE}">{fields}</r:request>'.encode()
    pairs = [(name, str(value)) for name, value in head.items()]
    for index, message in enumerate(request["message"]):
        pairs += [(f"message[{index}].{name}", value) for name, value in message.items()]
    return urlencode(pairs).encode()


def batch_request(count: int, content: str = "Batch", fmt: str = "json") -> bytes:
    messages = [
        {"recipient": f"+47{41000000 + index}", "content": content} for index in range(count)
    ]
    return posted(
        fmt, {"serviceId": 1000, "username": "demo", "password": "demo", "message": messages}
    )


def posted(fmt: str, request: dict[str, Any]) -> bytes:
    """A POST of the send request, asking for a JSON answer."""
    body = encoded(fmt, request)
    head = (
        "POST /gw/rs/sendMessages HTTP/1.1\r\nHost: edgegw\r\n"
        f"Content-Type: {CONTENT_TYPES[fmt]}\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(stream: trio.SocketStream, buffer: bytearray, *, keep: bool) -> bytes:
    """One 200 response, its body framed by Content-Length or chunked; the body, or b"" when
    not `keep` (read and dropped piece by piece, so that the client holds no copy of a big
    answer)."""
    head = (await read_until(stream, buffer, b"\r\n\r\n")).lower()
    assert head.startswith(b"http/1.1 200"), head
    if b"transfer-encoding: chunked" not in head:
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        return await read_exactly(stream, buffer, length, keep=keep)
    body = bytearray()
    while True:
        size = int(await read_until(stream, buffer, b"\r\n"), 16)
        piece = await read_exactly(stream, buffer, size + 2, keep=keep)
        if keep:
            body += piece[:-2]
        if not size:
            return bytes(body)


async def read_until(stream: trio.SocketStream, buffer: bytearray, end: bytes) -> bytes:
    """The bytes up to `end`, taken off the buffer with it."""
    while end not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, "the gateway closed the connection"
        buffer += chunk
    stop = buffer.index(end)
    line = bytes(buffer[:stop])
    del buffer[: stop + len(end)]
    return line


async def read_exactly(
    stream: trio.SocketStream, buffer: bytearray, length: int, *, keep: bool
) -> bytes:
    """The next `length` bytes, or b"" when not `keep` (read and dropped piece by piece)."""
    if keep:
        while len(buffer) < length:
            chunk = await stream.receive_some(65536)
            assert chunk, "the gateway closed the connection"
            buffer += chunk
        body = bytes(buffer[:length])
        del buffer[:length]
        return body
    remaining = length - len(buffer)
    del buffer[:length]
    while remaining > 0:
        chunk = await stream.receive_some(65536)
        assert chunk, "the gateway closed the connection"
        if len(chunk) > remaining:
            buffer += chunk[remaining:]
        remaining -= len(chunk)
    return b""


async def stored_messages(gateway: Gateway) -> int:
    assert gateway.store is not None
    (count,) = await gateway.store.read(
        lambda conn: conn.execute("SELECT count(*) FROM messages").fetchone()
    )
    assert isinstance(count, int)
    return count


async def test_health_answers_within_50_ms_p99_while_a_25000_message_batch_is_taken(
    big_config: Config, nursery: trio.Nursery
) -> None:
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    freeze_start_up_heap()  # as `edgegw serve` does once the gateway is up
    assert gateway.bound is not None
    port = gateway.bound.http_port
    payload = batch_request(25000)
    probe = b"GET /health HTTP/1.1\r\nHost: edgegw\r\n\r\n"
    latencies: list[float] = []
    # The same intervals counted in CPU time of the loop's thread: the work the loop did before
    # it could answer, which other processes on a busy machine cannot inflate (they only
    # preempt it). The wall clock figure is what the benchmark reports.
    loop_work: list[float] = []
    answer = b""

    async def poll_health() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            due = trio.current_time()
            worked = time.thread_time()
            while True:
                # Timed from when the probe was due, not from when it got to run: the probe
                # shares the gateway's loop, so a stall shows as its own late start.
                await trio.sleep_until(due)
                await stream.send_all(probe)
                await read_response(stream, buffer, keep=True)
                answered = trio.current_time()
                latencies.append(answered - due)
                loop_work.append(time.thread_time() - worked)
                worked = time.thread_time()
                due = answered + 0.002

    async with trio.open_nursery() as probes:
        probes.start_soon(poll_health)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(payload)
            answer = await read_response(stream, bytearray(), keep=True)
        probes.cancel_scope.cancel()

    statuses = json.loads(answer)["messageStatus"]
    assert [status["statusCode"] for status in statuses] == [1] * 25000
    assert await stored_messages(gateway) == 25000
    assert len(latencies) >= 20, "the probe did not run during the batch"
    p99 = sorted(latencies)[int(0.99 * len(latencies))]
    work_p99 = sorted(loop_work)[int(0.99 * len(loop_work))]
    assert work_p99 < HEALTH_P99_SECONDS, (
        f"/health waited for {work_p99 * 1000:.1f} ms of the loop's work at p99 during the"
        f" batch ({p99 * 1000:.1f} ms by the wall clock)"
    )
    gateway.stop()
    gc.unfreeze()


async def peak_factor(stream: trio.SocketStream, warm_up: bytes, payload: bytes) -> float:
    """The peak of Python's allocations while `payload` is sent and answered, over what was
    allocated before it, as a multiple of its size. `warm_up` goes first, so that connection
    set-up, first-use caches and free lists are baseline. A full collection of the cyclic
    garbage collector empties those free lists, for the next batch to fill again: it is held
    off until the peak is read, so that it cannot fall between the two (cyclic garbage the
    batch leaves then counts against it)."""
    await stream.send_all(warm_up)
    await read_response(stream, bytearray(), keep=False)
    gc.disable()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        await stream.send_all(payload)
        await read_response(stream, bytearray(), keep=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.enable()
    return (peak - baseline) / len(payload)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("content", ["Batch", "x" * 160], ids=["5-character", "160-character"])
async def test_a_batch_takes_memory_in_proportion_to_its_body(
    big_config: Config, nursery: trio.Nursery, content: str, fmt: str
) -> None:
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    payload = batch_request(10000, content, fmt)
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.bound.http_port)
    async with stream:
        factor = await peak_factor(stream, batch_request(WARM_UP_MESSAGES, content, fmt), payload)
    assert await stored_messages(gateway) == WARM_UP_MESSAGES + 10000
    assert factor < MEMORY_FACTORS[fmt], f"the batch took {factor:.2f} times its body at the peak"
    gateway.stop()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_refused_batch_takes_memory_in_proportion_to_its_body(
    big_config: Config, nursery: trio.Nursery, fmt: str
) -> None:
    """A batch to a service that does not exist, of as many empty messages as a megabyte
    holds (a form no more than its highest index allows, MAX_INDEX), each answered with a
    status of its own, costs no more than an accepted batch (1.3, 1.3 and 2.9 times its body
    at the peak; 125, 40 and 29 times in RSS when a refused batch was decoded and answered
    whole, bench/batch_memory.py)."""
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    empty: dict[str, str] = {"content": ""} if fmt == "form" else {}
    count = MAX_INDEX + 1 if fmt == "form" else {"json": 300_000, "xml": 100_000}[fmt]
    login = {"serviceId": 9999, "username": "demo", "password": "demo"}
    payload = posted(fmt, {**login, "message": [empty] * count})
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.bound.http_port)
    async with stream:
        factor = await peak_factor(
            stream, posted(fmt, {**login, "message": [empty] * 1500}), payload
        )
    assert factor < MEMORY_FACTORS[fmt], f"the batch took {factor:.2f} times its body at the peak"
    gateway.stop()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_big_batch_is_answered_in_pieces_as_the_whole_answer_would_be(
    big_config: Config, nursery: trio.Nursery, fmt: str
) -> None:
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    messages: list[dict[str, object]] = [
        {"recipient": f"+47{41000000 + index}", "content": f"Piece {index}"}
        for index in range(2500)
    ]
    for bad in (0, 999, 1000, 2499):  # refused at the edges of the pieces
        messages[bad] = {"recipient": "12", "content": "No number"}
    request = {"serviceId": 1000, "username": "demo", "password": "demo", "message": messages}
    body = encoded(fmt, request)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.bound.http_port}", timeout=30
    ) as client:
        answer = await client.post(
            SEND,
            content=body,
            headers={"Content-Type": CONTENT_TYPES[fmt], "Accept": "application/json"},
        )
        assert answer.headers["transfer-encoding"] == "chunked"
        statuses = answer.json()["messageStatus"]
        assert [status["sequenceIndex"] for status in statuses] == list(range(1, 2501))
        refused = [i for i, status in enumerate(statuses) if status["statusCode"] == 5]
        assert refused == [0, 999, 1000, 2499]
        assert await stored_messages(gateway) == 2496
        ids = {status["messageId"] for status in statuses if status["statusCode"] == 1}
        assert len(ids) == 2496

        xml = await client.post(
            SEND,
            content=body,
            headers={"Content-Type": CONTENT_TYPES[fmt], "Accept": "application/xml"},
        )
        root = ElementTree.fromstring(xml.content)
        codes = [element.text for element in root.iter("statusCode")]
        assert len(codes) == 2500 and codes.count("5") == 4
        assert root.findtext("batchReference")
        assert await stored_messages(gateway) == 2 * 2496
    gateway.stop()


async def test_a_big_batch_that_cannot_be_streamed_is_answered_whole(
    big_config: Config, nursery: trio.Nursery
) -> None:
    """A message that does not decode keeps the batch from being streamed: the answer comes
    whole, that message refused with status 5 and the others stored."""
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    messages: list[dict[str, object]] = [
        {"recipient": f"+47{41000000 + index}", "content": "Whole"} for index in range(1500)
    ]
    good = {"serviceId": 1000, "username": "demo", "password": "demo", "message": messages}
    broken = {**good, "message": [*messages[:1400], {"recipient": [1]}, *messages[1400:]]}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.bound.http_port}", timeout=30
    ) as client:
        answered = await client.post(SEND, json=broken, headers={"Accept": "application/json"})
        assert answered.status_code == 200
        assert "transfer-encoding" not in answered.headers
        statuses = answered.json()["messageStatus"]
        assert [status["sequenceIndex"] for status in statuses] == list(range(1, 1502))
        refused = [status for status in statuses if status["statusCode"] != 1]
        assert [(status["sequenceIndex"], status["statusCode"]) for status in refused] == [
            (1401, 5)
        ]
        assert await stored_messages(gateway) == 1500
    gateway.stop()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("login", "code", "text"),
    [
        ({"serviceId": 1000, "username": "demo", "password": "wrong"}, 2, "Access denied"),
        ({"serviceId": 9999, "username": "demo", "password": "demo"}, 4, "Illegal service"),
        ({"username": "demo", "password": "demo"}, 5, "Syntax error: serviceId is required"),
    ],
    ids=["wrong password", "unknown service", "no serviceId"],
)
async def test_a_big_batch_refused_as_a_whole_is_answered_in_pieces(
    big_config: Config,
    nursery: trio.Nursery,
    login: dict[str, object],
    code: int,
    text: str,
    fmt: str,
) -> None:
    """Refused for its serviceId or credentials, a big batch is answered a piece a chunk all
    the same (even with an Idempotency-Key, which keeps an accepted one whole), with every
    message's status in order, its recipient and clientReference as sent, and nothing
    stored; the credentials may come after the messages."""
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    messages = [
        {"recipient": f"+47 {41000000 + index}", "content": "No", "clientReference": f"r{index}"}
        for index in range(2500)
    ]
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.bound.http_port}", timeout=30
    ) as client:
        answer = await client.post(
            SEND,
            content=encoded(fmt, {"message": messages, **login}),
            headers={
                "Content-Type": CONTENT_TYPES[fmt],
                "Accept": "application/json",
                "Idempotency-Key": f"refused-{code}",
            },
        )
    assert answer.status_code == 200
    assert answer.headers["transfer-encoding"] == "chunked"
    statuses = answer.json()["messageStatus"]
    assert statuses == [
        {
            "statusCode": code,
            "statusMessage": text,
            "clientReference": f"r{index}",
            "recipient": f"+47 {41000000 + index}",
            "messageId": None,
            "sessionId": None,
            "sequenceIndex": index + 1,
        }
        for index in range(2500)
    ]
    assert await stored_messages(gateway) == 0
    gateway.stop()


@pytest.mark.parametrize(("password", "code"), [("wrong", 2), ("demo", 1)])
async def test_a_big_batch_has_its_password_checked_once(
    big_config: Config,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    code: int,
) -> None:
    """The route asks whether a big batch is refused as a whole before it streams the answer;
    the stream then goes on from that answer, so a wrong guess costs one scrypt run, not two
    (each holds a slot of the limiter every door shares)."""
    services = [
        msgspec.structs.replace(service, password=hash_password("demo"))
        for service in big_config.services
    ]
    checks: list[str] = []
    verify = passwords.verify_password

    def counted(stored: str, presented: str) -> bool:
        checks.append(presented)
        return verify(stored, presented)

    monkeypatch.setattr(passwords, "verify_password", counted)
    gateway = Gateway(msgspec.structs.replace(big_config, services=services))
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    login = {"serviceId": 1000, "username": "demo", "password": password}
    messages = [{"recipient": f"+47{41000000 + index}", "content": "x"} for index in range(1500)]
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.bound.http_port}", timeout=60
    ) as client:
        answer = await client.post(
            SEND, json={"message": messages, **login}, headers={"Accept": "application/json"}
        )
    assert answer.headers["transfer-encoding"] == "chunked"
    assert {status["statusCode"] for status in answer.json()["messageStatus"]} == {code}
    assert checks == [password]
    gateway.stop()


async def test_a_client_leaving_during_a_streamed_answer_is_no_error(
    big_config: Config, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway notices at its next piece, stops, and logs nothing at ERROR (a client
    going away is not the gateway's failure); what was committed stays."""
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.bound.http_port)
    await stream.send_all(batch_request(20000))
    buffer = bytearray()
    await read_until(stream, buffer, b"\r\n\r\n")  # the head: the first piece is committed
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()  # with a reset, so the gateway's next write fails
    stored, settled = -1, 0
    while settled < 3:  # until the gateway stops storing the batch
        await trio.sleep(0.05)
        now = await stored_messages(gateway)
        settled = settled + 1 if now == stored else 0
        stored = now
    assert 0 < stored < 20000
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    gateway.stop()


async def test_an_http_1_0_client_gets_a_streamed_answer_ended_by_the_close(
    big_config: Config, nursery: trio.Nursery
) -> None:
    gateway = Gateway(big_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    request = batch_request(1500).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.bound.http_port)
    answer = bytearray()
    async with stream:
        await stream.send_all(request)
        while chunk := await stream.receive_some(65536):
            answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head.lower().startswith(b"http/1.1 200")  # a server names its own version
    assert b"transfer-encoding" not in head.lower()  # HTTP/1.0 has no chunks
    assert b"connection: close" in head.lower()
    statuses = json.loads(body)["messageStatus"]
    assert [status["statusCode"] for status in statuses] == [1] * 1500
    assert await stored_messages(gateway) == 1500
    gateway.stop()
