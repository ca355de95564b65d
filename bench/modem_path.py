"""Benchmark: the send path kept busy, 32 simulated modems with a fixed +CMGS latency.

Starts `edgegw serve` as its own process on a scratch store with `--modems` simulated modems
(each answers +CMGS after `--latency` seconds; status reports held back so they do not compete),
served by a process of their own (`simulators.py`) and driven over their pseudo-terminals with
`driver = "at"` as USB modems would be (each reply leaves when due, on a kernel timer), or
with `--in-process-simulators` inside the gateway (`driver = "simulated"`, their CPU then
counted as the gateway's), submits `--messages` over HTTP in 1000-message batches, and waits
until the store has every one `sent`. Throughput counts from the first part handed to a modem
(its `sending` event) to the last part the network took (its `sent_at`), both stamped by the
gateway's clock, and is printed as a fraction of modems / latency; gateway CPU (its /proc utime
+ stime) is counted from before the first submit to the last send, and so is the simulators'
process's, and the whole machine's busy and stolen CPU time (a virtual machine's CPUs held back
by its hypervisor). Targets (2 cores): fraction >= 0.99, CPU <= 1 ms per message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import send_timeline
from gateway_process import cpu_seconds, free_port, host_cpu_seconds, read_store, wait_ready
from simulators import imei

ROOT = Path(__file__).resolve().parent.parent

GATEWAY = """
[gateway]
store = "bench.db"
log_level = "warning"

[http]
host = "127.0.0.1"
port = {port}

[dispatch]
queue_per_modem = {queue}

[[services]]
id = 1000
name = "bench"
username = "bench"
password = "bench"
"""

# No `prefixes`, no `min_interval` or caps: every modem may take any message at once.
MODEM_AT = """
[[modems]]
name = "sim{index:02d}"
driver = "at"

[modems.at]
port = "{port}"
"""

MODEM_IN_PROCESS = """
[[modems]]
name = "sim{index:02d}"
driver = "simulated"

[modems.simulator]
imei = "{imei}"
imsi = "24201{index:010d}"
send_delay = {latency}
report_delay = {report_delay}
"""

BATCH = 1000


def config_text(
    port: int,
    modems: int,
    latency: float,
    report_delay: float,
    queue: int,
    ports: list[str] | None,
) -> str:
    """The gateway's config: modems on the given pty `ports`, or simulated in its process."""
    parts = [GATEWAY.format(port=port, queue=queue)]
    if ports is not None:
        parts += [MODEM_AT.format(index=index, port=path) for index, path in enumerate(ports)]
    else:
        parts += [
            MODEM_IN_PROCESS.format(
                index=index, imei=imei(index), latency=latency, report_delay=report_delay
            )
            for index in range(modems)
        ]
    return "".join(parts)


def submit(port: int, first_index: int, count: int) -> None:
    """One sendMessages request of `count` messages; every one must be accepted."""
    body = json.dumps(
        {
            "serviceId": 1000,
            "username": "bench",
            "password": "bench",
            "message": [
                {"recipient": f"+47{41000000 + first_index + i}", "content": "Bench"}
                for i in range(count)
            ],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/gw/rs/sendMessages",
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        statuses = json.loads(response.read())["messageStatus"]
    if len(statuses) != count or any(status["statusCode"] != 1 for status in statuses):
        raise RuntimeError(f"not every message was accepted: {statuses[0]}")


def count_sent(store: Path) -> int:
    with read_store(store) as db:
        (sent,) = db.execute("SELECT count(*) FROM messages WHERE state = 'sent'").fetchone()
    return int(sent)


def wait_all_sent(
    store: Path, expected: int, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Poll the store read-only (WAL lets it be read beside the writer) until all are sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited while sending")
        if count_sent(store) >= expected:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only {count_sent(store)} of {expected} sent after {timeout:.0f} s")


def send_times(store: Path) -> dict[str, list[tuple[float, float]]]:
    """Per modem, (handed to the modem, taken by the network) of each part, in order."""
    with read_store(store) as db:
        rows = db.execute(
            "SELECT p.modem, e.at, p.sent_at FROM parts p JOIN message_events e"
            " ON e.message_id = p.message_id AND e.part = p.idx AND e.state = 'sending'"
            " WHERE p.state = 'sent' ORDER BY p.modem, p.sent_at"
        ).fetchall()
    per_modem: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for modem, handed, taken in rows:
        per_modem[modem].append((handed, taken))
    return per_modem


SETTLED = 10  # sends of each modem before it is counted as past the start


def report(per_modem: dict[str, list[tuple[float, float]]], modems: int, latency: float) -> float:
    """Print the throughput figures; return the achieved fraction of modems / latency."""
    sends = [send for sends in per_modem.values() for send in sends]
    first = min(handed for handed, _ in sends)
    last = max(taken for _, taken in sends)
    rate = len(sends) / (last - first)
    fraction = rate / (modems / latency)
    print(
        f"sending: {len(sends)} parts on {len(per_modem)} modems in {last - first:.2f} s "
        f"(first hand-over to last +CMGS answer), {rate:.2f} sends/s, "
        f"{fraction:.4f} of {modems} / {latency} s = {modems / latency:.2f}/s"
    )
    # Where the rest went: a send's own time (hand-over to answer: AT exchange + latency) and the
    # gap from one answer to the next hand-over on the same modem (store writes, dispatch).
    durations = [taken - handed for handed, taken in sends]
    gaps = [
        later[0] - earlier[1]
        for sends_of_modem in per_modem.values()
        for earlier, later in pairwise(sends_of_modem)
    ]
    busy = sum(durations) / (len(per_modem) * (last - first))
    print(
        f"per send: {statistics.mean(durations) * 1000:.1f} ms mean "
        f"(latency {latency * 1000:.0f} ms); gap between sends on a modem: "
        f"{statistics.mean(gaps) * 1000:.2f} ms mean, {max(gaps) * 1000:.2f} ms max; "
        f"modems busy {busy:.4f} of the time"
    )
    counts = [len(sends_of_modem) for sends_of_modem in per_modem.values()]
    print(f"parts per modem: {min(counts)}..{max(counts)}")
    # How the start's cost fades: a send's time beyond the latency by its place on its modem.
    beyond = [
        f"{low + 1}{'' if high == low + 1 else f'-{high}'}: {statistics.mean(over) * 1000:.2f}"
        for low, high in ((0, 1), (1, 5), (5, 10), (10, 20), (20, max(counts)))
        if (
            over := [
                taken - handed - latency
                for sends_of_modem in per_modem.values()
                for handed, taken in sends_of_modem[low:high]
            ]
        )
    ]
    print(f"a send beyond the latency by its place on its modem (ms mean): {', '.join(beyond)}")
    # The modems start together, so their first answers come in step and queue behind each
    # other; each modem's own rate from its SETTLED-th send on shows the run past that start.
    if min(counts) > SETTLED + 1:
        settled = sum(
            (len(sends_of_modem) - SETTLED) / (sends_of_modem[-1][1] - sends_of_modem[SETTLED][0])
            for sends_of_modem in per_modem.values()
        )
        print(
            f"from each modem's send {SETTLED + 1} on: {settled:.2f} sends/s, "
            f"{settled / (modems / latency):.4f} of {modems} / {latency} s"
        )
    return fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modems", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.5, help="+CMGS answer delay, s")
    parser.add_argument("--messages", type=int, default=32 * 40, help="single-part messages")
    parser.add_argument("--queue-per-modem", type=int, default=4, help="[dispatch] claims")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of idle gateway CPU measured first"
    )
    parser.add_argument(
        "--report-delay",
        type=float,
        default=86400.0,
        help="seconds to each status report; the default keeps them out of the measurement",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="stamp every pty read and write and store write (send_timeline.py), print the steps",
    )
    parser.add_argument(
        "--in-process-simulators",
        action="store_true",
        help="run the simulated modems inside the gateway (driver = simulated), their CPU its",
    )
    args = parser.parse_args()

    if args.timeline and args.in_process_simulators:
        parser.error("--timeline stamps the ptys between the two processes")
    stamps = tempfile.TemporaryDirectory()
    args.timeline_stamps = str(Path(stamps.name) / "stamps")
    simulators: subprocess.Popen[bytes] | None = None
    ports: list[str] | None = None
    if not args.in_process_simulators:
        simulators = subprocess.Popen(
            [
                sys.executable,
                *(timeline(args, "simulators") or [str(ROOT / "bench" / "simulators.py")]),
                f"--modems={args.modems}",
                f"--send-delay={args.latency}",
                f"--report-delay={args.report_delay}",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        assert simulators.stdout is not None
        ports = json.loads(simulators.stdout.readline())
    try:
        measure(args, ports, simulators)
    finally:
        if simulators is not None:
            simulators.terminate()
            simulators.wait(timeout=30)
    if args.timeline:
        send_timeline.report(args.timeline_stamps, args.latency)
    stamps.cleanup()


def timeline(args: argparse.Namespace, role: str) -> list[str]:
    """With --timeline, what runs `role` through send_timeline.py instead of directly."""
    if not args.timeline:
        return []
    return [str(ROOT / "bench" / "send_timeline.py"), role, args.timeline_stamps]


def measure(
    args: argparse.Namespace, ports: list[str] | None, simulators: subprocess.Popen[bytes] | None
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        config = Path(scratch) / "bench.toml"
        store = Path(scratch) / "bench.db"
        config.write_text(
            config_text(
                port, args.modems, args.latency, args.report_delay, args.queue_per_modem, ports
            )
        )
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable,
                *(timeline(args, "gateway") or ["-m", "edgegw"]),
                "serve",
                "--config",
                str(config),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        pids = [process.pid] + ([] if simulators is None else [simulators.pid])
        try:
            wait_ready(port, process)
            print(
                f"start-up to ready ({args.modems} modems): {time.perf_counter() - started:.2f} s"
            )
            # What the gateway (and the simulators) burn with nothing to send (modem polls,
            # timers), so the CPU per message can be told apart from merely running 32 modems.
            cpu = [cpu_seconds(pid) for pid in pids]
            time.sleep(args.idle)
            idle = [
                (cpu_seconds(pid) - before) / args.idle if args.idle > 0 else 0.0
                for pid, before in zip(pids, cpu, strict=True)
            ]
            print(f"idle gateway CPU: {idle[0] * 1000:.1f} ms/s")
            cpu = [cpu_seconds(pid) for pid in pids]
            host = host_cpu_seconds()
            submitted = time.perf_counter()
            for first_index in range(0, args.messages, BATCH):
                submit(port, first_index, min(BATCH, args.messages - first_index))
            print(f"submitted {args.messages} in {time.perf_counter() - submitted:.2f} s")
            ideal = -(-args.messages // args.modems) * args.latency
            wait_all_sent(store, args.messages, process, timeout=10 * ideal + 60)
            used = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
            busy_for = time.perf_counter() - submitted
            host_busy, host_stolen = (
                after - before for after, before in zip(host_cpu_seconds(), host, strict=True)
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
        report(send_times(store), args.modems, args.latency)
        what = "the simulators included" if simulators is None else "the simulators not included"
        for name, spent, idling in zip(
            ["gateway", "simulators' process"], used, idle, strict=False
        ):
            net = max(0.0, spent - idling * busy_for)
            print(
                f"{name} CPU: {spent:.2f} s in {busy_for:.1f} s, "
                f"{spent / args.messages * 1000:.3f} ms per message; "
                f"{net / args.messages * 1000:.3f} ms net of idle ({idling * 1000:.1f} ms/s)"
                + (f"; {what}" if name == "gateway" else "")
            )
        # On a virtual machine the hypervisor may hold a CPU back just when a modem's answer is
        # due; the fraction above falls with it, so it is printed beside it.
        print(
            f"host CPUs: {host_busy:.2f} s busy, {host_stolen:.2f} s stolen by the hypervisor "
            f"({host_stolen / max(host_busy, 1e-9):.1%} of busy) in {busy_for:.1f} s"
        )
        with read_store(store) as db:
            states = dict(db.execute("SELECT state, count(*) FROM messages GROUP BY state"))
        print(f"store: {states}")
        if states != {"sent": args.messages}:
            raise SystemExit(f"the store should hold {args.messages} sent messages")


if __name__ == "__main__":
    main()
