"""Septet packing (TS 23.038 6.1.2.1) and the GSM 03.38 tables (spec Appendix A)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.gsm import (
    GsmError,
    NonGsmCharacter,
    decode_gsm,
    encode_gsm,
    gsm_length,
    is_gsm,
    pack_septets,
    unpack_septets,
)
from drivers.gsm.alphabet import BASIC_TABLE, EXTENSION_TABLE, GSM_CHARACTERS

GSM_TEXT = st.text(alphabet=sorted(GSM_CHARACTERS), max_size=200)


def reference_pack(septets: bytes, fill_bits: int) -> bytes:
    """Bit-by-bit packing straight from the TS 23.038 figure, to check the fast one against."""
    value = 0
    for index, septet in enumerate(septets):
        value |= septet << (fill_bits + 7 * index)
    return value.to_bytes((fill_bits + 7 * len(septets) + 7) // 8, "little")


@pytest.mark.parametrize("length", range(161))
@settings(max_examples=15)
@given(data=st.data())
def test_pack_unpack_round_trip_for_every_length(length: int, data: st.DataObject) -> None:
    septets = data.draw(st.binary(min_size=length, max_size=length).map(_to_septets))
    fill_bits = data.draw(st.integers(0, 6))
    packed = pack_septets(septets, fill_bits)
    assert packed == reference_pack(septets, fill_bits)
    assert len(packed) == (fill_bits + 7 * length + 7) // 8
    assert unpack_septets(packed, length, fill_bits) == septets


def _to_septets(raw: bytes) -> bytes:
    return bytes(b & 0x7F for b in raw)


def test_eight_septets_fill_seven_octets_exactly() -> None:
    assert pack_septets(bytes([0x7F] * 8)) == b"\xff" * 7
    assert unpack_septets(b"\xff" * 7, 8) == bytes([0x7F] * 8)


def test_fill_bits_shift_the_first_septet() -> None:
    assert pack_septets(b"\x01", 1) == b"\x02"
    assert pack_septets(b"\x7f", 6) == b"\xc0\x1f"
    assert unpack_septets(b"\xc0\x1f", 1, 6) == b"\x7f"


def test_pack_rejects_values_above_127_and_bad_fill() -> None:
    with pytest.raises(GsmError):
        pack_septets(b"\x80")
    with pytest.raises(GsmError):
        pack_septets(b"\x00", 7)
    with pytest.raises(GsmError):
        unpack_septets(b"\x00", 1, -1)


def test_unpack_rejects_short_data_and_negative_count() -> None:
    with pytest.raises(GsmError):
        unpack_septets(b"\x00" * 6, 8)
    with pytest.raises(GsmError):
        unpack_septets(b"\x00", 1, 2)
    with pytest.raises(GsmError):
        unpack_septets(b"", -1)


def test_basic_table_positions_from_appendix_a() -> None:
    assert encode_gsm("@£$¥èé") == bytes([0x00, 0x01, 0x02, 0x03, 0x04, 0x05])
    assert encode_gsm("\n\rΔ_ ¡¿§à") == bytes(
        [0x0A, 0x0D, 0x10, 0x11, 0x20, 0x40, 0x60, 0x5F, 0x7F]
    )
    assert encode_gsm("AZaz09") == b"AZaz09"
    assert len(BASIC_TABLE) == 128


def test_extension_characters_are_esc_pairs() -> None:
    assert encode_gsm("€") == b"\x1b\x65"
    assert encode_gsm("^{}\\[~]|\f") == bytes.fromhex("1B141B281B291B2F1B3C1B3D1B3E1B401B0A")
    assert gsm_length("€uro") == 5
    assert gsm_length("".join(EXTENSION_TABLE.values())) == 20


def test_non_gsm_characters_are_named_with_their_position() -> None:
    assert not is_gsm("back`tick")
    assert not is_gsm("\x1b")
    assert is_gsm("Ærøskøbing ÄÖÑÜ §")
    with pytest.raises(NonGsmCharacter) as caught:
        encode_gsm("abcЖ")
    assert (caught.value.char, caught.value.index) == ("Ж", 3)
    assert str(caught.value) == "character 'Ж' at position 3 is not in the GSM 03.38 alphabet"
    with pytest.raises(NonGsmCharacter):
        gsm_length("á")


@given(GSM_TEXT)
def test_gsm_text_round_trips_through_septets(text: str) -> None:
    septets = encode_gsm(text)
    assert len(septets) == gsm_length(text)
    assert decode_gsm(septets) == text
    assert decode_gsm(unpack_septets(pack_septets(septets), len(septets))) == text


def test_decoding_tolerates_what_ts_23038_tells_receivers_to_tolerate() -> None:
    # An ESC followed by a code missing from the extension table shows the basic character.
    assert decode_gsm(b"\x1bA") == "A"
    # ESC ESC is reserved for another extension table and shows as a space; so does a lone ESC.
    assert decode_gsm(b"a\x1b\x1bb") == "a b"
    assert decode_gsm(b"end\x1b") == "end "


@given(st.binary(max_size=200))
def test_decode_gsm_accepts_septets_or_raises_gsm_error(raw: bytes) -> None:
    try:
        text = decode_gsm(raw)
    except GsmError:
        assert not raw.isascii()
    else:
        assert raw.isascii()
        assert len(text) <= len(raw)
