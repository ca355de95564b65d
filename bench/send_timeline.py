"""Where a send's time goes on the modem path: `modem_path.py --timeline` runs the gateway and
the simulators through this module, which stamps every pty read and write on both sides
(CLOCK_MONOTONIC, one clock for both processes), every store write and the writer thread's
commits, and prints each step of an AT+CMGS exchange as a mean and a median.

Diagnostics only: it wraps a few methods of a running gateway (the transport's reads and
writes, `Engine.write`, `Engine._commit`) and of the simulators' shell, and never changes what
they do; the stamps are kept in memory and written to `<out>.gateway` / `<out>.simulators` as
JSON when the process exits.
"""

from __future__ import annotations

import atexit
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (monotonic ns, port, what, the first bytes or a duration in ns)
Stamp = tuple[int, str, str, Any]

STEPS = (
    "AT+CMGS written -> read by the simulator",
    "the simulator's '> ' (read -> written)",
    "'> ' written -> read by the driver",
    "'> ' read -> PDU written",
    "PDU written -> read by the simulator",
    "the simulator's timer: late by (read + latency -> +CMGS written)",
    "+CMGS written -> read by the driver",
    "+CMGS read -> next AT+CMGS written",
)


def _record_at_exit(stamps: list[Stamp], path: str) -> None:
    def dump() -> None:
        Path(path).write_text(
            json.dumps([[t, port, what, _jsonable(v)] for t, port, what, v in stamps])
        )

    atexit.register(dump)


def _jsonable(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def gateway(out: str, argv: list[str]) -> int:
    """`edgegw` with its pty I/O, store writes and commits stamped."""
    import drivers.transport as transport
    import edgegw.store.engine as engine
    from edgegw.__main__ import main

    stamps: list[Stamp] = []
    _record_at_exit(stamps, out + ".gateway")
    receive = transport.SerialStream.receive_some
    send = transport.SerialStream.send_all
    write = engine.Engine.write
    commit = engine.Engine._commit

    async def stamped_receive(self: transport.SerialStream, max_bytes: int | None = None) -> bytes:
        data = await receive(self, max_bytes)
        stamps.append((time.monotonic_ns(), self.name, "gateway read", bytes(data[:12])))
        return data

    async def stamped_send(self: transport.SerialStream, data: Any) -> None:
        stamps.append((time.monotonic_ns(), self.name, "gateway wrote", bytes(data[:12])))
        await send(self, data)

    async def stamped_write(self: engine.Engine, fn: Callable[[Any], Any]) -> Any:
        started = time.monotonic_ns()
        result = await write(self, fn)
        name = getattr(getattr(fn, "func", fn), "__name__", "?")
        stamps.append((started, name, "store write", time.monotonic_ns() - started))
        return result

    def stamped_commit(self: engine.Engine, jobs: list[Any]) -> bool:
        started, cpu = time.monotonic_ns(), time.thread_time_ns()
        try:
            return commit(self, jobs)
        finally:
            spent = (time.monotonic_ns() - started, time.thread_time_ns() - cpu)
            stamps.append((started, str(len(jobs)), "commit", spent))

    transport.SerialStream.receive_some = stamped_receive  # type: ignore[method-assign]
    transport.SerialStream.send_all = stamped_send  # type: ignore[method-assign]
    engine.Engine.write = stamped_write  # type: ignore[method-assign]
    engine.Engine._commit = stamped_commit  # type: ignore[method-assign]
    return main(argv)


def simulators(out: str, argv: list[str]) -> None:
    """`simulators.py` with the reads and writes of every simulated modem's pty stamped."""
    import simulators as served

    import drivers.simulator.shell as shell

    stamps: list[Stamp] = []
    _record_at_exit(stamps, out + ".simulators")
    serve_stream = shell.serve_stream
    receive = shell._receive
    ports: dict[int, str] = {}

    async def stamped_serve(sim: shell.Simulator, stream: Any) -> None:
        port = sim.port_path or "?"
        ports[id(stream)] = port
        send = stream.send_all

        async def stamped_send(data: bytes) -> None:
            stamps.append((time.monotonic_ns(), port, "simulator wrote", bytes(data[:12])))
            await send(data)

        stream.send_all = stamped_send
        await serve_stream(sim, stream)

    async def stamped_receive(stream: Any) -> bytes:
        data = await receive(stream)
        stamps.append(
            (time.monotonic_ns(), ports.get(id(stream), "?"), "simulator read", data[:12])
        )
        return data

    shell.serve_stream = stamped_serve
    shell._receive = stamped_receive
    sys.argv = [sys.argv[0], *argv]
    served.main()


def _steps_of_port(events: list[tuple[int, str, str]], latency_ns: int) -> dict[str, list[int]]:
    """The steps of every AT+CMGS exchange on one port, from its stamps in time order."""
    steps: dict[str, list[int]] = defaultdict(list)
    for position, (at, what, data) in enumerate(events):
        if what != "gateway wrote" or not data.startswith("AT+CMGS"):
            continue
        rest = events[position + 1 : position + 14]

        def first(kind: str, text: str, after: int, window: list[tuple[int, str, str]]) -> int:
            return next(t for t, w, d in window if w == kind and text in d and t >= after)

        try:
            command_read = first("simulator read", "", at, rest)
            prompt_written = first("simulator wrote", ">", command_read, rest)
            prompt_read = first("gateway read", ">", prompt_written, rest)
            pdu_written = next(
                t for t, w, d in rest if w == "gateway wrote" and not d.startswith("AT")
            )
            answer_written = first("simulator wrote", "+CMGS", pdu_written, rest)
            answer_read = first("gateway read", "+CMGS", answer_written, rest)
        except StopIteration:
            continue
        pdu_read = max(
            t for t, w, _ in rest if w == "simulator read" and pdu_written <= t <= answer_written
        )
        following = next(
            (
                t
                for t, w, d in events[position + 1 :]
                if w == "gateway wrote" and d.startswith("AT+CMGS") and t > answer_read
            ),
            None,
        )
        spans = [
            command_read - at,
            prompt_written - command_read,
            prompt_read - prompt_written,
            pdu_written - prompt_read,
            pdu_read - pdu_written,
            answer_written - pdu_read - latency_ns,
            answer_read - answer_written,
            None if following is None else following - answer_read,
        ]
        for step, span in zip(STEPS, spans, strict=True):
            if span is not None:
                steps[step].append(span)
    return steps


def _ms(values: list[int]) -> str:
    return f"{statistics.mean(values) / 1e6:6.2f} {statistics.median(values) / 1e6:6.2f}"


def report(out: str, latency: float) -> None:
    """Print the steps of a send, and the store's writes and commits, from the stamp files."""
    stamps = [
        tuple(row)
        for suffix in (".gateway", ".simulators")
        for row in json.loads(Path(out + suffix).read_text())
    ]
    per_port: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    writes: dict[str, list[int]] = defaultdict(list)
    commits: list[tuple[int, int]] = []
    for at, port, what, value in stamps:
        if what == "store write":
            writes[port].append(value)
        elif what == "commit":
            commits.append((value[0], value[1]))
        else:
            per_port[port].append((at, what, value))
    steps: dict[str, list[int]] = defaultdict(list)
    for events in per_port.values():
        events.sort()
        for step, spans in _steps_of_port(events, round(latency * 1e9)).items():
            steps[step] += spans
    print(f"{'one send, step by step (ms)':<68} {'mean':>6} {'median':>6}")
    for step in STEPS:
        if steps[step]:
            print(f"  {step:<66} {_ms(steps[step])}  ({len(steps[step])} sends)")
    for name in ("part_sent", "claim", "part_sending"):
        if writes[name]:
            count = len(writes[name])
            print(f"store write {name:<13} (ms, to commit and back) {_ms(writes[name])}  ({count})")
    if commits:
        wall = [w for w, _ in commits]
        cpu = [c for _, c in commits]
        print(
            f"commits in the writer's thread: {len(commits)}, wall {_ms(wall)} ms, "
            f"CPU {_ms(cpu)} ms (mean median)"
        )


def main() -> None:
    role, out, *argv = sys.argv[1:]
    if role == "gateway":
        sys.exit(gateway(out, argv))
    simulators(out, argv)


if __name__ == "__main__":
    main()
