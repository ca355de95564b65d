"""AT command builders, response parsers and the TS 27.005 / TS 27.007 error tables."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at.commands import (
    CME_TEXT,
    CMS_TEXT,
    CmeError,
    CmsError,
    Listing,
    RegistrationStatus,
    StoredPdu,
    choose_storage,
    cme_code_from_text,
    cmgs,
    cms_code_from_text,
    cms_is_permanent,
    command_name,
    cpin_enter,
    cpms,
    parse_cereg,
    parse_cmee,
    parse_cmgl,
    parse_cmgr,
    parse_cmgs,
    parse_cnmi_setting,
    parse_cops,
    parse_cpin,
    parse_cpms_read,
    parse_cpms_test,
    parse_creg,
    parse_crsm_iccid,
    parse_csq,
    parse_iccid,
    parse_imei,
    parse_storage_indication,
    parse_urc_pdu,
)
from drivers.at.errors import AtProtocolError


def test_parse_cmee_reads_the_error_mode() -> None:
    assert parse_cmee(("+CMEE: 0",)) == 0
    assert parse_cmee(("+CMEE: 1",)) == 1
    for unreadable in [(), ("+CMEE: \xb9",), ("+CMEE: on",)]:
        with pytest.raises(AtProtocolError):
            parse_cmee(unreadable)


def test_builders() -> None:
    assert cmgs(23) == "AT+CMGS=23"
    assert cpin_enter("1234") == 'AT+CPIN="1234"'
    with pytest.raises(ValueError):
        cmgs(0)
    with pytest.raises(ValueError):
        cpin_enter("12a4")


@pytest.mark.parametrize(
    ("command", "name"),
    [("AT+CMGS=23", "+CMGS"), ("AT+CPIN?", "+CPIN"), ("ATE0", "E0"), ("at^sysinfo", "^SYSINFO")],
)
def test_command_name(command: str, name: str) -> None:
    assert command_name(command) == name


def test_parse_cmgs() -> None:
    assert parse_cmgs(("+CMGS: 124",)) == 124
    assert parse_cmgs(('+CMGS: 5,"24/07/25,14:00:08+08"',)) == 5
    for bad in (("+CMGS: 300",), ("+CMGS: x",), ("OK",)):
        with pytest.raises(AtProtocolError):
            parse_cmgs(bad)


def test_parse_cpin() -> None:
    assert parse_cpin(("+CPIN: READY",)) == "READY"
    assert parse_cpin(('+CPIN: "SIM PIN"',)) == "SIM PIN"


def test_parse_csq() -> None:
    signal = parse_csq(("+CSQ: 17,0",))
    assert (signal.rssi, signal.ber, signal.dbm) == (17, 0, -79)
    assert parse_csq(("+CSQ: 99,99",)).dbm is None
    with pytest.raises(AtProtocolError):
        parse_csq(("+CSQ: 40,0",))


def test_parse_creg_read_form_and_urc_form() -> None:
    read = parse_creg(('+CREG: 2,5,"00C3","0000AB12",2',))
    assert (read.n, read.stat, read.lac, read.ci, read.act) == (
        2,
        RegistrationStatus.ROAMING,
        "00C3",
        "0000AB12",
        2,
    )
    assert read.stat.registered
    urc = parse_creg(('+CREG: 1,"00C3","0000AB12"',))
    assert (urc.n, urc.stat, urc.lac) == (None, RegistrationStatus.HOME, "00C3")
    assert parse_creg(("+CREG: 0,2",)).stat is RegistrationStatus.SEARCHING
    assert not parse_creg(("+CREG: 3",)).stat.registered
    with pytest.raises(AtProtocolError):
        parse_creg(("+CREG: 0,42",))


def test_parse_cops() -> None:
    operator = parse_cops(('+COPS: 0,0,"Telenor NO",7',))
    assert (operator.mode, operator.format, operator.name, operator.act) == (0, 0, "Telenor NO", 7)
    assert parse_cops(("+COPS: 0",)).name == ""


def test_parse_imei_and_iccid() -> None:
    assert parse_imei(("861234050012345",)) == "861234050012345"
    assert parse_imei(('+CGSN: "861234050012345"',)) == "861234050012345"
    assert parse_iccid(("+CCID: 8947080037110456789F",)) == "8947080037110456789"
    assert parse_iccid(('+ICCID: "89470800371104567890"',)) == "89470800371104567890"
    assert parse_iccid(("+QCCID: 89470800371104567890",)) == "89470800371104567890"  # Quectel
    # An unsolicited line without a prefix (SIM800's DST:) may come first.
    assert parse_imei(("DST: 0", "861234050012345")) == "861234050012345"
    assert parse_iccid(("DST: 0", "8947080037110456789f")) == "8947080037110456789"
    with pytest.raises(AtProtocolError):
        parse_imei(("ERROR-ish",))


def test_every_code_has_a_verbose_text_that_maps_back() -> None:
    assert set(CMS_TEXT) == set(CmsError)
    assert set(CME_TEXT) == set(CmeError)
    for code, text in CME_TEXT.items():
        assert cme_code_from_text(text) == code
    for text in CMS_TEXT.values():
        back = cms_code_from_text(text)
        assert back is not None
        assert CMS_TEXT[CmsError(back)].lower() == text.lower()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("unknown error", 500),
        ("UNKNOWN ERROR", 500),
        ("SIM not inserted", 310),
        ("(U)SIM PUK required", 316),
        ("SC address unknown", 330),
        ("no network service", 331),
    ],
)
def test_verbose_cms_texts(text: str, code: int) -> None:
    assert cms_code_from_text(text) == code


@pytest.mark.parametrize("code", [1, 8, 10, 21, 96, 0xC3, 0xC4, 304])
def test_permanent_cms_codes(code: int) -> None:
    assert cms_is_permanent(code)


@pytest.mark.parametrize("code", [17, 22, 38, 41, 42, 0xC0, 300, 322, 330, 331, 332, 500, 512, 999])
def test_transient_cms_codes(code: int) -> None:
    assert not cms_is_permanent(code)


@given(
    st.sampled_from(["+CMGS: ", "+CPIN: ", "+CSQ: ", "+CREG: ", "+COPS: ", "+CGSN: ", "+CCID: "]),
    # ¹²³ are what Latin-1 makes of noise octets B9, B2, B3: digits to str.isdigit, not to int.
    st.text(alphabet='0123456789,"ABCF x\xb2', max_size=40),
)
def test_parsers_raise_only_the_protocol_error(prefix: str, value: str) -> None:
    parsers = (parse_cmgs, parse_cpin, parse_csq, parse_creg, parse_cops, parse_imei, parse_iccid)
    for parser in parsers:
        try:
            parser((prefix + value,))
        except AtProtocolError:
            continue


# ---- storage, indications and identity (TS 27.005 3.2-3.5, TS 27.007 8.18 and 10.1.22) -------


def test_cpms_test_answer_and_the_choice_of_storage() -> None:

    # Huawei E3372: SM and ME for reading and writing, SM, ME and MT for receiving.
    groups = parse_cpms_test(('+CPMS: ("SM","ME"),("SM","ME"),("SM","ME","MT")',))
    assert groups == (
        frozenset({"SM", "ME"}),
        frozenset({"SM", "ME"}),
        frozenset({"SM", "ME", "MT"}),
    )
    assert choose_storage(groups, ["MT", "ME", "SM"]) == "ME"  # MT cannot be read from here
    assert choose_storage(groups, ["BM"]) is None
    assert cpms("SM") == 'AT+CPMS="SM","SM","SM"'
    assert parse_cpms_read(('+CPMS: "ME",3,100,"ME",3,100,"ME",3,100',)) == "ME"
    with pytest.raises(ValueError):
        cpms('SM",1')
    with pytest.raises(AtProtocolError):
        parse_cpms_test(("+CPMS: nothing",))


@pytest.mark.parametrize(
    ("text", "command", "direct"),
    [
        ("2,1,0,2,0", "AT+CNMI=2,1,0,2,0", False),
        ("2,1,0,1,0", "AT+CNMI=2,1,0,1,0", True),
        ("1,2", "AT+CNMI=1,2,0,0,0", True),
        ("3,1,0,2,1", "AT+CNMI=3,1,0,2,1", False),
    ],
)
def test_cnmi_settings(text: str, command: str, direct: bool) -> None:

    setting = parse_cnmi_setting(text)
    assert (setting.command, setting.direct) == (command, direct)


@pytest.mark.parametrize("text", ["", "2,1,0,3,0", "2,1,0,2,0,0", "a,b", "4,1"])
def test_cnmi_settings_out_of_range_are_refused(text: str) -> None:

    with pytest.raises(ValueError):
        parse_cnmi_setting(text)


def test_cmgr_answers_of_several_modems() -> None:

    pdu = "07919740002001F0040B919719325476F00000"
    # SIM800 quotes an empty <alpha>, Huawei leaves it empty, old Telit omits it.
    for head in ('+CMGR: 1,"",11', "+CMGR: 1,,11", "+CMGR: 1,11"):
        assert parse_cmgr((head, pdu), 5) == StoredPdu(index=5, stat=1, pdu=bytes.fromhex(pdu))
    assert parse_cmgr((), 5) is None  # empty index: OK without lines
    assert parse_cmgr(("+CMGR: 0,,0",), 5) is None  # some Huawei firmware
    with pytest.raises(AtProtocolError):
        parse_cmgr(("+CMGR: 1,,9",), 5)
    with pytest.raises(AtProtocolError):
        parse_cmgr(("+CMGR: 1,,9", "not hex"), 5)


@pytest.mark.parametrize("length", [10, 12])  # an octet gained or lost on the way
def test_a_pdu_line_that_does_not_hold_its_headers_length_is_refused(length: int) -> None:
    pdu = "07919740002001F0040B919719325476F00000"  # 11 octets after the SMSC address
    with pytest.raises(AtProtocolError):
        parse_cmgr((f"+CMGR: 1,,{length}", pdu), 5)
    with pytest.raises(AtProtocolError):
        parse_urc_pdu(f"+CMT: ,{length}", pdu)
    with pytest.raises(AtProtocolError):
        parse_urc_pdu(f"+CDS: {length}", pdu)
    assert parse_cmgl((f"+CMGL: 3,1,,{length}", pdu)).unreadable == (3,)
    assert parse_urc_pdu('+CMT: "a,b",11', pdu) == bytes.fromhex(pdu)
    assert parse_urc_pdu("+CDS: 11", pdu) == bytes.fromhex(pdu)


def test_cmgl_listing() -> None:

    listing = parse_cmgl(("+CMGL: 0,1,,2", "00AABB", '+CMGL: 12,0,"Kari",1', "00CC"))
    assert [(e.index, e.stat, e.pdu) for e in listing.messages] == [
        (0, 1, bytes.fromhex("00AABB")),
        (12, 0, bytes.fromhex("00CC")),
    ]
    assert listing.unreadable == ()
    assert parse_cmgl(()) == Listing()


@pytest.mark.parametrize(
    ("lines", "messages", "unreadable", "skipped"),
    [
        (("+CMGL: 0,1,,3",), [], [0], 0),  # the PDU line never came
        (("00AABB",), [], [], 1),  # a PDU line whose header was lost
        (("+CMGL: 0,1,,3", "+CMGL: 1,1,,0", "00"), [1], [0], 0),
        (("+CMGL: 0,1,,3", "00AAB", "+CMGL: 1,1,,0", "00"), [1], [0], 0),  # odd length
        (("+CMGL: 0,1,,3", "not hex", "+CMGL: 1,1,,0", "00"), [1], [0], 0),
        (("+CMGL: x,1,,3", "00AABB", "+CMGL: 1,1,,0", "00"), [1], [], 2),  # header unreadable
        (('+CMGL: 2,1,"open,1', "00AABB", "+CMGL: 1,1,,0", "00"), [1], [], 2),
        # A modem fallen back to text mode: nothing read, and it says so.
        (('+CMGL: 1,"REC UNREAD","+4799999999",,"26/12/04,10:00:00+04"', "Hei"), [], [], 2),
    ],
)
def test_cmgl_listing_with_a_broken_entry_keeps_the_others(
    lines: tuple[str, ...], messages: list[int], unreadable: list[int], skipped: int
) -> None:

    listing = parse_cmgl(lines)
    assert [e.index for e in listing.messages] == messages
    assert list(listing.unreadable) == unreadable
    assert listing.skipped == skipped


def test_storage_indications() -> None:

    assert parse_storage_indication('+CMTI: "SM",3') == ("SM", 3)
    assert parse_storage_indication('+CDSI: "SR",0') == ("SR", 0)
    assert parse_storage_indication("+CMTI: ME,17") == ("ME", 17)
    for broken in ('+CMTI: "SM"', '+CMT: "SM",3', '+CMTI: "SM",x', '+CMTI: "",1'):
        with pytest.raises(AtProtocolError):
            parse_storage_indication(broken)


def test_iccid_from_the_sim_file_has_its_nibbles_swapped() -> None:

    # EF-ICCID 98 74 80 00 21 43 65 87 09 F1 is ICCID 8947080012345678901 (TS 31.102 4.1.1).
    assert parse_crsm_iccid(('+CRSM: 144,0,"98748000214365870 9F1"'.replace(" ", ""),)) == (
        "8947080012345678901"
    )
    with pytest.raises(AtProtocolError):
        parse_crsm_iccid(('+CRSM: 106,130,""',))  # file not found


def test_cereg_read_and_unsolicited() -> None:

    read = parse_cereg(('+CEREG: 2,1,"1A2B","01A2B3C4",7',))
    assert (read.n, read.stat, read.lac, read.act) == (2, RegistrationStatus.HOME, "1A2B", 7)
    urc = parse_cereg(('+CEREG: 5,"1A2B","01A2B3C4",7',))
    assert (urc.n, urc.stat) == (None, RegistrationStatus.ROAMING)
    # Location fields left empty (a modem that does not know them) or unquoted.
    for line in ("+CEREG: 5,,,7", "+CEREG: 5,,", "+CEREG: 5,1A2B,01A2B3C4,7", "+CEREG: 5,12,3456"):
        urc = parse_cereg((line,))
        assert (urc.n, urc.stat) == (None, RegistrationStatus.ROAMING)
    assert parse_cereg(("+CEREG: 2,5,,,7",)).n == 2


@pytest.mark.parametrize(
    "line",
    [
        "+CMGS: \xb2",
        "+CSQ: \xb9,0",
        "+CREG: \xb3",
        "+CREG: 2,\xb2",
        "+COPS: \xb2",
        '+CMTI: "SM",\xb2',
    ],
)
def test_a_superscript_noise_makes_of_a_digit_is_no_number(line: str) -> None:
    parsers = (parse_cmgs, parse_csq, parse_creg, parse_cops)
    for parser in parsers:
        with contextlib.suppress(AtProtocolError):
            parser((line,))
    with contextlib.suppress(AtProtocolError):
        parse_storage_indication(line)


def test_a_listing_header_with_a_superscript_for_its_index_is_skipped() -> None:
    listing = parse_cmgl(("+CMGL: \xb2,1,,5", "0011000000"))
    assert (listing.messages, listing.unreadable, listing.skipped) == ((), (), 2)


@given(st.lists(st.text(max_size=40), max_size=6))
def test_storage_parsers_take_anything_or_raise_their_error(lines: list[str]) -> None:

    answer = tuple(lines)
    for parse in (parse_cmgl, parse_cpms_read, parse_cpms_test, parse_crsm_iccid):
        with contextlib.suppress(AtProtocolError):
            parse(answer)
    with contextlib.suppress(AtProtocolError):
        parse_cmgr(answer, 1)
    for line in lines:
        with contextlib.suppress(AtProtocolError):
            parse_storage_indication(line)
