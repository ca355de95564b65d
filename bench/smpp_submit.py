"""Benchmark: durable submit_sm per second over one SMPP transceiver bind with a window of 64.

Starts `edgegw serve` as its own process on a scratch store (simulated modem with a long
send_delay, so ingest is measured), binds a raw ESME from this process (our own codec for the
requests, a bare header parser for the responses: smpplib is far too slow to load a server),
keeps `--window` submit_sm outstanding, prints submit_sm/s and p50/p99 latency, and checks that
the store holds every acknowledged message. Beside it runs a bare trio responder
(bench/bare_responders.py: submit_sm decoded with edgegw's codec, submit_sm_resp sent, no
store); the two are loaded alternately and the medians compared. Targets (2 cores): >= 10,000
submit_sm/s and >= 0.7 of the bare responder.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import trio
from gateway_process import (
    BASE_CONFIG,
    cpu_seconds,
    free_port,
    load_average,
    loop_cpu_seconds,
    median,
    percentile,
    read_store,
    start,
    wait_listening,
    wait_ready,
)

from edgegw.smpp.constants import CommandId
from edgegw.smpp.pdu import BindTransceiver, SubmitSm, encode

ROOT = Path(__file__).resolve().parent.parent

CONFIG = (
    BASE_CONFIG
    + """
[smpp]
host = "127.0.0.1"
port = {smpp_port}
max_pending_submits = 1024

[[smpp.accounts]]
system_id = "bench"
password = "bench"
service = 1000
"""
)

_HEADER = struct.Struct(">IIII")


def submit_frames(total: int) -> list[bytes]:
    """Encoded submit_sm with sequence numbers 2..total+1 (1 is the bind)."""
    return [
        encode(
            SubmitSm(
                sequence_number=index + 2,
                source_addr_ton=5,
                source_addr="Bench",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=f"47{41000000 + index % 1000000}",
                registered_delivery=1,
                short_message=b"Bench message",
            )
        )
        for index in range(total)
    ]


class Responses:
    """Splits the server's bytes into (command_id, status, sequence, body) frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        self.buffer += data
        frames = []
        offset = 0
        while len(self.buffer) - offset >= 16:
            length, command_id, status, sequence = _HEADER.unpack_from(self.buffer, offset)
            if len(self.buffer) - offset < length:
                break
            body = bytes(self.buffer[offset + 16 : offset + length])
            frames.append((command_id, status, sequence, body))
            offset += length
        del self.buffer[:offset]
        return frames


async def load(port: int, total: int, window: int) -> tuple[float, list[float], list[str]]:
    """Submit `total` messages keeping `window` outstanding; (seconds, latencies, ids)."""
    frames = submit_frames(total)
    sent_at = [0.0] * total
    latencies: list[float] = []
    message_ids: list[str] = []
    responses = Responses()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            encode(BindTransceiver(sequence_number=1, system_id="bench", password="bench"))
        )
        bound: list[tuple[int, int, int, bytes]] = []
        while not bound:
            bound = responses.feed(await stream.receive_some(65536))
        if bound[0][1] != 0:
            raise RuntimeError(f"bind refused with status {bound[0][1]:#x}")

        started = time.perf_counter()
        next_index = min(window, total)
        now = time.perf_counter()
        for index in range(next_index):
            sent_at[index] = now
        await stream.send_all(b"".join(frames[:next_index]))
        while len(latencies) < total:
            data = await stream.receive_some(262144)
            if not data:
                raise ConnectionError("the gateway closed the session")
            answered = 0
            now = time.perf_counter()
            for command_id, status, sequence, body in responses.feed(data):
                if command_id != CommandId.SUBMIT_SM_RESP:
                    continue  # enquire_link and such do not come while the load runs
                if status != 0:
                    raise RuntimeError(f"submit_sm {sequence} refused with status {status:#x}")
                latencies.append(now - sent_at[sequence - 2])
                message_ids.append(body.split(b"\0", 1)[0].decode())
                answered += 1
            if answered and next_index < total:
                end = min(next_index + answered, total)
                for index in range(next_index, end):
                    sent_at[index] = now
                await stream.send_all(b"".join(frames[next_index:end]))
                next_index = end
        seconds = time.perf_counter() - started
    return seconds, latencies, message_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=30000, help="submit_sm a run")
    parser.add_argument("--window", type=int, default=64, help="submit_sm outstanding")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        http_port, smpp_port, bare_port = free_port(), free_port(), free_port()
        config = Path(scratch) / "bench.toml"
        config.write_text(CONFIG.format(port=http_port, smpp_port=smpp_port, log_level="warning"))
        process = start(["-m", "edgegw", "serve", "--config", str(config)], ROOT)
        bare = start([str(ROOT / "bench" / "bare_responders.py"), "smpp", str(bare_port)], ROOT)
        rates: dict[str, list[float]] = {"edgegw": [], "bare": []}
        costs: dict[str, list[float]] = {"edgegw": [], "bare": []}
        loop_costs: list[float] = []
        acknowledged: list[str] = []
        try:
            wait_ready(http_port, process)
            wait_listening(bare_port, bare)
            print(f"load average before: {load_average()}")
            for round_ in range(args.rounds):
                for side, port, pid in (
                    ("bare", bare_port, bare.pid),
                    ("edgegw", smpp_port, process.pid),
                ):
                    cpu, loop_cpu = cpu_seconds(pid), loop_cpu_seconds(pid)
                    seconds, latencies, message_ids = trio.run(
                        load, port, args.messages, args.window
                    )
                    used = cpu_seconds(pid) - cpu
                    count = len(latencies)
                    rates[side].append(count / seconds)
                    costs[side].append(used / count)
                    split = ""
                    if side == "edgegw":
                        acknowledged += message_ids
                        loop_costs.append((loop_cpu_seconds(pid) - loop_cpu) / count)
                        split = f" ({loop_costs[-1] * 1e6:.0f} on the event loop)"
                    print(
                        f"round {round_ + 1} {side} submit_sm window {args.window}: {count} in "
                        f"{seconds:.2f} s, {count / seconds:,.0f}/s, "
                        f"p50 {percentile(latencies, 0.50) * 1000:.2f} ms, "
                        f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms, "
                        f"CPU {used / count * 1e6:.0f} us/msg{split}"
                    )
        finally:
            for child in (process, bare):
                child.terminate()
                child.wait(timeout=30)
        edgegw_rate, bare_rate = median(rates["edgegw"]), median(rates["bare"])
        print(
            f"medians of {args.rounds}: edgegw {edgegw_rate:,.0f} submit_sm/s at "
            f"{median(costs['edgegw']) * 1e6:.0f} us of gateway CPU each "
            f"({median(loop_costs) * 1e6:.0f} us on the event loop, the rest in the store's "
            f"threads); bare trio responder "
            f"{bare_rate:,.0f}/s at {median(costs['bare']) * 1e6:.0f} us; "
            f"ratio {edgegw_rate / bare_rate:.2f}"
        )
        with read_store(Path(scratch) / "bench.db") as conn:
            conn.execute("CREATE TEMP TABLE acknowledged (id TEXT PRIMARY KEY)")
            conn.executemany("INSERT INTO acknowledged VALUES (?)", [(i,) for i in acknowledged])
            (stored,) = conn.execute(
                "SELECT COUNT(*) FROM acknowledged a JOIN messages m ON m.id = a.id"
            ).fetchone()
        print(f"store holds {stored} of {len(set(acknowledged))} acknowledged messages")
        print(f"load average after: {load_average()}")
        if stored != len(acknowledged) or len(set(acknowledged)) != len(acknowledged):
            sys.exit("some acknowledged message is not in the store")


if __name__ == "__main__":
    main()
