"""SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT (TS 23.040 9.2.2): round trips and fuzz."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.gsm import (
    Alphabet,
    EncodedPart,
    GsmError,
    ParsingType,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    build_deliver,
    build_status_report,
    build_submit,
    concat_info,
    dcs_alphabet,
    decode_text,
    encode_message,
    join_sca,
    parse_deliver,
    parse_received,
    parse_status_report,
    parse_submit,
    relative_validity,
    split_sca,
    validity_period_minutes,
)

NUMBERS = st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True)
ALPHANUMERIC = st.from_regex(r"[A-Za-z][A-Za-z0-9 .,&%-]{0,10}", fullmatch=True)
ADDRESSES = st.one_of(NUMBERS, ALPHANUMERIC)
ZONES = st.integers(-79, 79).map(lambda q: dt.timezone(dt.timedelta(minutes=15 * q)))
TIMESTAMPS = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(dt.datetime(1969, 1, 1), dt.datetime(2068, 12, 31, 23, 59, 59)).map(
        lambda t: t.replace(microsecond=0)
    ),
    ZONES,
)
VALIDITY = st.one_of(st.none(), st.integers(0, 255).map(validity_period_minutes))


@st.composite
def parts(draw: st.DrawFn) -> EncodedPart:
    """Parts as the encoder makes them, plus raw 8-bit ones with a user header."""
    kind = draw(st.sampled_from(["text", "ucs2", "binary"]))
    if kind == "binary":
        udh = draw(st.sampled_from([b"", bytes.fromhex("0B0504158200000023AB0201")]))
        payload = draw(st.binary(max_size=140 - len(udh)))
        return EncodedPart(dcs=draw(st.sampled_from([0x04, 0xF5])), udh=udh, payload=payload)
    text = draw(st.text(alphabet="abc€{}Ж😀@ \n", max_size=300))
    dcs = 0x08 if kind == "ucs2" else None
    message = encode_message(text, parsing=ParsingType.AUTO_DETECT, dcs=dcs, max_parts=20)
    return draw(st.sampled_from(message.parts))


@given(
    st.builds(
        SmsSubmit,
        message_reference=st.integers(0, 255),
        destination=NUMBERS,
        pid=st.integers(0, 255),
        dcs=st.just(0),
        validity_minutes=VALIDITY,
        status_report=st.booleans(),
        reject_duplicates=st.booleans(),
        udh=st.just(b""),
        payload=st.just(b""),
    ),
    parts(),
)
def test_submit_round_trips(template: SmsSubmit, part: EncodedPart) -> None:
    submit = SmsSubmit(
        template.message_reference,
        template.destination,
        template.pid,
        part.dcs,
        template.validity_minutes,
        template.status_report,
        template.reject_duplicates,
        part.udh,
        part.payload,
    )
    tpdu = build_submit(
        submit.destination,
        submit.part,
        message_reference=submit.message_reference,
        status_report=submit.status_report,
        validity_minutes=submit.validity_minutes,
        pid=submit.pid,
        reject_duplicates=submit.reject_duplicates,
    )
    assert parse_submit(tpdu) == submit
    assert parse_submit(tpdu).part == part


@given(ADDRESSES, parts(), TIMESTAMPS, st.integers(0, 255), st.booleans(), st.booleans())
def test_deliver_round_trips(
    originator: str, part: EncodedPart, stamp: dt.datetime, pid: int, more: bool, sri: bool
) -> None:
    tpdu = build_deliver(
        originator,
        part,
        timestamp=stamp,
        pid=pid,
        more_messages=more,
        status_report_indication=sri,
    )
    deliver = parse_deliver(tpdu)
    expected = SmsDeliver(originator, pid, part.dcs, stamp, more, sri, part.udh, part.payload)
    assert deliver == expected
    assert deliver.timestamp.utcoffset() == stamp.utcoffset()
    assert parse_received(tpdu) == expected


@given(st.integers(0, 255), NUMBERS, TIMESTAMPS, TIMESTAMPS, st.integers(0, 255))
def test_status_report_round_trips(
    reference: int, recipient: str, sc: dt.datetime, discharge: dt.datetime, status: int
) -> None:
    tpdu = build_status_report(
        reference, recipient, sc_timestamp=sc, discharge_time=discharge, status=status
    )
    expected = SmsStatusReport(reference, recipient, sc, discharge, status)
    assert parse_status_report(tpdu) == expected
    assert parse_received(tpdu) == expected


@given(st.sampled_from(["", "+4790002100", "4790002100", "+123"]), st.binary(max_size=50))
def test_sca_round_trips(smsc: str, tpdu: bytes) -> None:
    assert split_sca(join_sca(smsc, tpdu)) == (smsc, tpdu)


def _parse_or_gsm_error(parse: Callable[[bytes], object], raw: bytes) -> None:
    """Any other exception type escapes and fails the test (h11's fuzz rule)."""
    try:
        result = parse(raw)
    except GsmError as error:
        assert str(error)
    else:
        assert isinstance(result, SmsSubmit | SmsDeliver | SmsStatusReport | tuple)


PARSERS: list[Callable[[bytes], object]] = [
    parse_submit,
    parse_deliver,
    parse_status_report,
    parse_received,
    split_sca,
]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
@given(raw=st.binary(max_size=180))
def test_arbitrary_bytes_parse_or_raise_gsm_error(
    parse: Callable[[bytes], object], raw: bytes
) -> None:
    _parse_or_gsm_error(parse, raw)


@pytest.mark.parametrize("parse", PARSERS[:3], ids=lambda f: f.__name__)
@given(raw=st.binary(min_size=1, max_size=180), mti=st.integers(0, 2))
def test_bytes_with_the_right_type_parse_or_raise_gsm_error(
    parse: Callable[[bytes], object], raw: bytes, mti: int
) -> None:
    _parse_or_gsm_error(parse, bytes([raw[0] & 0xFC | mti]) + raw[1:])


# Relative validity (TS 23.040 9.2.3.12.1, spec 7.4)


@pytest.mark.parametrize(
    ("minutes", "vp"),
    [
        (0, 0),
        (5, 0),
        (6, 1),
        (720, 143),
        (721, 144),
        (750, 144),
        (1440, 167),
        (1441, 168),
        (2880, 168),
        (4 * 1440, 170),
        (30 * 1440, 196),
        (30 * 1440 + 1, 197),
        (63 * 7 * 1440, 255),
        (10**9, 255),
    ],
)
def test_validity_rounds_up_to_the_next_period(minutes: int, vp: int) -> None:
    assert relative_validity(minutes) == vp


@given(st.integers(0, 63 * 7 * 1440))
def test_validity_period_covers_what_was_asked(minutes: int) -> None:
    vp = relative_validity(minutes)
    assert validity_period_minutes(vp) >= minutes
    assert vp == 0 or validity_period_minutes(vp - 1) < minutes


def test_spec_74_validity_table() -> None:
    assert validity_period_minutes(0) == 5
    assert validity_period_minutes(143) == 12 * 60
    assert validity_period_minutes(167) == 24 * 60
    assert validity_period_minutes(173) == 7 * 24 * 60
    with pytest.raises(GsmError):
        relative_validity(-1)


# Fields, flags and strictness


def _part(text: bytes = b"hi") -> EncodedPart:
    return EncodedPart(dcs=0, udh=b"", payload=text)


def test_submit_first_octet_and_address_types() -> None:
    tpdu = build_submit("+4741000000", _part(), message_reference=5, status_report=True)
    assert tpdu.hex().upper().startswith("21050A917414000000")
    assert build_submit("12345", _part())[2:7] == bytes.fromhex("05812143F5")
    rd = build_submit("1", _part(), reject_duplicates=True, validity_minutes=60)
    assert rd[0] == 0x01 | 0x04 | 0x10
    assert parse_submit(rd).reject_duplicates


def test_udhi_and_udl_count_header_septets_with_fill_bits() -> None:
    part = encode_message("x" * 161).parts[1]
    tpdu = build_submit("+4741000000", part)
    assert tpdu[0] & 0x40
    udl_index = 2 + 2 + 5 + 2
    assert tpdu[udl_index] == 7 + 8
    assert len(tpdu) == udl_index + 1 + (15 * 7 + 7) // 8
    assert concat_info(parse_submit(tpdu).udh) == (0, 2, 2)


def test_build_rejects_what_does_not_fit() -> None:
    with pytest.raises(GsmError):
        build_submit("+47", EncodedPart(dcs=0, udh=b"", payload=b"a" * 161))
    with pytest.raises(GsmError):
        build_submit("+47", EncodedPart(dcs=4, udh=b"", payload=b"a" * 141))
    with pytest.raises(GsmError):
        build_submit("+47", EncodedPart(dcs=0, udh=b"", payload=b"\x80"))
    with pytest.raises(GsmError):
        build_submit("+47", _part(), message_reference=256)
    with pytest.raises(GsmError):
        build_submit("+" + "1" * 21, _part())
    with pytest.raises(GsmError):
        build_submit("Ж", _part())
    with pytest.raises(GsmError):
        build_deliver("TwelveCharss", _part(), timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


def test_timestamps_need_a_zone_in_quarter_hours() -> None:
    with pytest.raises(GsmError):
        build_deliver("1", _part(), timestamp=dt.datetime(2024, 1, 1))
    odd = dt.timezone(dt.timedelta(minutes=10))
    with pytest.raises(GsmError):
        build_deliver("1", _part(), timestamp=dt.datetime(2024, 1, 1, tzinfo=odd))
    with pytest.raises(GsmError):
        build_deliver("1", _part(), timestamp=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def test_parsers_reject_wrong_message_types() -> None:
    submit = build_submit("+4741000000", _part())
    with pytest.raises(GsmError):
        parse_deliver(submit)
    with pytest.raises(GsmError):
        parse_status_report(submit)
    with pytest.raises(GsmError):
        parse_received(submit)


def test_a_reserved_message_type_reads_as_an_sms_deliver() -> None:
    """TS 23.040 9.2.3.1: a receiver processes a TPDU with the reserved TP-MTI 11 as if it were
    an SMS-DELIVER, from a modem's listing (+CMGL/+CMGR) as from a direct +CMT."""
    tpdu = build_deliver("+4799999999", _part(), timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    reserved = bytes((tpdu[0] | 0x03,)) + tpdu[1:]
    expected = parse_deliver(tpdu)
    assert parse_deliver(reserved) == expected
    assert parse_received(reserved) == expected


def test_parse_rejects_bad_semi_octets() -> None:
    # Odd digit count whose filler is not F, and an F inside the digits.
    with pytest.raises(GsmError):
        parse_submit(bytes.fromhex("0100" + "0381" + "2143" + "0000" + "00"))
    with pytest.raises(GsmError):
        parse_submit(bytes.fromhex("0100" + "0481" + "2F43" + "0000" + "00"))
    # A time stamp with month 13.
    stamp = bytes.fromhex("42315071210354") + b"\x80"
    with pytest.raises(GsmError):
        parse_deliver(bytes.fromhex("04" + "0181" + "F1" + "0000") + stamp + b"\x00")


def test_negative_zero_zone_reads_as_utc() -> None:
    # The "08" zone octet of some published examples: sign bit set, zero quarters.
    tpdu = bytes.fromhex("04" + "0181F1" + "0000" + "20806291731408" + "00")
    assert parse_deliver(tpdu).timestamp.utcoffset() == dt.timedelta(0)


def test_submit_with_enhanced_and_absolute_validity_parses() -> None:
    # TS 23.040 9.2.3.12.3 enhanced format: relative-seconds (02) 90 s -> 2 minutes.
    enhanced = bytes.fromhex("09000181F10000" + "025A0000000000" + "00")
    assert parse_submit(enhanced).validity_minutes == 2
    # Enhanced hh:mm:ss (03): 01:30:05 -> 91 minutes.
    hhmmss = bytes.fromhex("09000181F10000" + "03100350000000" + "00")
    assert parse_submit(hhmmss).validity_minutes == 91
    absolute = bytes.fromhex("19000181F10000" + "42507121035480" + "00")
    until = parse_submit(absolute).validity_until
    assert until == dt.datetime(2024, 5, 17, 12, 30, 45, tzinfo=dt.timezone(dt.timedelta(hours=2)))


STAMP = "42507121035480"
REPORT = "0607" + "0A917414000000" + STAMP + STAMP + "00"


def test_status_report_reads_whatever_follows_tp_st() -> None:
    tails = [
        "",  # no TP-PI
        "00",  # a TP-PI announcing nothing
        "07" + "00" + "00" + "02" + "E834",  # TP-PID, TP-DCS and 2 septets of TP-UD
        "04" + "02" + "E834",  # TP-UDL without TP-DCS: GSM 7-bit (TS 23.040 9.2.3.27)
        "81" + "00",  # an extension octet
        "0B" + "00" + "00" + "1234",  # a reserved bit: octets follow that are discarded
        "FF" * 5,  # a report read from the (U)SIM: FF up to its 29-octet record
        "FF",  # one junk octet
        "07" + "00" + "00" + "05" + "E834",  # TP-UD shorter than its TP-UDL
    ]
    whole = parse_status_report(bytes.fromhex(REPORT))
    assert (whole.message_reference, whole.recipient, whole.status) == (7, "+4741000000", 0)
    for tail in tails:
        assert parse_status_report(bytes.fromhex(REPORT + tail)) == whole, tail


@given(st.binary(max_size=160))
def test_any_octets_after_tp_st_give_the_same_report(tail: bytes) -> None:
    report = bytes.fromhex(REPORT)
    assert parse_status_report(report + tail) == parse_status_report(report)


def test_split_sca_rejects_malformed_prefixes() -> None:
    for pdu in ("", "0C91" + "00" * 11, "0391F1F1", "05"):
        with pytest.raises(GsmError):
            split_sca(bytes.fromhex(pdu))
    with pytest.raises(GsmError):
        join_sca("+", b"")
    # A type-of-address octet without digits is the same as no SMSC address.
    assert split_sca(bytes.fromhex("0191AB")) == ("", b"\xab")


# Inbound TP-DCS (TS 23.038 section 4)


def test_every_dcs_group_reads_with_its_alphabet() -> None:
    expected = {
        # General data coding and automatic deletion: bits 3..2, reserved 11 as GSM 7-bit;
        # compressed (bit 5) as 8-bit data.
        **{g | c: Alphabet.GSM7 for g in (0x00, 0x10, 0x40, 0x50) for c in (0x00, 0x0C)},
        **{g | 0x04: Alphabet.DATA8 for g in (0x00, 0x10, 0x40, 0x50)},
        **{g | 0x08: Alphabet.UCS2 for g in (0x00, 0x10, 0x40, 0x50)},
        **{g | c: Alphabet.DATA8 for g in (0x20, 0x30, 0x60, 0x70) for c in range(0, 16, 4)},
        # Reserved groups 1000..1011 are read as GSM 7-bit.
        **{g: Alphabet.GSM7 for g in (0x80, 0x90, 0xA0, 0xB0)},
        # Message waiting: discard and store (GSM 7-bit), store UCS-2.
        0xC0: Alphabet.GSM7,
        0xD0: Alphabet.GSM7,
        0xE0: Alphabet.UCS2,
        # Data coding / message class: bit 2.
        0xF0: Alphabet.GSM7,
        0xF4: Alphabet.DATA8,
    }
    for dcs, alphabet in expected.items():
        for low in (0x00, 0x01, 0x02, 0x03):
            assert dcs_alphabet(dcs | low) is alphabet, f"{dcs | low:02X}"


def test_deliver_with_a_reserved_dcs_reads_septets() -> None:
    # 'hellohello' (dreamfabric.com's septets), TP-UDL 10 septets in 9 octets, under a reserved
    # coding group and under the reserved alphabet 11; both must read as GSM 7-bit.
    for dcs in ("80", "0C", "B3"):
        tpdu = bytes.fromhex(
            "04" + "0B917238880900F1" + "00" + dcs + "99309251619580" + "0A" + "E8329BFD4697D9EC37"
        )
        deliver = parse_deliver(tpdu)
        assert decode_text(deliver.part) == "hellohello"
