"""Benchmark: durable REST submits per second, single messages and 1000-message batches.

Starts `edgegw serve` as its own process on a scratch store and, beside it, a bare trio + h11
responder (bench/bare_responders.py: the same request parsed, the same response, no store).
Loads both from this process over keep-alive connections on 127.0.0.1, alternating, and prints
each run and the medians: edgegw's single-request rate as a ratio of the bare one, and CPU per
request of each. Then 1000-message batches, and one big batch with /health polled during it
(the loop's longest stall). Checks that the store holds every accepted message. Targets
(2 cores): single >= 0.7 of the bare responder and <= 150 us of gateway CPU a request, batches
>= 50,000 msg/s, /health p99 under 50 ms during a 25,000-message batch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import trio
from gateway_process import (
    BASE_CONFIG,
    check_stored,
    cpu_seconds,
    free_port,
    load_average,
    loop_cpu_seconds,
    median,
    percentile,
    start,
    wait_listening,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent

CONFIG = (
    BASE_CONFIG
    + """
[http.limits]
# The stall probe's batch of 25,000 messages is about 1.2 MB of JSON.
max_body_bytes = 4194304
"""
)


def request_bytes(port: int, first_index: int, count: int) -> bytes:
    body = json.dumps(
        {
            "serviceId": 1000,
            "username": "bench",
            "password": "bench",
            "message": [
                {"recipient": f"+47{41000000 + (first_index + i) % 1000000}", "content": "Bench"}
                for i in range(count)
            ],
        }
    ).encode()
    head = (
        f"POST /gw/rs/sendMessages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """Read one HTTP/1.1 200 response, framed by Content-Length or chunked (a batch of more
    than 1000 messages is answered in pieces as they commit); return its body."""
    head = (await _read_until(stream, buffer, b"\r\n\r\n")).lower()
    if not head.startswith(b"http/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[:200]!r}")
    if b"transfer-encoding: chunked" not in head:
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        return await _read_exactly(stream, buffer, length)
    body = bytearray()
    while True:
        size = int(await _read_until(stream, buffer, b"\r\n"), 16)
        body += (await _read_exactly(stream, buffer, size + 2))[:-2]
        if not size:
            return bytes(body)


async def _read_until(stream: trio.SocketStream, buffer: bytearray, end: bytes) -> bytes:
    while end not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    stop = buffer.index(end)
    data = bytes(buffer[:stop])
    del buffer[: stop + len(end)]
    return data


async def _read_exactly(stream: trio.SocketStream, buffer: bytearray, length: int) -> bytes:
    while len(buffer) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    data = bytes(buffer[:length])
    del buffer[:length]
    return data


def shares(requests: int, connections: int) -> list[range]:
    """The request numbers each connection sends: all of them, however they divide (the first
    `requests % connections` connections carry one more)."""
    bounds = [
        c * (requests // connections) + min(c, requests % connections)
        for c in range(connections + 1)
    ]
    return [range(start, stop) for start, stop in itertools.pairwise(bounds)]


async def load(port: int, connections: int, requests: int, batch: int) -> tuple[float, list[float]]:
    """Send `requests` requests of `batch` messages over `connections`.

    Returns the elapsed seconds and each request's latency."""
    latencies: list[float] = []
    prepared = [
        [request_bytes(port, index * batch, batch) for index in share]
        for share in shares(requests, connections)
    ]

    async def client(index: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            for payload in prepared[index]:
                started = time.perf_counter()
                await stream.send_all(payload)
                body = await read_response(stream, buffer)
                latencies.append(time.perf_counter() - started)
                statuses = json.loads(body)["messageStatus"]
                if any(status["statusCode"] != 1 for status in statuses):
                    raise RuntimeError(f"rejected: {statuses[0]}")

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(connections):
            nursery.start_soon(client, index)
    return time.perf_counter() - started, latencies


async def health_during_batch(port: int, payload: bytes) -> tuple[float, int, list[float]]:
    """Post one big batch while a second connection polls /health every 2 ms; the batch's
    seconds and message count, and every /health latency seen while the batch was taken."""
    probe = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    accepted = 0
    seconds = 0.0

    async def batch(cancel: trio.CancelScope) -> None:
        nonlocal accepted, seconds
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            started = time.perf_counter()
            await stream.send_all(payload)
            body = await read_response(stream, bytearray())
            seconds = time.perf_counter() - started
        statuses = json.loads(body)["messageStatus"]
        accepted = sum(status["statusCode"] == 1 for status in statuses)
        cancel.cancel()

    async def poll_health() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            while True:
                started = time.perf_counter()
                await stream.send_all(probe)
                await read_response(stream, buffer)
                latencies.append(time.perf_counter() - started)
                await trio.sleep(0.002)  # a busy monitor, not a second load

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll_health)
        await trio.sleep(0.05)
        await batch(nursery.cancel_scope)
    return seconds, accepted, latencies


def report(
    name: str, seconds: float, latencies: list[float], messages: int, cpu: float
) -> tuple[float, float]:
    """Print one run; return its requests per second and CPU seconds per request."""
    print(
        f"{name}: {messages} messages in {len(latencies)} requests, {seconds:.2f} s, "
        f"{len(latencies) / seconds:,.0f} req/s, {messages / seconds:,.0f} msg/s, "
        f"p50 {percentile(latencies, 0.50) * 1000:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms, "
        f"CPU {cpu / messages * 1e6:.0f} us/msg"
    )
    return len(latencies) / seconds, cpu / len(latencies)


def single_rounds(
    args: argparse.Namespace, port: int, pid_edgegw: int, bare_port: int, pid_bare: int
) -> int:
    """Load edgegw and the bare responder in turn with single-message requests, `args.rounds`
    times each; print each run and the medians; return how many messages edgegw accepted."""
    accepted = 0
    rates: dict[str, list[float]] = {"edgegw": [], "bare": []}
    costs: dict[str, list[float]] = {"edgegw": [], "bare": []}
    for round_ in range(args.rounds):
        for side, target, pid in (
            ("bare", bare_port, pid_bare),
            ("edgegw", port, pid_edgegw),
        ):
            cpu = cpu_seconds(pid)
            seconds, latencies = trio.run(load, target, args.connections, args.single, 1)
            used = cpu_seconds(pid) - cpu
            rate, cost = report(
                f"round {round_ + 1} {side} single x{args.connections} conns",
                seconds,
                latencies,
                len(latencies),
                used,
            )
            rates[side].append(rate)
            costs[side].append(cost)
            if side == "edgegw":
                accepted += len(latencies)
    edgegw_rate, bare_rate = median(rates["edgegw"]), median(rates["bare"])
    print(
        f"single, medians of {args.rounds}: edgegw {edgegw_rate:,.0f} req/s at "
        f"{median(costs['edgegw']) * 1e6:.0f} us of gateway CPU a request; bare trio+h11 "
        f"{bare_rate:,.0f} req/s at {median(costs['bare']) * 1e6:.0f} us; "
        f"ratio {edgegw_rate / bare_rate:.2f}"
    )
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--single", type=int, default=10000, help="single-message requests a run (0: none)"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    parser.add_argument("--batches", type=int, default=60, help="1000-message requests")
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--batch-runs", type=int, default=2, help="runs of the batches")
    parser.add_argument("--big-batch", type=int, default=25000, help="messages in the stall probe")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        port, bare_port = free_port(), free_port()
        config = Path(scratch) / "bench.toml"
        config.write_text(CONFIG.format(port=port, log_level="warning"))
        started = time.perf_counter()
        process = start(["-m", "edgegw", "serve", "--config", str(config)], ROOT)
        bare = start([str(ROOT / "bench" / "bare_responders.py"), "http", str(bare_port)], ROOT)
        accepted = 0
        try:
            wait_ready(port, process)
            print(f"start-up to ready: {time.perf_counter() - started:.2f} s")
            print(f"load average before: {load_average()}")
            wait_listening(bare_port, bare)
            if args.single:
                accepted += single_rounds(args, port, process.pid, bare_port, bare.pid)
            if args.batches:
                for run in range(args.batch_runs):
                    cpu, loop_cpu = cpu_seconds(process.pid), loop_cpu_seconds(process.pid)
                    seconds, latencies = trio.run(
                        load, port, args.batch_connections, args.batches, 1000
                    )
                    messages = len(latencies) * 1000
                    report(
                        f"run {run + 1} batch 1000 x{args.batch_connections} conns",
                        seconds,
                        latencies,
                        messages,
                        cpu_seconds(process.pid) - cpu,
                    )
                    loop_us = (loop_cpu_seconds(process.pid) - loop_cpu) / messages * 1e6
                    print(f"  of which on the event loop: {loop_us:.0f} us/msg")
                    accepted += messages
            if args.big_batch:
                payload = request_bytes(port, 0, args.big_batch)
                seconds, taken, probes = trio.run(health_during_batch, port, payload)
                accepted += taken
                print(
                    f"batch of {args.big_batch} ({len(payload) / 1e6:.2f} MB) taken in "
                    f"{seconds:.2f} s; /health during it: {len(probes)} answers, "
                    f"p99 {percentile(probes, 0.99) * 1000:.1f} ms, "
                    f"max {max(probes) * 1000:.1f} ms"
                )
            print(f"load average after: {load_average()}")
        finally:
            for child in (process, bare):
                child.terminate()
                child.wait(timeout=30)
        check_stored(Path(scratch) / "bench.db", accepted)


if __name__ == "__main__":
    main()
