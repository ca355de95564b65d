"""The SMPP 3.4 PDU codec: golden vectors both ways (whole, byte by byte, with trailing bytes),
every error kind with its command_status, and hypothesis round trips and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegw.smpp import pdu as pdus
from edgegw.smpp.constants import CommandId, CommandStatus, Tag
from edgegw.smpp.errors import BrokenFrame, EncodeError, InvalidField, InvalidPdu, SmppError
from edgegw.smpp.pdu import (
    NEED_DATA,
    PDU_CLASSES,
    EnquireLink,
    Kind,
    MultiDestination,
    Pdu,
    SmppDecoder,
    SubmitSm,
    UnsuccessfulDelivery,
    decode_by_table,
    decode_pdu,
    encode,
    response_class,
)
from edgegw.smpp.tlv import TLV_LENGTHS

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "smpp"


def _field_value(name: str, value: Any) -> Any:
    if name == "short_message":
        return bytes.fromhex(value)
    if name == "tlvs":
        return tuple((tag, bytes.fromhex(data)) for tag, data in value)
    if name == "dest_addresses":
        return tuple(MultiDestination(*entry) for entry in value)
    if name == "unsuccess_smes":
        return tuple(UnsuccessfulDelivery(*entry) for entry in value)
    return value


def load_vectors() -> list[Any]:
    cases = []
    for path in sorted(VECTORS.glob("*.json")):
        for vector in json.loads(path.read_text(encoding="utf-8")):
            cls = getattr(pdus, vector["type"])
            fields = {name: _field_value(name, v) for name, v in vector["fields"].items()}
            expected = cls(**fields)
            cases.append(
                pytest.param(
                    bytes.fromhex(vector["hex"]), expected, id=f"{path.stem}:{vector['name']}"
                )
            )
    return cases


def decode_all(decoder: SmppDecoder) -> list[Pdu]:
    found = []
    while (pdu := decoder.next_pdu()) is not NEED_DATA:
        assert isinstance(pdu, Pdu)
        found.append(pdu)
    return found


@pytest.mark.parametrize(("wire", "expected"), load_vectors())
def test_vector_decodes_whole(wire: bytes, expected: Pdu) -> None:
    decoder = SmppDecoder()
    decoder.receive_data(wire)
    assert decode_all(decoder) == [expected]
    assert decoder.buffered == 0


@pytest.mark.parametrize(("wire", "expected"), load_vectors())
def test_vector_encodes_to_the_same_bytes(wire: bytes, expected: Pdu) -> None:
    assert encode(expected) == wire


@pytest.mark.parametrize(("wire", "expected"), load_vectors())
def test_vector_decodes_byte_by_byte(wire: bytes, expected: Pdu) -> None:
    decoder = SmppDecoder()
    found: list[Pdu] = []
    for index in range(len(wire)):
        decoder.receive_data(wire[index : index + 1])
        found.extend(decode_all(decoder))
        if index < len(wire) - 1:
            assert found == []
    assert found == [expected]


@pytest.mark.parametrize(("wire", "expected"), load_vectors())
def test_vector_with_trailing_bytes(wire: bytes, expected: Pdu) -> None:
    decoder = SmppDecoder()
    trailing = encode(EnquireLink(sequence_number=99))
    decoder.receive_data(wire + trailing[:7])
    assert decode_all(decoder) == [expected]
    assert decoder.buffered == 7
    decoder.receive_data(trailing[7:])
    assert decode_all(decoder) == [EnquireLink(sequence_number=99)]


# ---------------------------------------------------------------------------------------------
# Errors


def header(length: int, command_id: int, status: int = 0, seq: int = 1) -> bytes:
    return b"".join(n.to_bytes(4, "big") for n in (length, command_id, status, seq))


def test_command_length_below_a_header_breaks_the_stream() -> None:
    decoder = SmppDecoder()
    decoder.receive_data(header(8, CommandId.ENQUIRE_LINK, seq=4))
    with pytest.raises(BrokenFrame) as caught:
        decoder.next_pdu()
    assert caught.value.command_status == CommandStatus.ESME_RINVCMDLEN
    decoder.receive_data(encode(EnquireLink(sequence_number=5)))
    with pytest.raises(BrokenFrame):
        decoder.next_pdu()  # a broken stream stays broken


def test_command_length_past_the_cap_breaks_before_the_body_arrives() -> None:
    decoder = SmppDecoder(max_pdu_bytes=1024)
    decoder.receive_data(header(1025, CommandId.SUBMIT_SM, seq=9))
    with pytest.raises(BrokenFrame) as caught:
        decoder.next_pdu()
    assert (caught.value.sequence_number, caught.value.command_id) == (9, CommandId.SUBMIT_SM)


def test_a_stream_ending_inside_a_pdu_is_broken() -> None:
    decoder = SmppDecoder()
    decoder.receive_data(encode(EnquireLink(sequence_number=1))[:10])
    assert decoder.next_pdu() is NEED_DATA
    decoder.receive_data(b"")
    with pytest.raises(BrokenFrame):
        decoder.next_pdu()


def test_a_clean_end_of_stream_is_no_error() -> None:
    decoder = SmppDecoder()
    decoder.receive_data(encode(EnquireLink(sequence_number=1)))
    decoder.receive_data(b"")
    assert decode_all(decoder) == [EnquireLink(sequence_number=1)]


def test_unknown_command_id_is_nacked_and_the_stream_goes_on() -> None:
    decoder = SmppDecoder()
    decoder.receive_data(header(20, 0x77, seq=3) + b"abcd" + encode(EnquireLink(sequence_number=4)))
    with pytest.raises(InvalidPdu) as caught:
        decoder.next_pdu()
    assert caught.value.command_status == CommandStatus.ESME_RINVCMDID
    assert decode_all(decoder) == [EnquireLink(sequence_number=4)]


@pytest.mark.parametrize(
    ("command_id", "body", "error", "status"),
    [
        # Bytes after the last field of a PDU without TLVs.
        (CommandId.ENQUIRE_LINK, b"\x00", InvalidPdu, CommandStatus.ESME_RINVCMDLEN),
        # The body ends inside a field.
        (CommandId.QUERY_SM, b"M1\x00\x01", InvalidPdu, CommandStatus.ESME_RINVCMDLEN),
        (CommandId.BIND_TRANSMITTER, b"demo", InvalidPdu, CommandStatus.ESME_RINVCMDLEN),
        # A C-octet string longer than its field allows.
        (CommandId.BIND_TRANSMITTER, b"x" * 16 + b"\x00" * 40, InvalidField, 0x0F),
        (CommandId.BIND_TRANSMITTER, b"demo\x00" + b"p" * 9 + b"\x00" * 40, InvalidField, 0x0E),
        (
            CommandId.SUBMIT_SM,
            b"\x00\x01\x01" + b"1" * 21 + b"\x00" * 40,
            InvalidField,
            CommandStatus.ESME_RINVSRCADR,
        ),
        # sm_length past the body, or past 254.
        (
            CommandId.SUBMIT_SM,
            b"\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 9 + b"\x05ab",
            InvalidField,
            CommandStatus.ESME_RINVMSGLEN,
        ),
        (
            CommandId.SUBMIT_SM,
            b"\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 9 + b"\xff" + b"a" * 255,
            InvalidField,
            CommandStatus.ESME_RINVMSGLEN,
        ),
        # A TLV cut short, or of a length its tag does not allow.
        (
            CommandId.SUBMIT_SM,
            b"\x00" * 17 + b"\x02\x0c\x00",
            InvalidField,
            CommandStatus.ESME_RINVOPTPARSTREAM,
        ),
        (
            CommandId.SUBMIT_SM,
            b"\x00" * 17 + b"\x02\x0c\x00\x09abc",
            InvalidField,
            CommandStatus.ESME_RINVOPTPARSTREAM,
        ),
        (
            CommandId.SUBMIT_SM,
            b"\x00" * 17 + b"\x02\x0c\x00\x01\x07",
            InvalidField,
            CommandStatus.ESME_RINVPARLEN,
        ),
        # submit_multi: a bad dest_flag, no destinations.
        (
            CommandId.SUBMIT_MULTI,
            b"\x00\x00\x00\x00\x01\x07" + b"\x00" * 20,
            InvalidField,
            CommandStatus.ESME_RINVDESTFLAG,
        ),
        (
            CommandId.SUBMIT_MULTI,
            b"\x00\x00\x00\x00\x00" + b"\x00" * 20,
            InvalidField,
            CommandStatus.ESME_RINVNUMDESTS,
        ),
    ],
)
def test_bad_bodies_carry_their_status(
    command_id: int, body: bytes, error: type[SmppError], status: int
) -> None:
    with pytest.raises(error) as caught:
        decode_pdu(command_id, 0, 42, body)
    assert (caught.value.command_status, caught.value.sequence_number) == (status, 42)
    assert caught.value.command_id == command_id


def test_unknown_tlvs_are_kept_and_ignored() -> None:
    body = b"\x00" * 17 + b"\x14\x00\x00\x03abc" + b"\x02\x04\x00\x02\x00\x07"
    pdu = decode_pdu(CommandId.SUBMIT_SM, 0, 1, body)
    assert isinstance(pdu, SubmitSm)
    assert pdu.tlvs == ((0x1400, b"abc"), (Tag.USER_MESSAGE_REFERENCE, b"\x00\x07"))


@pytest.mark.parametrize(
    "pdu",
    [
        SubmitSm(sequence_number=1, source_addr="x" * 21),
        SubmitSm(sequence_number=1, source_addr="Ω"),
        SubmitSm(sequence_number=1, short_message=b"x" * 255),
        SubmitSm(sequence_number=1, esm_class=256),
        SubmitSm(sequence_number=-1),
        SubmitSm(sequence_number=1, tlvs=((0x10000, b""),)),
    ],
)
def test_values_a_field_cannot_hold_are_refused_on_encode(pdu: Pdu) -> None:
    with pytest.raises(EncodeError):
        encode(pdu)


def test_every_request_has_its_response() -> None:
    assert response_class(CommandId.SUBMIT_SM) is pdus.SubmitSmResp
    assert response_class(CommandId.DATA_SM) is pdus.DataSmResp
    assert response_class(CommandId.ALERT_NOTIFICATION) is None
    assert response_class(CommandId.OUTBIND) is None
    assert response_class(CommandId.SUBMIT_SM_RESP) is None
    assert set(PDU_CLASSES) == set(CommandId)


# ---------------------------------------------------------------------------------------------
# Hypothesis


def _cstring(size: int) -> st.SearchStrategy[str]:
    alphabet = st.characters(min_codepoint=1, max_codepoint=255)
    return st.text(alphabet, max_size=size - 1)


_TLV = st.one_of(
    st.tuples(
        st.integers(0, 0xFFFF).filter(lambda tag: tag not in TLV_LENGTHS),
        st.binary(max_size=40),
    ),
    st.sampled_from(sorted(TLV_LENGTHS)).flatmap(
        lambda tag: st.tuples(
            st.just(tag),
            st.binary(min_size=TLV_LENGTHS[tag][0], max_size=min(TLV_LENGTHS[tag][1], 300)),
        )
    ),
)

_DESTINATION = st.one_of(
    st.builds(MultiDestination, st.just(1), st.integers(0, 255), st.integers(0, 255), _cstring(21)),
    st.builds(MultiDestination, st.just(2), st.just(0), st.just(0), _cstring(21)),
)
_UNSUCCESS = st.builds(
    UnsuccessfulDelivery,
    st.integers(0, 255),
    st.integers(0, 255),
    _cstring(21),
    st.integers(0, 0xFFFFFFFF),
)


def _strategy(kind: Kind, size: int) -> st.SearchStrategy[Any]:
    if kind is Kind.U8:
        return st.integers(0, 255)
    if kind is Kind.CSTRING:
        return _cstring(size)
    if kind is Kind.SHORT_MESSAGE:
        return st.binary(max_size=254)
    if kind is Kind.DESTINATIONS:
        return st.lists(_DESTINATION, min_size=1, max_size=5).map(tuple)
    return st.lists(_UNSUCCESS, max_size=5).map(tuple)


@st.composite
def any_pdu(draw: st.DrawFn) -> Pdu:
    cls = draw(st.sampled_from(sorted(PDU_CLASSES.values(), key=lambda c: c.command_id)))
    fields: dict[str, Any] = {
        name: draw(_strategy(kind, size)) for name, kind, size, _ in cls.fields
    }
    if cls.has_tlvs:
        fields["tlvs"] = tuple(draw(st.lists(_TLV, max_size=4)))
    is_response = bool(cls.command_id & 0x80000000) and cls is not pdus.GenericNack
    with_body = bool(cls.fields) or cls.has_tlvs
    status = 0 if is_response and with_body else draw(st.integers(0, 0xFFFFFFFF))
    sequence = draw(st.integers(0, 0xFFFFFFFF))
    return cls(sequence_number=sequence, command_status=status, **fields)


@given(any_pdu())
@settings(max_examples=600)
def test_every_pdu_round_trips(pdu: Pdu) -> None:
    decoder = SmppDecoder(max_pdu_bytes=1 << 20)
    decoder.receive_data(encode(pdu))
    assert decode_all(decoder) == [pdu]


@given(st.lists(any_pdu(), min_size=1, max_size=4), st.integers(1, 64))
def test_a_stream_of_pdus_in_any_chunks(found: list[Pdu], chunk: int) -> None:
    wire = b"".join(encode(pdu) for pdu in found)
    decoder = SmppDecoder(max_pdu_bytes=1 << 20)
    decoded: list[Pdu] = []
    for start in range(0, len(wire), chunk):
        decoder.receive_data(wire[start : start + chunk])
        decoded.extend(decode_all(decoder))
    assert decoded == found


def _feed(data: bytes) -> None:
    decoder = SmppDecoder(max_pdu_bytes=4096)
    decoder.receive_data(data)
    decoder.receive_data(b"")
    for _ in range(len(data) + 1):
        try:
            if decoder.next_pdu() is NEED_DATA:
                return
        except SmppError as exc:
            assert isinstance(exc.command_status, int)
            if isinstance(exc, BrokenFrame):
                return


@given(st.binary(max_size=400))
@settings(max_examples=1000)
def test_arbitrary_bytes_decode_or_raise_smpp_error(data: bytes) -> None:
    _feed(data)


@given(st.sampled_from(sorted(CommandId)), st.binary(max_size=300), st.integers(0, 3))
@settings(max_examples=1000)
def test_arbitrary_bodies_behind_real_headers(command_id: int, body: bytes, status: int) -> None:
    _feed(header(16 + len(body), command_id, status) + body)


def _outcome(decode: Any, *args: Any) -> Any:
    try:
        return decode(*args)
    except SmppError as exc:
        return (type(exc), exc.command_status, exc.sequence_number)


@given(
    st.sampled_from([pdus.SubmitSm, pdus.DeliverSm]),
    st.one_of(st.binary(max_size=120), any_pdu().map(lambda pdu: encode(pdu)[16:])),
)
@settings(max_examples=500)
def test_the_short_message_fast_path_agrees_with_the_table(cls: type[Pdu], body: bytes) -> None:
    fast = _outcome(decode_pdu, cls.command_id, 0, 7, body)
    assert fast == _outcome(decode_by_table, cls, 0, 7, body)
