"""The core behind the SMPP door, on a real store in tmp_path: how a Submission becomes a stored
message (coding, UDH, validity clamp, schedule, priority, refusals with their command_status),
which final states enqueue a receipt, MO only for services that take it by SMPP, the outbox's
pending/delivered/failed, and the [smpp] config checks; and, through the real listener on
127.0.0.1 with smpplib as the ESME, what query_sm answers for each stored state."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import trio
from support.smpp import connect, raw_bind, receive_pdu, submit_all
from support.store import fill_disk

from edgegw.clock import Clock
from edgegw.config import Config, ServiceConfig, _check_meaning, load_config
from edgegw.delivery.fanout import final_outcomes
from edgegw.delivery.smpp_outbox import enqueue_smpp_mo, register_mo_services
from edgegw.model import DrStatus, MessageState
from edgegw.pipeline.smpp_backend import GatewaySmppBackend
from edgegw.pipeline.submit import Submitter
from edgegw.smpp.backend import Accepted, Account, SubmitRefused
from edgegw.smpp.config import SmppAccount, SmppConfig
from edgegw.smpp.constants import CommandStatus
from edgegw.smpp.constants import MessageState as SmppState
from edgegw.smpp.outbound import MobileOriginated, Receipt
from edgegw.smpp.pdu import (
    BindTransmitter,
    CancelSm,
    CancelSmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmppDecoder,
    SubmitSm,
    SubmitSmResp,
    UnsuccessfulDelivery,
    encode,
)
from edgegw.smpp.server import serve_smpp
from edgegw.smpp.submission import Address, ReceiptRequest, Submission, format_time
from edgegw.store import Store, Topic, transactions

ROOT = Path(__file__).resolve().parent.parent.parent
NOW = 1_790_000_000.0
SERVICE = ServiceConfig(
    id=1000, name="demo", username="demo", password="demo", originator="EdgeGW", priority=2
)
ACCOUNT = Account(system_id="demo", service_id=1000, max_binds=4)
ACCOUNTS = [SmppAccount(system_id="demo", password="demo", service=1000)]
SUBMIT: Final = {
    "source_addr_ton": 5,
    "source_addr_npi": 0,
    "source_addr": "EdgeGW",
    "dest_addr_ton": 1,
    "dest_addr_npi": 1,
    "destination_addr": "4741000001",
    "short_message": b"Hello",
}
OTHER = Account(system_id="other", service_id=2000, max_binds=4)


class Core(msgspec.Struct):
    store: Store
    backend: GatewaySmppBackend
    wakes: list[int]
    clock: Clock


@pytest.fixture
async def core(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Core]:
    clock = Clock(start_epoch=NOW)
    store = Store(tmp_path / "edgegw.db", clock=clock, final_outcomes=final_outcomes)
    await nursery.start(store.run)
    other = msgspec.structs.replace(SERVICE, id=2000, name="other", username="other")
    wakes: list[int] = []
    store.subscribe(Topic.QUEUE, lambda: wakes.append(1))
    submitter = Submitter([SERVICE, other], store, clock)
    backend = GatewaySmppBackend(store, clock, submitter, ACCOUNTS)
    yield Core(store, backend, wakes, clock)


@pytest.fixture
async def door(core: Core, nursery: trio.Nursery) -> int:
    """The SMPP listener over the core, on 127.0.0.1: its port."""
    config = SmppConfig(port=0, accounts=ACCOUNTS)
    port: int = await nursery.start(
        functools.partial(serve_smpp, config, core.backend, clock=core.clock)
    )
    return port


def submission(text: str | None = "Hello", **fields: Any) -> Submission:
    values: dict[str, Any] = {
        "source": Address(5, 0, ""),
        "destinations": (Address(1, 1, "4741000001"),),
        "data_coding": 0,
        "text": text,
        "payload": text.encode() if text else b"",
    }
    values.update(fields)
    return Submission(**values)


async def cancel(core: Core, account: Account, message_id: str) -> CommandStatus:
    return await core.backend.cancel(account, CancelSm(sequence_number=2, message_id=message_id))


async def row(store: Store, message_id: str, columns: str) -> tuple[Any, ...]:
    def read(conn: sqlite3.Connection) -> tuple[Any, ...]:
        found: tuple[Any, ...] = conn.execute(
            f"SELECT {columns} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return found

    return await store.read(read)


async def parts(store: Store, message_id: str) -> list[tuple[int, bytes, bytes]]:
    def read(conn: sqlite3.Connection) -> list[tuple[int, bytes, bytes]]:
        return conn.execute(
            "SELECT dcs, udh, payload FROM parts WHERE message_id = ? ORDER BY idx", (message_id,)
        ).fetchall()

    return await store.read(read)


async def test_text_is_stored_as_a_rest_submit_would_be(core: Core) -> None:
    message_id = await core.backend.submit(ACCOUNT, submission("Hello {world}"))
    stored = await row(
        core.store,
        message_id,
        "state, recipient, originator, originator_type, content, priority, validity_minutes,"
        " registered_delivery",
    )
    assert stored == (
        "queued",
        "+4741000001",
        "EdgeGW",
        "ALPHANUMERIC",
        "Hello {world}",
        2,
        10080,
        0,
    )
    assert [dcs for dcs, _, _ in await parts(core.store, message_id)] == [0x00]
    assert core.wakes == [1]  # the store woke the dispatcher after the commit


async def test_ucs2_octets_and_own_udh_keep_their_coding(core: Core) -> None:
    udh = bytes((5, 0, 3, 7, 2, 1))
    ucs2 = await core.backend.submit(
        ACCOUNT, submission("Hi", data_coding=8, payload="Hi".encode("utf-16-be"), udh=udh)
    )
    octets = await core.backend.submit(
        ACCOUNT, submission(None, data_coding=0xF5, payload=b"\x01\x02\xff")
    )
    assert await parts(core.store, ucs2) == [(0x08, udh, "Hi".encode("utf-16-be"))]
    assert await parts(core.store, octets) == [(0xF5, b"", b"\x01\x02\xff")]


async def test_validity_is_clamped_schedule_delays_and_priority_maps(core: Core) -> None:
    start = dt.datetime.fromtimestamp(NOW, dt.UTC)
    short = await core.backend.submit(
        ACCOUNT, submission(validity=start + dt.timedelta(minutes=1), priority=1)
    )
    long = await core.backend.submit(
        ACCOUNT,
        submission(
            schedule=start + dt.timedelta(hours=1),
            validity=start + dt.timedelta(days=30),
            priority=3,
            receipt=ReceiptRequest.FAILURE,
        ),
    )
    assert await row(core.store, short, "validity_minutes, priority") == (5, 2)
    minutes, priority, not_before, expires_at, receipt = await row(
        core.store, long, "validity_minutes, priority, not_before, expires_at, registered_delivery"
    )
    assert (minutes, priority, receipt) == (10080, 3, 2)
    assert not_before == pytest.approx(NOW + 3600, abs=1)
    assert expires_at == pytest.approx(not_before + 7 * 86400)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"destinations": (Address(1, 1, "4712"),)}, CommandStatus.ESME_RINVDSTADR),
        ({"source": Address(5, 0, "Far too long a name")}, CommandStatus.ESME_RINVSRCADR),
        ({"text": "Half: ½", "data_coding": 3}, CommandStatus.ESME_RSUBMITFAIL),
        ({"text": "x" * 300, "udh": bytes((5, 0, 3, 1, 2, 1))}, CommandStatus.ESME_RINVMSGLEN),
    ],
)
async def test_refusals_carry_their_command_status(
    core: Core, fields: dict[str, Any], status: CommandStatus
) -> None:
    with pytest.raises(SubmitRefused) as refused:
        await core.backend.submit(ACCOUNT, submission(**fields))
    assert refused.value.command_status == status
    count = await core.store.read(lambda c: c.execute("SELECT COUNT(*) FROM messages").fetchone())
    assert count == (0,)


OCTETS = b"\x01\x02\xff"


@pytest.mark.parametrize(
    ("data_coding", "short_message", "dcs"),
    [
        (0x00, b"Hello", 0x00),
        (0x01, b"Hello", 0x00),  # IA5 text follows the service's parsing type
        (0x03, b"Hello", 0x00),  # Latin-1 likewise
        (0x08, "Hi".encode("utf-16-be"), 0x08),
        # SMPP 3.4 5.2.19: 0x02 and 0x04 are both 8-bit octets; on the air that is TP-DCS 0x04,
        # and TP-DCS 0x02 would announce GSM 7-bit text (TS 23.038 4).
        (0x02, OCTETS, 0x04),
        (0x04, OCTETS, 0x04),
        # 1111xxxx is TS 23.038's coding group with a message class: 0xF0 is a flash SMS.
        (0xF0, b"Hello", 0xF0),
        (0xF1, b"Hello", 0xF1),
        (0xF3, b"Hello", 0xF3),
        (0xF4, OCTETS, 0xF4),
        (0xF6, OCTETS, 0xF6),
    ],
)
async def test_each_data_coding_goes_out_as_the_esme_meant(
    core: Core, door: int, data_coding: int, short_message: bytes, dcs: int
) -> None:
    submit = {**SUBMIT, "data_coding": data_coding, "short_message": short_message}
    [(status, message_id)] = await trio.to_thread.run_sync(submit_all, door, [submit])
    assert status == 0
    [(stored_dcs, udh, payload)] = await parts(core.store, message_id)
    assert (stored_dcs, udh) == (dcs, b"")
    if short_message == OCTETS:
        assert payload == OCTETS
    else:
        content = (await row(core.store, message_id, "content"))[0]
        assert content == ("Hi" if data_coding == 0x08 else "Hello")


async def test_a_burst_is_prepared_together_and_stored_in_one_commit(core: Core) -> None:
    """One submit_many: each submission gets its own id or refusal in order; a submit_multi
    stores its good destinations and lists the ones the core refuses (too short, a Norwegian
    landline) for unsuccess_sme, and is refused whole only when none is good; the accepted
    ones commit together."""
    commits = core.store.commits
    results = await core.backend.submit_many(
        ACCOUNT,
        [
            submission("first"),
            submission("bad", destinations=(Address(1, 1, "4712"),)),
            submission(
                "multi",
                destinations=(
                    Address(1, 1, "4713"),
                    Address(1, 1, "4741000002"),
                    Address(1, 1, "4722000000"),
                ),
            ),
            submission(
                "none good",
                destinations=(Address(1, 1, "4714"), Address(1, 1, "4722000001")),
            ),
            submission("last", receipt=ReceiptRequest.FINAL),
        ],
    )
    first, bad, multi, none_good, last = results
    assert isinstance(first, Accepted) and isinstance(last, Accepted)
    assert (first.refused, last.refused) == ((), ())
    assert isinstance(multi, Accepted)
    assert multi.refused == (
        UnsuccessfulDelivery(1, 1, "4713", CommandStatus.ESME_RINVDSTADR),
        UnsuccessfulDelivery(1, 1, "4722000000", CommandStatus.ESME_RINVDSTADR),
    )
    for refused in (bad, none_good):
        assert isinstance(refused, SubmitRefused)
        assert refused.command_status == CommandStatus.ESME_RINVDSTADR
    assert core.store.commits == commits + 1
    stored = await core.store.read(
        lambda c: c.execute(
            "SELECT id, content, recipient, registered_delivery FROM messages ORDER BY id"
        ).fetchall()
    )
    assert stored == [
        (first.message_id, "first", "+4741000001", 0),
        (multi.message_id, "multi", "+4741000002", 0),
        (last.message_id, "last", "+4741000001", 1),
    ]


async def test_a_submit_multi_refused_for_its_text_is_refused_whole(core: Core) -> None:
    """What every destination shares (here a text too long to send) refuses the whole
    submit_multi, even after a destination refused on its own."""
    multi = submission(
        "x" * 1000,
        destinations=(Address(1, 1, "4713"), Address(1, 1, "4741000002")),
    )
    (result,) = await core.backend.submit_many(ACCOUNT, [multi])
    assert isinstance(result, SubmitRefused)
    assert result.command_status == CommandStatus.ESME_RINVMSGLEN


async def report(store: Store, message_id: str, status: int, dr: DrStatus, now: float) -> None:
    """The status report of the message's first part, TP-ST `status` (TS 23.040 9.2.3.15)."""
    await store.write(
        functools.partial(
            transactions.record_report,
            fx=store.effects,
            message_id=message_id,
            index=1,
            delivered=status < 0x20,
            dr_status=dr,
            raw=f"{status:02X}",
            status=status,
            now=now,
        )
    )


async def finish(core: Core, message_id: str, state: MessageState, dr: DrStatus) -> None:
    """Send the message's one part, then settle it as a status report or the worker would."""
    store = core.store
    at = NOW + 60
    await store.claim([(message_id, "m1")], at)
    await store.mark_part_sending(message_id, 1, "m1", at)
    if state is MessageState.DELIVERED:
        await store.mark_part_sent(message_id, 1, 7, last=True, now=at)
        await report(store, message_id, 0x00, dr, at)
    else:
        await store.fail(message_id, error="rejected", dr_status=dr, part_index=1, now=at)
    assert (await row(store, message_id, "state"))[0] == state


async def test_receipts_follow_the_request_and_the_final_state(core: Core) -> None:
    final, failure_only, none = [
        await core.backend.submit(ACCOUNT, submission(receipt=receipt))
        for receipt in (ReceiptRequest.FINAL, ReceiptRequest.FAILURE, ReceiptRequest.NONE)
    ]
    expired = await core.backend.submit(
        ACCOUNT, submission("Too late", receipt=ReceiptRequest.FAILURE)
    )
    await finish(core, final, MessageState.DELIVERED, DrStatus.DELIVERED)
    await finish(
        core, failure_only, MessageState.DELIVERED, DrStatus.DELIVERED
    )  # no receipt: it worked
    await finish(core, none, MessageState.FAILED, DrStatus.UNKNOWN_RECIPIENT)
    await core.store.expire_due(NOW + 8 * 86400)
    items = await core.backend.pending(1000, 10, frozenset())
    receipts = [item.item for item in items if isinstance(item.item, Receipt)]
    assert len(receipts) == len(items)
    assert [(r.message_id, r.message_state, r.error_code) for r in receipts] == [
        (final, SmppState.DELIVERED, 0),
        (expired, SmppState.EXPIRED, 361),
    ]
    first = receipts[0]
    assert first.recipient == Address(1, 1, "4741000001")
    assert first.originator == Address(5, 0, "EdgeGW")
    assert first.text == "Hello"
    assert await core.backend.pending(2000, 10, frozenset()) == []


async def test_outbox_items_stay_until_acknowledged(core: Core) -> None:
    message_id = await core.backend.submit(ACCOUNT, submission(receipt=ReceiptRequest.FINAL))
    assert await cancel(core, ACCOUNT, message_id) == CommandStatus.ESME_ROK
    (item,) = await core.backend.pending(1000, 10, frozenset())
    assert isinstance(item.item, Receipt) and item.item.message_state is SmppState.DELETED
    assert await core.backend.pending(1000, 10, frozenset({item.id})) == []
    await core.backend.failed(item.id, CommandStatus.ESME_RX_T_APPN)
    assert [i.id for i in await core.backend.pending(1000, 10, frozenset())] == [item.id]
    await core.backend.delivered(item.id)
    assert await core.backend.pending(1000, 10, frozenset()) == []


@pytest.mark.parametrize(
    ("status", "for_good"),
    [
        (CommandStatus.ESME_RX_P_APPN, False),
        (CommandStatus.ESME_RX_R_APPN, False),
        (CommandStatus.ESME_RSYSERR, True),  # the gateway could not encode it
    ],
)
async def test_an_outbox_item_refused_for_good_is_not_offered_again(
    core: Core, status: CommandStatus, for_good: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """SMPP 3.4 5.1.3: a permanent application error or a rejection by the ESME is final,
    and so is an item the gateway cannot encode; offering it again every redeliver_interval,
    forever, would never change it. The log says what was dropped."""
    message_id = await core.backend.submit(ACCOUNT, submission(receipt=ReceiptRequest.FINAL))
    assert await cancel(core, ACCOUNT, message_id) == CommandStatus.ESME_ROK
    (item,) = await core.backend.pending(1000, 10, frozenset())
    await core.backend.failed(item.id, status, for_good=for_good)
    assert await core.backend.pending(1000, 10, frozenset()) == []
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"receipt of message {message_id} is refused for good (command_status {status:#x})" in (
        record.getMessage()
    )

    def read(conn: sqlite3.Connection) -> tuple[Any, ...]:
        found: tuple[Any, ...] = conn.execute(
            "SELECT state, last_status, done_at IS NOT NULL FROM smpp_outbox WHERE id = ?",
            (item.id,),
        ).fetchone()
        return found

    assert await core.store.read(read) == ("refused", status, 1)


async def test_query_and_cancel_only_the_services_own_queued_messages(core: Core) -> None:
    message_id = await core.backend.submit(ACCOUNT, submission())
    assert await core.backend.query(OTHER, message_id) is None
    assert await cancel(core, OTHER, message_id) == CommandStatus.ESME_RCANCELFAIL
    queued = await core.backend.query(ACCOUNT, message_id)
    assert queued is not None and queued.message_state is SmppState.ENROUTE
    assert queued.final_date is None
    await finish(core, message_id, MessageState.FAILED, DrStatus.UNKNOWN_RECIPIENT)
    assert await cancel(core, ACCOUNT, message_id) == CommandStatus.ESME_RCANCELFAIL  # sent
    failed = await core.backend.query(ACCOUNT, message_id)
    assert failed is not None
    assert (failed.message_state, failed.error_code) == (SmppState.REJECTED, 0)
    assert failed.final_date == dt.datetime.fromtimestamp(NOW + 60, dt.UTC)


async def test_replace_sm_without_a_validity_keeps_the_messages_end(
    core: Core, autojump_clock: trio.testing.MockClock
) -> None:
    """SMPP 3.4 4.10.1: a NULL validity_period keeps the original one. A message that has
    waited half an hour of its hour (no modem took it) still ends when it would have, not an
    hour after the replace_sm; a new relative validity counts from the replace_sm, and a new
    schedule past the end it keeps is refused."""
    start = dt.datetime.fromtimestamp(core.clock.now(), dt.UTC)
    message_id = await core.backend.submit(
        ACCOUNT, submission(validity=start + dt.timedelta(hours=1))
    )
    (expires_at,) = await row(core.store, message_id, "expires_at")
    await trio.sleep(1800)
    replaced = ReplaceSm(sequence_number=2, message_id=message_id, short_message=b"New text")
    assert await core.backend.replace(ACCOUNT, replaced) == CommandStatus.ESME_ROK
    assert await row(core.store, message_id, "content, expires_at") == ("New text", expires_at)
    two_hours = msgspec.structs.replace(replaced, validity_period="000000020000000R")
    assert await core.backend.replace(ACCOUNT, two_hours) == CommandStatus.ESME_ROK
    (longer,) = await row(core.store, message_id, "expires_at")
    assert longer == pytest.approx(core.clock.now() + 7200, abs=60)
    past_the_end = msgspec.structs.replace(replaced, schedule_delivery_time="000000030000000R")
    assert await core.backend.replace(ACCOUNT, past_the_end) == CommandStatus.ESME_RINVEXPIRY


async def test_replace_sm_of_a_message_past_its_validity_fails(
    core: Core, autojump_clock: trio.testing.MockClock
) -> None:
    """SMPP 3.4 4.10.2: a message whose validity has run out, though the expiry sweep has
    not come round to it yet, cannot be replaced (ESME_RREPLACEFAIL), whatever new schedule
    or validity the replace_sm brings; only a new validity_period that is itself past is the
    ESME's own mistake (ESME_RINVEXPIRY). It keeps its text and ends expired at the first,
    as the sweep would have left it, which then finds nothing to expire."""
    start = dt.datetime.fromtimestamp(core.clock.now(), dt.UTC)
    message_id = await core.backend.submit(
        ACCOUNT, submission(validity=start + dt.timedelta(minutes=10))
    )
    await trio.sleep(900)
    replaced = ReplaceSm(sequence_number=2, message_id=message_id, short_message=b"New text")
    answers = [
        await core.backend.replace(ACCOUNT, msgspec.structs.replace(replaced, **fields))
        for fields in (
            {},
            {"schedule_delivery_time": "000000010000000R"},
            {"validity_period": "000000010000000R"},
            {"validity_period": format_time(start + dt.timedelta(minutes=12))},
        )
    ]
    assert answers == [CommandStatus.ESME_RREPLACEFAIL] * 3 + [CommandStatus.ESME_RINVEXPIRY]
    assert await row(core.store, message_id, "state, content, done_at") == (
        "expired",
        "Hello",
        NOW + 900,
    )
    assert await core.store.expire_due(core.clock.now()) == []


def query_all(port: int, message_ids: Sequence[str]) -> list[tuple[int, int, str, int]]:
    """Bind as a transceiver (smpplib sends query_sm on no other bind) and query each message:
    (command_status, message_state, final_date, error_code) of each query_sm_resp (0 for a
    field an error answer leaves out). A receipt offered meanwhile is left unanswered: it stays
    pending."""
    client = connect(port)
    try:
        client.bind_transceiver(system_id="demo", password="demo")
        answers = []
        for message_id in message_ids:
            client.query_message(
                message_id=message_id, source_addr_ton=5, source_addr_npi=0, source_addr="EdgeGW"
            )
            answer = client.read_pdu()
            while answer.command != "query_sm_resp":
                answer = client.read_pdu()
            final_date = answer.final_date.decode() if answer.final_date else ""
            answers.append(
                (
                    int(answer.status),
                    int(answer.message_state or 0),
                    final_date,
                    int(answer.error_code or 0),
                )
            )
        client.unbind()
        return answers
    finally:
        client.disconnect()


async def test_query_sm_answers_what_the_store_holds(core: Core, door: int) -> None:
    """SMPP 3.4 4.8.2: message_state follows the stored state, final_date is when it became
    final (a NULL octet before), and error_code is the network's own code for why
    delivery failed, the TP-ST of the status report that failed it, else 0: a DR code (351,
    361, 371, ...) is the gateway's, and does not fit the field's one octet."""
    names = [
        "queued",
        "sending",
        "sent",
        "delivered",
        "failed",
        "refused",
        "expired",
        "cancelled",
        "closed without a report",
    ]
    short = {**SUBMIT, "validity_period": "000000000500000R"}  # 5 minutes
    submits = [short if name == "closed without a report" else SUBMIT for name in names]
    results = await trio.to_thread.run_sync(submit_all, door, submits)
    assert [status for status, _ in results] == [0] * len(names)
    ids = dict(zip(names, (message_id for _, message_id in results), strict=True))
    store, at = core.store, NOW + 60
    await store.claim([(ids[name], "m1") for name in names[1:6] + names[8:]], at)
    for name in ("sending", "sent", "failed", "closed without a report"):
        await store.mark_part_sending(ids[name], 1, "m1", at)
    for name in ("sent", "failed", "closed without a report"):
        await store.mark_part_sent(ids[name], 1, 7, last=True, now=at)
    await finish(core, ids["delivered"], MessageState.DELIVERED, DrStatus.DELIVERED)
    # TP-ST 0x49: SM does not exist.
    await report(store, ids["failed"], 0x49, DrStatus.UNKNOWN_RECIPIENT, at + 1)
    await finish(core, ids["refused"], MessageState.FAILED, DrStatus.SMSC_FAILED)
    await store.expire(ids["expired"], "validity period expired", now=at + 2)
    await store.write(
        functools.partial(
            transactions.cancel,
            fx=store.effects,
            message_id=ids["cancelled"],
            detail="cancelled",
            now=at + 3,
        )
    )
    await store.write(
        functools.partial(
            transactions.close_overdue, fx=store.effects, before=NOW + 3600, now=at + 4
        )
    )
    answers = await trio.to_thread.run_sync(query_all, door, list(ids.values()))
    assert dict(zip(names, answers, strict=True)) == {
        "queued": (0, SmppState.ENROUTE, "", 0),
        "sending": (0, SmppState.ENROUTE, "", 0),
        "sent": (0, SmppState.ENROUTE, "", 0),
        "delivered": (0, SmppState.DELIVERED, "260921141420000+", 0),
        "failed": (0, SmppState.UNDELIVERABLE, "260921141421000+", 0x49),
        "refused": (0, SmppState.REJECTED, "260921141420000+", 0),
        "expired": (0, SmppState.EXPIRED, "260921141422000+", 0),
        "cancelled": (0, SmppState.DELETED, "260921141423000+", 0),
        "closed without a report": (0, SmppState.UNKNOWN, "260921141424000+", 0),
    }


async def submit_and_let_expire(
    door: int, mock_clock: trio.testing.MockClock, *, receipt: int = 0
) -> str:
    """A message of ten minutes' validity, submitted by smpplib (with `receipt` as its
    registered_delivery) a quarter of an hour ago: past its validity, and (no dispatcher runs
    here) not yet swept."""
    ten_minutes = {**SUBMIT, "validity_period": "000000001000000R", "registered_delivery": receipt}
    [(status, message_id)] = await trio.to_thread.run_sync(submit_all, door, [ten_minutes])
    assert status == 0
    mock_clock.jump(15 * 60)
    return message_id


# State, DR code and error of a message the expiry sweep expired.
SWEPT: Final = ("expired", DrStatus.VALIDITY_EXPIRED, "validity period expired before sending")


async def refusal_of(door: int, pdu: CancelSm | ReplaceSm) -> int:
    """The command_status that `pdu`, sent on a transmitter bind of its own, is answered."""
    stream = await trio.open_tcp_stream("127.0.0.1", door)
    async with stream:
        decoder = SmppDecoder()
        bound = await raw_bind(stream, decoder, cls=BindTransmitter)
        assert bound == CommandStatus.ESME_ROK
        await stream.send_all(encode(pdu))
        answer = await receive_pdu(stream, decoder)
    assert isinstance(answer, CancelSmResp | ReplaceSmResp)
    return answer.command_status


# A cancel_sm or replace_sm of a message past its validity, and the refusal it gets.
REFUSED_PAST_VALIDITY: Final = pytest.mark.parametrize(
    ("pdu_for", "refusal"),
    [
        (
            lambda message_id: CancelSm(sequence_number=2, message_id=message_id),
            CommandStatus.ESME_RCANCELFAIL,
        ),
        (
            # Every queued message of the pair (no message_id), this one past its validity.
            lambda _: CancelSm(
                sequence_number=2,
                source_addr_ton=5,
                source_addr="EdgeGW",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="4741000001",
            ),
            CommandStatus.ESME_RCANCELFAIL,
        ),
        (
            lambda message_id: ReplaceSm(
                sequence_number=2, message_id=message_id, short_message=b"New text"
            ),
            CommandStatus.ESME_RREPLACEFAIL,
        ),
    ],
    ids=["cancel_sm", "cancel_sm of the pair", "replace_sm"],
)


@REFUSED_PAST_VALIDITY
async def test_a_cancel_or_replace_sm_of_a_message_past_its_validity_fails_and_it_ends_expired(
    core: Core,
    door: int,
    mock_clock: trio.testing.MockClock,
    pdu_for: Callable[[str], CancelSm | ReplaceSm],
    refusal: CommandStatus,
) -> None:
    """SMPP 3.4 4.9.1 cancels (named by its id, or among the queued messages of its source
    and destination) and 4.10 replaces a message still pending delivery: one whose
    validity ran out, though the expiry sweep has not come round to it, is neither cancelled
    (ESME_RCANCELFAIL) nor replaced (ESME_RREPLACEFAIL), and ends expired with DR 361 at once,
    as the sweep would have left it, rather than cancelled (371) or left for the sweep. Its
    receipt is queued once: the sweep, coming round later, adds none."""
    message_id = await submit_and_let_expire(door, mock_clock, receipt=1)
    assert await refusal_of(door, pdu_for(message_id)) == refusal
    assert await row(core.store, message_id, "state, dr_status, error, done_at, content") == (
        *SWEPT,
        NOW + 900,
        "Hello",
    )
    assert await core.store.expire_due(core.clock.now()) == []
    assert await receipts(core.store, message_id) == 1


async def receipts(store: Store, message_id: str) -> int:
    """How many receipts of the message the SMPP outbox holds."""

    def count(conn: sqlite3.Connection) -> int:
        return int(
            conn.execute(
                "SELECT count(*) FROM smpp_outbox WHERE message_id = ? AND kind = 'receipt'",
                (message_id,),
            ).fetchone()[0]
        )

    return await store.read(count)


async def test_query_sm_of_a_message_past_its_validity_answers_expired(
    core: Core, door: int, mock_clock: trio.testing.MockClock
) -> None:
    """A message whose validity ran out, though the expiry sweep has not come round to it, is
    no longer ENROUTE: query_sm answers EXPIRED (SMPP 3.4 5.2.28) with the moment it expired
    as final_date, and the message is expired as the sweep would have left it (DR 361)."""
    message_id = await submit_and_let_expire(door, mock_clock)
    answers = await trio.to_thread.run_sync(query_all, door, [message_id])
    assert answers == [(0, SmppState.EXPIRED, "260921142820000+", 0)]
    assert await row(core.store, message_id, "state, dr_status, error, done_at") == (
        *SWEPT,
        NOW + 900,
    )


async def test_query_sm_of_another_services_message_past_its_validity_leaves_it_alone(
    core: Core, door: int, mock_clock: trio.testing.MockClock
) -> None:
    """A query_sm of a message of another service, past its validity and not yet swept, is
    ESME_RINVMSGID and changes nothing: it expired the message, and its service's DR went,
    at the word of an ESME of a service that cannot see it."""
    start = dt.datetime.fromtimestamp(core.clock.now(), dt.UTC)
    message_id = await core.backend.submit(
        OTHER, submission(validity=start + dt.timedelta(minutes=10))
    )
    mock_clock.jump(15 * 60)
    answers = await trio.to_thread.run_sync(query_all, door, [message_id])
    assert answers == [(CommandStatus.ESME_RINVMSGID, 0, "", 0)]
    assert await row(core.store, message_id, "state, dr_status, done_at") == ("queued", None, None)


async def test_query_sm_while_the_disk_is_full_answers_what_the_store_holds(
    core: Core, door: int, mock_clock: trio.testing.MockClock
) -> None:
    """While the store's disk is full, which holds the expiry sweep too, a query_sm of a
    message past its validity cannot expire it: it answers what the store holds (ENROUTE),
    not ESME_RSYSERR with an ERROR in the log for each query."""
    message_id = await submit_and_let_expire(door, mock_clock)
    await fill_disk(core.store, message_id)
    answers = await trio.to_thread.run_sync(query_all, door, [message_id])
    assert answers == [(0, SmppState.ENROUTE, "", 0)]
    assert core.store.unwritable is not None


@REFUSED_PAST_VALIDITY
async def test_a_cancel_or_replace_sm_while_the_disk_is_full_refuses_a_message_past_validity(
    core: Core,
    door: int,
    mock_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    pdu_for: Callable[[str], CancelSm | ReplaceSm],
    refusal: CommandStatus,
) -> None:
    """While the store's disk is full, which holds the expiry sweep too, a cancel_sm or
    replace_sm of a message past its validity cannot expire it, yet its answer needs no write:
    the message is no longer pending delivery (SMPP 3.4 4.9.1, 4.10), so ESME_RCANCELFAIL or
    ESME_RREPLACEFAIL as with room, not ESME_RSYSERR with an ERROR in the log. It stays as the
    store holds it, `queued`, and once there is room the sweep expires it, its receipt queued
    once."""
    message_id = await submit_and_let_expire(door, mock_clock, receipt=1)
    await fill_disk(core.store, message_id)
    caplog.clear()
    assert await refusal_of(door, pdu_for(message_id)) == refusal
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert core.store.unwritable is not None
    assert await row(core.store, message_id, "state, content") == ("queued", "Hello")
    await core.store.write(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
    assert await core.store.expire_due(core.clock.now()) == [message_id]
    assert await receipts(core.store, message_id) == 1


async def first_of_two_parts_out(core: Core, door: int, *, registered_delivery: int) -> str:
    """A message of two parts submitted through the door, its first part taken by the network
    (TP-MR 7) and its second being sent on modem m1; its id."""
    submit = {**SUBMIT, "short_message": b"x" * 200, "registered_delivery": registered_delivery}
    [(status, message_id)] = await trio.to_thread.run_sync(submit_all, door, [submit])
    assert status == 0
    store, at = core.store, NOW + 60
    await store.claim([(message_id, "m1")], at)
    await store.mark_part_sending(message_id, 1, "m1", at)
    await store.mark_part_sent(message_id, 1, 7, last=False, next_part=(message_id, 2, "m1"))
    return message_id


async def test_a_message_failed_after_a_part_went_out_is_undeliverable(
    core: Core, door: int
) -> None:
    """SMPP 3.4 5.2.28: REJECTD is for a message refused before any of it left; one whose
    first part the network took and then failed by status report, while its second part was
    still being sent, is UNDELIV, in query_sm_resp and in its receipt alike."""
    message_id = await first_of_two_parts_out(core, door, registered_delivery=1)
    store, at = core.store, NOW + 60
    await report(store, message_id, 0x49, DrStatus.UNKNOWN_RECIPIENT, at + 1)
    assert (await row(store, message_id, "state"))[0] == MessageState.FAILED
    [answer] = await trio.to_thread.run_sync(query_all, door, [message_id])
    assert answer == (0, SmppState.UNDELIVERABLE, "260921141421000+", 0x49)
    (item,) = await core.backend.pending(1000, 10, frozenset())
    assert isinstance(item.item, Receipt)
    assert item.item.message_state is SmppState.UNDELIVERABLE


async def test_a_report_that_comes_after_the_message_failed_gives_no_error_code(
    core: Core, door: int
) -> None:
    """The network refused the second part (the message failed, DR 363); the first part's
    failing status report comes later. error_code is of what failed the message: 0, as the
    receipt's err says 363, not the late report's TP-ST."""
    message_id = await first_of_two_parts_out(core, door, registered_delivery=0)
    store, at = core.store, NOW + 60
    await store.fail(
        message_id, error="refused", dr_status=DrStatus.SMSC_FAILED, part_index=2, now=at
    )
    await report(store, message_id, 0x49, DrStatus.UNKNOWN_RECIPIENT, at + 1)
    [answer] = await trio.to_thread.run_sync(query_all, door, [message_id])
    assert answer == (0, SmppState.UNDELIVERABLE, "260921141420000+", 0)


async def test_mo_is_queued_only_for_services_that_take_it_by_smpp(core: Core) -> None:
    def store_mo(conn: sqlite3.Connection) -> list[int]:
        register_mo_services(conn, [1000])
        return [
            enqueue_smpp_mo(
                conn,
                message_id=f"mo-{service_id}",
                service_id=service_id,
                sno="sim0",
                originator="+4741000000",
                content="hello",
                received_at=NOW,
            )
            for service_id in (1000, 2000)
        ]

    signal = core.backend.outbound_signal(1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(core.backend.run)
        assert await core.store.write(store_mo) == [1, 0]
        core.backend.wake()
        with trio.fail_after(5):
            await signal.wait()
        nursery.cancel_scope.cancel()
    (item,) = await core.backend.pending(1000, 10, frozenset())
    assert item.item == MobileOriginated(
        source=Address(1, 1, "4741000000"), destination=Address(5, 0, "sim0"), text="hello"
    )


def example() -> Config:
    return load_config(ROOT / "config.example.toml")


def test_the_example_has_the_demo_account_on_2775() -> None:
    smpp = example().smpp
    assert smpp is not None
    assert (smpp.host, smpp.port) == ("127.0.0.1", 2775)
    assert [(a.system_id, a.password, a.service) for a in smpp.accounts] == [("demo", "demo", 1000)]


def test_accounts_must_name_services_and_be_unique() -> None:
    config = example()
    accounts = [
        SmppAccount(system_id="demo", password="demo", service=1000),
        SmppAccount(system_id="demo", password="x", service=4242),
    ]
    broken = msgspec.structs.replace(config, smpp=SmppConfig(accounts=accounts))
    assert _check_meaning(broken) == [
        "smpp.accounts[1].system_id: 'demo' is used twice",
        "smpp.accounts[1].service: no service has id 4242",
    ]
    services = [msgspec.structs.replace(s, mo_smpp=True) for s in config.services]
    no_listener = msgspec.structs.replace(config, smpp=None, services=services)
    assert _check_meaning(no_listener) == ["services[0].mo_smpp: needs an [smpp] listener"]


async def test_cancel_sm_of_a_message_id_checks_the_addresses_it_gives(core: Core) -> None:
    """SMPP 3.4 4.9.1: with a message_id, the source_addr and destination_addr (either may be
    NULL) are for verification and must match the message's, or nothing is cancelled."""
    message_id = await core.backend.submit(ACCOUNT, submission(source=Address(5, 0, "Shop")))
    shop: dict[str, Any] = {"source_addr_ton": 5, "source_addr": "Shop"}
    named: list[dict[str, Any]] = [
        {"source_addr_ton": 5, "source_addr": "Other"},
        {**shop, "dest_addr_ton": 1, "destination_addr": "4741000002"},
        {**shop, "dest_addr_ton": 1, "destination_addr": "4741000001"},
    ]
    answers = [
        await core.backend.cancel(
            ACCOUNT, CancelSm(sequence_number=2, message_id=message_id, **fields)
        )
        for fields in named
    ]
    assert answers == [CommandStatus.ESME_RCANCELFAIL] * 2 + [CommandStatus.ESME_ROK]
    assert await row(core.store, message_id, "state") == ("cancelled",)


async def test_cancel_sm_without_a_message_id_cancels_the_pairs_queued_messages(
    core: Core, door: int
) -> None:
    """SMPP 3.4 4.9.1: with a NULL message_id, every message still queued from the source_addr
    to the destination_addr is cancelled (smpplib submits; it has no cancel_sm, so that goes
    over our own codec). A NULL source_addr names the messages sent without one, from the
    service's own originator. Without a destination, or with a service_type (the gateway
    keeps none to select by), nothing is cancelled."""
    shop = {**SUBMIT, "source_addr": "Shop"}
    submits = [
        shop,
        shop,
        {**shop, "destination_addr": "4741000002"},
        {**SUBMIT, "source_addr": "Other"},
        {**SUBMIT, "source_addr_ton": 0, "source_addr": ""},
    ]
    results = await trio.to_thread.run_sync(submit_all, door, submits)
    assert [status for status, _ in results] == [0] * len(submits)
    ids = [message_id for _, message_id in results]
    stream = await trio.open_tcp_stream("127.0.0.1", door)
    async with stream:
        decoder = SmppDecoder()
        assert await raw_bind(stream, decoder) == CommandStatus.ESME_ROK

        async def cancel_pair(source: str, destination: str, **fields: Any) -> int:
            pdu = CancelSm(
                sequence_number=2,
                source_addr_ton=5 if source else 0,
                source_addr=source,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=destination,
                **fields,
            )
            await stream.send_all(encode(pdu))
            answer = await receive_pdu(stream, decoder)
            assert isinstance(answer, CancelSmResp)
            return answer.command_status

        statuses = [
            await cancel_pair("Shop", "4741000001"),
            await cancel_pair("Shop", "4741000001"),  # none left
            await cancel_pair("Shop", "4741000002", service_type="CMT"),
            await cancel_pair("Shop", ""),
            await cancel_pair("", "4741000001"),
        ]
    assert statuses == [
        CommandStatus.ESME_ROK,
        CommandStatus.ESME_RCANCELFAIL,
        CommandStatus.ESME_RCANCELFAIL,
        CommandStatus.ESME_RCANCELFAIL,
        CommandStatus.ESME_ROK,
    ]
    states = [(await row(core.store, message_id, "state"))[0] for message_id in ids]
    assert states == ["cancelled", "cancelled", "queued", "queued", "cancelled"]


async def test_cancel_sm_right_behind_submit_sms_cancels_their_messages(
    core: Core, door: int
) -> None:
    """An ESME that sends submit_sms and, without waiting for their responses, a cancel_sm of
    their source and destination (SMPP 3.4 2.6 lets it) gets those messages cancelled: the
    cancel acts once the submits read before it are in the store."""
    pair: dict[str, Any] = {**SUBMIT, "source_addr": "Shop"}
    submits = [SubmitSm(sequence_number=n, **pair) for n in range(2, 252)]
    pair.pop("short_message")
    cancel = CancelSm(sequence_number=300, **pair)
    stream = await trio.open_tcp_stream("127.0.0.1", door)
    async with stream:
        decoder = SmppDecoder()
        assert await raw_bind(stream, decoder) == CommandStatus.ESME_ROK
        await stream.send_all(b"".join(map(encode, [*submits, cancel])))
        answers = [await receive_pdu(stream, decoder) for _ in range(len(submits) + 1)]
    (cancelled,) = [answer for answer in answers if isinstance(answer, CancelSmResp)]
    assert cancelled.command_status == CommandStatus.ESME_ROK
    ids = [answer.message_id for answer in answers if isinstance(answer, SubmitSmResp)]
    assert len(ids) == len(submits)
    states = {(await row(core.store, message_id, "state"))[0] for message_id in ids}
    assert states == {"cancelled"}


async def test_replace_sm_knows_its_source_as_the_message_was_stored(core: Core) -> None:
    """A replace_sm gives the source_addr of its submit_sm for verification (SMPP 3.4 4.10.1).
    The same address, written as the ESME wrote it (here with its 00), names the message as
    it was stored ("+47..."), as a cancel_sm's does; another source still does not."""
    source = Address(0, 0, "004790000000")
    message_id = await core.backend.submit(ACCOUNT, submission(source=source))
    assert await row(core.store, message_id, "originator") == ("+4790000000",)
    replaced = ReplaceSm(
        sequence_number=2, message_id=message_id, source_addr=source.address, short_message=b"New"
    )
    other = msgspec.structs.replace(replaced, source_addr="004790000001")
    assert await core.backend.replace(ACCOUNT, other) == CommandStatus.ESME_RINVMSGID
    assert await core.backend.replace(ACCOUNT, replaced) == CommandStatus.ESME_ROK
    assert await row(core.store, message_id, "content") == ("New",)
