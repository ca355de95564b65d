"""Benchmark: sending through one simulated modem on a lossy link, as a fraction of a clean link.

Runs the AT driver against the simulated modem over an in-memory stream on trio's virtual clock
(MockClock, autojump), so the figure is what the link costs the protocol (lost answers waited
for, resyncs, retries, reopens) at a +CMGS latency of `--latency` s, not what the CPU costs;
the CPU seconds of each run are printed beside it. Each run sends `--messages` messages (GSM
7-bit and UCS-2, one to three parts, every part with a status report that is read and deleted
while sending goes on) while `--mos` MOs (every fifth in three parts) arrive and are deleted.
The lossy link: 5 % of final result codes lost, noise after 2 % of replies, 20 % of URCs twice,
replies in 1-12 byte fragments. Throughput counts from the first send to the last +CMGS.
Target: lossy / clean >= 0.9.
"""

from __future__ import annotations

import argparse
import time

import trio
import trio.testing

from drivers.at import AtModem, AtOptions
from drivers.events import InboundSms, StatusReportReceived
from drivers.gsm import ParsingType, encode_message
from drivers.modem import ModemUnavailable, OutgoingPart
from drivers.simulator import Simulator, SimulatorOptions, memory_opener

LOSSY = {"drop_final": 0.05, "noise": 0.02, "duplicate_urc": 0.2, "fragment": True}


def message_text(number: int) -> str:
    if number % 10 == 3:
        return f"Long message {number}: " + "the quick brown fox jumps over the lazy dog " * 8
    if number % 7 == 1:
        return f"Сообщение {number} ❄️ " + ("из тундры " * 8 if number % 2 else "")
    return f"Message {number}"


def mo_text(number: int) -> str:
    if number % 5 == 0:
        return f"MO {number} Привет из тундры 🙂 " * 6
    return f"MO {number} hello"


class Run:
    def __init__(self, seconds: float, parts: int, resyncs: int, reopens: int, cpu: float):
        self.seconds = seconds
        self.parts = parts
        self.resyncs = resyncs
        self.reopens = reopens
        self.cpu = cpu

    @property
    def per_minute(self) -> float:
        return 60.0 * self.parts / self.seconds


async def one_run(seed: int, lossy: bool, messages: int, mos: int, latency: float) -> Run:
    faults = LOSSY if lossy else {}
    options = SimulatorOptions(seed=seed, send_delay=latency, report_delay=5.0, **faults)  # type: ignore[arg-type]
    sim = Simulator(options)
    parts = [
        OutgoingPart(recipient=f"+4790{number:06d}", part=part, status_report=True)
        for number in range(messages)
        for part in encode_message(message_text(number), parsing=ParsingType.AUTO_DETECT).parts
    ]
    async with trio.open_nursery() as nursery:
        ports, open_stream = memory_opener(nursery, sim)
        modem = AtModem("bench", AtOptions(health_interval=60.0), open_stream=open_stream)
        await nursery.start(modem.run)

        async def gateway() -> None:
            async for event in modem.events:
                if isinstance(event, (InboundSms, StatusReportReceived)):
                    await modem.acknowledge(event)

        async def phones() -> None:
            for number in range(mos):
                await sim.deliver_mo(f"+4791{number:06d}", mo_text(number), interval=0.5)
                await trio.sleep(latency * messages / max(1, mos))

        nursery.start_soon(gateway)
        nursery.start_soon(phones)
        start = trio.current_time()
        for part in parts:
            while True:
                try:
                    await modem.send(part)
                    break
                except ModemUnavailable:
                    await trio.sleep(1.0)
        seconds = trio.current_time() - start
        health = modem.health()
        nursery.cancel_scope.cancel()
    if sim.network.accepted != len(parts):
        raise SystemExit(f"{sim.network.accepted} parts reached the network, not {len(parts)}")
    return Run(seconds, len(parts), health.resyncs, len(ports) - 1, 0.0)


def measure(seed: int, lossy: bool, args: argparse.Namespace) -> Run:
    cpu = time.process_time()
    run = trio.run(
        one_run,
        seed,
        lossy,
        args.messages,
        args.mos,
        args.latency,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    run.cpu = time.process_time() - cpu
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--mos", type=int, default=50)
    parser.add_argument("--latency", type=float, default=2.0, help="+CMGS latency, seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    print(f"{args.messages} messages, {args.mos} MOs, +CMGS latency {args.latency:g} s")
    fractions = []
    for seed in args.seeds:
        clean = measure(seed, False, args)
        lossy = measure(seed, True, args)
        fraction = lossy.per_minute / clean.per_minute
        fractions.append(fraction)
        for name, run in (("clean", clean), ("lossy", lossy)):
            print(
                f"seed {seed} {name}: {run.parts} parts in {run.seconds:.1f} s virtual, "
                f"{run.per_minute:.1f} parts/min, {run.resyncs} resyncs, {run.reopens} reopens, "
                f"{run.cpu:.2f} s CPU"
            )
        print(f"seed {seed}: lossy / clean = {fraction:.3f}")
    print(f"lossy / clean: min {min(fractions):.3f}, mean {sum(fractions) / len(fractions):.3f}")


if __name__ == "__main__":
    main()
