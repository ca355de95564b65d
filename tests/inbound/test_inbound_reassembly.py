"""Inbound SMS through InboundReceiver and a real SQLite store: single and concatenated parts in
any order, duplicates, re-reads after a restart, incomplete messages after the timeout (virtual
time) and keyword routing with the spec 3.1 fields."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from pathlib import Path
from typing import cast

import pytest
import trio
from support.inbound import SCTS, sms
from support.modems import ReportingModem

from drivers.events import InboundSms
from drivers.gsm import EncodedPart, encode_message
from drivers.gsm.sanitise import ParsingType
from drivers.gsm.udh import concat_udh
from edgegw.clock import Clock
from edgegw.pipeline.inbound import (
    InboundReceiver,
    inbound_record,
    inbound_records,
    inbound_view,
    service_inbound_view,
)
from edgegw.pipeline.keywords import InboundRouter, KeywordRule
from edgegw.pipeline.modems import forward_events
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.storagereads import SETTLE, StorageReads
from edgegw.store import Store, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z
TIMEOUT = 600.0


def long_parts(text: str, reference: int = 7) -> list[EncodedPart]:
    return list(encode_message(text, parsing=ParsingType.AUTO_DETECT, reference=reference).parts)


def router() -> InboundRouter:
    return InboundRouter(
        {"sim0": 1000, "sim1": None},
        [
            KeywordRule(keyword="INFO", service_id=2000),
            KeywordRule(keyword="Stop", service_id=3000, modems=("sim1",)),
        ],
    )


async def start(
    path: Path, nursery: trio.Nursery, clock: Clock, modem: ReportingModem | None = None
) -> tuple[Store, InboundReceiver]:
    """With `modem`, what it reads from its SIM reaches the receiver as the gateway forwards
    it (its sweeper is then running)."""
    store = Store(path, clock=clock, offload=run_inline)
    await nursery.start(store.run)
    reads = None if modem is None else StorageReads()
    receiver = InboundReceiver(
        store,
        clock,
        router(),
        reassembly_timeout=TIMEOUT,
        numbers={"sim0": "+4790000000"},
        reads=reads,
    )
    if modem is not None and reads is not None:
        await nursery.start(receiver.run)
        reports = cast(ReportCorrelator, None)  # only SMS come
        modem.register()
        nursery.start_soon(forward_events, modem, receiver, reports, lambda: None, reads, clock)
    return store, receiver


async def test_a_single_sms_is_stored_routed_and_shown_with_the_spec_fields(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    received = await receiver.receive(sms("Hello there"))
    assert received.stored and not received.duplicate and received.message_id
    record = await inbound_record(store, received.message_id)
    assert record is not None
    view = inbound_view(record, {1000: "demo"})
    assert (view.serviceid, view.servicename, view.sno) == (1000, "demo", "+4790000000")
    assert (view.originator, view.content, view.command, view.strippedcontent) == (
        "+4799999999",
        "Hello there",
        "",
        "Hello there",
    )
    assert (view.type, view.sessionid, view.complete) == (1, "", True)
    assert view.timestamp == "20250805 10:00:00"  # Oslo local time (CEST)
    assert view.sctimestamp == "20250805 09:59:58"
    assert view.receivedAt == "2025-08-05T08:00:00.000Z"
    assert len(view.messageid) == 12


async def test_a_service_is_shown_its_own_inbound_messages_only(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    names = {1000: "demo", 2000: "info"}
    own = (await receiver.receive(sms("Hello there"))).message_id
    keyword = (await receiver.receive(sms("INFO opening hours", index=2))).message_id
    unowned = (await receiver.receive(sms("Hello", modem="sim1", index=3))).message_id
    assert own is not None and keyword is not None and unowned is not None
    shown = await service_inbound_view(store, 1000, own, names)
    assert shown is not None and (shown.serviceid, shown.content) == (1000, "Hello there")
    shown = await service_inbound_view(store, 2000, keyword, names)
    assert shown is not None and (shown.serviceid, shown.servicename) == (2000, "info")
    assert await service_inbound_view(store, 2000, own, names) is None
    assert await service_inbound_view(store, 1000, keyword, names) is None
    assert await service_inbound_view(store, 1000, unowned, names) is None
    assert await service_inbound_view(store, 1000, "nothere", names) is None


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_three_ucs2_parts_reassemble_in_any_order(
    tmp_path: Path, nursery: trio.Nursery, order: tuple[int, ...]
) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    text = "Grüße 😀 " * 20  # UCS-2, three parts of 67 characters
    parts = long_parts(text)
    assert len(parts) == 3
    results = [await receiver.receive(sms(parts[i], index=i + 1)) for i in order]
    assert [r.message_id is not None for r in results] == [False, False, True]
    message_id = results[-1].message_id
    assert message_id is not None
    record = await inbound_record(store, message_id)
    assert record is not None
    assert record.content == text
    assert (record.complete, record.parts_expected, record.parts_received) == (True, 3, 3)


async def test_a_duplicate_part_is_ignored(tmp_path: Path, nursery: trio.Nursery) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    parts = long_parts("x" * 200)
    first = await receiver.receive(sms(parts[0], index=1))
    # The network sends part 1 again (a new SCTS, so a different PDU), then part 2.
    later = SCTS + dt.timedelta(seconds=5)
    again = await receiver.receive(sms(parts[0], index=2, timestamp=later))
    done = await receiver.receive(sms(parts[1], index=3))
    assert not first.duplicate and again.stored and again.duplicate
    assert done.message_id is not None
    # Part 1 once more after completion: still a duplicate, no new (incomplete) message.
    late = await receiver.receive(sms(parts[0], index=4, timestamp=later + dt.timedelta(1)))
    assert late.duplicate
    records = await inbound_records(store, service_id=None, all_services=True)
    assert [(r.content, r.complete) for r in records] == [("x" * 200, True)]
    assert receiver.duplicates == 2


async def test_the_same_reference_later_starts_a_new_message(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    clock = Clock(START)
    store, receiver = await start(tmp_path / "db", nursery, clock)
    first = long_parts("a" * 200, reference=9)
    second = long_parts("b" * 200, reference=9)
    for index, part in enumerate(first + second):
        await receiver.receive(sms(part, index=index))
    records = await inbound_records(store, service_id=1000)
    assert sorted(r.content for r in records) == ["a" * 200, "b" * 200]


async def test_a_reused_reference_closes_the_older_message_still_missing_parts(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A sender that wrapped its 8-bit reference while its older message lost a part: the new
    message's part 1 is no copy of the older one's (another text), so the older is stored
    incomplete then, and the new one whole, not merged with it."""
    clock = Clock(START)
    store, receiver = await start(tmp_path / "db", nursery, clock)
    await nursery.start(receiver.run)
    older = long_parts("a" * 200, reference=9)
    newer = long_parts("b" * 200, reference=9)
    await receiver.receive(sms(older[0], index=1))  # its part 2 never comes
    await trio.sleep(60)
    later = SCTS + dt.timedelta(seconds=60)
    first = await receiver.receive(sms(newer[0], index=2, timestamp=later))
    done = await receiver.receive(sms(newer[1], index=3, timestamp=later))
    assert not first.duplicate and first.superseded is not None
    assert done.message_id is not None
    await trio.sleep(2 * TIMEOUT)  # nothing is left open for the sweeper
    records = await inbound_records(store, service_id=1000)
    assert [(r.content, r.complete, r.parts_received) for r in records] == [
        ("b" * 200, True, 2),
        ("a" * 153, False, 1),
    ]
    assert receiver.incomplete == 1


async def test_a_re_read_pdu_is_a_no_op(tmp_path: Path, nursery: trio.Nursery) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    event = sms("Once only")
    first = await receiver.receive(event)
    second = await receiver.receive(event)
    assert first.stored and first.message_id is not None
    assert not second.stored and second.duplicate and second.message_id is None
    assert len(await inbound_records(store, service_id=1000)) == 1


async def test_a_restart_between_receipt_and_delete_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "edgegw.db"
    parts = long_parts("restart " * 30)
    events = [sms(part, index=i) for i, part in enumerate(parts, 1)]

    async def run_once(to_receive: list[InboundSms]) -> list[str | None]:
        async with trio.open_nursery() as nursery:
            _, receiver = await start(path, nursery, Clock(START))
            ids = [(await receiver.receive(event)).message_id for event in to_receive]
            nursery.cancel_scope.cancel()
        return ids

    # First run: every part is committed, but the gateway stops before the modem deletes them.
    assert (await run_once(events))[-1] is not None
    # After the restart the modem lists all parts again; nothing new comes of it.
    assert await run_once(events) == [None] * len(events)
    async with trio.open_nursery() as nursery:
        store, _ = await start(path, nursery, Clock(START))
        records = await inbound_records(store, service_id=1000)
        nursery.cancel_scope.cancel()
    assert [(r.content, r.complete) for r in records] == [("restart " * 30, True)]


async def test_an_incomplete_message_is_stored_after_the_timeout(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(START)
    store, receiver = await start(tmp_path / "db", nursery, clock)
    await nursery.start(receiver.run)
    parts = long_parts("z" * 400)  # three GSM-7 parts
    await receiver.receive(sms(parts[0], index=1))
    await trio.sleep(100)
    await receiver.receive(sms(parts[2], index=3))
    assert await inbound_records(store, service_id=1000) == []
    await trio.sleep(TIMEOUT - 100 - 1)
    assert await inbound_records(store, service_id=1000) == []
    await trio.sleep(2)
    (record,) = await inbound_records(store, service_id=1000)
    assert (record.complete, record.parts_expected, record.parts_received) == (False, 3, 2)
    assert record.received_at == START + TIMEOUT
    assert record.content == "z" * (153 + 400 - 2 * 153)
    # The missing part arriving now starts a new group, stored incomplete in its turn.
    await receiver.receive(sms(parts[1], index=2))
    await trio.sleep(TIMEOUT + 1)
    records = await inbound_records(store, service_id=1000)
    assert [(r.parts_received, r.complete) for r in records] == [(1, False), (2, False)]


async def test_a_part_kept_over_a_stop_longer_than_the_timeout_waits_for_the_sims_rest(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Part 1 was stored before a stop; part 2 reached the modem while the gateway was down
    (longer than the timeout) and is read from the SIM once it is back: they make one whole
    message, not two incomplete ones, since the time down is no time the part could come."""
    path = tmp_path / "edgegw.db"
    clock = Clock(START)
    first, second = long_parts("w" * 200)
    async with trio.open_nursery() as nursery:
        _, receiver = await start(path, nursery, clock)
        await nursery.start(receiver.run)
        await receiver.receive(sms(first, index=1))
        nursery.cancel_scope.cancel()
    await trio.sleep(2 * TIMEOUT)  # down
    async with trio.open_nursery() as nursery:
        store, receiver = await start(path, nursery, clock)
        await nursery.start(receiver.run)
        await trio.sleep(5)  # the modem's first sweep of its storage
        await receiver.receive(sms(second, index=2))
        await trio.sleep(2 * TIMEOUT)
        records = await inbound_records(store, service_id=1000)
        nursery.cancel_scope.cancel()
    assert [(r.content, r.complete) for r in records] == [("w" * 200, True)]


async def test_a_gateway_restarting_within_the_timeout_stores_a_part_once_its_modem_read_the_sim(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A gateway that runs less than the reassembly timeout at a time, down longer in
    between: after each start the modem reads its SIM within seconds, and with that, once the
    network has had SETTLE to deliver what it held, the wait for the rest of a long MO is over.
    A part overdue at a start is stored as an incomplete message then, not held back by every
    start for ever."""
    path = tmp_path / "edgegw.db"
    clock = Clock(START)
    modem = ReportingModem("sim0")
    first, _ = long_parts("w" * 200)
    async with trio.open_nursery() as nursery:
        _, receiver = await start(path, nursery, clock)
        await receiver.receive(sms(first, index=1))
        nursery.cancel_scope.cancel()
    for _ in range(4):
        await trio.sleep(TIMEOUT + 60)  # down
        async with trio.open_nursery() as nursery:
            store, receiver = await start(path, nursery, clock, modem)
            started = clock.now()
            await trio.sleep(4)
            before_read = await inbound_records(store, service_id=1000)
            modem.read_storage()  # nothing waited there
            await trio.sleep(SETTLE + 50 - 4)  # less than the timeout
            records = await inbound_records(store, service_id=1000)
            nursery.cancel_scope.cancel()
        if records:
            break
    assert started > START + TIMEOUT  # overdue since the stop before
    assert before_read == []
    (record,) = records
    assert (record.complete, record.parts_received) == (False, 1)
    assert record.received_at == pytest.approx(started + SETTLE, abs=1)


async def test_the_rest_of_a_long_mo_read_from_the_sim_after_a_restart_completes_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Part 2 reached the SIM while the gateway was down, past part 1's timeout: the wait ends
    with the modem's first read of its SIM, which brings part 2, so the message is whole."""
    path = tmp_path / "edgegw.db"
    clock = Clock(START)
    modem = ReportingModem("sim0")
    first, second = long_parts("w" * 200)
    async with trio.open_nursery() as nursery:
        _, receiver = await start(path, nursery, clock)
        await receiver.receive(sms(first, index=1))
        nursery.cancel_scope.cancel()
    await trio.sleep(2 * TIMEOUT)  # down
    async with trio.open_nursery() as nursery:
        store, receiver = await start(path, nursery, clock, modem)
        await trio.sleep(5)
        modem.read_storage(sms(second, index=2))
        await trio.sleep(2 * TIMEOUT)
        records = await inbound_records(store, service_id=1000)
        nursery.cancel_scope.cancel()
    assert [(r.content, r.complete) for r in records] == [("w" * 200, True)]


async def test_a_part_stored_under_a_clock_set_back_since_waits_the_timeout_from_the_start(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "edgegw.db"
    first, _ = long_parts("w" * 200)
    ahead = Clock(START + 3600)  # the box's clock an hour ahead
    async with trio.open_nursery() as nursery:
        _, receiver = await start(path, nursery, ahead)
        await nursery.start(receiver.run)
        await receiver.receive(sms(first, index=1))
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        store, receiver = await start(path, nursery, Clock(START))  # set right, started again
        await nursery.start(receiver.run)
        await trio.sleep(TIMEOUT + 1)
        records = await inbound_records(store, service_id=1000)
        nursery.cancel_scope.cancel()
    # Stored with the part it has after the timeout from the start, not an hour later.
    assert [(r.parts_received, r.complete) for r in records] == [(1, False)]


async def test_an_incomplete_message_without_its_first_part_is_not_routed_by_keyword(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Part 2 begins mid-text: its first word is no keyword, so the modem's service gets it."""
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    await nursery.start(receiver.run)
    parts = long_parts("Hello, " + "x" * 146 + "info about me")
    await receiver.receive(sms(parts[1], index=2))  # part 1 never comes
    await trio.sleep(TIMEOUT + 1)
    (record,) = await inbound_records(store, service_id=None, all_services=True)
    assert (record.content, record.complete) == ("info about me", False)
    assert (record.service_id, record.command, record.stripped_content) == (
        1000,
        "",
        "info about me",
    )


async def test_keywords_take_precedence_and_fill_command_and_strippedcontent(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    cases = [
        ("sim0", "info  opening hours please", 2000, "INFO", "opening hours please"),
        ("sim0", "INFORMATION", 1000, "", "INFORMATION"),
        ("sim1", "STOP", 3000, "Stop", ""),
        ("sim0", "stop now", 1000, "", "stop now"),  # Stop applies on sim1 only
        ("sim1", "hello", None, "", "hello"),  # sim1 names no service
    ]
    for modem, text, service, command, stripped in cases:
        result = await receiver.receive(sms(text, modem=modem))
        assert result.message_id is not None
        record = await inbound_record(store, result.message_id)
        assert record is not None
        assert (record.service_id, record.command, record.stripped_content) == (
            service,
            command,
            stripped,
        ), text


async def test_listing_is_per_service_newest_first_with_since_and_limit(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    for number in range(5):
        await receiver.receive(sms(f"message {number}"))
        await trio.sleep(10)
    await receiver.receive(sms("INFO other service"))
    mine = await inbound_records(store, service_id=1000)
    assert [r.content for r in mine] == [f"message {n}" for n in (4, 3, 2, 1, 0)]
    recent = await inbound_records(store, service_id=1000, since=START + 15, limit=2)
    assert [r.content for r in recent] == ["message 4", "message 3"]
    assert [r.content for r in await inbound_records(store, service_id=2000)] == [
        "INFO other service"
    ]


async def test_eight_bit_content_is_kept_as_hex(tmp_path: Path, nursery: trio.Nursery) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    part = EncodedPart(dcs=0x04, udh=b"", payload=bytes.fromhex("cafe0042"))
    result = await receiver.receive(sms(part))
    assert result.message_id is not None
    record = await inbound_record(store, result.message_id)
    assert record is not None and record.content == "CAFE0042"


async def test_an_alphanumeric_originator_and_a_16_bit_reference(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    halves = ["first half ", "second half"]
    for seq, text in enumerate(halves, 1):
        udh = bytes((6, 0x08, 4, 0x12, 0x34, 2, seq))
        payload = encode_message(text).parts[0].payload
        part = EncodedPart(dcs=0, udh=udh, payload=payload)
        result = await receiver.receive(sms(part, originator="Bank", index=seq))
    assert result.message_id is not None
    record = await inbound_record(store, result.message_id)
    assert record is not None
    assert (record.originator, record.content) == ("Bank", "first half second half")
    # A "1 of 1" concatenation header is a whole message on its own.
    single = EncodedPart(dcs=0, udh=concat_udh(3, 1, 1), payload=payload)
    assert (await receiver.receive(sms(single, index=9))).message_id is not None


async def test_a_sender_cannot_write_log_lines_of_its_own(
    tmp_path: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """An alphanumeric sender with a line break (GSM 03.38 has LF) in the lines that name it:
    one line each, the break escaped, so no forged line starts within it."""
    caplog.set_level(logging.INFO)
    _store, receiver = await start(tmp_path / "db", nursery, Clock(START))
    forged = "X\n2026 CRIT"
    await receiver.receive(sms("hello", modem="sim1", originator=forged))  # no service
    parts = long_parts("y" * 200)
    await receiver.receive(sms(parts[0], originator=forged, index=1))
    later = SCTS + dt.timedelta(seconds=5)
    await receiver.receive(sms(parts[0], originator=forged, index=2, timestamp=later))
    lines = [r.getMessage() for r in caplog.records if "X" in r.getMessage()]
    assert len(lines) == 2
    assert all("\n" not in line and repr(forged) in line for line in lines)
