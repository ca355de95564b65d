"""The simulated modem's lossy-link and boot options do what they claim, and replay by seed.

They copy cheap USB sticks on long cables: lost final result codes, line noise, URCs sent twice
or inside a response, output in small fragments, a deaf boot window ending in RDY / SMS Ready,
SMS commands refused for a while after boot, text mode at power-on, "ME" numbered from 0.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from drivers.gsm import encode_message
from drivers.simulator import ModemEngine, SimulatorOptions, deliver_tpdus

HELLO_PDU = b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
OK = b"\r\nOK\r\n"
STAMP = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def talk(engine: ModemEngine, data: bytes, now: float = 0.0) -> bytes:
    return b"".join(reply.data for reply in engine.receive_data(data, now))


def engine_with(**options: object) -> ModemEngine:
    engine = ModemEngine(SimulatorOptions(**options))  # type: ignore[arg-type]
    talk(engine, b"ATE0;+CMEE=1\r")
    return engine


def deliver(engine: ModemEngine, text: str, now: float = 0.0) -> bytes:
    (part,) = encode_message(text).parts
    (tpdu,) = deliver_tpdus("+4791234567", [part], timestamp=STAMP)
    replies, _index = engine.receive_sms(tpdu, now)
    return b"".join(reply.data for reply in replies)


def test_drop_final_loses_some_final_result_codes_but_no_information_text() -> None:
    engine = engine_with(drop_final=0.5, seed=3)
    answers = [talk(engine, b"AT+CSQ\r") for _ in range(40)]
    assert all(answer.startswith(b"\r\n+CSQ: 20,99\r\n") for answer in answers)
    lost = sum(1 for answer in answers if not answer.endswith(OK))
    assert 8 <= lost <= 32


def test_noise_comes_between_responses_and_always_holds_an_octet_no_text_has() -> None:
    engine = engine_with(noise=1.0)
    for _ in range(20):
        answer = talk(engine, b"AT\r")
        assert answer.startswith(OK)
        burst = answer[len(OK) :]
        assert 1 <= len(burst) <= 8
        assert 0xFF in burst
        assert not set(burst) & set(b"\r\n>")


def test_duplicate_urc_sends_an_indication_twice() -> None:
    engine = engine_with(duplicate_urc=1.0)
    talk(engine, b"AT+CNMI=2,1,0,2,0\r")
    assert deliver(engine, "hello") == b'\r\n+CMTI: "SM",1\r\n' * 2


def test_urc_in_response_lands_between_information_and_final_result() -> None:
    engine = engine_with(urc_in_response=1.0)
    talk(engine, b"AT+CNMI=2,1,0,2,0\r")
    assert deliver(engine, "hello") == b""
    answer = talk(engine, b"AT+CSQ\r", now=0.5)
    assert answer == b'\r\n+CSQ: 20,99\r\n\r\n+CMTI: "SM",1\r\n' + OK


def test_fragment_cuts_output_into_pieces_of_one_to_twelve_bytes() -> None:
    engine = engine_with(fragment=True)
    replies = engine.receive_data(b"ATI\r", 0.0)
    assert len(replies) > 2
    assert all(1 <= len(reply.data) <= 12 for reply in replies)
    assert b"".join(reply.data for reply in replies).endswith(OK)


def test_link_faults_replay_with_the_same_seed() -> None:
    def run(seed: int) -> list[bytes]:
        engine = engine_with(drop_final=0.3, noise=0.3, fragment=True, seed=seed)
        return [reply.data for _ in range(20) for reply in engine.receive_data(b"AT\r", 0.0)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_boot_deaf_window_ignores_input_then_announces_the_modem() -> None:
    engine = ModemEngine(SimulatorOptions(boot_deaf=4.0))
    assert talk(engine, b"AT\r", now=0.0) == b""
    assert talk(engine, b"AT\r", now=3.9) == b""
    assert engine.next_deadline() == 4.0
    announced = b"".join(reply.data for reply in engine.advance(4.0))
    assert announced == b"".join(
        b"\r\n" + text + b"\r\n"
        for text in (b"RDY", b"+CFUN: 1", b"+CPIN: READY", b"Call Ready", b"SMS Ready")
    )
    assert talk(engine, b"AT\r", now=4.0) == b"AT\r" + OK


def test_sms_not_ready_refuses_sms_commands_after_boot_with_cms_314() -> None:
    engine = engine_with(sms_not_ready=3.0)
    assert talk(engine, b"AT+CPIN?\r", now=1.0) == b"\r\n+CPIN: READY\r\n" + OK
    assert talk(engine, b'AT+CPMS="SM"\r', now=1.0) == b"\r\n+CMS ERROR: 314\r\n"
    assert talk(engine, b"AT+CNMI=2,1,0,2,0\r", now=1.0) == b"\r\n+CMS ERROR: 314\r\n"
    assert b"".join(reply.data for reply in engine.advance(3.0)) == b"\r\nSMS Ready\r\n"
    assert talk(engine, b"AT+CNMI=2,1,0,2,0\r", now=3.0) == OK


def test_text_mode_at_power_on() -> None:
    engine = engine_with(text_mode=True)
    assert talk(engine, b"AT+CMGF?\r") == b"\r\n+CMGF: 1\r\n" + OK
    assert talk(engine, b"AT+CMGF=0;+CMGS=23\r") == b"\r\n> "


def test_me_storage_numbered_from_zero() -> None:
    engine = engine_with(me_from_zero=True)
    talk(engine, b'AT+CPMS="ME","ME","ME"\r')
    talk(engine, b"AT+CNMI=2,1,0,2,0\r")
    assert deliver(engine, "first") == b'\r\n+CMTI: "ME",0\r\n'
    assert talk(engine, b"AT+CMGR=0\r").startswith(b"\r\n+CMGR: 0,,")
    assert talk(engine, b"AT+CMGR=100\r") == b"\r\n+CMS ERROR: 321\r\n"


def test_periodic_urc_reports_the_signal_every_interval() -> None:
    engine = engine_with(periodic_urc=5.0)
    assert engine.next_deadline() == 5.0
    assert b"".join(reply.data for reply in engine.advance(5.0)) == b"\r\n^RSSI: 20\r\n"
    assert engine.next_deadline() == 10.0


def test_silent_restart_brings_back_factory_settings_and_the_pin_without_a_word() -> None:
    engine = engine_with(silent_restart=30.0, text_mode=True, pin="1234", boot_deaf=2.0)
    assert b"RDY" in b"".join(reply.data for reply in engine.advance(2.0))  # a boot says so
    talk(engine, b"ATE0;+CMEE=1;+CPIN=1234;+CMGF=0;+CNMI=2,1,0,2,0\r", now=2.0)
    assert engine.next_deadline() == 30.0
    talk(engine, b"AT+CMGS=23\r0011", now=29.0)  # the restart comes in the middle of a PDU
    assert b"".join(reply.data for reply in engine.advance(30.0)) == b""
    assert (engine.echo, engine.cmee, engine.cmgf, engine.cnmi) == (True, 0, 1, [0] * 5)
    assert talk(engine, b"AT+CPIN?\r", now=31.0) == b""  # deaf while it boots
    assert talk(engine, b"AT+CPIN?\r", now=32.0) == b"AT+CPIN?\r\r\n+CPIN: SIM PIN\r\n" + OK
    assert b"".join(reply.data for reply in engine.advance(60.0)) == b""
    assert engine.next_deadline() == 90.0


@pytest.mark.parametrize("name", ["drop_final", "noise", "duplicate_urc", "urc_in_response"])
def test_probabilities_outside_zero_to_one_are_refused(name: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="probability"):
        msgspec.convert({name: 1.5}, SimulatorOptions)
