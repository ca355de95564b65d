"""Each quirk profile of the simulated modem does what it claims (STYLE.md "Tests").

The quirks copy habits of real modems: echo that cannot be turned off, URCs inside a response,
+CMS ERROR: 500 from the network, plain ERROR instead of +CMS ERROR, line noise, a locked SIM.
"""

from __future__ import annotations

import msgspec
import pytest

from drivers.simulator import PROFILES, ModemEngine, SimulatorOptions, profile_named

HELLO_PDU = b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
OK = b"\r\nOK\r\n"


def talk(engine: ModemEngine, data: bytes, now: float = 0.0) -> bytes:
    return b"".join(reply.data for reply in engine.receive_data(data, now))


def quiet_engine(profile: str, **options: object) -> ModemEngine:
    engine = ModemEngine(SimulatorOptions(profile=profile, **options))  # type: ignore[arg-type]
    talk(engine, b"ATE0;+CMEE=1\r")
    return engine


def send_hello(engine: ModemEngine) -> bytes:
    assert talk(engine, b"AT+CMGS=23\r") == b"\r\n> "
    return talk(engine, HELLO_PDU + b"\x1a")


def test_every_profile_is_tested_here() -> None:
    tested = {"default", "echo_on", "slow_cmgs", "urc_in_response", "cms_500", "bare_error"}
    tested |= {"garbage", "sim_pin"}
    assert set(PROFILES) == tested


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'nope'.*bare_error, cms_500, default, echo_on"):
        profile_named("nope")
    with pytest.raises(msgspec.ValidationError, match="unknown simulator profile"):
        msgspec.convert({"profile": "nope"}, SimulatorOptions)


def test_default_is_well_behaved() -> None:
    engine = quiet_engine("default")
    assert talk(engine, b"AT\r") == OK
    assert send_hello(engine) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert talk(engine, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n" + OK


def test_echo_on_ignores_ate0() -> None:
    engine = ModemEngine(SimulatorOptions(profile="echo_on"))
    assert talk(engine, b"ATE0\r") == b"ATE0\r" + OK
    assert talk(engine, b"AT+CSQ\r") == b"AT+CSQ\r\r\n+CSQ: 20,99\r\n" + OK
    assert talk(engine, b"AT+CMGS=23\r") == b"AT+CMGS=23\r\r\n> "
    assert talk(engine, HELLO_PDU + b"\x1a") == HELLO_PDU + b"\r\n+CMGS: 0\r\n" + OK


def test_slow_cmgs_answers_five_seconds_later() -> None:
    engine = quiet_engine("slow_cmgs")
    assert talk(engine, b"AT+CMGS=23\r", now=100.0) == b"\r\n> "
    (reply,) = engine.receive_data(HELLO_PDU + b"\x1a", 100.0)
    assert reply.due == 105.0
    assert reply.data == b"\r\n+CMGS: 0\r\n" + OK
    assert reply.sent is not None
    assert reply.sent.text == "hellohello"
    # Whatever comes next waits for the network's answer.
    (after,) = engine.receive_data(b"AT\r", 101.0)
    assert after.due == 105.0


def test_urc_in_response_puts_creg_between_information_and_ok() -> None:
    engine = quiet_engine("urc_in_response")
    assert talk(engine, b"AT+CSQ\r") == b"\r\n+CSQ: 20,99\r\n\r\n+CREG: 1\r\n" + OK
    assert talk(engine, b"ATI\r") == (
        b"\r\nedgegw\r\nSIM-GSM1\r\nRevision: SIMGSM1R01\r\n\r\n+CREG: 1\r\n" + OK
    )
    assert send_hello(engine) == b"\r\n+CMGS: 0\r\n\r\n+CREG: 1\r\n" + OK
    # Never where it would be mistaken for the response itself, nor without information.
    assert talk(engine, b"AT+CREG?\r") == b"\r\n+CREG: 0,1\r\n" + OK
    assert talk(engine, b"AT+CMGF=0\r") == OK


def test_cms_500_fails_every_third_send_without_using_a_reference() -> None:
    engine = quiet_engine("cms_500")
    answers = [send_hello(engine) for _ in range(6)]
    failed = b"\r\n+CMS ERROR: 500\r\n"
    assert answers == [
        b"\r\n+CMGS: 0\r\n" + OK,
        b"\r\n+CMGS: 1\r\n" + OK,
        failed,
        b"\r\n+CMGS: 2\r\n" + OK,
        b"\r\n+CMGS: 3\r\n" + OK,
        failed,
    ]


def test_cms_fail_every_option_overrides_the_profile() -> None:
    engine = quiet_engine("default", cms_fail_every=2)
    assert [send_hello(engine).startswith(b"\r\n+CMS ERROR: 500") for _ in range(4)] == [
        False,
        True,
        False,
        True,
    ]


def test_bare_error_gives_plain_error_for_sms_failures_only() -> None:
    engine = quiet_engine("bare_error")
    assert talk(engine, b"AT+CMGS=200\r") == b"\r\nERROR\r\n"
    assert talk(engine, b"AT+CMGS=22\r") == b"\r\n> "
    assert talk(engine, HELLO_PDU + b"\x1a") == b"\r\nERROR\r\n"
    assert talk(engine, b"AT+CPIN=1234\r") == b"\r\n+CME ERROR: 3\r\n"


def test_garbage_adds_noise_after_every_final_result_code() -> None:
    engine = quiet_engine("garbage")
    clean = quiet_engine("default")
    commands = [b"AT\r", b"AT+CSQ\r", b"AT+NOPE\r", b"ATI\r", b"AT+CMGS=23\r", HELLO_PDU + b"\x1a"]
    noises = []
    for command in commands:
        noisy, expected = talk(engine, command), talk(clean, command)
        assert noisy.startswith(expected)
        if expected.endswith(b"> "):
            # No noise after the prompt: that would become part of the PDU's echo-free wait.
            assert noisy == expected
            continue
        noise = noisy[len(expected) :]
        assert 1 <= len(noise) <= 8
        assert not set(noise) & set(b"\r\n>")
        noises.append(noise)
    assert len(set(noises)) > 1


def test_garbage_noise_repeats_with_the_same_seed() -> None:
    def noise(seed: int) -> bytes:
        engine = quiet_engine("garbage", seed=seed)
        return b"".join(talk(engine, b"AT\r") for _ in range(5))

    assert noise(7) == noise(7)
    assert noise(7) != noise(8)


def test_sim_pin_starts_locked_with_pin_1234() -> None:
    engine = quiet_engine("sim_pin")
    assert talk(engine, b"AT+CPIN?\r") == b"\r\n+CPIN: SIM PIN\r\n" + OK
    assert talk(engine, b"AT+CMGS=23\r") == b"\r\n+CMS ERROR: 311\r\n"
    assert talk(engine, b"AT+CPIN=1234\r") == OK
    assert send_hello(engine) == b"\r\n+CMGS: 0\r\n" + OK


def test_pin_option_overrides_the_profile() -> None:
    engine = quiet_engine("sim_pin", pin="9999")
    assert talk(engine, b"AT+CPIN=1234\r") == b"\r\n+CME ERROR: 16\r\n"
    assert talk(engine, b"AT+CPIN=9999\r") == OK


@pytest.mark.parametrize(
    "fields",
    [{"signal": 32}, {"send_delay": -1.0}, {"register_delay": -1.0}, {"cms_fail_every": -1}],
)
def test_options_out_of_range_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, SimulatorOptions)


def test_options_refuse_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"profil": "default"}, SimulatorOptions)
