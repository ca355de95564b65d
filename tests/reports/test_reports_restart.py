"""Status-report correlation across a gateway restart, in virtual time: the store is closed with
reports outstanding after the TP-MR wrapped, a new Store and ReportCorrelator open the same file,
and every late report still finds its own message (TS 23.040 9.2.3.6 TP-MR, spec section 4.4)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import msgspec
import trio
import trio.testing
from support.modems import ReportingModem
from support.pipeline import stored_record, submit_one
from support.reports import report_event

from drivers.events import StatusReportReceived
from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.model import DrStatus, MessageState
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.submit import Submitter
from edgegw.store import Store, Topic, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z, trio time 0
SCTS = dt.datetime(2025, 8, 5, 8, 0, 0, tzinfo=dt.UTC)
RECIPIENT = "+4741000000"
REPORT_DELAY = 30.0  # seconds from a send to its status report
BEFORE_RESTART = 280  # messages sent before the restart
REPORTED_BEFORE_RESTART = 250  # of those, reported before it
TOTAL = 300
FIRST_REFERENCE = 200


class Pipeline:
    """The part of the gateway that matters here: store, dispatcher, submitter, correlator."""

    def __init__(self, store: Store, submitter: Submitter, correlator: ReportCorrelator) -> None:
        self.store = store
        self.submitter = submitter
        self.correlator = correlator

    async def send(self, n: int) -> str:
        return await submit_one(self.submitter, RECIPIENT, f"message {n}")

    async def state(self, message_id: str) -> MessageState:
        return (await stored_record(self.store, message_id)).state


async def start_gateway(nursery: trio.Nursery, path: Path, modem: ReportingModem) -> Pipeline:
    # Each start's clock agrees with trio time: epoch START + trio.current_time().
    clock = Clock(start_epoch=START + trio.current_time())
    clock.now()
    service = msgspec.convert(
        {"id": 1, "name": "s", "username": "user", "password": "secret", "validity": 173},
        ServiceConfig,
    )
    store = Store(path, clock=clock, offload=run_inline)
    await nursery.start(store.run)
    dispatcher = Dispatcher(
        store,
        {modem.name: modem},
        [service],
        DispatchConfig(queue_per_modem=2),
        clock,
        rng=random.Random(5),
    )
    await nursery.start(dispatcher.run)
    correlator = ReportCorrelator(store, clock, window=3 * 86400.0, grace=3600.0, rematch=60.0)
    await nursery.start(correlator.run)
    store.subscribe(Topic.QUEUE, dispatcher.wake)
    return Pipeline(store, Submitter([service], store, clock), correlator)


def refused(n: int) -> bool:
    return n % 7 == 3  # the handset refuses these (TP-ST 0x41)


def report_for(modem: ReportingModem, sent: int) -> tuple[int, StatusReportReceived]:
    """The message number and the status report of the modem's `sent`-th send."""
    outgoing, reference, sent_at = modem.sent[sent]
    n = int(outgoing.part.payload.decode("ascii").split()[-1])
    submitted = SCTS + dt.timedelta(seconds=sent_at)
    status = 0x41 if refused(n) else 0x00
    report = report_event(modem.name, reference, outgoing.recipient, status, submitted)
    return n, report


async def deliver_reports(
    gateway: Pipeline, modem: ReportingModem, ids: dict[int, str], sends: range
) -> None:
    """Each send's report REPORT_DELAY seconds after it went out, each checked against the
    message it belongs to."""
    for sent in sends:
        while len(modem.sent) <= sent:  # noqa: ASYNC110
            await trio.sleep(1)
        await trio.sleep_until(modem.sent[sent][2] + REPORT_DELAY)
        n, report = report_for(modem, sent)
        result = await gateway.correlator.receive(report)
        assert result.message_id == ids[n], f"report of message {n} matched {result.message_id}"


async def test_reports_after_a_restart_match_their_messages_across_mr_wrap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "edgegw.db"
    modem = ReportingModem("m1", first_reference=FIRST_REFERENCE)
    ids: dict[int, str] = {}

    async with trio.open_nursery() as first_run:
        gateway = await start_gateway(first_run, path, modem)
        for n in range(BEFORE_RESTART):
            ids[n] = await gateway.send(n)
        await deliver_reports(gateway, modem, ids, range(REPORTED_BEFORE_RESTART))
        while len(modem.sent) < BEFORE_RESTART:  # noqa: ASYNC110
            await trio.sleep(1)
        assert gateway.correlator.matched == REPORTED_BEFORE_RESTART
        # The gateway stops: its store closes with 30 reports still to come.
        first_run.cancel_scope.cancel()

    # The MR wrapped before the restart: messages 0 and 256 went out with the same TP-MR.
    references = {n: reference for n, (_, reference, _) in enumerate(modem.sent)}
    assert references[0] == references[256] == FIRST_REFERENCE
    assert references[BEFORE_RESTART - 1] == (FIRST_REFERENCE + BEFORE_RESTART - 1) % 256
    await trio.sleep(120)  # the gateway is down for two minutes

    async with trio.open_nursery() as second_run:
        gateway = await start_gateway(second_run, path, modem)
        correlator = gateway.correlator
        # The reports that came while the gateway was down wait on the modem; they and those
        # of the messages sent after the restart reach the new correlator.
        for n in range(BEFORE_RESTART, TOTAL):
            ids[n] = await gateway.send(n)
        await deliver_reports(gateway, modem, ids, range(REPORTED_BEFORE_RESTART, TOTAL))
        assert (correlator.matched, correlator.unmatched) == (
            TOTAL - REPORTED_BEFORE_RESTART,
            0,
        )
        # MRs of the later sends repeat those of messages 24..43, long since reported.
        assert [reference for _, reference, _ in modem.sent[BEFORE_RESTART:]] == [
            (FIRST_REFERENCE + n) % 256 for n in range(BEFORE_RESTART, TOTAL)
        ]

        final = {n: await gateway.state(message_id) for n, message_id in ids.items()}
        assert final == {
            n: MessageState.FAILED if refused(n) else MessageState.DELIVERED for n in range(TOTAL)
        }
        for n in (3, 255, 276, 283):  # refused: before, across and after the restart
            record = await gateway.store.message(ids[n])
            assert record is not None
            assert (record.dr_status, record.ext_status) == (DrStatus.SYNTAX_ERROR, "41"), n
        for n in (0, 256, 279, 299):
            record = await gateway.store.message(ids[n])
            assert record is not None
            assert (record.dr_status, record.ext_status) == (0, "00"), n
        second_run.cancel_scope.cancel()
