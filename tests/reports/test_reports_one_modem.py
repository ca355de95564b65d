"""A message's parts leave from one modem, also when a status report settles an early part
before a later one fails: the real store, dispatcher, workers and report correlator, in
virtual time, with two modem doubles (issue 13's bug, tried as a user would)."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import trio
import trio.testing
from support.modems import ReportingModem
from support.pipeline import stored_record, submit_one
from support.reports import report_event

from drivers.events import ModemState
from drivers.modem import Health, ModemUnavailable, OutgoingPart
from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.model import MessageState
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.submit import Submitter
from edgegw.store import Store, Topic, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z
TWO_PARTS = "Two parts: " + "x" * 160  # 171 GSM 7-bit characters


class FlakyModem(ReportingModem):
    """Sends like ReportingModem; its second send first lets `before_failure` run (the network's
    status report on the first part), then fails once as a timed-out modem does."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.before_failure: list[trio.Event] = []
        self.failed = False

    async def send(self, outgoing: OutgoingPart) -> int:
        if len(self.sent) == 1 and not self.failed:
            self.failed = True
            done = trio.Event()
            self.before_failure.append(done)
            await done.wait()
            raise ModemUnavailable("no answer to AT+CMGS")
        return await super().send(outgoing)


class LateModem(ReportingModem):
    """Ready only once `ready` is set, so that the first claim goes to the other modem."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = False

    def health(self) -> Health:
        return Health(state=ModemState.READY if self.ready else ModemState.STARTING)


async def test_a_part_delivered_before_its_sibling_fails_keeps_the_message_on_its_modem(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(start_epoch=START)
    service = msgspec.convert(
        {"id": 1, "name": "s", "username": "user", "password": "secret"}, ServiceConfig
    )
    store = Store(tmp_path / "db", clock=clock, offload=run_inline)
    await nursery.start(store.run)
    # "m1" sorts first: a message free to go anywhere goes there once it is ready.
    flaky, other = FlakyModem("m2"), LateModem("m1")
    dispatcher = Dispatcher(
        store,
        {"m1": other, "m2": flaky},
        [service],
        DispatchConfig(retry_initial=5.0, retry_max=5.0),
        clock,
        rng=random.Random(1),
        health_poll=1.0,
    )
    await nursery.start(dispatcher.run)
    correlator = ReportCorrelator(store, clock, window=86400.0, grace=3600.0, rematch=60.0)
    await nursery.start(correlator.run)
    store.subscribe(Topic.QUEUE, dispatcher.wake)
    submitter = Submitter([service], store, clock)

    message_id = await submit_one(submitter, "+4741000000", TWO_PARTS)
    with trio.fail_after(60):
        while not flaky.before_failure:  # noqa: ASYNC110
            await trio.sleep(0.1)
    # Part 1 went out on m2; its status report (delivered) is committed, then part 2 fails.
    ((first, reference, _),) = flaky.sent
    assert first.part.udh  # a concatenated part
    result = await correlator.receive(report_event("m2", reference, "+4741000000", 0x00))
    assert (result.message_id, result.part) == (message_id, 1)
    other.ready = True
    flaky.before_failure[0].set()

    with trio.fail_after(600):
        while (await stored_record(store, message_id)).state is not MessageState.SENT:  # noqa: ASYNC110
            await trio.sleep(1)
    assert other.sent == []  # nothing left from m1, another sender number
    assert len(flaky.sent) == 2
    view = await store.message_view(1, message_id)
    assert view is not None
    assert [(part.state, part.modem) for part in view.parts] == [
        (MessageState.DELIVERED, "m2"),
        (MessageState.SENT, "m2"),
    ]
