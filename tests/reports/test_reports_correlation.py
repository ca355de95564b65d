"""Status-report correlation against the real store and dispatcher, with a modem double that
assigns TP-MRs mod 256 and returns SMS-STATUS-REPORTs after a delay, in virtual time: MR wrap,
multi-part aggregation, unmatched and late reports, the TP-ST table and reports that never come."""

from __future__ import annotations

import datetime as dt
import logging
import random
from pathlib import Path
from typing import cast

import msgspec
import pytest
import trio
import trio.testing
from support.modems import ReportingModem
from support.pipeline import stored_record, submit_one
from support.reports import SCTS, report_event

from drivers.at import AtModem, AtOptions
from drivers.gsm import relative_validity, validity_period_minutes
from drivers.modem import Modem
from drivers.simulator import Simulator, SimulatorOptions, memory_opener
from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.model import DrStatus, MessageState
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.drstatus import ReportOutcome, dr_status, ext_status, report_outcome
from edgegw.pipeline.inbound import InboundReceiver
from edgegw.pipeline.modems import forward_events
from edgegw.pipeline.reports import ReportCorrelator, _clock_offset, _match, same_number
from edgegw.pipeline.storagereads import SETTLE, StorageReads
from edgegw.pipeline.submit import Submitter
from edgegw.store import MessageRecord, Store, Topic, connect, migrate, run_inline, transactions
from edgegw.store.transactions import Effects, no_final_outcomes

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z
WINDOW = 3 * 86400.0
GRACE = 3600.0


class Rig:
    def __init__(self, store: Store, submitter: Submitter, correlator: ReportCorrelator) -> None:
        self.store = store
        self.submitter = submitter
        self.correlator = correlator

    async def send(self, content: str = "Hello", recipient: str = "+4741000000") -> str:
        return await submit_one(self.submitter, recipient, content)

    async def record(self, message_id: str) -> MessageRecord:
        return await stored_record(self.store, message_id)

    async def wait_sent(self, message_id: str) -> None:
        with trio.fail_after(86400):
            while (await self.record(message_id)).state is not MessageState.SENT:  # noqa: ASYNC110
                await trio.sleep(1)


async def start_rig(
    nursery: trio.Nursery,
    path: Path,
    modem: Modem,
    *,
    validity: int = 173,
    rematch: float = 60.0,
    clock: Clock | None = None,
    reads: StorageReads | None = None,
) -> Rig:
    """`clock`: the one of a run before a restart, so that the time down counts. With `reads`,
    what the modem reads from its SIM, and its registration, reach the correlator as the
    gateway forwards them."""
    clock = clock or Clock(start_epoch=START)
    service = msgspec.convert(
        {"id": 1, "name": "s", "username": "user", "password": "secret", "validity": validity},
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
        rng=random.Random(3),
    )
    await nursery.start(dispatcher.run)
    correlator = ReportCorrelator(
        store, clock, window=WINDOW, grace=GRACE, rematch=rematch, reads=reads
    )
    await nursery.start(correlator.run)
    store.subscribe(Topic.QUEUE, dispatcher.wake)
    if reads is not None:
        inbound = cast(InboundReceiver, None)  # only status reports come
        nursery.start_soon(
            forward_events, modem, inbound, correlator, dispatcher.wake, reads, clock
        )
    return Rig(store, Submitter([service], store, clock), correlator)


async def test_300_messages_through_one_modem_every_report_matches_its_message(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1", first_reference=200)
    rig = await start_rig(nursery, tmp_path / "db", modem)
    # One recipient for all: after 256 sends its TP-MRs repeat, so only the stored send time
    # tells the messages apart. Every seventh is refused by the handset (TP-ST 0x41).
    ids = [await rig.send(f"message {n}") for n in range(300)]
    expected = {
        message_id: (MessageState.FAILED if n % 7 == 3 else MessageState.DELIVERED)
        for n, message_id in enumerate(ids)
    }

    async def network() -> None:
        # Each report comes 30 s after its part went out (the sends take 1 s each).
        reported = 0
        while reported < 300:
            await trio.sleep(1)
            while reported < len(modem.sent):
                outgoing, reference, sent_at = modem.sent[reported]
                n = int(outgoing.part.payload.decode("ascii").split()[-1])
                status = 0x41 if n % 7 == 3 else 0x00
                submitted = SCTS + dt.timedelta(seconds=sent_at)
                nursery.start_soon(late_report, reference, outgoing.recipient, status, submitted)
                reported += 1

    async def late_report(
        reference: int, recipient: str, status: int, submitted: dt.datetime
    ) -> None:
        await trio.sleep(30)
        event = report_event("m1", reference, recipient, status, submitted)
        result = await rig.correlator.receive(event)
        assert result.message_id is not None

    async with trio.open_nursery() as inner:
        inner.start_soon(network)
    await trio.sleep(60)
    assert [reference for _, reference, _ in modem.sent[55:58]] == [255, 0, 1]  # MR wraps
    final = {message_id: (await rig.record(message_id)).state for message_id in ids}
    assert final == expected
    failed = await rig.record(ids[3])
    assert (failed.dr_status, failed.ext_status) == (DrStatus.SYNTAX_ERROR, "41")
    delivered = await rig.record(ids[0])
    assert (delivered.dr_status, delivered.ext_status) == (0, "00")
    assert (rig.correlator.matched, rig.correlator.unmatched) == (300, 0)


async def test_a_message_is_delivered_only_when_every_part_is(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    message_id = await rig.send("p" * 400)  # three parts, MRs 0, 1, 2
    await rig.wait_sent(message_id)
    recipient = "+4741000000"
    for reference in (2, 0):
        result = await rig.correlator.receive(report_event("m1", reference, recipient, 0x00))
        assert (result.message_id, result.final) == (message_id, None)
    assert (await rig.record(message_id)).state is MessageState.SENT
    # A temporary error on part 2 is only an event; its final report then decides.
    pending = await rig.correlator.receive(report_event("m1", 1, recipient, 0x30))
    assert (pending.outcome, pending.final) == (ReportOutcome.PENDING, None)
    final = await rig.correlator.receive(report_event("m1", 1, "41000000", 0x00))
    assert final.final is MessageState.DELIVERED
    view = await rig.store.message_view(1, message_id)
    assert view is not None and view.state is MessageState.DELIVERED
    assert [part.state for part in view.parts] == [MessageState.DELIVERED] * 3
    details = [detail for _, _, _, detail in await rig.store.events(message_id)]
    assert "part 2: status report TP-ST 30, the SMSC is still trying" in details


async def test_one_failed_part_fails_the_message_and_later_reports_change_nothing(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    message_id = await rig.send("q" * 200)  # two parts, MRs 0 and 1
    await rig.wait_sent(message_id)
    failed = await rig.correlator.receive(report_event("m1", 1, "+4741000000", 0x46))
    assert failed.final is MessageState.FAILED
    later = await rig.correlator.receive(report_event("m1", 0, "+4741000000", 0x00))
    assert (later.message_id, later.final) == (message_id, None)
    record = await rig.record(message_id)
    assert (record.state, record.dr_status, record.ext_status) == (
        MessageState.FAILED,
        DrStatus.VALIDITY_EXPIRED,
        "46",
    )
    assert record.error == "part 2 was not delivered: status report TP-ST 46 (DR 361)"


async def test_unmatched_reports_are_kept_and_a_re_read_is_a_no_op(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    message_id = await rig.send()
    await rig.wait_sent(message_id)
    cases = [
        report_event("m2", 0, "+4741000000", 0x00),  # another modem
        report_event("m1", 9, "+4741000000", 0x00),  # an MR never used
        report_event("m1", 0, "+4799999999", 0x00),  # another recipient
    ]
    for event in cases:
        result = await rig.correlator.receive(event)
        assert (result.stored, result.message_id) == (True, None)
    again = await rig.correlator.receive(cases[0])
    assert not again.stored
    assert (await rig.record(message_id)).state is MessageState.SENT
    assert rig.correlator.unmatched == 3
    await trio.sleep(120)  # the rematch time runs out; they stay unmatched

    def pending(conn: object) -> list[tuple[object, ...]]:
        return conn.execute(  # type: ignore[attr-defined, no-any-return]
            "SELECT message_id, rematch_until FROM status_reports"
        ).fetchall()

    assert await rig.store.read(pending) == [(None, None)] * 3


async def test_a_report_before_its_part_is_recorded_matches_later(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1", first_reference=17)
    rig = await start_rig(nursery, tmp_path / "db", modem)
    # The report arrives before the message is even sent (a race of the modem's event stream
    # with the worker's commit, made wide here).
    early = await rig.correlator.receive(report_event("m1", 17, "+4741000000", 0x00))
    assert early.message_id is None
    message_id = await rig.send()
    await rig.wait_sent(message_id)
    await trio.sleep(2)
    assert (await rig.record(message_id)).state is MessageState.DELIVERED


async def send_to_others(rig: Rig, count: int) -> None:
    """`count` messages to another recipient, sent one after the other: the modem's TP-MR
    moves on by `count`."""
    for n in range(count):
        await rig.wait_sent(await rig.send(f"other {n}", recipient="+4799000000"))


async def test_a_report_overtaking_its_part_is_not_taken_by_an_older_part_of_its_mr(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    old = await rig.send("old")  # MR 0, delivered and reported long ago
    await rig.wait_sent(old)
    await rig.correlator.receive(report_event("m1", 0, "+4741000000", 0x00))
    await send_to_others(rig, 255)  # MRs 1..255: the next send takes MR 0 again
    # The new message's report (the handset refused it) overtakes the commit of its part.
    submitted = SCTS + dt.timedelta(seconds=trio.current_time())
    await rig.correlator.receive(report_event("m1", 0, "+4741000000", 0x41, submitted))
    new = await rig.send("new")
    await rig.wait_sent(new)
    await trio.sleep(2)
    assert (await rig.record(new)).state is MessageState.FAILED
    assert (await rig.record(old)).state is MessageState.DELIVERED


async def test_a_late_report_matches_the_send_the_smsc_took_not_a_later_one_of_its_mr(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    old = await rig.send("old")  # MR 0; the handset is off, the SMSC keeps trying
    await rig.wait_sent(old)
    await send_to_others(rig, 255)
    new = await rig.send("new")  # MR 0 again, to the same handset
    await rig.wait_sent(new)
    (_, _, old_sent_at), (_, _, new_sent_at) = modem.sent[0], modem.sent[256]
    # The handset comes back: the old message is delivered, the new one then refused. Each
    # report carries the time the SMSC took its SMS-SUBMIT (TP-SCTS).
    for sent_at, status in ((old_sent_at, 0x00), (new_sent_at, 0x41)):
        submitted = SCTS + dt.timedelta(seconds=sent_at)
        await rig.correlator.receive(report_event("m1", 0, "+4741000000", status, submitted))
    assert (await rig.record(old)).state is MessageState.DELIVERED
    assert (await rig.record(new)).state is MessageState.FAILED


async def test_the_smsc_clock_apart_from_ours_does_not_send_a_report_to_an_older_part(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    smsc_behind = dt.timedelta(hours=-1)  # the SMSC's clock is an hour behind the box's

    async def report(sent: int, status: int) -> None:
        outgoing, reference, sent_at = modem.sent[sent]
        submitted = SCTS + dt.timedelta(seconds=sent_at) + smsc_behind
        await rig.correlator.receive(
            report_event("m1", reference, outgoing.recipient, status, submitted)
        )

    old = await rig.send("old")  # MR 0: its report never comes
    await rig.wait_sent(old)
    await send_to_others(rig, 255)
    await report(255, 0x00)  # the SMSC's reports of other sends came as usual
    new = await rig.send("new")  # MR 0 again, to the same handset
    await rig.wait_sent(new)
    await report(256, 0x00)
    assert (await rig.record(new)).state is MessageState.DELIVERED
    assert (await rig.record(old)).state is MessageState.SENT


async def test_a_report_is_a_warning_only_once_it_stays_unmatched(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One that overtook its part's commit is matched a moment later: no news for an operator.
    caplog.set_level(logging.INFO, logger="edgegw.pipeline.reports")
    modem = ReportingModem("m1", first_reference=17)
    rig = await start_rig(nursery, tmp_path / "db", modem)
    await rig.correlator.receive(report_event("m1", 17, "+4741000000", 0x00))
    await rig.correlator.receive(report_event("m1", 99, "+4741000000", 0x00))
    message_id = await rig.send()
    await rig.wait_sent(message_id)
    await trio.sleep(120)
    assert (await rig.record(message_id)).state is MessageState.DELIVERED
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["modem m1: status report MR 99 for +4741000000 stays unmatched"]


async def test_without_rematching_a_report_that_matches_nothing_is_a_warning_at_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `reports.rematch = 0`: nothing matches it again, so no later line says it stayed
    # unmatched; its own line is the operator's only news of it.
    caplog.set_level(logging.INFO, logger="edgegw.pipeline.reports")
    rig = await start_rig(nursery, tmp_path / "db", ReportingModem("m1"), rematch=0.0)
    result = await rig.correlator.receive(report_event("m1", 99, "+4741000000", 0x00))
    assert result.stored and result.message_id is None
    await trio.sleep(600)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "modem m1: status report MR 99 for +4741000000 (TP-ST 00) matches no sent part;"
        " it stays unmatched"
    ]


def test_a_report_looks_its_part_up_by_modem_and_tp_mr(tmp_path: Path) -> None:
    """A modem's parts under one TP-MR are 1/256 of those it keeps; those within the window are
    a tenth (3 of 30 days). The match must read the former, not the latter, for each report."""
    conn = connect(tmp_path / "db")
    migrate(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    _match(conn, "m1", 17, "+4741000000", START, START, WINDOW)
    conn.set_trace_callback(None)
    (lookup,) = [sql for sql in statements if "FROM parts" in sql]
    plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + lookup))
    conn.close()
    assert "SEARCH parts USING INDEX parts_reference (modem=? AND reference=?)" in plan, plan


def test_the_smsc_clock_is_read_off_the_modems_last_matched_report_alone(tmp_path: Path) -> None:
    """A modem whose reports stopped matching (a wrong SIM number, a network's odd recipient
    format) may have hundreds of thousands of reports after its last matched one: the look-up
    goes straight to the matched ones, newest first, not through all the others."""
    conn = connect(tmp_path / "db")
    migrate(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    _clock_offset(conn, "m1")
    conn.set_trace_callback(None)
    (lookup,) = statements
    plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + lookup))
    conn.close()
    assert plan.startswith("SEARCH status_reports USING INDEX status_reports_matched (modem=?)"), (
        plan
    )
    assert "TEMP B-TREE" not in plan, plan


async def test_a_report_outside_the_window_does_not_match(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem)
    message_id = await rig.send()
    await rig.wait_sent(message_id)
    await trio.sleep(WINDOW + 10)
    result = await rig.correlator.receive(report_event("m1", 0, "+4741000000", 0x00))
    assert result.message_id is None


async def test_a_message_whose_report_never_comes_is_closed_after_its_validity(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem = ReportingModem("m1")
    rig = await start_rig(nursery, tmp_path / "db", modem, validity=11)  # 60 minutes
    message_id = await rig.send()
    await rig.wait_sent(message_id)
    record = await rig.record(message_id)
    close_at = record.expires_at + GRACE
    await trio.sleep(close_at - START - 120)
    assert (await rig.record(message_id)).done_at is None
    await trio.sleep(120 + 61)
    record = await rig.record(message_id)
    assert (record.state, record.dr_status, record.error) == (
        MessageState.SENT,
        362,
        "no status report came before the validity period ended",
    )
    assert record.done_at is not None and close_at <= record.done_at <= close_at + 61
    assert rig.correlator.timed_out == 1


async def test_a_message_that_waited_is_closed_when_the_smsc_gives_it_up_not_at_its_validity(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Two days' validity, sent two hours after it was accepted: the 46 hours left are asked
    for as a relative TP-VP, whose steps beyond a day are whole days (TS 23.040 9.2.3.12.1), so
    the SMSC keeps it two days from the send, past its validity's end. It gets DR 362 a grace
    after that, not a grace after its validity while the SMSC may still deliver it."""
    modem = ReportingModem("m1", ready_at=2 * 3600)
    rig = await start_rig(nursery, tmp_path / "db", modem, validity=168)  # 2 days
    message_id = await rig.send()
    await rig.wait_sent(message_id)
    ((outgoing, _, sent_at),) = modem.sent
    assert outgoing.validity_minutes is not None
    assert validity_period_minutes(relative_validity(outgoing.validity_minutes)) == 2 * 1440
    expires_at = (await rig.record(message_id)).expires_at
    assert expires_at == START + 2 * 86400
    smsc_gives_up = START + sent_at + 2 * 86400
    assert smsc_gives_up > expires_at + GRACE

    await trio.sleep_until(expires_at + GRACE + 120 - START)
    record = await rig.record(message_id)
    assert (record.state, record.done_at, rig.correlator.timed_out) == (MessageState.SENT, None, 0)
    await trio.sleep_until(smsc_gives_up + GRACE - 120 - START)
    assert (await rig.record(message_id)).done_at is None
    await trio.sleep(120 + 61)
    record = await rig.record(message_id)
    assert (record.state, record.dr_status) == (MessageState.SENT, DrStatus.TIMED_OUT_IN_SMSC)
    assert record.done_at is not None
    assert smsc_gives_up + GRACE <= record.done_at <= smsc_gives_up + GRACE + 61
    assert rig.correlator.timed_out == 1


def test_the_sweep_reads_sent_messages_by_when_the_smsc_gives_them_up(tmp_path: Path) -> None:
    """The sweep and its wake-up read the messages awaiting a report in order of the moment the
    SMSC gives them up, also those of the modems that read their SIM since a start: on a store
    of hundreds of thousands of messages, neither reads them all."""
    conn = connect(tmp_path / "db")
    migrate(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    fx = Effects(no_final_outcomes, lambda topic: None)
    for modems in (None, ("m1", "m2")):
        transactions.next_overdue(conn, modems)
        transactions.close_overdue(conn, fx, START, START, modems)
    conn.set_trace_callback(None)
    plans = [
        " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)) for sql in statements
    ]
    conn.close()
    assert (
        plans
        == [
            "SCAN messages USING INDEX messages_report_overdue",
            "SEARCH messages USING INDEX messages_report_overdue (<expr><?)",
        ]
        * 2
    ), plans


async def sent_before_a_long_stop(path: Path, modem: ReportingModem, clock: Clock) -> str:
    """A message of 60 minutes' validity sent on `modem`, then the gateway (or the whole box)
    stopped for 3 hours, past its time and the grace; its id."""
    async with trio.open_nursery() as nursery:
        rig = await start_rig(nursery, path, modem, validity=11, clock=clock)  # 60 minutes
        message_id = await rig.send()
        await rig.wait_sent(message_id)
        nursery.cancel_scope.cancel()
    await trio.sleep(3 * 3600)
    return message_id


async def test_a_report_kept_on_the_sim_over_a_stop_past_the_grace_decides_the_message(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The report came while the gateway was down, past the message's validity and grace: the
    modem's first sweep after the start reads it from the SIM, and it decides the message
    (delivered, DR 0), not DR 362 for a report that never came."""
    path = tmp_path / "db"
    modem = ReportingModem("m1")
    clock = Clock(start_epoch=START)
    message_id = await sent_before_a_long_stop(path, modem, clock)
    async with trio.open_nursery() as nursery:
        rig = await start_rig(nursery, path, modem, validity=11, clock=clock)
        await trio.sleep(5)  # the modem's first sweep of its storage
        ((_, reference, _),) = modem.sent
        await rig.correlator.receive(report_event("m1", reference, "+4741000000", 0x00))
        await trio.sleep(2 * GRACE)
        record = await rig.record(message_id)
        nursery.cancel_scope.cancel()
    assert (record.state, record.dr_status) == (MessageState.DELIVERED, DrStatus.DELIVERED)
    assert rig.correlator.timed_out == 0


async def test_a_gateway_restarting_within_the_grace_closes_a_message_once_its_modem_read_the_sim(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A gateway that runs half an hour at a time, less than the grace, 25 minutes down in
    between: after each start the message's modem reads its SIM within seconds, and with that,
    once the network has had SETTLE to deliver what it held, the wait for a report is over.
    Overdue (past the SMSC's time and the grace) at a start, the message is closed with DR 362
    then, not held back by every start for ever."""
    path = tmp_path / "db"
    modem = ReportingModem("m1")
    clock = Clock(start_epoch=START)
    async with trio.open_nursery() as nursery:
        rig = await start_rig(nursery, path, modem, validity=11, clock=clock)  # 60 minutes
        message_id = await rig.send()
        await rig.wait_sent(message_id)
        nursery.cancel_scope.cancel()
    ((_, _, sent_at),) = modem.sent
    closes_at = START + sent_at + 3600 + GRACE
    for _ in range(8):
        await trio.sleep(1500)  # down
        async with trio.open_nursery() as nursery:
            modem.register()  # at once
            rig = await start_rig(
                nursery, path, modem, validity=11, clock=clock, reads=StorageReads()
            )
            started = clock.now()
            await trio.sleep(4)
            before_read = await rig.record(message_id)
            modem.read_storage()  # nothing waited there
            await trio.sleep(1800 - 4)
            record = await rig.record(message_id)
            nursery.cancel_scope.cancel()
        if record.done_at is not None:
            break
    assert started - 1800 - 1500 < closes_at < started  # overdue since the stop before
    assert before_read.done_at is None
    assert (record.state, record.dr_status) == (MessageState.SENT, DrStatus.TIMED_OUT_IN_SMSC)
    assert record.done_at is not None and record.done_at == pytest.approx(started + SETTLE, abs=1)


async def test_a_report_read_from_the_sim_after_a_restart_decides_the_message_before_dr_362(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The report came while the gateway was down, past the message's time and grace: the
    wait ends with the modem's first read of its SIM, and that read brings the report, which
    decides the message before the sweep could close it."""
    path = tmp_path / "db"
    modem = ReportingModem("m1")
    clock = Clock(start_epoch=START)
    message_id = await sent_before_a_long_stop(path, modem, clock)
    async with trio.open_nursery() as nursery:
        modem.register()  # at once
        rig = await start_rig(nursery, path, modem, validity=11, clock=clock, reads=StorageReads())
        await trio.sleep(5)
        ((_, reference, _),) = modem.sent
        modem.read_storage(report_event("m1", reference, "+4741000000", 0x00))
        await trio.sleep(60)
        record = await rig.record(message_id)
        nursery.cancel_scope.cancel()
    assert (record.state, record.dr_status) == (MessageState.DELIVERED, DrStatus.DELIVERED)
    assert rig.correlator.timed_out == 0


async def test_a_report_the_network_held_while_the_box_was_off_decides_the_message(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The box was off (a power cut) past the message's time and grace, its modem with it: the
    network kept the report and delivers it a minute after the modem's first read of its SIM,
    once the modem is registered again. That report, not DR 362, decides the message."""
    path = tmp_path / "db"
    modem = ReportingModem("m1")
    clock = Clock(start_epoch=START)
    message_id = await sent_before_a_long_stop(path, modem, clock)
    async with trio.open_nursery() as nursery:
        modem.register()  # at once
        rig = await start_rig(nursery, path, modem, validity=11, clock=clock, reads=StorageReads())
        await trio.sleep(5)
        modem.read_storage()  # nothing waited on the SIM
        await trio.sleep(60)
        ((_, reference, _),) = modem.sent
        modem.deliver(report_event("m1", reference, "+4741000000", 0x00))
        await trio.sleep(SETTLE)
        record = await rig.record(message_id)
        nursery.cancel_scope.cancel()
    assert (record.state, record.dr_status) == (MessageState.DELIVERED, DrStatus.DELIVERED)
    assert rig.correlator.timed_out == 0


async def start_on_the_simulator(
    nursery: trio.Nursery, path: Path, clock: Clock, sim: Simulator, options: AtOptions
) -> tuple[Rig, float]:
    """The gateway's start after `sent_before_a_long_stop`, its modem m1 now the AT driver
    (with `options`) on the simulated modem `sim`; the rig and the start's time."""
    _, open_stream = memory_opener(nursery, sim)
    modem = AtModem("m1", options, open_stream=open_stream)
    started = clock.now()
    nursery.start_soon(modem.run)
    rig = await start_rig(nursery, path, modem, validity=11, clock=clock, reads=StorageReads())
    return rig, started


async def test_a_report_the_network_delivers_after_a_late_registration_decides_the_message(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The box was off past the message's time and grace. After the start its modem reads its
    SIM at once but registers only 10 minutes later (a slow SIM, no coverage yet), past SETTLE
    from the start; the network delivers the report it held a minute after that. That report,
    not DR 362, decides the message: the wait counts SETTLE from the registration."""
    path = tmp_path / "db"
    before = ReportingModem("m1")
    clock = Clock(start_epoch=START)
    message_id = await sent_before_a_long_stop(path, before, clock)
    ((_, reference, _),) = before.sent
    sim = Simulator(SimulatorOptions(register_delay=600.0))
    report = report_event("m1", reference, "+4741000000", 0x00).pdu
    sim.engine.schedule_status_report(lambda: report, trio.current_time() + 660.0)
    async with trio.open_nursery() as nursery:
        rig, _ = await start_on_the_simulator(nursery, path, clock, sim, AtOptions())
        await trio.sleep(GRACE - 60)
        record = await rig.record(message_id)
        nursery.cancel_scope.cancel()
    assert (record.state, record.dr_status) == (MessageState.DELIVERED, DrStatus.DELIVERED)
    assert rig.correlator.timed_out == 0


@pytest.mark.parametrize(
    ("registered_after", "health_interval"),
    [
        (0.0, 60.0),  # the registration read as the driver initialises the modem
        # 10 minutes late, with no health polls: told by the modem's own +CREG line alone, as
        # real hardware tells it.
        (600.0, 0.0),
    ],
)
async def test_a_modem_is_released_settle_after_it_registered(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    registered_after: float,
    health_interval: float,
) -> None:
    """The same start with a modem whose report never comes: the message is closed with DR
    362 SETTLE after the modem registered, at once or later, not held until the grace."""
    path = tmp_path / "db"
    clock = Clock(start_epoch=START)
    message_id = await sent_before_a_long_stop(path, ReportingModem("m1"), clock)
    sim = Simulator(SimulatorOptions(register_delay=registered_after))
    async with trio.open_nursery() as nursery:
        rig, started = await start_on_the_simulator(
            nursery, path, clock, sim, AtOptions(health_interval=health_interval)
        )
        await trio.sleep(registered_after + SETTLE + 60)
        record = await rig.record(message_id)
        nursery.cancel_scope.cancel()
    assert (record.state, record.dr_status) == (MessageState.SENT, DrStatus.TIMED_OUT_IN_SMSC)
    assert record.done_at is not None
    settled = started + registered_after + SETTLE
    assert settled <= record.done_at < settled + 5


@pytest.mark.parametrize(
    ("status", "outcome", "code"),
    [
        (0x00, ReportOutcome.DELIVERED, 0),
        (0x01, ReportOutcome.DELIVERED, 0),
        (0x02, ReportOutcome.DELIVERED, 0),
        (0x20, ReportOutcome.PENDING, None),
        (0x25, ReportOutcome.PENDING, None),
        (0x3F, ReportOutcome.PENDING, None),
        (0x40, ReportOutcome.FAILED, 370),
        (0x41, ReportOutcome.FAILED, 360),
        (0x42, ReportOutcome.FAILED, 370),
        (0x45, ReportOutcome.FAILED, 370),
        (0x46, ReportOutcome.FAILED, 361),
        (0x47, ReportOutcome.FAILED, 370),
        (0x48, ReportOutcome.FAILED, 370),
        (0x49, ReportOutcome.FAILED, 351),
        (0x60, ReportOutcome.FAILED, 362),
        (0x65, ReportOutcome.FAILED, 362),
        (0x80, ReportOutcome.FAILED, 370),
    ],
)
def test_tp_st_maps_to_the_spec_dr_codes(
    status: int, outcome: ReportOutcome, code: int | None
) -> None:
    assert report_outcome(status) is outcome
    assert dr_status(status) == code
    assert ext_status(status) == f"{status:02X}"


@pytest.mark.parametrize(
    ("sent_to", "reported", "same"),
    [
        ("+4741000000", "+4741000000", True),
        ("+4741000000", "41000000", True),
        ("+4741000000", "004741000000", True),
        ("+4741000000", "+4741000001", False),
        ("+4741000000", "000", False),
    ],
)
def test_report_recipients_compare_by_trailing_digits(
    sent_to: str, reported: str, same: bool
) -> None:
    assert same_number(sent_to, reported) is same
