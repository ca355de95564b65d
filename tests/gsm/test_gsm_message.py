"""Encoding whole messages: parsing types (spec 7.2), splitting (7.1) and DCS/UDH/flash (7.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.gsm import (
    Alphabet,
    EncodedMessage,
    GsmError,
    MessageTooLong,
    NonGsmCharacter,
    ParsingType,
    concat_info,
    decode_concatenated,
    decode_text,
    encode_message,
    gsm_length,
    is_gsm,
    message_class,
    port_ie,
    port_info,
)
from drivers.gsm.alphabet import GSM_CHARACTERS, encode_gsm

GSM_TEXT = st.text(alphabet=sorted(GSM_CHARACTERS), max_size=918 // 2)
# Any text without lone surrogates: Cyrillic, CJK, emoji (astral, two UTF-16 units) and GSM.
ANY_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from("aé€Жжñ{}😀🇳🇴👍𝄞"), st.characters(codec="utf-8")),
    max_size=200,
)


def joined(message: EncodedMessage) -> str:
    return "".join(decode_text(part) for part in message.parts)


def check_parts(message: EncodedMessage) -> None:
    """Every part within its limit, numbered 1..n with one reference, UDH only when split."""
    parts = message.parts
    if len(parts) == 1:
        assert parts[0].udh == b""
        limit = {Alphabet.GSM7: 160, Alphabet.UCS2: 140, Alphabet.DATA8: 140}
    else:
        infos = [concat_info(part.udh) for part in parts]
        assert infos == [(infos[0][0], len(parts), seq) for seq in range(1, len(parts) + 1)]  # type: ignore[index]
        limit = {Alphabet.GSM7: 153, Alphabet.UCS2: 134, Alphabet.DATA8: 134}
    assert all(len(part.payload) <= limit[message.alphabet] for part in parts)


# Parsing types (spec 7.2)


def test_none_rejects_non_gsm_naming_character_and_index() -> None:
    with pytest.raises(NonGsmCharacter) as caught:
        encode_message("Hei Ж", parsing=ParsingType.NONE)
    assert (caught.value.char, caught.value.index) == ("Ж", 4)
    assert isinstance(caught.value, GsmError)


def test_none_accepts_gsm_with_extension_characters() -> None:
    message = encode_message("Pris: 100€ {ok}")
    assert message.alphabet is Alphabet.GSM7
    assert message.parts[0].dcs == 0x00
    assert joined(message) == "Pris: 100€ {ok}"


def test_safe_remove_drops_non_gsm_as_in_the_spec_example() -> None:
    # Spec 7.2 shows "Testing àòù"; its lost ':' is a doc slip (':' is GSM), so it stays.
    message = encode_message("Testing: Клавдии áàóòúù", parsing=ParsingType.SAFE_REMOVE_NON_GSM)
    assert message.text == "Testing: àòù"
    assert message.alphabet is Alphabet.GSM7
    assert joined(message) == "Testing: àòù"


def test_safe_remove_with_replace_maps_accents_to_base_letters() -> None:
    message = encode_message(
        "Testing Клавдии áàóòúù ", parsing=ParsingType.SAFE_REMOVE_NON_GSM_WITH_REPLACE
    )
    assert message.text == "Testing aàoòuù "


def test_safe_remove_with_replace_maps_typography_to_ascii() -> None:
    text = "\u201cSmart\u201d \u2018quotes\u2019 \u2013 and\u2014dashes\u2026 ça\u00a0va ﬁne"
    message = encode_message(text, parsing=ParsingType.SAFE_REMOVE_NON_GSM_WITH_REPLACE)
    assert message.text == "\"Smart\" 'quotes' - and-dashes... ca va fine"


def test_replace_keeps_gsm_accents_that_nfd_would_strip() -> None:
    text = "éèùìòÅÄÖÑÜäöñüàÉ"
    replaced = encode_message(text, parsing=ParsingType.SAFE_REMOVE_NON_GSM_WITH_REPLACE)
    assert replaced.text == text


def test_auto_detect_picks_ucs2_only_when_needed() -> None:
    gsm = encode_message("Hei på deg €", parsing=ParsingType.AUTO_DETECT)
    assert (gsm.alphabet, gsm.parts[0].dcs) == (Alphabet.GSM7, 0x00)
    ucs2 = encode_message("Hei på deg ✓", parsing=ParsingType.AUTO_DETECT)
    assert (ucs2.alphabet, ucs2.parts[0].dcs) == (Alphabet.UCS2, 0x08)
    assert ucs2.parts[0].payload == "Hei på deg ✓".encode("utf-16-be")


def test_parsing_type_values_equal_names() -> None:
    assert [p.value for p in ParsingType] == [p.name for p in ParsingType]
    assert encode_message("Ж", parsing="AUTO_DETECT").alphabet is Alphabet.UCS2  # type: ignore[arg-type]


@given(GSM_TEXT, st.sampled_from(ParsingType))
def test_gsm_text_round_trips_in_every_parsing_type(text: str, parsing: ParsingType) -> None:
    message = encode_message(text, parsing=parsing)
    assert message.alphabet is Alphabet.GSM7
    assert message.text == text
    assert joined(message) == text
    assert decode_concatenated(message.parts) == text
    check_parts(message)


@given(ANY_TEXT, st.sampled_from(ParsingType))
def test_any_text_encodes_per_parsing_type_and_round_trips(text: str, parsing: ParsingType) -> None:
    try:
        message = encode_message(text, parsing=parsing)
    except NonGsmCharacter as error:
        assert parsing is ParsingType.NONE
        assert text[error.index] == error.char
        return
    except MessageTooLong:
        return
    if parsing is ParsingType.AUTO_DETECT:
        assert message.text == text
    if parsing in (ParsingType.SAFE_REMOVE_NON_GSM, ParsingType.SAFE_REMOVE_NON_GSM_WITH_REPLACE):
        assert message.alphabet is Alphabet.GSM7
    assert joined(message) == message.text
    check_parts(message)


@given(st.text(alphabet=st.sampled_from("Жж😀€a👍🇳🇴"), min_size=1, max_size=402))
def test_ucs2_with_emoji_splits_and_joins_back(text: str) -> None:
    try:
        message = encode_message(text, parsing=ParsingType.AUTO_DETECT)
    except MessageTooLong as error:
        assert len(text.encode("utf-16-be")) // 2 > 402 - 6
        assert error.parts > 6
        return
    assert message.alphabet is (Alphabet.GSM7 if is_gsm(text) else Alphabet.UCS2)
    assert joined(message) == text
    check_parts(message)


# Splitting edges (spec 7.1)


def test_160_gsm_characters_fit_one_part_161_need_two() -> None:
    one = encode_message("a" * 160)
    assert [len(p.payload) for p in one.parts] == [160]
    two = encode_message("a" * 161, reference=0x2A)
    assert [len(p.payload) for p in two.parts] == [153, 8]
    assert [p.udh for p in two.parts] == [b"\x05\x00\x03\x2a\x02\x01", b"\x05\x00\x03\x2a\x02\x02"]


def test_six_parts_hold_918_septets_and_919_is_too_long() -> None:
    full = encode_message("x" * 918)
    assert [len(p.payload) for p in full.parts] == [153] * 6
    with pytest.raises(MessageTooLong) as caught:
        encode_message("x" * 919)
    assert (caught.value.parts, caught.value.max_parts) == (7, 6)
    assert len(encode_message("x" * 919, max_parts=7).parts) == 7


def test_extension_characters_count_two_septets() -> None:
    assert len(encode_message("€" * 80).parts) == 1
    assert len(encode_message("€" * 80 + "a").parts) == 2


def test_esc_pair_at_a_boundary_moves_whole_to_the_next_part() -> None:
    text = "a" * 152 + "€" + "b" * 10
    message = encode_message(text)
    assert [len(p.payload) for p in message.parts] == [152, 12]
    assert message.parts[1].payload.startswith(b"\x1b\x65b")
    assert [decode_text(p) for p in message.parts] == ["a" * 152, "€" + "b" * 10]


def test_70_ucs2_units_fit_one_part_71_need_two() -> None:
    assert len(encode_message("Ж" * 70, parsing=ParsingType.AUTO_DETECT).parts) == 1
    two = encode_message("Ж" * 71, parsing=ParsingType.AUTO_DETECT)
    assert [len(p.payload) for p in two.parts] == [134, 8]


def test_emoji_at_a_boundary_stays_whole() -> None:
    text = "Ж" * 66 + "😀" + "Ж" * 5
    message = encode_message(text, parsing=ParsingType.AUTO_DETECT)
    assert [len(p.payload) // 2 for p in message.parts] == [66, 7]
    assert [decode_text(p) for p in message.parts] == ["Ж" * 66, "😀" + "Ж" * 5]


def test_402_ucs2_units_is_the_limit() -> None:
    assert len(encode_message("Ж" * 402, parsing=ParsingType.AUTO_DETECT).parts) == 6
    with pytest.raises(MessageTooLong) as caught:
        encode_message("Ж" * 403, parsing=ParsingType.AUTO_DETECT)
    assert caught.value.parts == 7


def test_empty_text_is_one_empty_part() -> None:
    message = encode_message("")
    assert message.parts == (message.parts[0],)
    assert (message.parts[0].udh, message.parts[0].payload) == (b"", b"")


@given(GSM_TEXT)
def test_gsm_parts_never_exceed_their_septet_limit(text: str) -> None:
    septets = gsm_length(text)
    try:
        message = encode_message(text)
    except MessageTooLong:
        assert septets > 918 - 6
        return
    check_parts(message)
    assert sum(len(p.payload) for p in message.parts) == septets
    assert all(not p.payload.endswith(b"\x1b") for p in message.parts)


# Explicit DCS, user UDH and flash (spec 7.3)


def test_flash_sets_message_class_0() -> None:
    assert encode_message("hi", message_class=0).parts[0].dcs == 0x10
    ucs2 = encode_message("Ж", message_class=0, parsing=ParsingType.AUTO_DETECT)
    assert ucs2.parts[0].dcs == 0x18
    assert encode_message("00FF", dcs=0xF5, message_class=0).parts[0].dcs == 0xF4


def test_8bit_dcs_takes_hex_content() -> None:
    message = encode_message("0a0B ff", dcs=0xF5)
    assert message.alphabet is Alphabet.DATA8
    assert message.text == "0A0BFF"
    assert message.parts[0].payload == b"\x0a\x0b\xff"
    assert decode_text(message.parts[0]) == "0A0BFF"
    with pytest.raises(GsmError):
        encode_message("not hex", dcs=0x04)


def test_8bit_splits_at_140_and_134_octets() -> None:
    assert len(encode_message("AB" * 140, dcs=0x04).parts) == 1
    two = encode_message("AB" * 141, dcs=0x04)
    assert [len(p.payload) for p in two.parts] == [134, 7]


def test_explicit_dcs_overrides_detection() -> None:
    ucs2 = encode_message("plain", dcs=0x08)
    assert ucs2.alphabet is Alphabet.UCS2
    assert ucs2.parts[0].payload == "plain".encode("utf-16-be")
    with pytest.raises(NonGsmCharacter):
        encode_message("Ж", dcs=0x00, parsing=ParsingType.AUTO_DETECT)
    sanitised = encode_message("aЖb", dcs=0x00, parsing=ParsingType.SAFE_REMOVE_NON_GSM)
    assert sanitised.text == "ab"


@pytest.mark.parametrize("dcs", [0x0C, 0x1F, 0x2C, 0x4E, 0x80, 0xB5, 0xC4, 0xE7, 0xF8, 0xFD])
def test_a_reserved_dcs_is_not_sent(dcs: int) -> None:
    # TS 23.038 section 4: reserved codings are for receivers to read as GSM 7-bit, not for
    # senders to use.
    with pytest.raises(GsmError, match=f"TP-DCS {dcs:02X} is a reserved coding"):
        encode_message("Hello", dcs=dcs)


def test_user_udh_must_fit_in_one_part() -> None:
    udh = bytes.fromhex("0B0504158200000023AB0201")
    message = encode_message("AB" * 128, dcs=0x04, udh=udh)
    assert message.parts[0].udh == udh
    with pytest.raises(MessageTooLong) as caught:
        encode_message("AB" * 129, dcs=0x04, udh=udh)
    assert caught.value.max_parts == 1
    # 12 header octets take 14 septets (with fill bits), leaving 146 for text.
    assert len(encode_message("a" * 146, udh=udh).parts) == 1
    with pytest.raises(MessageTooLong):
        encode_message("a" * 147, udh=udh)


def test_a_user_udh_of_no_elements_goes_as_given() -> None:
    # A REST `udh` of "00" (or an SMPP UDHI message whose UDHL is 0) is a header all the same:
    # the part keeps it, so TP-UDHI is set, and its octet and fill bits leave 158 septets.
    (part,) = encode_message("a" * 158, udh=b"\x00").parts
    assert part.udh == b"\x00"
    with pytest.raises(MessageTooLong):
        encode_message("a" * 159, udh=b"\x00")
    assert encode_message("hi", udh=b"\x00", elements=PORTS).parts[0].udh == b"\x06" + PORTS


@pytest.mark.parametrize("header_octets", range(128, 141))
@pytest.mark.parametrize(("text", "dcs"), [("😀" * 4, 0x08), ("€" * 8, 0x00), ("AB" * 16, 0x04)])
def test_a_user_udh_leaving_no_room_is_too_long_not_a_hang(
    header_octets: int, text: str, dcs: int
) -> None:
    # A header of 134 octets and more left 2-octet chunks, which never fit an emoji: the split
    # that counts the parts went round for ever, and the gateway's event loop with it.
    udh = bytes((header_octets - 1, 0x70, header_octets - 3)) + bytes(header_octets - 3)
    with pytest.raises(MessageTooLong) as caught:
        encode_message(text, dcs=dcs, udh=udh)
    assert caught.value.max_parts == 1


def test_bad_arguments_raise_gsm_error() -> None:
    with pytest.raises(GsmError):
        encode_message("x", udh=b"\x05\x00\x03")
    with pytest.raises(GsmError):
        encode_message("x", reference=256)
    with pytest.raises(GsmError):
        encode_message("x", dcs=0x100)
    with pytest.raises(GsmError):
        encode_message("x", max_parts=0)
    with pytest.raises(GsmError):
        encode_message("\ud800", parsing=ParsingType.AUTO_DETECT)
    with pytest.raises(GsmError):
        encode_message("x", dcs=0xC0, message_class=0)


def test_decode_concatenated_rejoins_pairs_split_by_other_senders() -> None:
    parts = encode_message("😀", parsing=ParsingType.AUTO_DETECT).parts[0]
    first = type(parts)(dcs=8, udh=b"", payload=parts.payload[:2])
    second = type(parts)(dcs=8, udh=b"", payload=parts.payload[2:])
    assert decode_concatenated([first, second]) == "😀"
    assert decode_text(first) == "\ufffd"
    esc_first = type(parts)(dcs=0, udh=b"", payload=encode_gsm("a")[:1] + b"\x1b")
    esc_second = type(parts)(dcs=0, udh=b"", payload=b"\x65")
    assert decode_concatenated([esc_first, esc_second]) == "a€"


# Information elements in every part: application ports (TS 23.040 9.2.3.24.4)

PORTS = bytes.fromhex("05040B8423F0")  # destination 2948 (WAP push), originator 9200


def test_ports_go_in_every_part_beside_the_concatenation_element() -> None:
    # Concatenation (5 octets), ports (6) and UDHL make 12 header octets: 96 bits take 14
    # septets with the fill bits, which leaves 146 septets of text a part.
    three = encode_message("a" * 146 * 3, reference=9, elements=PORTS)
    assert [len(part.payload) for part in three.parts] == [146, 146, 146]
    for seq, part in enumerate(three.parts, start=1):
        assert part.udh == bytes((11, 0, 3, 9, 3, seq)) + PORTS
    assert joined(three) == "a" * 146 * 3
    four = encode_message("a" * (146 * 3 + 1), elements=PORTS)
    assert [len(part.payload) for part in four.parts] == [146, 146, 146, 1]


def test_ports_shrink_ucs2_and_8bit_parts_to_128_octets() -> None:
    assert len(encode_message("Ж" * 128, dcs=0x08, elements=PORTS).parts) == 2
    assert len(encode_message("Ж" * 129, dcs=0x08, elements=PORTS).parts) == 3
    eight_bit = encode_message("AB" * 134, dcs=0x04, elements=PORTS)
    assert [len(part.payload) for part in eight_bit.parts] == [128, 6]


def test_ports_alone_make_a_7_octet_header_of_one_part() -> None:
    one = encode_message("a" * 152, elements=PORTS)
    assert [part.udh for part in one.parts] == [b"\x06" + PORTS]
    assert len(encode_message("a" * 153, elements=PORTS).parts) == 2
    assert encode_message("AB" * 133, dcs=0x04, elements=PORTS).parts[0].udh == b"\x06" + PORTS


def test_elements_join_a_callers_udh_in_its_one_part() -> None:
    udh = bytes.fromhex("0500034A0201")
    (part,) = encode_message("hi", udh=udh, elements=PORTS).parts
    assert part.udh == bytes.fromhex("0B00034A0201") + PORTS
    with pytest.raises(MessageTooLong):
        encode_message("a" * 147, udh=udh, elements=PORTS)


def test_elements_leaving_no_room_for_text_are_refused() -> None:
    with pytest.raises(GsmError, match="leaves no room"):
        encode_message("a" * 200, elements=bytes((0x70, 130)) + bytes(130))


@pytest.mark.parametrize(
    ("kwargs", "dcs"),
    [
        ({}, 0x12),
        ({"parsing": ParsingType.AUTO_DETECT, "text": "Ж"}, 0x1A),
        ({"dcs": 0x04, "text": "00"}, 0x16),
        ({"dcs": 0xF5, "text": "00"}, 0xF6),
    ],
)
def test_a_message_class_goes_into_the_dcs_of_the_alphabet(
    kwargs: dict[str, object], dcs: int
) -> None:
    text = str(kwargs.pop("text", "hi"))
    message = encode_message(text, message_class=2, **kwargs)  # type: ignore[arg-type]
    assert [part.dcs for part in message.parts] == [dcs]


def test_a_class_beyond_3_is_refused() -> None:
    with pytest.raises(GsmError, match="must be 0, 1, 2 or 3"):
        encode_message("hi", message_class=4)


@pytest.mark.parametrize(
    ("dcs", "expected"),
    [
        (0x00, None),
        (0x08, None),
        (0x10, 0),
        (0x19, 1),
        (0x16, 2),
        (0xF3, 3),
        (0xF4, 0),
        (0xC0, None),
    ],
)
def test_the_message_class_a_dcs_announces(dcs: int, expected: int | None) -> None:
    assert message_class(dcs) == expected


# Long enough to need parts: GSM text with extension characters, UCS-2 with surrogate pairs.
LONG_TEXT = st.one_of(
    st.text(alphabet=sorted(GSM_CHARACTERS), min_size=140, max_size=900),
    st.text(alphabet=st.sampled_from("aЖ€{😀"), min_size=60, max_size=400),
)


@given(LONG_TEXT, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_ported_parts_all_carry_the_ports_and_fit_the_user_data(
    text: str, destination: int, originator: int
) -> None:
    # TS 23.040 9.2.3.16 and 9.2.3.24: the header and the text, 7-bit text after the fill bits
    # that align it to a septet, make at most 140 octets (160 septets) of TP-UD.
    elements = port_ie(destination, originator)
    try:
        message = encode_message(text, parsing=ParsingType.AUTO_DETECT, elements=elements)
    except MessageTooLong:
        return
    for part in message.parts:
        assert port_info(part.udh) == (destination, originator)
        if message.alphabet is Alphabet.GSM7:
            assert (len(part.udh) * 8 + 6) // 7 + len(part.payload) <= 160
        else:
            assert len(part.udh) + len(part.payload) <= 140
    assert decode_concatenated(message.parts) == message.text
