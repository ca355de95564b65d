"""Benchmark: what a dispatch round costs on a big queue.

Queues `--messages` messages over `--services` services (each its own campaign, priorities 1 to
3 mixed), then runs the real dispatcher with `--modems` modems that hold every send until the
benchmark lets one finish. Rounds: the first (every slot free), then `--steps` rounds after one
send finished on one modem and as many after a send finished on every modem. Prints, per kind of
round, the messages claimed and the CPU (the process's, the store's threads included) and wall
time of `Dispatcher.dispatch_once`, median and 90th percentile; then the same of `--views` reads
of the modems' queues (`queues`: what GET /api/modems and the status page's poll every 2 s read)
on that queue.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import trio

from drivers.events import InboundSms, ModemEvent, ModemState, StatusReportReceived
from drivers.modem import Health, OutgoingPart
from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.model import MessageRequest, SendRequest, Settings
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.modems import queues
from edgegw.pipeline.submit import Submitter
from edgegw.store import Claim, Store

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z
REQUEST = 1000  # messages a sendMessages request


class HeldModem:
    """Ready; each send waits until the benchmark lets one go (`go.release()`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.go = trio.Semaphore(0)
        self._reference = 0
        self._events = trio.open_memory_channel[ModemEvent](1)[1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, outgoing: OutgoingPart) -> int:
        await self.go.acquire()
        self._reference = (self._reference + 1) % 256
        return self._reference

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        return None

    def health(self) -> Health:
        return Health(state=ModemState.READY)

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events


def services(count: int) -> list[ServiceConfig]:
    return [
        msgspec.convert(
            {"id": n, "name": f"s{n}", "username": f"u{n}", "password": f"p{n}"}, ServiceConfig
        )
        for n in range(1, count + 1)
    ]


async def fill(store: Store, clock: Clock, configs: Sequence[ServiceConfig], total: int) -> None:
    submitter = Submitter(list(configs), store, clock)
    rng = random.Random(1)
    for first in range(0, total, REQUEST):
        service = configs[first // REQUEST % len(configs)]
        messages = [
            MessageRequest(
                recipient=f"+4741{(first + n) % 1_000_000:06d}",
                content="A campaign message",
                settings=Settings(priority=rng.randint(1, 3)),
            )
            for n in range(min(REQUEST, total - first))
        ]
        answer = await submitter.submit(
            SendRequest(
                serviceId=service.id,
                username=service.username,
                password=service.password,
                message=messages,
            )
        )
        assert all(status.messageId for status in answer.messageStatus)


def figures(
    label: str, rounds: list[tuple[float, float, int]], counted: str = "claimed a round"
) -> None:
    cpu = sorted(r[0] * 1000 for r in rounds)
    wall = sorted(r[1] * 1000 for r in rounds)
    claimed = statistics.median(r[2] for r in rounds)
    p90 = int(len(rounds) * 0.9)
    print(
        f"{label}: {len(rounds)} rounds, {claimed:.0f} {counted};"
        f" CPU ms median {statistics.median(cpu):.2f}, p90 {cpu[p90]:.2f};"
        f" wall ms median {statistics.median(wall):.2f}, p90 {wall[p90]:.2f}"
    )


async def bench(path: Path, args: argparse.Namespace) -> None:
    clock = Clock(start_epoch=START)
    store = Store(path, clock=clock)
    configs = services(args.services)
    modems = [HeldModem(f"m{n}") for n in range(args.modems)]
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        began = time.perf_counter()
        await fill(store, clock, configs, args.messages)
        print(
            f"queued {args.messages} messages over {args.services} services"
            f" in {time.perf_counter() - began:.1f} s"
        )
        dispatcher = Dispatcher(
            store,
            {modem.name: modem for modem in modems},
            configs,
            DispatchConfig(queue_per_modem=args.queue_per_modem),
            clock,
            rng=random.Random(7),
        )
        rounds: list[tuple[float, float, int]] = []
        claimed = [0]
        round_done = trio.Event()
        dispatch_once = dispatcher.dispatch_once
        claim = store.claim

        async def counted_claim(
            assignments: Sequence[tuple[str, str]], now: float | None = None
        ) -> list[Claim]:
            claimed[0] += len(assignments)
            return await claim(assignments, now)

        async def timed_round() -> float | None:
            nonlocal round_done
            claimed[0] = 0
            cpu, wall = time.process_time(), time.perf_counter()
            wake_at = await dispatch_once()
            rounds.append((time.process_time() - cpu, time.perf_counter() - wall, claimed[0]))
            round_done.set()
            return wake_at

        store.claim = counted_claim  # type: ignore[method-assign]
        dispatcher.dispatch_once = timed_round  # type: ignore[method-assign]
        await nursery.start(dispatcher.run)
        await round_done.wait()
        first = list(rounds)
        for label, finishing in (("one modem", 1), ("every modem", args.modems)):
            rounds.clear()
            for step in range(args.steps):
                round_done = trio.Event()
                for modem in modems[step % args.modems :][:finishing] or modems[:finishing]:
                    modem.go.release()
                await round_done.wait()
                await trio.sleep(0.05)  # the workers' next marks are done before the next step
            figures(f"a send finished on {label}", [r for r in rounds if r[2]])
        figures("the first round", first)
        views: list[tuple[float, float, int]] = []
        for _ in range(args.views):
            cpu, wall = time.process_time(), time.perf_counter()
            _, unbound = await queues(store)
            views.append((time.process_time() - cpu, time.perf_counter() - wall, unbound))
        figures("the modems' queues read", views, "queued for no modem yet")
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--modems", type=int, default=8)
    parser.add_argument("--queue-per-modem", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--views", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgegw-dispatch-") as folder:
        trio.run(bench, Path(folder) / "edgegw.db", args)


if __name__ == "__main__":
    main()
