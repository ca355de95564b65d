"""From submit_sm and submit_multi to a Submission: time formats, data codings, UDH sources,
length limits and field refusals; and the deliver_sm for receipts and MO."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from drivers.gsm import encode_gsm
from edgegw.smpp.constants import CommandStatus, MessageState, Tag
from edgegw.smpp.errors import InvalidField
from edgegw.smpp.outbound import MobileOriginated, Outbound, Receipt, deliver_sms, receipt_text
from edgegw.smpp.pdu import MultiDestination, SubmitMulti, SubmitSm, UnsuccessfulDelivery
from edgegw.smpp.submission import (
    Address,
    ReceiptRequest,
    format_time,
    parse_time,
    submission_from_submit_multi,
    submission_from_submit_sm,
)
from edgegw.smpp.tlv import tlv_int, tlv_value

NOW = dt.datetime(2026, 1, 31, 12, 0, 0, tzinfo=dt.UTC)
_S = CommandStatus


def submit(**fields: Any) -> SubmitSm:
    values: dict[str, Any] = {
        "sequence_number": 3,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "4790000001",
        "short_message": b"hello",
    }
    values.update(fields)
    return SubmitSm(**values)


def refusal(pdu: SubmitSm) -> int:
    with pytest.raises(InvalidField) as caught:
        submission_from_submit_sm(pdu, NOW)
    assert caught.value.sequence_number == pdu.sequence_number
    return caught.value.command_status


# ---------------------------------------------------------------------------------------------
# Times, SMPP 3.4 section 7.1.1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("260131120000000+", dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)),
        # Local time four quarter hours (one hour) ahead of UTC.
        ("260131130000004+", dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)),
        ("260131100000508-", dt.datetime(2026, 1, 31, 12, 0, 0, 500_000, tzinfo=dt.UTC)),
        # Relative: 1 day 2 hours 3 minutes 4 seconds.
        ("000001020304000R", NOW + dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
        # One month after 31 January is the last day of February.
        ("000100000000000R", dt.datetime(2026, 2, 28, 12, 0, tzinfo=dt.UTC)),
        ("010000000000000R", dt.datetime(2027, 1, 31, 12, 0, tzinfo=dt.UTC)),
    ],
)
def test_times_become_absolute_utc(text: str, expected: dt.datetime | None) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    ["2601311200", "260131120000000*", "260131120000049+", "261331120000000+", "26013112000000x+"],
)
def test_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, NOW)


def test_format_time_is_absolute_utc() -> None:
    moment = dt.datetime(2026, 1, 2, 4, 4, 5, 700_000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_time(moment) == "260102030405700+"
    assert parse_time(format_time(moment), NOW) == moment


def test_validity_and_schedule_reach_the_submission() -> None:
    submission = submission_from_submit_sm(
        submit(schedule_delivery_time="000000010000000R", validity_period="260201120000000+"),
        NOW,
    )
    assert submission.schedule == NOW + dt.timedelta(hours=1)
    assert submission.validity == dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"schedule_delivery_time": "tomorrow"}, _S.ESME_RINVSCHED),
        ({"validity_period": "tomorrow"}, _S.ESME_RINVEXPIRY),
        ({"validity_period": "250101000000000+"}, _S.ESME_RINVEXPIRY),  # already past
        (
            {"schedule_delivery_time": "000002000000000R", "validity_period": "000001000000000R"},
            _S.ESME_RINVEXPIRY,
        ),
    ],
)
def test_bad_times_are_refused(fields: dict[str, str], status: int) -> None:
    assert refusal(submit(**fields)) == status


# ---------------------------------------------------------------------------------------------
# Text and data codings


@pytest.mark.parametrize(
    ("data_coding", "short_message", "text"),
    [
        (0, encode_gsm("Ünicode? {no} €5 @home"), "Ünicode? {no} €5 @home"),
        (0xF0, encode_gsm("flash"), "flash"),
        (1, b"plain ASCII", "plain ASCII"),
        (3, "Blåbærsyltetøy".encode("latin-1"), "Blåbærsyltetøy"),
        (8, "日本語 😀".encode("utf-16-be"), "日本語 😀"),
        (4, b"\x00\xff", None),
        (2, b"\x01", None),
    ],
)
def test_text_is_decoded_from_its_data_coding(
    data_coding: int, short_message: bytes, text: str | None
) -> None:
    submission = submission_from_submit_sm(
        submit(data_coding=data_coding, short_message=short_message), NOW
    )
    assert submission.text == text
    assert submission.payload == short_message
    assert submission.data_coding == data_coding


@pytest.mark.parametrize(
    ("data_coding", "short_message"),
    [(0, b"\x80"), (1, b"\xe6"), (8, b"\x00"), (5, b"x"), (0x10, b"x")],
)
def test_undecodable_text_is_refused(data_coding: int, short_message: bytes) -> None:
    assert refusal(submit(data_coding=data_coding, short_message=short_message)) == (
        _S.ESME_RSUBMITFAIL
    )


@pytest.mark.parametrize(
    ("data_coding", "payload", "fits"),
    [
        (0, encode_gsm("a" * 918), True),
        (0, encode_gsm("a" * 919), False),
        (3, "a".encode("latin-1") * 918, True),
        (3, "æ".encode("latin-1") * 919, False),  # æ is GSM: 919 septets
        (3, "ä".encode("latin-1") * 918, True),
        (3, "á".encode("latin-1") * 402, True),  # á is not GSM: UCS-2, 402 units
        (3, "á".encode("latin-1") * 403, False),
        (8, "ж".encode("utf-16-be") * 402, True),
        (8, "ж".encode("utf-16-be") * 403, False),
        (4, b"\x00" * 804, True),
        (4, b"\x00" * 805, False),
    ],
)
def test_six_parts_is_the_limit(data_coding: int, payload: bytes, fits: bool) -> None:
    pdu = submit(data_coding=data_coding, short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, payload),))
    if fits:
        assert submission_from_submit_sm(pdu, NOW).message_payload
    else:
        assert refusal(pdu) == _S.ESME_RINVMSGLEN


@pytest.mark.parametrize(
    ("udh", "data_coding", "payload", "fits"),
    [
        (bytes((5, 0, 3, 1, 2, 1)), 0, b"a" * 153, True),
        (bytes((5, 0, 3, 1, 2, 1)), 0, b"a" * 154, False),
        (bytes((6, 8, 4, 0, 1, 2, 1)), 0, b"a" * 152, True),
        (bytes((6, 8, 4, 0, 1, 2, 1)), 0, b"a" * 153, False),
        (bytes((5, 0, 3, 1, 2, 1)), 8, b"\x00a" * 67, True),
        (bytes((5, 0, 3, 1, 2, 1)), 8, b"\x00a" * 68, False),
        (bytes((5, 0, 3, 1, 2, 1)), 4, b"a" * 134, True),
        (bytes((5, 0, 3, 1, 2, 1)), 4, b"a" * 135, False),
    ],
)
def test_a_part_with_a_udh_must_fit_one_sms(
    udh: bytes, data_coding: int, payload: bytes, fits: bool
) -> None:
    pdu = submit(esm_class=0x40, data_coding=data_coding, short_message=udh + payload)
    if fits:
        submission = submission_from_submit_sm(pdu, NOW)
        assert (submission.udh, submission.payload) == (udh, payload)
    else:
        assert refusal(pdu) == _S.ESME_RINVMSGLEN


def test_udh_in_message_payload() -> None:
    udh = bytes((5, 0, 3, 9, 2, 2))
    pdu = submit(esm_class=0x40, short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, udh + b"end"),))
    submission = submission_from_submit_sm(pdu, NOW)
    assert (submission.udh, submission.text, submission.message_payload) == (udh, "end", True)


@pytest.mark.parametrize(
    ("tlvs", "status"),
    [
        (((Tag.SAR_MSG_REF_NUM, b"\x00\x01"),), _S.ESME_RMISSINGOPTPARAM),
        (
            (
                (Tag.SAR_MSG_REF_NUM, b"\x00\x01"),
                (Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
                (Tag.SAR_SEGMENT_SEQNUM, b"\x03"),
            ),
            _S.ESME_RINVOPTPARAMVAL,
        ),
        (((Tag.MESSAGE_PAYLOAD, b"x"),), _S.ESME_RINVMSGLEN),  # with a short_message too
    ],
)
def test_inconsistent_tlvs_are_refused(tlvs: tuple[tuple[int, bytes], ...], status: int) -> None:
    assert refusal(submit(tlvs=tlvs)) == status


WAP_PORTS = ((Tag.DESTINATION_PORT, b"\x0b\x84"), (Tag.SOURCE_PORT, b"\x23\xf0"))


@pytest.mark.parametrize(
    ("tlvs", "ports"),
    [
        (WAP_PORTS, (2948, 9200)),
        # TS 23.040 9.2.3.24.4 has both ports in the IE; an unnamed originator port is 0.
        (WAP_PORTS[:1], (2948, 0)),
        ((), None),
    ],
)
def test_ports_reach_the_submission(
    tlvs: tuple[tuple[int, bytes], ...], ports: tuple[int, int] | None
) -> None:
    assert submission_from_submit_sm(submit(tlvs=tlvs), NOW).ports == ports


def test_ports_join_a_udh_without_a_port_element_and_refuse_one_with() -> None:
    concat = bytes((5, 0, 3, 1, 2, 1))
    pdu = submit(esm_class=0x40, short_message=concat + b"hi", tlvs=WAP_PORTS)
    assert submission_from_submit_sm(pdu, NOW).ports == (2948, 9200)
    ported = bytes((6, 5, 4, 0x0B, 0x84, 0, 0))
    pdu = submit(esm_class=0x40, short_message=ported + b"hi", tlvs=WAP_PORTS)
    assert refusal(pdu) == _S.ESME_RINVOPTPARAMVAL
    assert refusal(submit(tlvs=WAP_PORTS[1:])) == _S.ESME_RMISSINGOPTPARAM


@pytest.mark.parametrize(
    ("data_coding", "payload", "udh", "fits"),
    [
        # Concatenation and port IEs with UDHL are 12 octets: 146 septets or 128 octets a part.
        (0, encode_gsm("a" * 876), b"", True),
        (0, encode_gsm("a" * 877), b"", False),
        (4, b"\x00" * 768, b"", True),
        (4, b"\x00" * 769, b"", False),
        (8, "ж".encode("utf-16-be") * 384, b"", True),
        (8, "ж".encode("utf-16-be") * 385, b"", False),
        (0, b"a" * 146, bytes((5, 0, 3, 1, 2, 1)), True),
        (0, b"a" * 147, bytes((5, 0, 3, 1, 2, 1)), False),
    ],
)
def test_ports_take_room_in_every_part(
    data_coding: int, payload: bytes, udh: bytes, fits: bool
) -> None:
    tlvs = ((Tag.MESSAGE_PAYLOAD, udh + payload), *WAP_PORTS)
    pdu = submit(
        data_coding=data_coding, esm_class=0x40 if udh else 0, short_message=b"", tlvs=tlvs
    )
    if fits:
        assert submission_from_submit_sm(pdu, NOW).ports == (2948, 9200)
    else:
        assert refusal(pdu) == _S.ESME_RINVMSGLEN


@pytest.mark.parametrize(
    ("data_coding", "subunit", "expected"),
    [
        (0, 0, None),  # unknown: the data_coding decides
        (0, 1, 0),  # MS display: class 0
        (8, 2, 1),  # mobile equipment: class 1
        (4, 3, 2),  # SIM: class 2
        (0, 4, 3),  # external unit: class 3
        (0xF6, 3, 2),  # the data_coding's own class 2 agrees
    ],
)
def test_dest_addr_subunit_is_the_message_class(
    data_coding: int, subunit: int, expected: int | None
) -> None:
    tlvs = ((Tag.DEST_ADDR_SUBUNIT, bytes((subunit,))),)
    pdu = submit(data_coding=data_coding, short_message=b"\x00h", tlvs=tlvs)
    assert submission_from_submit_sm(pdu, NOW).message_class == expected


@pytest.mark.parametrize(("data_coding", "subunit"), [(0, 5), (0, 0xFF), (0xF1, 3)])
def test_a_reserved_or_contradicting_subunit_is_refused(data_coding: int, subunit: int) -> None:
    pdu = submit(data_coding=data_coding, tlvs=((Tag.DEST_ADDR_SUBUNIT, bytes((subunit,))),))
    assert refusal(pdu) == _S.ESME_RINVOPTPARAMVAL


# ---------------------------------------------------------------------------------------------
# Addresses and flags


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"destination_addr": ""}, _S.ESME_RINVDSTADR),
        ({"destination_addr": "47-900"}, _S.ESME_RINVDSTADR),
        ({"destination_addr": "1" * 21}, _S.ESME_RINVDSTADR),
        ({"dest_addr_ton": 5, "destination_addr": "Shop"}, _S.ESME_RINVDSTTON),
        ({"dest_addr_ton": 7}, _S.ESME_RINVDSTTON),
        # National, network, subscriber and abbreviated numbers: no country code to send to.
        ({"dest_addr_ton": 2, "destination_addr": "41000000"}, _S.ESME_RINVDSTTON),
        ({"dest_addr_ton": 3, "destination_addr": "1999"}, _S.ESME_RINVDSTTON),
        ({"dest_addr_ton": 4, "destination_addr": "41000000"}, _S.ESME_RINVDSTTON),
        ({"dest_addr_ton": 6, "destination_addr": "112"}, _S.ESME_RINVDSTTON),
        ({"dest_addr_npi": 2}, _S.ESME_RINVDSTNPI),
        ({"source_addr_ton": 9}, _S.ESME_RINVSRCTON),
        ({"source_addr_npi": 5}, _S.ESME_RINVSRCNPI),
        ({"source_addr_ton": 5, "source_addr": "A name too long"}, _S.ESME_RINVSRCADR),
        ({"source_addr_ton": 1, "source_addr": "Shop"}, _S.ESME_RINVSRCADR),
        ({"esm_class": 0x08}, _S.ESME_RINVESMCLASS),
        # The transaction (forward) mode's answer would wait for the handset: not given.
        ({"esm_class": 0x02}, _S.ESME_RINVESMCLASS),
        ({"esm_class": 0x42, "short_message": b"\x05\x00\x03\x01\x02\x01ab"}, _S.ESME_RINVESMCLASS),
        ({"esm_class": 0x40, "short_message": b"\x07ab"}, _S.ESME_RINVESMCLASS),
        ({"priority_flag": 4}, _S.ESME_RINVPRTFLG),
        ({"registered_delivery": 3}, _S.ESME_RINVREGDLVFLG),
        ({"replace_if_present_flag": 2}, _S.ESME_RINVREPFLAG),
    ],
)
def test_bad_fields_get_their_status(fields: dict[str, Any], status: int) -> None:
    assert refusal(submit(**fields)) == status


def test_every_field_that_matters_reaches_the_submission() -> None:
    pdu = submit(
        service_type="CMT",
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="Shop",
        esm_class=0x03,  # store-and-forward mode, which some ESMEs always set
        protocol_id=0x41,
        priority_flag=2,
        registered_delivery=0x12,  # failure receipts, plus an intermediate-notification bit
        tlvs=((Tag.USER_MESSAGE_REFERENCE, b"\x01\x02"), (0x1400, b"vendor")),
    )
    submission = submission_from_submit_sm(pdu, NOW)
    assert submission.source == Address(5, 0, "Shop")
    assert submission.destinations == (Address(1, 1, "4790000001"),)
    assert submission.receipt is ReceiptRequest.FAILURE
    assert (submission.priority, submission.protocol_id) == (2, 0x41)
    assert (submission.service_type, submission.esm_class) == ("CMT", 0x03)
    assert submission.user_message_reference == 0x0102
    assert submission.text == "hello"


def test_an_empty_source_leaves_the_originator_to_the_service() -> None:
    assert submission_from_submit_sm(submit(), NOW).source == Address(0, 0, "")


def test_submit_multi_splits_valid_and_refused_destinations() -> None:
    pdu = SubmitMulti(
        sequence_number=4,
        dest_addresses=(
            MultiDestination(1, 1, 1, "4790000001"),
            MultiDestination(2, 0, 0, "friends"),
            MultiDestination(1, 1, 1, "oops"),
            MultiDestination(1, 1, 1, "+4790000002"),
        ),
        short_message=b"hi all",
    )
    submission, refused = submission_from_submit_multi(pdu, NOW)
    assert submission.destinations == (
        Address(1, 1, "4790000001"),
        Address(1, 1, "+4790000002"),
    )
    assert refused == (
        UnsuccessfulDelivery(0, 0, "friends", _S.ESME_RCNTSUBDL),
        UnsuccessfulDelivery(1, 1, "oops", _S.ESME_RINVDSTADR),
    )
    only_bad = SubmitMulti(sequence_number=5, dest_addresses=(MultiDestination(2, 0, 0, "x"),))
    with pytest.raises(InvalidField) as caught:
        submission_from_submit_multi(only_bad, NOW)
    assert caught.value.command_status == _S.ESME_RCNTSUBDL


@pytest.mark.parametrize(("esm_class", "accepted"), [(0x00, True), (0x01, True), (0x02, False)])
def test_submit_multi_takes_no_transaction_mode(esm_class: int, accepted: bool) -> None:
    """submit_multi, like submit_sm, is refused the transaction mode, where the SMSC would
    answer only once the message reached its handset, which the gateway cannot."""
    pdu = SubmitMulti(
        sequence_number=6,
        dest_addresses=(MultiDestination(1, 1, 1, "4790000001"),),
        esm_class=esm_class,
        short_message=b"hi all",
    )
    if accepted:
        assert submission_from_submit_multi(pdu, NOW)[0].esm_class == esm_class
        return
    with pytest.raises(InvalidField) as caught:
        submission_from_submit_multi(pdu, NOW)
    assert caught.value.command_status == _S.ESME_RINVESMCLASS


# ---------------------------------------------------------------------------------------------
# Receipts and MO


RECEIPT = Receipt(
    message_id="abc123",
    recipient=Address(1, 1, "4790000001"),
    originator=Address(5, 0, "Shop"),
    submit_date=dt.datetime(2026, 1, 31, 11, 58, 59, tzinfo=dt.UTC),
    done_date=dt.datetime(2026, 1, 31, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    message_state=MessageState.UNDELIVERABLE,
    error_code=1069,
    text="Your parcel № 42 is waiting at the post office",
)


def test_receipt_text_follows_appendix_b() -> None:
    assert receipt_text(RECEIPT) == (
        "id:abc123 sub:001 dlvrd:000 submit date:2601311158 done date:2601311200"
        " stat:UNDELIV err:069 text:Your parcel № 42 is "
    )


def test_a_receipt_deliver_sm() -> None:
    [pdu] = deliver_sms(Outbound(id=5, item=RECEIPT))
    assert pdu.esm_class == 0x04
    assert (pdu.source_addr, pdu.destination_addr) == ("4790000001", "Shop")
    assert pdu.data_coding == 0
    assert pdu.short_message.endswith(encode_gsm("text:Your parcel No 42 is "))
    # A C-octet string (SMPP 3.4 section 5.3.2.12): the id and its NUL.
    assert tlv_value(pdu.tlvs, Tag.RECEIPTED_MESSAGE_ID) == b"abc123\0"
    assert tlv_int(pdu.tlvs, Tag.MESSAGE_STATE) == MessageState.UNDELIVERABLE


@pytest.mark.parametrize(
    ("text", "parts", "data_coding"),
    [("short", 1, 0), ("x" * 161, 2, 0), ("ж" * 70, 1, 8), ("ж" * 71, 2, 8)],
)
def test_mo_deliver_sm_split_with_a_udh(text: str, parts: int, data_coding: int) -> None:
    mo = MobileOriginated(
        source=Address(1, 1, "4790000001"), destination=Address(0, 0, "26"), text=text
    )
    pdus = deliver_sms(Outbound(id=0x1FF, item=mo))
    assert len(pdus) == parts
    assert {p.data_coding for p in pdus} == {data_coding}
    if parts == 1:
        assert (pdus[0].esm_class, pdus[0].short_message[:0]) == (0, b"")
        return
    assert [p.esm_class for p in pdus] == [0x40] * parts
    assert [p.short_message[:6] for p in pdus] == [
        bytes((5, 0, 3, 0xFF, parts, seq)) for seq in range(1, parts + 1)
    ]


def test_binary_mo() -> None:
    mo = MobileOriginated(
        source=Address(1, 1, "4790000001"),
        destination=Address(0, 0, "26"),
        text=None,
        octets=b"\x01\x02\x03",
        data_coding=4,
    )
    [pdu] = deliver_sms(Outbound(id=1, item=mo))
    assert (pdu.data_coding, pdu.short_message) == (4, b"\x01\x02\x03")


# ---------------------------------------------------------------------------------------------
# Layering: the codec modules stay pure


PURE = ["constants", "errors", "tlv", "pdu", "session", "submission", "outbound", "config"]
FORBIDDEN = {"trio", "sqlite3", "serial", "socket", "logging", "asyncio", "time", "os", "ssl"}


@pytest.mark.parametrize("name", PURE)
def test_smpp_codec_modules_do_no_io(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "edgegw" / "smpp" / f"{name}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
