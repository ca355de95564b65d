""" "Part i sent" and `part i+1 sending` are one commit: through the real store, dispatcher and
worker in virtual time, each part after the first is marked `sending` in the transaction that
recorded the part before it (of the same message or of the worker's next claim)."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import trio
import trio.testing
from support.modems import ReportingModem
from support.pipeline import stored_record, submit_one

from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.model import MessageState
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.submit import Submitter
from edgegw.store import Store, Topic, run_inline

START = 1_754_380_800.0


async def test_each_send_after_the_first_costs_one_commit(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(start_epoch=START)
    service = msgspec.convert(
        {"id": 1, "name": "s", "username": "user", "password": "secret"}, ServiceConfig
    )
    store = Store(tmp_path / "db", clock=clock, offload=run_inline)
    await nursery.start(store.run)
    modem = ReportingModem("m1")
    dispatcher = Dispatcher(
        store,
        {"m1": modem},
        [service],
        DispatchConfig(queue_per_modem=4),
        clock,
        rng=random.Random(1),
    )
    store.subscribe(Topic.QUEUE, dispatcher.wake)
    submitter = Submitter([service], store, clock)
    # Queued before the dispatcher starts: its first round claims four at once.
    ids = [await submit_one(submitter, "+4741000000", "x" * 200) for _ in range(4)]  # 2 parts
    before = store.commits
    await nursery.start(dispatcher.run)
    with trio.fail_after(600):
        for message_id in ids:
            while (await stored_record(store, message_id)).state is not MessageState.SENT:  # noqa: ASYNC110
                await trio.sleep(1)
    assert len(modem.sent) == 8
    # Crash recovery, the one claim of all four, the first part's `sending`, then one commit
    # per part sent, which also marks the next part `sending` (two per part were 18 in all).
    assert store.commits - before == 1 + 1 + 1 + 8
