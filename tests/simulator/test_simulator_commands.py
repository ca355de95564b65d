"""Exact response bytes of every command the simulated modem offers (pure engine, no I/O).

Formats follow V.250 section 5.7 (<CR><LF>text<CR><LF>, final result codes), TS 27.007 and
TS 27.005 as real modems (SIM800, Quectel EC25) give them.
"""

from __future__ import annotations

import pytest

from drivers.simulator import ModemEngine, SentSms, SimulatorOptions


def talk(engine: ModemEngine, data: bytes, now: float = 0.0) -> bytes:
    return b"".join(reply.data for reply in engine.receive_data(data, now))


def quiet_engine(**options: object) -> ModemEngine:
    """An engine with echo already turned off."""
    engine = ModemEngine(SimulatorOptions(**options))  # type: ignore[arg-type]
    assert talk(engine, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"
    return engine


RESPONSES: list[tuple[bytes, bytes]] = [
    (b"AT", b"\r\nOK\r\n"),
    (b"ATI", b"\r\nedgegw\r\nSIM-GSM1\r\nRevision: SIMGSM1R01\r\n\r\nOK\r\n"),
    (b"AT+CGMI", b"\r\nedgegw\r\n\r\nOK\r\n"),
    (b"AT+CGMM", b"\r\nSIM-GSM1\r\n\r\nOK\r\n"),
    (b"AT+CGMR", b"\r\nSIMGSM1R01\r\n\r\nOK\r\n"),
    (b"AT+CGSN", b"\r\n356938035643809\r\n\r\nOK\r\n"),
    (b"AT+GSN", b"\r\n356938035643809\r\n\r\nOK\r\n"),
    (b"AT+CIMI", b"\r\n242011234567890\r\n\r\nOK\r\n"),
    (b"AT+CCID", b"\r\n8947080012345678901\r\n\r\nOK\r\n"),
    (b"AT+ICCID", b"\r\n+ICCID: 8947080012345678901\r\n\r\nOK\r\n"),
    (b"AT+CMEE?", b"\r\n+CMEE: 0\r\n\r\nOK\r\n"),
    (b"AT+CMEE=?", b"\r\n+CMEE: (0-2)\r\n\r\nOK\r\n"),
    (b"AT+CMGF?", b"\r\n+CMGF: 0\r\n\r\nOK\r\n"),
    (b"AT+CMGF=?", b"\r\n+CMGF: (0,1)\r\n\r\nOK\r\n"),
    (b"AT+CMGF=0", b"\r\nOK\r\n"),
    (b"AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    (b"AT+CPIN=?", b"\r\nOK\r\n"),
    (b"AT+CSQ", b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
    (b"AT+CSQ=?", b"\r\n+CSQ: (0-31,99),(0-7,99)\r\n\r\nOK\r\n"),
    (b"AT+CREG?", b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"),
    (b"AT+CREG=?", b"\r\n+CREG: (0-2)\r\n\r\nOK\r\n"),
    (b"AT+CEREG?", b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"),
    (b"AT+COPS?", b'\r\n+COPS: 0,0,"Simulated Network",0\r\n\r\nOK\r\n'),
    (
        b"AT+COPS=?",
        b'\r\n+COPS: (2,"Simulated Network","Simulated","24201",0),,(0-4),(0-2)\r\n\r\nOK\r\n',
    ),
    (b"AT+CSCA?", b'\r\n+CSCA: "+4790002100",145\r\n\r\nOK\r\n'),
    (b"AT+CSMS?", b"\r\n+CSMS: 0,1,1,1\r\n\r\nOK\r\n"),
    (b"AT+CSMS=1", b"\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"),
    (b"AT+CSMS=?", b"\r\n+CSMS: (0,1)\r\n\r\nOK\r\n"),
    (b"AT+CPMS?", b'\r\n+CPMS: "SM",0,30,"SM",0,30,"SM",0,30\r\n\r\nOK\r\n'),
    (b'AT+CPMS="SM","SM","SM"', b"\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n"),
    (b'AT+CPMS="ME"', b"\r\n+CPMS: 0,100,0,30,0,30\r\n\r\nOK\r\n"),
    (b"AT+CPMS=?", b'\r\n+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")\r\n\r\nOK\r\n'),
    (b"AT+CNMI?", b"\r\n+CNMI: 0,0,0,0,0\r\n\r\nOK\r\n"),
    (b"AT+CNMI=2,1,0,2,0", b"\r\nOK\r\n"),
    (b"AT+CNMI=?", b"\r\n+CNMI: (0-3),(0-3),(0-3),(0-2),(0,1)\r\n\r\nOK\r\n"),
    (b"AT+CSCS?", b'\r\n+CSCS: "IRA"\r\n\r\nOK\r\n'),
    (b'AT+CSCS="GSM"', b"\r\nOK\r\n"),
    (b"AT+CSCS=?", b'\r\n+CSCS: ("IRA","GSM","UCS2")\r\n\r\nOK\r\n'),
    (b"AT+CMGS=?", b"\r\nOK\r\n"),
    (b"AT+CGSN=?", b"\r\nOK\r\n"),
    (b"ATS3?", b"\r\n013\r\n\r\nOK\r\n"),
    (b"ATS4?", b"\r\n010\r\n\r\nOK\r\n"),
    (b"ATZ", b"\r\nOK\r\n"),
    (b"AT+CFUN?", b"\r\n+CFUN: 1\r\n\r\nOK\r\n"),
    (b"AT+CFUN=?", b"\r\n+CFUN: (0,1,4),(0,1)\r\n\r\nOK\r\n"),
    (b"AT+CFUN=1", b"\r\nOK\r\n"),
    (b"AT+CFUN=2", b"\r\nERROR\r\n"),
    (b"AT+CSMP?", b"\r\n+CSMP: 17,167,0,0\r\n\r\nOK\r\n"),
    (b"AT+CSMP=49,167,0,0", b"\r\nOK\r\n"),
    (b"AT+CNUM", b"\r\nOK\r\n"),
    (b"AT+CMGL=?", b"\r\n+CMGL: (0-4)\r\n\r\nOK\r\n"),
    (b"AT+CMGL", b"\r\nOK\r\n"),
    (b"AT+CMGR=1", b"\r\nOK\r\n"),
    (b"AT+CMGD=1", b"\r\nOK\r\n"),
    (b"AT+CMGD=?", b"\r\n+CMGD: (),(0-4)\r\n\r\nOK\r\n"),
    (b"AT+CNMA", b"\r\nERROR\r\n"),
    (b"AT+CBOGUS", b"\r\nERROR\r\n"),
    (b"AT+CMEE=3", b"\r\nERROR\r\n"),
    (b"AT+CMGF", b"\r\nERROR\r\n"),
    (b"ATX", b"\r\nERROR\r\n"),
]


@pytest.mark.parametrize(("command", "response"), RESPONSES)
def test_response_with_echo_off(command: bytes, response: bytes) -> None:
    engine = quiet_engine()
    if command == b"ATZ":
        # ATZ restores the factory settings, echo on among them: seen on the next command.
        assert talk(engine, command + b"\r") == response
        assert talk(engine, b"AT\r") == b"AT\r\r\nOK\r\n"
        return
    assert talk(engine, command + b"\r") == response


@pytest.mark.parametrize(("command", "response"), RESPONSES)
def test_response_with_echo_on_repeats_the_command_line_first(
    command: bytes, response: bytes
) -> None:
    engine = ModemEngine(SimulatorOptions())
    assert talk(engine, command + b"\r") == command + b"\r" + response


def test_echo_is_byte_by_byte_as_characters_arrive() -> None:
    engine = ModemEngine(SimulatorOptions())
    assert talk(engine, b"A") == b"A"
    assert talk(engine, b"T+CS") == b"T+CS"
    assert talk(engine, b"Q\r") == b"Q\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_ate0_then_ate1() -> None:
    engine = ModemEngine(SimulatorOptions())
    assert talk(engine, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"
    assert talk(engine, b"AT\r") == b"\r\nOK\r\n"
    assert talk(engine, b"ATE1\r") == b"\r\nOK\r\n"
    assert talk(engine, b"AT\r") == b"AT\r\r\nOK\r\n"


def test_command_names_are_case_insensitive_and_spaces_ignored() -> None:
    engine = quiet_engine()
    assert talk(engine, b"at+csq\r") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    assert talk(engine, b"At + Cmgf = 0\r") == b"\r\nOK\r\n"


def test_several_commands_on_one_line() -> None:
    engine = ModemEngine(SimulatorOptions())
    assert talk(engine, b"ATE0;+CMEE=1\r") == b"ATE0;+CMEE=1\r\r\nOK\r\n"
    assert talk(engine, b"AT+CMEE?;+CMGF?\r") == (b"\r\n+CMEE: 1\r\n\r\n+CMGF: 0\r\n\r\nOK\r\n")
    assert talk(engine, b"ATE1V1\r") == b"\r\nOK\r\n"
    assert talk(engine, b"ATE0+CMEE=2\r") == b"ATE0+CMEE=2\r\r\nOK\r\n"
    assert talk(engine, b"AT+CMEE?\r") == b"\r\n+CMEE: 2\r\n\r\nOK\r\n"


def test_an_error_stops_the_rest_of_the_line() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CSQ;+NOPE;+CMGF=1\r") == b"\r\n+CSQ: 20,99\r\n\r\nERROR\r\n"
    assert talk(engine, b"AT+CMGF?\r") == b"\r\n+CMGF: 0\r\n\r\nOK\r\n"


def test_characters_before_at_are_ignored_and_lines_without_at_get_no_answer() -> None:
    engine = quiet_engine()
    assert talk(engine, b"\n\x00noiseAT\r") == b"\r\nOK\r\n"
    assert talk(engine, b"hello\r") == b""
    assert talk(engine, b"\r\n") == b""


def test_backspace_edits_the_line() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CSX\x08Q\r") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_an_overlong_command_line_is_refused() -> None:
    engine = quiet_engine()
    assert talk(engine, b'AT+CSCA="' + b"1" * 600 + b'"\r') == b"\r\nERROR\r\n"
    assert talk(engine, b"AT\r") == b"\r\nOK\r\n"


def test_a_backspace_at_the_start_of_a_chunk_edits_what_came_before() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CSX") == b""
    assert talk(engine, b"\x08\x08SQ\r") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_an_overlong_line_typed_in_pieces_is_refused_and_the_next_line_works() -> None:
    engine = quiet_engine()
    assert talk(engine, b'AT+CSCA="' + b"1" * 540) == b""
    assert talk(engine, b"1" * 20) == b""
    assert talk(engine, b'"\rAT\r') == b"\r\nERROR\r\n\r\nOK\r\n"


def test_several_lines_in_one_chunk_are_echoed_until_echo_goes_off() -> None:
    engine = ModemEngine(SimulatorOptions())
    # The first line is echoed with its terminator; the ATE0 in it turns echo off for the rest.
    assert talk(engine, b"ATE0\rAT+CSQ\rAT\r") == (
        b"ATE0\r\r\nOK\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\nOK\r\n"
    )


def test_s3_and_s4_shape_the_responses() -> None:
    engine = quiet_engine()
    # V.250 section 6.2: the result code of the command that changes S3 or S4 uses the new value.
    assert talk(engine, b"ATS4=33\r") == b"\r!OK\r!"
    assert talk(engine, b"AT+CSQ\r") == b"\r!+CSQ: 20,99\r!\r!OK\r!"
    assert talk(engine, b"ATS3=64\r") == b"@!OK@!"
    # The command line now ends with "@", and responses use it too.
    assert talk(engine, b"AT+CMGF?@") == b"@!+CMGF: 0@!@!OK@!"


def test_atz_restores_factory_settings() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CMEE=2;+CREG=2\r") == b"\r\nOK\r\n"
    assert talk(engine, b"ATZ\r") == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CMEE?;+CREG?\r") == (
        b"AT+CMEE?;+CREG?\r\r\n+CMEE: 0\r\n\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    )


def test_creg_and_cereg_modes() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CREG=2;+CEREG=1\r") == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CREG?;+CEREG?\r") == (
        b'\r\n+CREG: 2,1,"00A1","1F2E"\r\n\r\n+CEREG: 1,1\r\n\r\nOK\r\n'
    )


def test_registration_takes_register_delay_after_the_sim_is_ready() -> None:
    engine = quiet_engine(register_delay=10.0)
    assert talk(engine, b"AT+CREG?;+COPS?\r", now=5.0) == (
        b"\r\n+CREG: 0,2\r\n\r\n+COPS: 0\r\n\r\nOK\r\n"
    )
    assert talk(engine, b"AT+CREG?\r", now=10.0) == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"


def test_a_registration_change_is_an_unsolicited_line_when_asked_for() -> None:
    """TS 27.007 sections 7.2 and 10.1.22: with +CREG=1 or 2 (+CEREG the same) the modem
    tells a change of <stat> on its own, `+CREG: <stat>`, with <lac>,<ci> in mode 2 once
    registered; a driver that does not poll learns the registration from it alone."""
    engine = quiet_engine(register_delay=10.0)
    assert talk(engine, b"AT+CREG=2;+CEREG=1\r", now=5.0) == b"\r\nOK\r\n"
    assert b"".join(reply.data for reply in engine.advance(10.0)) == (
        b'\r\n+CREG: 1,"00A1","1F2E"\r\n\r\n+CEREG: 1\r\n'
    )
    assert b"".join(reply.data for reply in engine.advance(20.0)) == b""
    assert talk(engine, b"AT+CFUN=4\r", now=30.0) == b"\r\nOK\r\n\r\n+CREG: 0\r\n\r\n+CEREG: 0\r\n"
    quiet = quiet_engine(register_delay=10.0)  # the modes off, as after a reset: no line
    assert talk(quiet, b"AT\r", now=5.0) == b"\r\nOK\r\n"
    assert b"".join(reply.data for reply in quiet.advance(10.0)) == b""


def test_cops_formats() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+COPS=3,2;+COPS?\r") == b'\r\n+COPS: 0,2,"24201",0\r\n\r\nOK\r\n'
    assert talk(engine, b"AT+COPS=3,1;+COPS?\r") == (b'\r\n+COPS: 0,1,"Simulated",0\r\n\r\nOK\r\n')
    assert talk(engine, b"AT+COPS=0\r") == b"\r\nOK\r\n"
    assert talk(engine, b'AT+CMEE=1;+COPS=1,2,"24202"\r') == b"\r\n+CME ERROR: 3\r\n"


def test_csca_can_be_changed() -> None:
    engine = quiet_engine()
    assert talk(engine, b'AT+CSCA="4790002199",129\r') == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CSCA?\r") == b'\r\n+CSCA: "4790002199",129\r\n\r\nOK\r\n'


def test_cnmi_out_of_range_is_a_cms_error() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CMEE=1;+CNMI=2,1,0,3,0\r") == b"\r\n+CMS ERROR: 303\r\n"
    assert talk(engine, b"AT+CNMI?\r") == b"\r\n+CNMI: 0,0,0,0,0\r\n\r\nOK\r\n"


@pytest.mark.parametrize(
    ("cmee", "cme", "cms"),
    [
        (0, b"\r\nERROR\r\n", b"\r\nERROR\r\n"),
        (1, b"\r\n+CME ERROR: 11\r\n", b"\r\n+CMS ERROR: 311\r\n"),
        (2, b"\r\n+CME ERROR: SIM PIN required\r\n", b"\r\n+CMS ERROR: SIM PIN required\r\n"),
    ],
)
def test_error_codes_follow_cmee(cmee: int, cme: bytes, cms: bytes) -> None:
    engine = quiet_engine(pin="0000")
    assert talk(engine, b"AT+CMEE=%d\r" % cmee) == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CIMI\r") == cme
    assert talk(engine, b"AT+CMGS=23\r") == cms


@pytest.mark.parametrize(
    ("cmee", "response"),
    [
        (0, b"\r\nERROR\r\n"),
        (1, b"\r\n+CMS ERROR: 304\r\n"),
        (2, b"\r\n+CMS ERROR: invalid PDU mode parameter\r\n"),
    ],
)
def test_cmgs_length_out_of_range(cmee: int, response: bytes) -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CMEE=%d;+CMGS=200\r" % cmee) == response


@pytest.mark.parametrize(
    "command", [b"AT+CMGS=23", b"AT+CPMS?", b"AT+CSCA?", b"AT+CSMS?", b'AT+CPMS="SM"']
)
def test_sms_commands_need_the_sim(command: bytes) -> None:
    engine = quiet_engine(pin="1234")
    assert talk(engine, b"AT+CMEE=1\r") == b"\r\nOK\r\n"
    assert talk(engine, command + b"\r") == b"\r\n+CMS ERROR: 311\r\n"
    assert talk(engine, b'AT+CPIN="1234"\r') == b"\r\nOK\r\n"
    assert b"+CMS ERROR" not in talk(engine, command + b"\r")


def test_settings_that_live_in_the_modem_work_before_the_pin() -> None:
    engine = quiet_engine(pin="1234")
    commands = b'AT+CMEE=1;+CMGF=0;+CNMI=2,1;+CSCS="GSM";+CGSN;+CCID;+CSQ\r'
    assert talk(engine, commands) == (
        b"\r\n356938035643809\r\n\r\n8947080012345678901\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    )
    assert talk(engine, b"AT+CREG?;+COPS?\r") == b"\r\n+CREG: 0,0\r\n\r\n+COPS: 0\r\n\r\nOK\r\n"


def test_pin_entry() -> None:
    engine = quiet_engine(pin="1234")
    assert talk(engine, b"AT+CMEE=1;+CPIN?\r") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert talk(engine, b"AT+CPIN=4321\r") == b"\r\n+CME ERROR: 16\r\n"
    assert talk(engine, b"AT+CPIN=1234\r", now=3.0) == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CPIN?;+CIMI\r", now=3.0) == (
        b"\r\n+CPIN: READY\r\n\r\n242011234567890\r\n\r\nOK\r\n"
    )
    assert talk(engine, b"AT+CREG?\r", now=3.0) == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    # A PIN for a SIM that is already ready is not allowed (TS 27.007 section 8.3).
    assert talk(engine, b"AT+CPIN=1234\r", now=3.0) == b"\r\n+CME ERROR: 3\r\n"


def test_three_wrong_pins_block_the_sim_until_the_puk() -> None:
    engine = quiet_engine(pin="1234", puk="87654321")
    assert talk(engine, b"AT+CMEE=2\r") == b"\r\nOK\r\n"
    for _ in range(3):
        assert talk(engine, b'AT+CPIN="0000"\r') == b"\r\n+CME ERROR: incorrect password\r\n"
    assert talk(engine, b"AT+CPIN?\r") == b"\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n"
    assert talk(engine, b'AT+CPIN="1234"\r') == b"\r\n+CME ERROR: SIM PUK required\r\n"
    assert talk(engine, b"AT+CIMI\r") == b"\r\n+CME ERROR: SIM PUK required\r\n"
    assert talk(engine, b"AT+CMGS=23\r") == b"\r\n+CMS ERROR: SIM PUK required\r\n"
    assert talk(engine, b'AT+CPIN="11111111","5555"\r') == (
        b"\r\n+CME ERROR: incorrect password\r\n"
    )
    assert talk(engine, b'AT+CPIN="87654321","5555"\r') == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"


def test_text_mode_sends_what_is_typed_as_the_text_to_the_number_given() -> None:
    # TS 27.005 section 4.3: in text mode AT+CMGS takes <da>, so a PDU-mode command sent to a
    # modem left in text mode is an SMS of hex digits to the number that was its length.
    engine = quiet_engine()
    assert talk(engine, b"AT+CMEE=1;+CMGF=1\r") == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CMGS=23\r") == b"\r\n> "
    replies = engine.receive_data(b"0011000B91\x1a", 0.0)
    assert b"".join(reply.data for reply in replies) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    (sent,) = [reply.sent for reply in replies if reply.sent is not None]
    assert (sent.recipient, sent.text, sent.message_reference) == ("23", "0011000B91", 0)
    assert talk(engine, b'AT+CMGS="+4712345678",145\r') == b"\r\n> "
    assert talk(engine, b"\x1b") == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CMGS=\r") == b"\r\nERROR\r\n"


def send_in_text_mode(csmp: bytes, text: bytes) -> SentSms:
    """What the network takes from a text-mode AT+CMGS of `text` after AT+CSMP=`csmp`."""
    engine = quiet_engine()
    assert talk(engine, b"AT+CMEE=1;+CMGF=1;+CSMP=" + csmp + b"\r") == b"\r\nOK\r\n"
    assert talk(engine, b'AT+CMGS="+4712345678"\r') == b"\r\n> "
    replies = engine.receive_data(text + b"\x1a", 0.0)
    (sent,) = [reply.sent for reply in replies if reply.sent is not None]
    return sent


def test_text_mode_sends_with_the_tp_pid_that_csmp_set() -> None:
    # TS 27.005 section 3.3.2: +CSMP's third value is the TP-PID of a text-mode SMS-SUBMIT, so
    # "replace short message type 1" (65) set there reaches the network as such.
    sent = send_in_text_mode(b"17,167,65,0", b"Replace me")
    assert (sent.text, sent.pid) == ("Replace me", 65)


def test_text_mode_records_the_message_class_of_the_csmp_dcs() -> None:
    # +CSMP's fourth value is the TP-DCS; 0xF1 is the GSM alphabet in message class 1 (ME).
    sent = send_in_text_mode(b"17,167,0,241", b"To the phone")
    assert (sent.dcs, sent.message_class) == (0xF1, 1)


def test_cfun_turns_the_radio_off_and_on_and_resets() -> None:
    engine = quiet_engine(register_delay=2.0)
    assert talk(engine, b"AT+CMEE=1;+CREG?\r", now=2.0) == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert talk(engine, b"AT+CFUN=4;+CREG?\r", now=3.0) == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"
    assert talk(engine, b"AT+CMGS=23\r", now=3.0) == b"\r\n> "
    pdu = b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37\x1a"
    assert talk(engine, pdu, now=3.0) == b"\r\n+CMS ERROR: 331\r\n"
    # Radio back on: searching first, registered register_delay later.
    assert talk(engine, b"AT+CFUN=1;+CREG?\r", now=4.0) == b"\r\n+CREG: 0,2\r\n\r\nOK\r\n"
    assert talk(engine, b"AT+CREG?\r", now=6.0) == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    # <rst> 1 restarts the modem: factory settings again (echo on, +CMEE=0).
    assert talk(engine, b"AT+CFUN=1,1\r", now=7.0) == b"\r\nOK\r\n"
    assert talk(engine, b"AT+CFUN=3\r", now=7.0) == b"AT+CFUN=3\r\r\nERROR\r\n"


def test_clac_lists_every_command_once() -> None:
    engine = quiet_engine()
    lines = talk(engine, b"AT+CLAC\r").split(b"\r\n")
    assert lines[-3:] == [b"", b"OK", b""]
    names = lines[1:-3]
    assert names == sorted(set(names))
    assert {b"AT+CMGS", b"AT+CMGR", b"AT+CNMA", b"ATE", b"AT&F"} <= set(names)
