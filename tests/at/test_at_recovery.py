"""The pure decisions of the AT driver's recovery: the per-command ladder and the table of
stored messages awaiting their acknowledgement and delete. No trio: time is an argument."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at import AtOptions
from drivers.at.awaiting import AwaitingTable, DeleteStep, DeleteTries, Offer
from drivers.at.commands import resync
from drivers.at.framer import FinalKind, FinalResult
from drivers.at.recovery import (
    AnswerWait,
    CommandLadder,
    Decision,
    GarbageRun,
    ReopenLadder,
    Rest,
    ResyncNonces,
    Step,
    escapes,
    is_not_ready,
    is_repeatable,
    resync_answered,
)

OK = FinalResult(kind=FinalKind.OK)
CMS_314 = FinalResult(kind=FinalKind.CMS_ERROR, code=314, text="314")
CME_14 = FinalResult(kind=FinalKind.CME_ERROR, code=14, text="14")
CMS_500 = FinalResult(kind=FinalKind.CMS_ERROR, code=500, text="500")


def ladder(*, repeatable: bool = True, retries: int = 2) -> CommandLadder:
    return CommandLadder(
        repeatable=repeatable, retries=retries, poll_interval=1.0, not_ready_for=5.0
    )


@pytest.mark.parametrize(
    ("serving", "escalation"), [(True, Step.REINITIALISE), (False, Step.REOPEN)]
)
def test_lost_answers_of_a_repeatable_command_resync_and_repeat_then_escalate(
    serving: bool, escalation: Step
) -> None:
    steps = ladder(retries=2)
    assert [steps.timed_out(serving=serving).step for _ in range(3)] == [
        Step.RESYNC_AND_REPEAT,
        Step.RESYNC_AND_REPEAT,
        escalation,
    ]
    assert ladder(retries=0).timed_out(serving=serving).step is escalation


@pytest.mark.parametrize("serving", [True, False])
def test_a_lost_answer_of_a_command_not_safe_to_repeat_is_reported_after_a_resync(
    serving: bool,
) -> None:
    assert ladder(repeatable=False).timed_out(serving=serving) == Decision(Step.RESYNC_AND_REPORT)


def test_not_ready_is_asked_again_until_its_window_closes() -> None:
    steps = ladder()
    assert steps.answered(CMS_314, 10.0) == Decision(Step.ASK_AGAIN, 11.0)
    assert steps.answered(CME_14, 13.0) == Decision(Step.ASK_AGAIN, 14.0)
    assert steps.answered(CMS_314, 14.0) == Decision(Step.ASK_AGAIN, 15.0)
    assert steps.answered(CMS_314, 15.0) == Decision(Step.ACCEPT)
    assert ladder().answered(OK, 0.0) == Decision(Step.ACCEPT)
    assert ladder().answered(CMS_500, 0.0) == Decision(Step.ACCEPT)
    # A command that must not run twice gets its not-ready answer as it is.
    assert ladder(repeatable=False).answered(CMS_314, 0.0) == Decision(Step.ACCEPT)


def test_which_answers_mean_not_ready() -> None:
    assert is_not_ready(CMS_314) and is_not_ready(CME_14)
    assert not is_not_ready(CMS_500) and not is_not_ready(OK)


@pytest.mark.parametrize(
    ("command", "repeatable"),
    [
        ("AT+CSQ", True),
        ("AT+CMGR=3", True),
        ("AT+CMGL=4", True),
        ("AT+CNMI=2,1,0,2,0", True),
        ("AT+CPIN?", True),
        ('AT+CPIN="1234"', False),
        ("AT+CMGD=3", False),
        ("AT+CNMA", False),
        ("AT+CMGS=23", False),
    ],
)
def test_commands_safe_to_repeat(command: str, repeatable: bool) -> None:
    assert is_repeatable(command) is repeatable


def test_emitted_message_is_skipped_until_reemit_after_then_emitted_again() -> None:
    table = AwaitingTable(reemit_after=60.0)
    key = ("SM", 3)
    assert table.offer(key, b"a", 0.0) is Offer.EMIT
    table.emitted(key, b"a", 0.0)
    assert table.awaited(key, 30.0)
    assert table.offer(key, b"a", 30.0) is Offer.SKIP
    assert table.offer(key, b"a", 60.0) is Offer.EMIT
    assert not table.awaited(key, 60.0)


def test_another_message_at_the_same_index_is_new() -> None:
    table = AwaitingTable(reemit_after=60.0)
    table.emitted(("SM", 3), b"a", 0.0)
    assert table.offer(("SM", 3), b"b", 1.0) is Offer.EMIT
    assert table.offer(("SM", 3), b"a", 2.0) is Offer.EMIT  # forgotten, so not skipped


def test_committed_messages_survive_a_reconnect_and_are_deleted_by_the_sweep() -> None:
    table = AwaitingTable(reemit_after=60.0)
    table.emitted(("SM", 1), b"a", 0.0)
    table.emitted(("SM", 2), b"b", 0.0)
    table.committed(("SM", 1), b"a", 5.0)
    table.reconnected()
    assert table.offer(("SM", 1), b"a", 6.0) is Offer.DELETE
    assert table.offer(("SM", 2), b"b", 6.0) is Offer.EMIT  # came again after the reconnect
    # Committed: an indication for its index is read, in case a newer message is there.
    assert not table.awaited(("SM", 1), 6.0)
    table.gone(("SM", 1))
    assert table.offer(("SM", 1), b"a", 7.0) is Offer.EMIT


def test_committed_after_a_reconnect_forgot_it_still_counts() -> None:
    table = AwaitingTable(reemit_after=60.0)
    table.committed(("ME", 0), b"a", 5.0)
    assert table.offer(("ME", 0), b"a", 6.0) is Offer.DELETE
    assert table.offer(("ME", 0), b"b", 6.0) is Offer.EMIT  # another message at its index


def test_a_listing_without_an_entry_forgets_it() -> None:
    table = AwaitingTable(reemit_after=60.0)
    table.committed(("SM", 1), b"a", 0.0)
    table.committed(("SM", 2), b"b", 0.0)
    table.committed(("SR", 1), b"c", 0.0)
    table.listed("SM", {("SM", 2)})
    offers = [
        table.offer(key, tpdu, 1.0)
        for key, tpdu in ((("SM", 1), b"a"), (("SM", 2), b"b"), (("SR", 1), b"c"))
    ]
    assert offers == [Offer.EMIT, Offer.DELETE, Offer.DELETE]


@pytest.mark.parametrize(
    ("failures", "steps"),
    [
        # answer_lost per failure -> the step after each
        ([True, True], [DeleteStep.RETRY, DeleteStep.DEFER]),
        ([True, False], [DeleteStep.RETRY, DeleteStep.DEFER]),
        ([False], [DeleteStep.DEFER]),  # an error answer or a broken link: to the sweep
    ],
)
def test_a_delete_whose_answer_is_lost_is_tried_once_more_then_left_to_a_sweep(
    failures: list[bool], steps: list[DeleteStep]
) -> None:
    tries = DeleteTries()
    assert [tries.failed(answer_lost=lost) for lost in failures] == steps


@given(st.integers(1, 6), st.lists(st.booleans(), min_size=1, max_size=10))
def test_delete_tries_never_exceed_their_attempts(attempts: int, lost: list[bool]) -> None:
    tries = DeleteTries(attempts)
    made = 0
    for answer_lost in lost:
        made += 1
        if tries.failed(answer_lost=answer_lost) is DeleteStep.DEFER:
            break
    assert made <= attempts
    assert made == attempts or not all(lost[:made]) or made == len(lost)


def test_a_resync_is_answered_by_its_own_nonce_only() -> None:
    assert resync(61) == "ATS7=61;S7?"
    with pytest.raises(ValueError):
        resync(0)
    assert resync_answered(("061",), OK, 61)
    assert resync_answered(("61",), OK, 61)
    assert not resync_answered((), OK, 61)  # a late OK of the command given up on
    assert not resync_answered(("060",), OK, 61)  # the answer to an earlier resync
    assert not resync_answered(("\xb3",), OK, 3)  # noise read as a superscript, no number
    # A modem without S7 says ERROR: it answered this very command.
    assert resync_answered((), FinalResult(kind=FinalKind.ERROR, text="ERROR"), 61)


@pytest.mark.parametrize(
    ("attempts", "first", "tries"),
    [
        (3, False, [False, True, True]),  # ESC before every try after the first
        (3, True, [True, True, True]),  # and before the first after a command given up on
        (1, False, [False]),
        (0, False, [False]),  # at least one try
        (-2, True, [True]),
    ],
)
def test_synchronisation_tries_and_their_escapes(
    attempts: int, first: bool, tries: list[bool]
) -> None:
    assert escapes(attempts, first=first) == tries


def test_resync_nonces_run_1_to_255_and_wrap() -> None:
    nonces = ResyncNonces()
    taken = [nonces.next() for _ in range(512)]
    assert taken[:255] == list(range(1, 256))
    assert taken[255:258] == [1, 2, 3]
    assert all(resync(n) for n in taken)  # each one a valid S7 value


@given(st.integers(0, 1000))
def test_consecutive_resync_nonces_always_differ(count: int) -> None:
    nonces = ResyncNonces()
    for _ in range(count):
        nonces.next()
    before = nonces.last
    after = nonces.next()
    assert after != before and 1 <= after <= 255


def test_reopen_backoff_doubles_to_its_cap_and_a_ready_connection_resets_it() -> None:
    ladder = ReopenLadder(initial=1.0, maximum=8.0, quarantine_after=0, quarantine_seconds=900)
    waits = [ladder.ended(became_ready=False).seconds for _ in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert ladder.ended(became_ready=True) == Rest(1.0)
    assert ladder.ended(became_ready=False) == Rest(2.0, failures=1)


def test_quarantine_after_failed_recoveries_in_a_row_then_start_over() -> None:
    ladder = ReopenLadder(initial=1.0, maximum=60.0, quarantine_after=3, quarantine_seconds=900)
    assert [ladder.ended(became_ready=False) for _ in range(3)] == [
        Rest(1.0, failures=1),
        Rest(2.0, failures=2),
        Rest(900, quarantine=True, failures=3),
    ]
    assert ladder.ended(became_ready=False) == Rest(1.0, failures=1)


@pytest.mark.parametrize(
    ("looks", "expected"),
    [
        # (lines of text so far, now) per look -> when to look again, None once lost.
        ([(0, 0.0), (0, 9.9)], [10.0, 10.0]),  # silence: the deadline, no polling
        ([(0, 10.0)], [None]),  # the deadline passed
        ([(1, 0.15), (1, 0.45)], [0.45, None]),  # text, then a grace of silence
        ([(1, 0.15), (2, 0.3), (2, 0.45), (2, 0.6)], [0.45, 0.6, 0.6, None]),  # text grew
        ([(3, 9.95)], [10.0]),  # a look never goes past the deadline
    ],
)
def test_an_answer_is_lost_at_its_deadline_or_a_grace_after_its_text_stopped(
    looks: list[tuple[int, float]], expected: list[float | None]
) -> None:
    wait = AnswerWait(0.0, within=10.0, grace=0.3)
    assert [wait.look(lines, now) for lines, now in looks] == pytest.approx(expected)


@given(
    arrivals=st.lists(st.floats(0.0, 20.0), max_size=8),
    within=st.floats(0.5, 15.0),
    grace=st.floats(0.05, 2.0),
)
def test_a_shell_that_looks_when_told_gives_up_within_its_bounds(
    arrivals: list[float], within: float, grace: float
) -> None:
    """The shell looks at the times `look` returns and whenever text arrives."""
    wait = AnswerWait(0.0, within=within, grace=grace)
    now: float | None = 0.0
    looked = 0.0
    while now is not None:
        looked = now
        told = wait.look(sum(1 for t in arrivals if t <= now), now)
        assert told is None or looked < told <= within
        sooner = [t for t in arrivals if looked < t < (within if told is None else told)]
        now = None if told is None else min([told, *sooner])
    seen = [t for t in arrivals if t <= looked]
    if not seen:
        assert looked == pytest.approx(within)  # silence waits for the whole deadline
    else:
        # The answer is lost a grace after its text last grew, or at the deadline.
        assert looked == pytest.approx(min(within, max(seen) + grace))


@pytest.mark.parametrize(
    ("lines", "garbled_at"),
    [
        ("g" * 3, None),  # up to the limit is noise
        ("g" * 4, 4),  # one past it: the link is garbled
        ("ggg" + "a" + "ggg" + "a" + "ggg", None),  # any understood line ends the run
        ("ggaggggg", 7),
        ("", None),
    ],
)
def test_garbage_lines_in_a_row_past_the_limit_garble_the_link(
    lines: str, garbled_at: int | None
) -> None:
    run = GarbageRun(3)
    verdicts = []
    for line in lines:
        if line == "g":
            verdicts.append(run.garbage())
        else:
            run.understood()
            verdicts.append(False)
    first = verdicts.index(True) + 1 if True in verdicts else None
    assert first == garbled_at


@given(st.lists(st.booleans(), max_size=80), st.integers(0, 10))
def test_garbage_run_is_the_length_of_the_trailing_streak(lines: list[bool], limit: int) -> None:
    run = GarbageRun(limit)
    for is_garbage in lines:
        if is_garbage:
            run.garbage()
        else:
            run.understood()
    streak = len(lines) - (
        max(i for i, g in enumerate(lines) if not g) + 1 if False in lines else 0
    )
    assert run.length == streak


def test_a_sim_that_needs_a_person_is_never_reopened() -> None:
    ladder = ReopenLadder(initial=1.0, maximum=60.0, quarantine_after=3, quarantine_seconds=900)
    ladder.ended(became_ready=False)
    for became_ready in (False, True):
        rest = ladder.ended(became_ready=became_ready, sim_locked=True)
        assert rest.needs_person and rest.seconds == math.inf and not rest.quarantine


@pytest.mark.parametrize(
    "options",
    [
        {"query_timeout": 0},
        {"final_grace": -1},
        {"sync_timeout": 0},
        {"command_retries": -1},
        {"not_ready_timeout": -1},
    ],
)
def test_ladder_options_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(options, AtOptions)
