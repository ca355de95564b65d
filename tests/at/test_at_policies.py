"""The AT driver's smaller pure decisions: SIM unlock, the rejection streak, the event buffer,
the network's state in the health, periodic chores. No trio: time is an argument."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at.commands import Registration, RegistrationStatus
from drivers.at.framer import FinalKind, FinalResult
from drivers.at.policies import (
    IndicationChoice,
    Periodic,
    RejectionStreak,
    SimStep,
    SimUnlock,
    make_room,
    network_detail,
    registration_name,
    sim_code,
    storage_in_use,
)
from drivers.events import (
    HealthChanged,
    ModemEvent,
    ModemState,
    RegistrationChanged,
    StatusReportReceived,
)
from drivers.gsm import SmsStatusReport, build_status_report, parse_received

OK = FinalResult(kind=FinalKind.OK)


def test_sim_ready_codes_let_sms_commands_follow() -> None:
    for code in ("READY", "SIM PIN2", "SIM PUK2"):
        assert SimUnlock(None).next(code).step is SimStep.READY


def test_the_pin_is_entered_once_and_a_second_ask_locks() -> None:
    policy = SimUnlock("1234")
    entered = policy.next("SIM PIN")
    assert (entered.step, entered.command) == (SimStep.ENTER_PIN, 'AT+CPIN="1234"')
    assert policy.pin_answered(OK) is None
    again = policy.next("SIM PIN")
    assert again.step is SimStep.LOCKED and "still asks" in again.reason


def test_a_rejected_pin_is_never_retried() -> None:
    policy = SimUnlock("1234")
    policy.next("SIM PIN")
    wrong = policy.pin_answered(FinalResult(kind=FinalKind.CME_ERROR, code=16, text="16"))
    assert wrong is not None and wrong.step is SimStep.LOCKED and "not retried" in wrong.reason


def test_no_pin_puk_and_unusable_pin_lock_busy_waits() -> None:
    assert "none is configured" in SimUnlock(None).next("SIM PIN").reason
    assert "never guessed" in SimUnlock("1234").next("SIM PUK").reason
    assert "never guessed" in SimUnlock("1234").next("PH-SIM PIN").reason
    assert "unusable" in SimUnlock("12a4").next("SIM PIN").reason
    assert SimUnlock("1234").next("SIM BUSY").step is SimStep.WAIT


def test_cme_errors_to_cpin_stand_for_codes() -> None:
    assert sim_code(FinalResult(kind=FinalKind.CME_ERROR, code=14, text="14")) == "SIM BUSY"
    assert sim_code(FinalResult(kind=FinalKind.CME_ERROR, code=10, text="10")) == (
        "SIM NOT INSERTED"
    )
    assert sim_code(FinalResult(kind=FinalKind.ERROR, text="ERROR")) == "ERROR ERROR"


def test_rejection_streak_counts_different_transient_rejections_only() -> None:
    streak = RejectionStreak(3)
    assert not streak.rejected(b"a", permanent=False)
    assert not streak.rejected(b"a", permanent=False)  # the same message again
    assert not streak.rejected(b"b", permanent=True)  # the message's fault
    assert not streak.rejected(b"c", permanent=False)
    assert streak.rejected(b"d", permanent=False)  # three different ones: the modem
    assert streak.length == 0
    streak.rejected(b"e", permanent=False)
    streak.sent()
    assert streak.length == 0
    assert not any(RejectionStreak(0).rejected(bytes([n]), permanent=False) for n in range(9))


def report() -> StatusReportReceived:
    when = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    tpdu = build_status_report(1, "+4799999999", sc_timestamp=when, discharge_time=when, status=0)
    decoded = parse_received(tpdu)
    assert isinstance(decoded, SmsStatusReport)
    return StatusReportReceived(modem="m", storage="SR", index=1, smsc="", pdu=tpdu, report=decoded)


def test_make_room_drops_the_oldest_health_change_never_an_inbound_or_registration_event() -> None:
    first = HealthChanged(modem="m", state=ModemState.STARTING, detail="1")
    second = HealthChanged(modem="m", state=ModemState.READY, detail="2")
    inbound = report()
    newest = HealthChanged(modem="m", state=ModemState.FAILED, detail="3")
    queued: list[ModemEvent] = [inbound, first, second]
    assert make_room(queued, newest) == [inbound, second, newest]
    assert make_room([inbound, inbound], newest) is None
    registered = RegistrationChanged(modem="m", registered=True)
    assert make_room([registered, inbound], newest) is None  # the sweeps wait from it


def test_storage_in_use_prefers_the_accepted_then_the_reported_then_the_first_wish() -> None:
    assert storage_in_use("ME", "SM", ["SM", "ME"]) == "ME"
    assert storage_in_use(None, "MT", ["SM", "ME"]) == "MT"
    assert storage_in_use(None, "", ["SM", "ME"]) == "SM"
    assert storage_in_use(None, "", []) == ""


def test_indication_choice_tries_stored_first_and_asks_csms_for_direct_only() -> None:
    choice = IndicationChoice(["2,1,0,2,0", "2,2,0,1,0"], csms_for_direct=True)
    stored, direct = choice.candidates
    assert (stored.command, stored.direct) == ("AT+CNMI=2,1,0,2,0", False)
    assert direct.direct
    assert not choice.wants_csms(stored)
    assert choice.wants_csms(direct)
    assert not choice.wants_csms(None)
    assert not IndicationChoice(["2,2,0,1,0"], csms_for_direct=False).wants_csms(direct)


def reg(stat: RegistrationStatus) -> Registration:
    return Registration(stat=stat)


@pytest.mark.parametrize(
    ("circuit", "eps", "name"),
    [
        (None, None, None),
        (RegistrationStatus.HOME, None, "home"),
        (None, RegistrationStatus.ROAMING, "roaming"),
        # An LTE stick registered on EPS only: SMS goes over EPS.
        (RegistrationStatus.SEARCHING, RegistrationStatus.HOME, "home"),
        (RegistrationStatus.ROAMING, RegistrationStatus.HOME, "home"),
        (RegistrationStatus.SMS_ONLY_HOME, RegistrationStatus.ROAMING, "sms only home"),
        (RegistrationStatus.DENIED, RegistrationStatus.SEARCHING, "denied"),  # a tie: +CREG
    ],
)
def test_the_better_registration_shows(
    circuit: RegistrationStatus | None, eps: RegistrationStatus | None, name: str | None
) -> None:
    as_reg = {None: None} | {stat: reg(stat) for stat in RegistrationStatus}
    assert registration_name(as_reg[circuit], as_reg[eps]) == name


@given(st.sampled_from(RegistrationStatus), st.sampled_from(RegistrationStatus))
def test_either_registered_shows_registered(
    circuit: RegistrationStatus, eps: RegistrationStatus
) -> None:
    name = registration_name(reg(circuit), reg(eps))
    registered = {s.name.lower().replace("_", " ") for s in RegistrationStatus if s.registered}
    assert (name in registered) == (circuit.registered or eps.registered)
    if RegistrationStatus.HOME in (circuit, eps):
        assert name == "home"


def test_network_detail_says_what_is_unknown() -> None:
    assert network_detail(-71, "home") == "signal -71 dBm, home"
    assert network_detail(None, "") == "signal unknown, registration unknown"


def test_a_sweep_is_due_at_once_then_every_interval_after_the_last() -> None:
    sweeps = Periodic(60.0, now=100.0, at_once=True)
    assert sweeps.due(100.0)
    sweeps.done(101.0)
    assert (sweeps.next_at, sweeps.due(160.9), sweeps.due(161.0)) == (161.0, False, True)
    # A sweep asked for early (a deferred delete) moves the next periodic one.
    sweeps.done(130.0)
    assert sweeps.next_at == 190.0


def test_a_health_poll_is_due_an_interval_after_the_start() -> None:
    polls = Periodic(60.0, now=100.0, at_once=False)
    assert (polls.next_at, polls.due(159.0), polls.due(160.0)) == (160.0, False, True)


@pytest.mark.parametrize("interval", [0.0, -1.0])
@pytest.mark.parametrize("at_once", [True, False])
def test_no_interval_means_only_when_asked(interval: float, at_once: bool) -> None:
    chore = Periodic(interval, now=5.0, at_once=at_once)
    assert chore.due(5.0) is at_once
    chore.done(6.0)
    assert chore.next_at == math.inf and not chore.due(1e12)


@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=20), st.floats(0.1, 1e4))
def test_a_chore_is_never_due_sooner_than_an_interval_after_the_last(
    done: list[float], interval: float
) -> None:
    chore = Periodic(interval, now=0.0, at_once=True)
    for at in sorted(done):
        chore.done(at)
    last = max(done)
    assert not chore.due(last + interval * 0.999)
    assert chore.due(last + interval)
