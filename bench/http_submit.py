"""Benchmark: durable REST submits per second, single messages and 1000-message batches.

Starts `edgegw serve` as its own process on a scratch store, loads it from this process over
keep-alive connections on 127.0.0.1, prints accepted messages per second and p50/p99 latency,
and checks that the store holds every accepted message. Targets (2 cores): single ≥ 5,000
req/s over 16 connections, batches ≥ 50,000 msg/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from gateway_process import cpu_seconds, free_port, percentile, wait_ready

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[gateway]
store = "bench.db"
log_level = "warning"

[http]
host = "127.0.0.1"
port = {port}

[[services]]
id = 1000
name = "bench"
username = "bench"
password = "bench"

[[modems]]
name = "sim0"
driver = "simulated"

[modems.simulator]
# A modem sends a few SMS a minute; keep the send path nearly idle while ingest is measured.
send_delay = 30.0
"""


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
    """Read one HTTP/1.1 response with a Content-Length; return its body."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:head_end]).lower()
    if not head.startswith(b"http/1.1 200"):
        raise RuntimeError(f"unexpected response: {bytes(buffer[:200])!r}")
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buffer) < head_end + length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    body = bytes(buffer[head_end : head_end + length])
    del buffer[: head_end + length]
    return body


async def load(port: int, connections: int, requests: int, batch: int) -> tuple[float, list[float]]:
    """Send `requests` requests of `batch` messages over `connections`.

    Returns the elapsed seconds and each request's latency."""
    latencies: list[float] = []
    per_connection = requests // connections
    prepared = [
        [
            request_bytes(port, (c * per_connection + r) * batch, batch)
            for r in range(per_connection)
        ]
        for c in range(connections)
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


def report(name: str, seconds: float, latencies: list[float], messages: int, cpu: float) -> None:
    print(
        f"{name}: {messages} messages in {len(latencies)} requests, {seconds:.2f} s, "
        f"{len(latencies) / seconds:,.0f} req/s, {messages / seconds:,.0f} msg/s, "
        f"p50 {percentile(latencies, 0.50) * 1000:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms, "
        f"gateway CPU {cpu / messages * 1e6:.0f} us/msg"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--single", type=int, default=20000, help="single-message requests")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batches", type=int, default=100, help="1000-message requests")
    parser.add_argument("--batch-connections", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        config = Path(scratch) / "bench.toml"
        config.write_text(CONFIG.format(port=port))
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "edgegw", "serve", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            wait_ready(port, process)
            print(f"start-up to ready: {time.perf_counter() - started:.2f} s")
            cpu = cpu_seconds(process.pid)
            seconds, latencies = trio.run(load, port, args.connections, args.single, 1)
            used = cpu_seconds(process.pid) - cpu
            cpu += used
            report(f"single x{args.connections} conns", seconds, latencies, len(latencies), used)
            if args.batches:
                seconds, latencies = trio.run(
                    load, port, args.batch_connections, args.batches, 1000
                )
                report(
                    f"batch 1000 x{args.batch_connections} conns",
                    seconds,
                    latencies,
                    len(latencies) * 1000,
                    cpu_seconds(process.pid) - cpu,
                )
        finally:
            process.terminate()
            process.wait(timeout=30)
        accepted = args.single // args.connections * args.connections
        accepted += args.batches // args.batch_connections * args.batch_connections * 1000
        with sqlite3.connect(Path(scratch) / "bench.db") as db:
            (stored,) = db.execute("SELECT count(*) FROM messages").fetchone()
        print(f"durability: {stored} messages in the store, {accepted} accepted")
        if stored != accepted:
            raise SystemExit("the store does not hold every accepted message")


if __name__ == "__main__":
    main()
