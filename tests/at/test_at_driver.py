"""The AT driver against a scripted modem on in-memory streams, with trio's virtual clock."""

from __future__ import annotations

import contextlib
import logging

import pytest
import trio
import trio.testing
from support.scripted_modem import (
    INIT_COMMANDS,
    OK,
    Answer,
    ScriptedModem,
    resync_answer,
)

from drivers.at import AtModem, AtOptions
from drivers.events import HealthChanged, ModemState
from drivers.gsm import EncodedPart, build_submit, parse_submit
from drivers.modem import ModemUnavailable, OutgoingPart, SendRejected
from drivers.transport import TransportError

PART = EncodedPart(dcs=0, udh=b"", payload=bytes([0x48, 0x69]))  # "Hi" as GSM septets
OUTGOING = OutgoingPart(recipient="+4799999999", part=PART)


class Bench:
    """Hands the driver a fresh in-memory port per open, each served by the next modem."""

    def __init__(self, nursery: trio.Nursery, modems: list[ScriptedModem]) -> None:
        self.nursery = nursery
        self.modems = modems
        self.opens: list[float] = []
        self.ports: list[trio.abc.Stream] = []

    async def open(self) -> trio.abc.Stream:
        self.opens.append(trio.current_time())
        if len(self.opens) > len(self.modems):
            raise TransportError("no such device")
        driver_end, modem_end = trio.testing.memory_stream_pair()
        self.ports.append(modem_end)
        self.nursery.start_soon(self.modems[len(self.opens) - 1].serve, modem_end)
        return driver_end


def make(bench: Bench, **options: object) -> AtModem:
    settings = {"health_interval": 0.0, **options}
    return AtModem("m1", AtOptions(**settings), open_stream=bench.open)  # type: ignore[arg-type]


async def wait_state(modem: AtModem, state: ModemState) -> HealthChanged:
    while True:
        event = await modem.events.receive()
        if isinstance(event, HealthChanged) and event.state is state:
            return event


async def test_initialises_and_reports_ready(nursery: trio.Nursery) -> None:
    fake = ScriptedModem()
    bench = Bench(nursery, [fake])
    modem = make(bench)
    await nursery.start(modem.run)
    health = modem.health()
    assert health.state is ModemState.READY
    assert health.sim == "READY"
    assert "signal -73 dBm" in health.detail and "home" in health.detail
    assert fake.commands[: len(INIT_COMMANDS)] == INIT_COMMANDS
    assert (health.imei, health.iccid, health.manufacturer, health.model) == (
        "866191037123456",
        "8947080012345678901",
        "SIMCOM_Ltd",
        "SIMCOM_SIM800L",
    )
    assert (health.operator, health.registration, health.rssi, health.signal_dbm) == (
        "Telenor",
        "home",
        20,
        -73,
    )
    assert health.storage == "SM"
    assert await wait_state(modem, ModemState.READY)


async def test_send_writes_the_pdu_and_returns_the_reference(nursery: trio.Nursery) -> None:
    fake = ScriptedModem()
    modem = make(Bench(nursery, [fake]))
    await nursery.start(modem.run)
    assert await modem.send(OUTGOING) == 42
    tpdu = build_submit("+4799999999", PART)
    assert fake.commands[-1] == f"AT+CMGS={len(tpdu)}"
    assert fake.pdus == ["00" + tpdu.hex().upper()]
    assert modem.health().sent == 1


async def test_echo_left_on_and_urcs_mid_response(nursery: trio.Nursery) -> None:
    fake = ScriptedModem(echo=True)
    fake.answers["ATE0"] = OK  # a modem that ignores ATE0 keeps echoing
    fake.cmgs_result = b'\r\n+CMTI: "SM",3\r\n+CMGS: 7\r\n\r\n+CDSI: "SR",1\r\nOK\r\n'
    modem = make(Bench(nursery, [fake]))
    await nursery.start(modem.run)
    assert await modem.send(OUTGOING) == 7
    assert modem.urc_counts == {"+CMTI": 1, "+CDSI": 1}
    assert modem.health().state is ModemState.READY


@pytest.mark.parametrize(
    ("answer", "cms", "permanent"),
    [
        (b"\r\n+CMS ERROR: 500\r\n", 500, False),
        (b"\r\n+CMS ERROR: unknown error\r\n", 500, False),
        (b"\r\n+CMS ERROR: 21\r\n", 21, True),
        (b"\r\n+CMS ERROR: Unassigned (unallocated) number\r\n", 1, True),
        (b"\r\n+CMS ERROR: 331\r\n", 331, False),
        (b"\r\nERROR\r\n", None, False),
    ],
)
async def test_cms_error_becomes_send_rejected(
    nursery: trio.Nursery, answer: bytes, cms: int | None, permanent: bool
) -> None:
    fake = ScriptedModem(cmgs_result=answer)
    modem = make(Bench(nursery, [fake]))
    await nursery.start(modem.run)
    with pytest.raises(SendRejected) as caught:
        await modem.send(OUTGOING)
    assert (caught.value.cms, caught.value.permanent) == (cms, permanent)
    # A rejection is about the message: the modem stays up and sends the next one.
    fake.cmgs_result = b"\r\n+CMGS: 43\r\n" + OK
    assert await modem.send(OUTGOING) == 43
    assert modem.health().errors == 1


async def test_cms_error_before_the_prompt(nursery: trio.Nursery) -> None:
    fake = ScriptedModem(prompt=b"\r\n+CMS ERROR: 304\r\n")
    modem = make(Bench(nursery, [fake]))
    await nursery.start(modem.run)
    with pytest.raises(SendRejected) as caught:
        await modem.send(OUTGOING)
    assert (caught.value.cms, caught.value.permanent) == (304, True)


async def test_prompt_timeout_resynchronises_without_reopening(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    first = ScriptedModem(prompt=None)
    bench = Bench(nursery, [first])
    modem = make(bench, command_timeout=7.0)
    await nursery.start(modem.run)
    start = trio.current_time()
    with pytest.raises(ModemUnavailable, match=r"prompt.*resynchronised"):
        await modem.send(OUTGOING)
    # The modem answered the ESC + AT at once: a resync on the open port, no re-initialisation
    # and no reopen.
    assert trio.current_time() - start == pytest.approx(7.0)
    assert first.escapes == 1  # leaves the PDU entry the lost prompt may have opened
    assert first.commands[-1] == "ATS7=1;S7?"
    assert first.commands.count("ATE0") == 1
    health = modem.health()
    assert (health.state, health.resyncs, len(bench.opens)) == (ModemState.READY, 1, 1)
    assert "prompt" in health.last_error
    first.prompt = b"\r\n> "
    assert await modem.send(OUTGOING) == 42


async def test_hung_modem_climbs_the_ladder_to_a_reopen(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    first = ScriptedModem()
    first.cmgs_result = lambda: setattr(first, "hung", True)  # hangs right after the PDU
    bench = Bench(nursery, [first, ScriptedModem()])
    modem = make(bench, send_timeout=120.0, sync_timeout=2.0, sync_attempts=5)
    await nursery.start(modem.run)
    start = trio.current_time()
    with pytest.raises(ModemUnavailable, match="no answer to the PDU within 120 s"):
        await modem.send(OUTGOING)
    # 120 s for +CMGS, then five unanswered resyncs of 2 s each, then a reopen after 1 s.
    assert trio.current_time() - start == pytest.approx(130.0)
    failed = await wait_state(modem, ModemState.FAILED)
    assert "no answer to the resync after 5 attempts" in failed.detail
    await wait_state(modem, ModemState.READY)
    assert bench.opens == pytest.approx([0.0, 131.0])
    assert first.escapes == 4
    assert await modem.send(OUTGOING) == 42


async def test_command_timeout_during_initialisation(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    stuck = ScriptedModem()
    stuck.answers["AT+CSQ"] = None
    bench = Bench(nursery, [stuck, ScriptedModem()])
    modem = make(bench, query_timeout=3.0, command_retries=2)
    nursery.start_soon(modem.run)
    failed = await wait_state(modem, ModemState.FAILED)
    # Three silences of 3 s, the first two each followed by a resync that is answered at once.
    assert trio.current_time() == pytest.approx(9.0)
    assert "AT+CSQ within 3 s, 3 times" in failed.detail
    assert stuck.commands[-5:] == ["AT+CSQ", "ATS7=1;S7?", "AT+CSQ", "ATS7=2;S7?", "AT+CSQ"]
    await wait_state(modem, ModemState.READY)
    assert bench.opens == pytest.approx([0.0, 10.0])


async def test_sync_retries_then_gives_up(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    silent = ScriptedModem()
    silent.answers["AT"] = None
    bench = Bench(nursery, [silent])
    modem = make(bench, sync_timeout=2.0, sync_attempts=5)
    nursery.start_soon(modem.run)
    failed = await wait_state(modem, ModemState.FAILED)
    assert trio.current_time() == pytest.approx(10.0)
    assert silent.commands == ["AT"] * 5
    assert silent.escapes == 4
    assert "no OK to AT" in failed.detail


async def test_sync_succeeds_on_a_later_attempt(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    booting = ScriptedModem()
    replies = iter([None, None, OK])
    booting.answers["AT"] = lambda: next(replies)
    modem = make(Bench(nursery, [booting]), sync_timeout=2.0)
    await nursery.start(modem.run)
    assert trio.current_time() == pytest.approx(4.0)


async def test_recovers_after_the_port_closes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bench = Bench(nursery, [ScriptedModem(), ScriptedModem()])
    modem = make(bench, reopen_backoff_initial=1.0)
    await nursery.start(modem.run)
    await bench.ports[0].aclose()
    failed = await wait_state(modem, ModemState.FAILED)
    assert "closed" in failed.detail
    with pytest.raises(ModemUnavailable, match="not ready"):
        await modem.send(OUTGOING)
    await wait_state(modem, ModemState.READY)
    assert bench.opens == pytest.approx([0.0, 1.0])
    health = modem.health()
    assert (health.state, health.recoveries) == (ModemState.READY, 1)
    assert await modem.send(OUTGOING) == 42


async def test_reopen_backoff_doubles_up_to_the_cap(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bench = Bench(nursery, [])
    modem = make(bench, reopen_backoff_initial=1.0, reopen_backoff_max=8.0)
    nursery.start_soon(modem.run)
    await trio.sleep(40.0)
    gaps = [b - a for a, b in zip(bench.opens, bench.opens[1:], strict=False)]
    assert gaps[:6] == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0, 8.0])
    assert modem.health().state is ModemState.FAILED
    assert "no such device" in modem.health().detail


async def test_an_unplugged_modem_is_one_warning_not_one_per_reopen(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.at")
    bench = Bench(nursery, [ScriptedModem()])
    modem = make(bench)
    await nursery.start(modem.run)
    await bench.ports[0].aclose()  # unplugged: the port closes, then is gone
    await trio.sleep(600)
    assert len(bench.opens) > 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("modem m1 failed: ")
    retries = [r for r in caplog.records if "failed: cannot open the port" in r.getMessage()]
    assert {r.levelno for r in retries} == {logging.INFO}
    # Plugged in again, it is ready; unplugged once more, that is news again.
    bench.modems += [ScriptedModem() for _ in range(len(bench.opens) + 1 - len(bench.modems))]
    await trio.sleep(60)
    assert modem.health().state is ModemState.READY
    await bench.ports[-1].aclose()
    await trio.sleep(0.5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings


async def test_garbled_output_triggers_recovery(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bench = Bench(nursery, [ScriptedModem(), ScriptedModem()])
    modem = make(bench, garbage_limit=4)
    await nursery.start(modem.run)
    # The driver may hang up before the last of it is read.
    with contextlib.suppress(trio.BrokenResourceError):
        await bench.ports[0].send_all(b"\r\n\xffZ" * 5 + b"\r\n")
    failed = await wait_state(modem, ModemState.FAILED)
    assert "5 unrecognised lines in a row" in failed.detail
    await wait_state(modem, ModemState.READY)


async def test_hung_modem_is_found_by_the_health_poll(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    hangs = ScriptedModem()
    bench = Bench(nursery, [hangs, ScriptedModem()])
    modem = make(bench, health_interval=60.0, query_timeout=3.0)
    await nursery.start(modem.run)
    await trio.sleep(1.0)  # the start-up sweep is answered
    hangs.hung = True
    await wait_state(modem, ModemState.FAILED)
    # The poll at 60 s waits 3 s for +CSQ, then five resyncs of 2 s each go unanswered.
    assert trio.current_time() == pytest.approx(73.0)


async def test_a_modem_that_answers_again_is_resynchronised_in_place(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    stalls = ScriptedModem()
    bench = Bench(nursery, [stalls])
    modem = make(bench, health_interval=60.0, query_timeout=3.0)
    await nursery.start(modem.run)
    answers = iter([None])
    stalls.answers["AT+CSQ"] = lambda: next(answers, b"\r\n+CSQ: 9,0\r\n" + OK)
    await trio.sleep(75.0)
    health = modem.health()
    assert (health.state, health.recoveries, len(bench.opens)) == (ModemState.READY, 0, 1)
    assert health.resyncs == 1
    assert health.signal_dbm == -95  # the poll's retry after the resync
    # The lost answer costs a resync and a retry, not a re-initialisation.
    assert stalls.commands.count("ATE0") == 1
    poll = stalls.commands.index("AT+CSQ", len(INIT_COMMANDS))
    assert stalls.commands[poll : poll + 3] == ["AT+CSQ", "ATS7=1;S7?", "AT+CSQ"]


async def test_pin_is_entered_once(nursery: trio.Nursery) -> None:
    fake = ScriptedModem()
    state = {"code": b"SIM PIN"}

    def cpin_query() -> bytes:
        return b"\r\n+CPIN: " + state["code"] + b"\r\n" + OK

    def enter_pin() -> bytes:
        state["code"] = b"READY"
        return OK

    fake.answers["AT+CPIN?"] = cpin_query
    fake.answers['AT+CPIN="4321"'] = enter_pin
    modem = make(Bench(nursery, [fake]), pin="4321")
    await nursery.start(modem.run)
    assert fake.commands.count('AT+CPIN="4321"') == 1
    assert modem.health().sim == "READY"


async def test_the_pin_is_in_no_log_line_and_no_health_detail_when_its_answer_is_lost(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The modem hangs on the PIN: the failure's reason names the command, and it reaches the
    # journal and /ready, which answers without credentials.
    caplog.set_level(logging.DEBUG, logger="drivers.at")
    fake = ScriptedModem()
    fake.answers["AT+CPIN?"] = b"\r\n+CPIN: SIM PIN\r\n" + OK

    def hang() -> None:
        fake.hung = True

    fake.answers['AT+CPIN="4321"'] = hang
    bench = Bench(nursery, [fake, ScriptedModem()])
    modem = make(bench, pin="4321")
    await nursery.start(modem.run)
    assert fake.commands.count('AT+CPIN="4321"') == 1
    assert len(bench.opens) == 2
    health = modem.health()
    assert "AT+CPIN=" in health.last_error
    assert "4321" not in health.last_error
    lines = [record.getMessage() for record in caplog.records]
    assert any("no answer to AT+CPIN=" in line for line in lines)
    assert [line for line in lines if "4321" in line] == []


async def test_wrong_pin_is_never_retried(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = ScriptedModem()
    fake.answers["AT+CPIN?"] = b"\r\n+CPIN: SIM PIN\r\n" + OK
    fake.answers['AT+CPIN="1111"'] = b"\r\n+CME ERROR: 16\r\n"
    bench = Bench(nursery, [fake, ScriptedModem(), ScriptedModem()])
    modem = make(bench, pin="1111")
    nursery.start_soon(modem.run)
    failed = await wait_state(modem, ModemState.FAILED)
    assert "rejected the PIN" in failed.detail
    await trio.sleep(3600.0)
    assert fake.commands.count('AT+CPIN="1111"') == 1
    assert len(bench.opens) == 1
    assert modem.health().state is ModemState.FAILED


@pytest.mark.parametrize(
    ("cpin", "pin", "expect"),
    [
        (b"\r\n+CPIN: SIM PUK\r\n" + OK, "1111", "SIM PUK"),
        (b"\r\n+CME ERROR: 12\r\n", "1111", "SIM PUK"),
        (b"\r\n+CPIN: SIM PIN\r\n" + OK, None, "none is configured"),
    ],
)
async def test_sim_that_needs_a_person_is_reported_not_guessed(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    cpin: bytes,
    pin: str | None,
    expect: str,
) -> None:
    fake = ScriptedModem()
    fake.answers["AT+CPIN?"] = cpin
    bench = Bench(nursery, [fake, ScriptedModem()])
    modem = make(bench, pin=pin)
    nursery.start_soon(modem.run)
    failed = await wait_state(modem, ModemState.FAILED)
    assert expect in failed.detail
    await trio.sleep(600.0)
    assert not any(c.startswith("AT+CPIN=") for c in fake.commands)
    assert len(bench.opens) == 1


async def test_busy_sim_is_polled_until_ready(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = ScriptedModem()
    replies = iter([b"\r\n+CME ERROR: 14\r\n", b"\r\n+CME ERROR: 14\r\n"])
    fake.answers["AT+CPIN?"] = lambda: next(replies, b"\r\n+CPIN: READY\r\n" + OK)
    modem = make(Bench(nursery, [fake]), sim_poll_interval=1.5)
    await nursery.start(modem.run)
    assert trio.current_time() == pytest.approx(3.0)
    assert fake.commands.count("AT+CPIN?") == 3


async def test_events_never_block_and_drop_the_oldest(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bench = Bench(nursery, [])
    modem = make(bench, event_buffer=2, reopen_backoff_max=1.0)
    nursery.start_soon(modem.run)
    await trio.sleep(10.5)
    assert modem.events_dropped > 0
    kept = [modem.events.receive_nowait(), modem.events.receive_nowait()]
    states = [event.state for event in kept if isinstance(event, HealthChanged)]
    assert states == [ModemState.STARTING, ModemState.FAILED]
    assert isinstance(kept[-1], HealthChanged)
    assert kept[-1].detail == modem.health().detail


async def test_send_before_ready_is_unavailable(nursery: trio.Nursery) -> None:
    modem = make(Bench(nursery, []))
    with pytest.raises(ModemUnavailable):
        await modem.send(OUTGOING)


async def test_status_report_request_reaches_the_pdu(nursery: trio.Nursery) -> None:
    fake = ScriptedModem()
    modem = make(Bench(nursery, [fake]))
    await nursery.start(modem.run)
    await modem.send(OutgoingPart(recipient="+4799999999", part=PART, status_report=True))
    await modem.send(OUTGOING)
    with_report, without = (bytes.fromhex(pdu)[1:] for pdu in fake.pdus)
    assert with_report[0] & 0x20 and not without[0] & 0x20  # TP-SRR, TS 23.040 9.2.3.5
    assert parse_submit(with_report).status_report


async def test_quarantine_after_failed_recoveries(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bench = Bench(nursery, [])
    modem = make(
        bench,
        reopen_backoff_initial=1.0,
        reopen_backoff_max=4.0,
        quarantine_after=4,
        quarantine_seconds=300.0,
    )
    nursery.start_soon(modem.run)
    quarantined = await wait_state(modem, ModemState.QUARANTINED)
    # Opens at 0, 1, 3 and 7 fail; the fourth failure sends the modem to rest.
    assert bench.opens == pytest.approx([0.0, 1.0, 3.0, 7.0])
    assert trio.current_time() == pytest.approx(7.0)
    assert "4 recoveries failed in a row" in quarantined.detail
    assert modem.health().state is ModemState.QUARANTINED
    await wait_state(modem, ModemState.STARTING)
    # After the rest the ladder starts over with the first backoff.
    assert bench.opens[4:] == pytest.approx([307.0])
    await trio.sleep(2.0)
    assert bench.opens[4:] == pytest.approx([307.0, 308.0])


async def test_a_modem_that_stays_unplugged_is_quarantined_at_error_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.at")
    bench = Bench(nursery, [])
    modem = make(bench, reopen_backoff_max=4.0, quarantine_after=4, quarantine_seconds=300.0)
    nursery.start_soon(modem.run)
    await trio.sleep(900.0)  # quarantined at 7, 314 and 621 s
    quarantines = [r for r in caplog.records if "quarantined for 300 s" in r.getMessage()]
    assert len(quarantines) == 3
    assert [r.levelno for r in quarantines] == [logging.ERROR, logging.INFO, logging.INFO]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


async def test_transient_rejections_of_different_messages_re_initialise(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = ScriptedModem(cmgs_result=b"\r\n+CMS ERROR: 500\r\n")
    modem = make(Bench(nursery, [fake]), cms_reinit_after=5)
    await nursery.start(modem.run)
    same = OutgoingPart(recipient="+4711111111", part=PART)
    for _ in range(6):  # one message refused again and again is the message, not the modem
        with pytest.raises(SendRejected):
            await modem.send(same)
    assert fake.commands.count("ATE0") == 1
    for number in range(5):
        with pytest.raises(SendRejected):
            await modem.send(OutgoingPart(recipient=f"+47222222{number:02d}", part=PART))
    assert fake.commands.count("ATE0") == 2  # the fifth different refusal re-initialised
    health = modem.health()
    assert (health.state, health.recoveries) == (ModemState.READY, 1)
    fake.cmgs_result = b"\r\n+CMGS: 9\r\n" + OK
    assert await modem.send(same) == 9


async def test_configured_imei_refuses_another_modem(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bench = Bench(nursery, [ScriptedModem()])
    modem = make(bench, imei="356938035643809")
    nursery.start_soon(modem.run)
    failed = await wait_state(modem, ModemState.FAILED)
    assert "IMEI 866191037123456 is not the configured 356938035643809" in failed.detail
    assert modem.health().imei == "866191037123456"


async def test_a_lost_ok_after_the_answer_text_costs_the_grace_not_the_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    lossy = ScriptedModem()
    bench = Bench(nursery, [lossy])
    modem = make(bench, health_interval=60.0, query_timeout=3.0, final_grace=0.5)
    await nursery.start(modem.run)
    answers = iter([b"\r\n+CSQ: 9,0\r\n"])  # the OK is lost on the cable
    lossy.answers["AT+CSQ"] = lambda: next(answers, b"\r\n+CSQ: 9,0\r\n" + OK)
    await trio.sleep_until(60.0)
    await trio.sleep(0.1)
    assert modem.health().resyncs == 0
    # Seen within half a grace of arriving, then a grace of silence: under 3 s by far.
    await trio.sleep_until(60.8)
    assert modem.health().resyncs == 1
    await trio.sleep(5.0)
    assert modem.health().signal_dbm == -95


async def test_a_lost_ok_after_cmgs_is_a_send_not_a_resend(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    modem_end = ScriptedModem(cmgs_result=b"\r\n+CMGS: 42\r\n")  # the OK is lost
    bench = Bench(nursery, [modem_end])
    modem = make(bench, final_grace=0.5)
    await nursery.start(modem.run)
    start = trio.current_time()
    assert await modem.send(OUTGOING) == 42
    assert trio.current_time() - start <= 0.75
    assert len(modem_end.pdus) == 1
    assert modem.health().resyncs == 1


async def test_initialisation_resumes_where_a_lost_answer_stopped_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    lossy = ScriptedModem()
    lost = {"AT+CPMS=?": 1, "AT+CNMI=2,1,0,2,0": 1, "AT+CREG?": 1}
    for command in lost:
        answer = lossy.answers[command]

        def lose_once(command: str = command, answer: Answer = answer) -> bytes | None:
            if lost[command]:
                lost[command] -= 1
                return None  # the whole answer lost on the cable
            return answer() if callable(answer) else answer

        lossy.answers[command] = lose_once
    bench = Bench(nursery, [lossy])
    modem = make(bench, query_timeout=2.0)
    await nursery.start(modem.run)
    # Three silences of 2 s, each resynchronised and the command repeated; no restart.
    assert trio.current_time() == pytest.approx(6.0)
    assert lossy.commands.count("ATE0") == 1
    assert len(bench.opens) == 1
    expected: list[str] = []
    nonces = iter(range(1, 4))
    for command in INIT_COMMANDS:
        resync = f"ATS7={next(nonces)};S7?" if command in lost else ""
        expected += [command, resync, command] if resync else [command]
    assert lossy.commands[: len(expected)] == expected
    assert modem.health().resyncs == 3


async def test_a_late_answer_is_taken_off_the_line_by_the_resync_nonce(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The OK of AT+CSQ comes 1 s late, after the driver gave it up and began its resync: taken
    # for the resync's answer it would put every later answer one command behind.
    slow = ScriptedModem()
    bench = Bench(nursery, [slow])
    modem = make(bench, health_interval=60.0, final_grace=0.3)
    await nursery.start(modem.run)
    late = iter([True])

    def csq() -> bytes | None:
        if next(late, False):
            # The OK comes 1 s late, and the answer to the first resync only after it.
            assert slow.stream is not None
            nursery.start_soon(send_later, slow.stream, 1.0, OK + resync_answer(1))
            return b"\r\n+CSQ: 9,0\r\n"
        return b"\r\n+CSQ: 9,0\r\n" + OK

    slow.answers["AT+CSQ"] = csq
    slow.answers["ATS7=1;S7?"] = None  # answered by send_later, after the late OK
    await trio.sleep(70.0)
    health = modem.health()
    assert (health.state, len(bench.opens)) == (ModemState.READY, 1)
    assert health.signal_dbm == -95
    # The late OK answered nothing the driver took; the poll went on in step.
    poll = slow.commands.index("AT+CSQ", len(INIT_COMMANDS))
    assert slow.commands[poll:] == [
        "AT+CSQ",
        "ATS7=1;S7?",
        "ATS7=2;S7?",
        "AT+CSQ",
        "AT+CREG?",
        "AT+CEREG?",
        "AT+COPS?",
        "AT+CMEE?",
    ]


async def send_later(stream: trio.abc.Stream, delay: float, data: bytes) -> None:
    await trio.sleep(delay)
    await stream.send_all(data)
