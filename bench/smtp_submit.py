"""Benchmark: mails per second through the SMTP door, each acknowledged after its commit.

Starts `edgegw serve` as its own process on a scratch store with [smtp] on, and sends one-
recipient mails over 8 connections (PIPELINING: MAIL, RCPT and DATA in one write, then the
text), then single-message REST requests over 16 connections in the same run for comparison.
Prints mails per second, p50/p99 and gateway CPU per mail, and checks that the store holds
every acknowledged message. Target: at least 500 mails/s over 8 connections.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from gateway_process import check_stored, cpu_seconds, free_port, wait_ready
from http_submit import CONFIG, load, report, shares

ROOT = Path(__file__).resolve().parent.parent

SMTP_CONFIG = (
    CONFIG.replace("[[modems]]", '[services.smtp]\nallow = ["127.0.0.1"]\n\n[[modems]]')
    + '\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\ndomain = "sms.bench"\n'
)


async def read_replies(stream: trio.SocketStream, buffer: bytearray, count: int) -> list[bytes]:
    """`count` complete SMTP replies (multi-line ones joined)."""
    replies: list[bytes] = []
    while len(replies) < count:
        end = buffer.find(b"\r\n")
        if end < 0:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
            continue
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        if line[3:4] != b"-":
            replies.append(line)
    return replies


def mail(index: int) -> tuple[bytes, bytes]:
    number = 41000000 + index % 1000000
    envelope = (
        f"MAIL FROM:<panel{index % 97}@alarm.bench>\r\n"
        f"RCPT TO:<+47{number}-1000@sms.bench>\r\nDATA\r\n"
    ).encode()
    body = f"Subject: alarm {index}\r\n\r\nZone {index % 16} open\r\n.\r\n".encode()
    return envelope, body


async def load_smtp(port: int, connections: int, mails: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    numbers = shares(mails, connections)

    async def client(index: int) -> None:
        prepared = [mail(number) for number in numbers[index]]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            await read_replies(stream, buffer, 1)  # greeting
            await stream.send_all(b"EHLO bench.local\r\n")
            await read_replies(stream, buffer, 1)
            for envelope, body in prepared:
                started = time.perf_counter()
                await stream.send_all(envelope)
                replies = await read_replies(stream, buffer, 3)
                if [r[:3] for r in replies] != [b"250", b"250", b"354"]:
                    raise RuntimeError(f"refused: {replies}")
                await stream.send_all(body)
                (done,) = await read_replies(stream, buffer, 1)
                latencies.append(time.perf_counter() - started)
                if not done.startswith(b"250 2.0.0 queued as "):
                    raise RuntimeError(f"not accepted: {done!r}")
            await stream.send_all(b"QUIT\r\n")

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(connections):
            nursery.start_soon(client, index)
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=8000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rest", type=int, default=8000, help="REST requests for comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        port, smtp_port = free_port(), free_port()
        config = Path(scratch) / "bench.toml"
        config.write_text(SMTP_CONFIG.format(port=port, smtp_port=smtp_port, log_level="warning"))
        process = subprocess.Popen(
            [sys.executable, "-m", "edgegw", "serve", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            wait_ready(port, process)
            cpu = cpu_seconds(process.pid)
            seconds, latencies = trio.run(load_smtp, smtp_port, args.connections, args.mails)
            used = cpu_seconds(process.pid) - cpu
            report(f"SMTP x{args.connections} conns", seconds, latencies, len(latencies), used)
            rest: list[float] = []
            if args.rest:
                cpu = cpu_seconds(process.pid)
                rest_seconds, rest = trio.run(load, port, 16, args.rest, 1)
                used = cpu_seconds(process.pid) - cpu
                report("REST single x16 conns", rest_seconds, rest, len(rest), used)
        finally:
            process.terminate()
            process.wait(timeout=30)
        print(f"SMTP: {len(latencies) / seconds:,.0f} mails/s (target 500)")
        accepted = len(latencies) + len(rest)
        check_stored(Path(scratch) / "bench.db", accepted)


if __name__ == "__main__":
    main()
