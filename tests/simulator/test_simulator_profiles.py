"""Each quirk profile of the simulated modem does what it claims (STYLE.md "Tests").

The quirks copy habits of real modems: echo that cannot be turned off, URCs inside a response,
+CMS ERROR: 500 from the network, plain ERROR instead of +CMS ERROR, line noise, a locked SIM,
a SIM still busy after power-on, a full SIM storage, a port that vanishes.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
import trio
import trio.testing
from support.terminal import StreamTerminal

from drivers.gsm import encode_message, parse_deliver, split_sca
from drivers.simulator import (
    PROFILES,
    ModemEngine,
    Simulator,
    SimulatorOptions,
    deliver_tpdus,
    profile_named,
    serve_stream,
)

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
    tested |= {"garbage", "sim_pin", "sim_not_ready", "storage_full", "vanishing"}
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
    [
        {"signal": 32},
        {"send_delay": -1.0},
        {"register_delay": -1.0},
        {"cms_fail_every": -1},
        {"storage_capacity": 0},
        {"storage_capacity": 256},
        {"report_delay": -1.0},
        {"report_status": 256},
        {"ack_timeout": -1.0},
        {"sim_busy": -1.0},
        {"vanish_after": -1.0},
        {"vanish_for": -1.0},
    ],
)
def test_options_out_of_range_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, SimulatorOptions)


def test_options_refuse_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"profil": "default"}, SimulatorOptions)


STAMP = dt.datetime(2026, 11, 24, 21, 0, tzinfo=dt.UTC)


def hello_tpdu(text: str = "hello") -> bytes:
    (tpdu,) = deliver_tpdus("+4799999999", list(encode_message(text).parts), timestamp=STAMP)
    return tpdu


def test_urc_in_response_puts_a_held_cmti_between_the_response_and_ok() -> None:
    engine = quiet_engine("urc_in_response")
    talk(engine, b"AT+CNMI=2,1,0,0,0\r", now=10.0)
    replies, index = engine.receive_sms(hello_tpdu(), 10.0)
    # The message is stored at once; its indication waits for a response to land in.
    assert (replies, index) == ([], 1)
    assert talk(engine, b"AT+CSQ\r", now=10.5) == (
        b'\r\n+CSQ: 20,99\r\n\r\n+CREG: 1\r\n\r\n+CMTI: "SM",1\r\n' + OK
    )
    assert engine.advance(20.0) == []


def test_urc_in_response_sends_a_held_urc_alone_after_a_second_without_a_response() -> None:
    engine = quiet_engine("urc_in_response")
    talk(engine, b"AT+CNMI=2,1,0,0,0\r", now=10.0)
    engine.receive_sms(hello_tpdu(), 10.0)
    # A command without information text gives the URC no place to land in.
    assert talk(engine, b"AT\r", now=10.2) == OK
    assert engine.next_deadline() == 11.0
    assert engine.advance(10.9) == []
    (reply,) = engine.advance(11.0)
    assert (reply.due, reply.data) == (11.0, b'\r\n+CMTI: "SM",1\r\n')


def test_sim_not_ready_is_busy_for_three_seconds_after_power_on() -> None:
    engine = quiet_engine("sim_not_ready")
    assert talk(engine, b"AT+CPIN?\r", now=1.0) == b"\r\n+CME ERROR: 14\r\n"
    assert talk(engine, b"AT+CIMI\r", now=1.0) == b"\r\n+CME ERROR: 14\r\n"
    assert talk(engine, b"AT+CMGL=4\r", now=2.9) == b"\r\n+CMS ERROR: 314\r\n"
    assert talk(engine, b"AT+CREG?\r", now=2.9) == b"\r\n+CREG: 0,0\r\n" + OK
    talk(engine, b"AT+CMEE=2\r", now=2.9)
    assert talk(engine, b"AT+CPIN?\r", now=2.9) == b"\r\n+CME ERROR: SIM busy\r\n"
    assert talk(engine, b"AT+CPIN?\r", now=3.0) == b"\r\n+CPIN: READY\r\n" + OK
    assert talk(engine, b"AT+CREG?\r", now=3.0) == b"\r\n+CREG: 0,1\r\n" + OK
    assert talk(engine, b"AT+CMGS=23\r", now=3.0) == b"\r\n> "
    assert talk(engine, HELLO_PDU + b"\x1a", now=3.0) == b"\r\n+CMGS: 0\r\n" + OK


def test_sim_busy_option_with_a_pin_asks_for_it_once_the_sim_is_up() -> None:
    engine = quiet_engine("sim_pin", sim_busy=2.0)
    assert talk(engine, b"AT+CPIN=1234\r", now=1.0) == b"\r\n+CME ERROR: 14\r\n"
    assert talk(engine, b"AT+CPIN?\r", now=2.0) == b"\r\n+CPIN: SIM PIN\r\n" + OK
    assert talk(engine, b"AT+CPIN=1234\r", now=2.0) == OK


def test_storage_full_holds_new_messages_in_the_network_until_one_is_deleted() -> None:
    engine = quiet_engine("storage_full")
    talk(engine, b"AT+CNMI=2,1,0,0,0\r")
    assert talk(engine, b"AT+CPMS?\r") == b'\r\n+CPMS: "SM",30,30,"SM",30,30,"SM",30,30\r\n' + OK
    # The old messages are read SMS-DELIVERs.
    listing = talk(engine, b"AT+CMGL=1\r").split(b"\r\n")
    assert listing[1] == b"+CMGL: 1,1,,30"
    _smsc, tpdu = split_sca(bytes.fromhex(listing[2].decode()))
    assert parse_deliver(tpdu).originator == "+4791000000"
    assert talk(engine, b"AT+CMGL=0\r") == OK
    # Memory capacity exceeded: the modem says nothing and stores nothing.
    assert engine.receive_sms(hello_tpdu("first"), 1.0) == ([], None)
    assert engine.receive_sms(hello_tpdu("second"), 1.0) == ([], None)
    assert talk(engine, b"AT+CMGW=1\r", now=1.0) == b"\r\n+CMS ERROR: 322\r\n"
    # Freeing a slot lets the network retry: after the OK, the first one comes in.
    assert talk(engine, b"AT+CMGD=7\r", now=2.0) == OK + b'\r\n+CMTI: "SM",7\r\n'
    assert talk(engine, b"AT+CMGD=0,1\r", now=3.0) == OK + b'\r\n+CMTI: "SM",1\r\n'
    assert talk(engine, b"AT+CPMS?\r") == b'\r\n+CPMS: "SM",2,30,"SM",2,30,"SM",2,30\r\n' + OK


async def test_vanishing_closes_the_line_after_30_s_and_is_back_5_s_later_restarted(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Simulator(SimulatorOptions(profile="vanishing"))
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_stream, sim, server)
    terminal = StreamTerminal(client)
    await client.send_all(b"ATE0\r")
    assert await terminal.read_until(b"OK\r\n") == b"ATE0\r\r\nOK\r\n"
    assert await sim.deliver_mo("+4799999999", "kept") == [1]
    start = trio.current_time()
    with pytest.raises(EOFError):
        await terminal.read_until(b"never")
    assert trio.current_time() - start == pytest.approx(30.0)
    # A new connection is answered once the modem is back, with factory settings (echo on)
    # and the stored message still there.
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_stream, sim, server)
    terminal = StreamTerminal(client)
    await client.send_all(b"AT+CPMS?\r")
    assert await terminal.read_until(b"OK\r\n") == (
        b'AT+CPMS?\r\r\n+CPMS: "SM",1,30,"SM",1,30,"SM",1,30\r\n' + OK
    )
    assert trio.current_time() - start == pytest.approx(35.0)
