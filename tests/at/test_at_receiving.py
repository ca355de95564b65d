"""The AT driver's pure decisions about receiving: which storages to sweep;
what follows a directly delivered message; when indications must be set again; what a read of
the storage found; which undecodable PDUs are reported. No trio."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at.commands import StoredPdu, parse_cnmi_setting
from drivers.at.framer import FinalKind, FinalResult, Urc
from drivers.at.receiving import (
    Direct,
    DirectStep,
    Indication,
    IndicationsOff,
    StoragesSeen,
    Stored,
    Sweep,
    UndecodableDirect,
    UndecodableSeen,
    direct_step,
    is_empty_index,
    is_received,
    needs_switch,
    still_holds,
)


@pytest.mark.parametrize(
    ("indicated", "in_use", "order"),
    [
        ([], "SM", ["SM"]),
        (["SR", "SM"], "SM", ["SM", "SR"]),
        (["SR", "ME", "SR"], "SM", ["SM", "ME", "SR"]),
        (["SM"], "ME", ["ME", "SM"]),  # the storage changed on a re-initialisation
        (["SM"], "", ["", "SM"]),
    ],
)
def test_the_storage_in_use_is_swept_first_then_the_others_indicated(
    indicated: list[str], in_use: str, order: list[str]
) -> None:
    seen = StoragesSeen()
    for storage in indicated:
        seen.indicated(storage)
    assert seen.sweep_order(in_use) == order


@pytest.mark.parametrize(
    ("readable", "order"),
    [
        (frozenset({"SM", "ME"}), ["SM"]),
        (frozenset({"SM", "ME", "MT", "SR", "BM"}), ["SM", "SR"]),
    ],
)
def test_the_report_storage_is_swept_where_the_modem_reads_from_it(
    readable: frozenset[str], order: list[str]
) -> None:
    seen = StoragesSeen()
    seen.readable(readable)
    assert seen.sweep_order("SM") == order


@pytest.mark.parametrize(
    ("buffered", "cnma", "step"),
    [
        (True, True, DirectStep.ACKNOWLEDGE),
        # No room while the modem waits for AT+CNMA: refused, the network delivers it again.
        (False, True, DirectStep.LEAVE_UNACKNOWLEDGED),
        (True, False, DirectStep.DONE),
        # The modem acknowledged it by itself: it cannot come again, so it waits for room.
        (False, False, DirectStep.WAIT_FOR_ROOM),
    ],
)
def test_a_direct_message_is_acknowledged_only_once_buffered(
    buffered: bool, cnma: bool, step: DirectStep
) -> None:
    assert direct_step(buffered=buffered, cnma=cnma) is step


STORED_FIRST = parse_cnmi_setting("2,1,0,2,0")
CMT = Urc(
    name="+CMT",
    line='+CMT: "",24',
    pdu="07911326040000F0040B911346610089F60000208062917314080CC8329BFD06",
)


@pytest.mark.parametrize(
    ("events", "due"),
    [
        ([], False),
        (["unacknowledged"], True),
        ([Direct(CMT)], True),  # a direct one dropped from a full backlog: not acknowledged
        ([Stored("SM", 3)], False),  # a stored one dropped: the next sweep finds it
        ([Sweep()], False),
        (["unacknowledged", "set-ok"], False),
        (["unacknowledged", "set-refused"], True),  # again at the next sweep
        (["unacknowledged", "set-ok", Direct(CMT)], True),
    ],
)
def test_indications_are_set_again_after_a_direct_message_went_unacknowledged(
    events: list[str | Indication], due: bool
) -> None:
    off = IndicationsOff()
    for event in events:
        if event == "unacknowledged":
            off.unacknowledged()
        elif event in ("set-ok", "set-refused"):
            off.set_again(ok=event == "set-ok")
        else:
            assert not isinstance(event, str)
            off.dropped(event)
    assert off.due(STORED_FIRST) == (STORED_FIRST if due else None)
    assert off.due(None) is None  # nothing to set again when no setting was accepted


def test_an_undecodable_pdu_is_reported_once_per_index_and_content() -> None:
    seen = UndecodableSeen()
    assert [
        seen.first_time("SM", 1, b"\x01"),
        seen.first_time("SM", 1, b"\x01"),  # the next sweep lists it again
        seen.first_time("SM", 1, b"\x02"),  # a new message at the reused index
        seen.first_time("ME", 1, b"\x01"),
        seen.first_time("SM", 2, b"\x01"),
        seen.first_time("SM", 1, b"\x02"),
    ] == [True, False, True, True, True, False]


@given(st.lists(st.tuples(st.sampled_from(["SM", "ME"]), st.integers(0, 3), st.binary(max_size=2))))
def test_an_undecodable_pdu_is_first_when_its_slot_last_held_another(
    markers: list[tuple[str, int, bytes]],
) -> None:
    seen = UndecodableSeen()
    last: dict[tuple[str, int], bytes] = {}
    for storage, index, pdu in markers:
        assert seen.first_time(storage, index, pdu) is (last.get((storage, index)) != pdu)
        last[storage, index] = pdu


def test_undecodable_pdus_coming_for_months_are_remembered_one_a_slot() -> None:
    # A bad cable garbles reads of the messages that come and go through a few slots, or
    # delete_undecodable frees the slot of each: every one is new, none is kept for ever.
    seen = UndecodableSeen()
    for n in range(100_000):
        assert seen.first_time("SM", n % 30, n.to_bytes(4, "big"))
    assert len(seen._seen) == 30  # the table itself


def cmt(pdu: str | None, length: int = 3) -> Urc:
    return Urc(name="+CMT", line=f"+CMT: ,{length}", pdu=pdu)


def test_an_undecodable_direct_pdu_is_refused_once_then_acknowledged() -> None:
    refused = UndecodableDirect()
    assert [
        refused.first_time(cmt("0791AB")),  # garbled on the line, say: refused
        refused.first_time(cmt("0791AC")),  # another garbling: refused too
        refused.first_time(cmt("0791AB", length=4)),  # another header
        refused.first_time(cmt(None)),  # the PDU line lost
        refused.first_time(cmt(None)),  # lost again: no octets say it is the same SMS
        refused.first_time(cmt("0791AB")),  # the same octets again: the network's own
        refused.first_time(cmt("0791AB")),  # acknowledged and forgotten, so new once more
    ] == [True, True, True, True, True, False, True]


def test_only_the_last_refused_direct_pdus_are_remembered() -> None:
    refused = UndecodableDirect()
    urcs = [cmt(f"{n:04X}") for n in range(UndecodableDirect.KEPT + 1)]
    assert all(refused.first_time(urc) for urc in urcs)
    assert refused.first_time(urcs[0])  # the oldest was let go
    assert not refused.first_time(urcs[-1])


@pytest.mark.parametrize(
    ("stat", "ours"), [(0, True), (1, True), (2, False), (3, False), (16, False)]
)
def test_only_received_messages_are_emitted(stat: int, ours: bool) -> None:
    assert is_received(stat) is ours


@pytest.mark.parametrize(
    ("final", "empty"),
    [
        (FinalResult(kind=FinalKind.CMS_ERROR, code=321, text="321"), True),
        (FinalResult(kind=FinalKind.CMS_ERROR, code=500, text="500"), True),
        (FinalResult(kind=FinalKind.CMS_ERROR, code=314, text="314"), False),  # not ready
        (FinalResult(kind=FinalKind.CME_ERROR, code=21, text="21"), False),
        (FinalResult(kind=FinalKind.ERROR, text="ERROR"), False),
    ],
)
def test_which_answers_to_a_read_mean_the_index_is_empty(final: FinalResult, empty: bool) -> None:
    assert is_empty_index(final) is empty


TPDU = bytes.fromhex("040B911346610089F60000208062917314080CC8329BFD06")


@pytest.mark.parametrize(
    ("stored", "holds"),
    [
        (StoredPdu(index=1, stat=1, pdu=b"\x00" + TPDU), True),
        # The same message with the SMSC's address in front.
        (StoredPdu(index=1, stat=1, pdu=bytes.fromhex("07911326040000F0") + TPDU), True),
        (StoredPdu(index=1, stat=0, pdu=b"\x00" + TPDU[:-1] + b"\x07"), False),  # a newer one
        (StoredPdu(index=1, stat=0, pdu=b"\x09\x91"), False),  # no longer decodes
        (None, False),  # empty
    ],
)
def test_a_delete_goes_ahead_only_while_the_index_holds_the_acknowledged_message(
    stored: StoredPdu | None, holds: bool
) -> None:
    assert still_holds(stored, TPDU) is holds


@pytest.mark.parametrize(
    ("storage", "in_use", "switch"),
    [
        ("SR", "SM", True),  # a status report kept apart from the messages
        ("SM", "SM", False),
        ("", "SM", False),  # a direct delivery has no storage
        ("SR", "", False),  # the modem never said which storage it uses
    ],
)
def test_mem1_is_pointed_at_another_storage_only_when_both_are_known(
    storage: str, in_use: str, switch: bool
) -> None:
    assert needs_switch(storage, in_use) is switch
