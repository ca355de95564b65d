"""AT command builders, response parsers and the TS 27.005 / TS 27.007 error tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at.commands import (
    CME_TEXT,
    CMS_TEXT,
    CmeError,
    CmsError,
    RegistrationStatus,
    cme_code_from_text,
    cmgs,
    cms_code_from_text,
    cms_is_permanent,
    command_name,
    cpin_enter,
    parse_cmgs,
    parse_cops,
    parse_cpin,
    parse_creg,
    parse_csq,
    parse_iccid,
    parse_imei,
)
from drivers.at.errors import AtProtocolError


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
    st.text(alphabet='0123456789,"ABCF x', max_size=40),
)
def test_parsers_raise_only_the_protocol_error(prefix: str, value: str) -> None:
    parsers = (parse_cmgs, parse_cpin, parse_csq, parse_creg, parse_cops, parse_imei, parse_iccid)
    for parser in parsers:
        try:
            parser((prefix + value,))
        except AtProtocolError:
            continue
