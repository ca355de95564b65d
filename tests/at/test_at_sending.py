"""What an answer to AT+CMGS says about a part, decided without trio: sent with its TP-MR
(also when only the +CMGS line got through), refused for now or for good, or unknown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at.framer import FinalKind, FinalResult, Response
from drivers.at.sending import Refused, Sent, Unknown, Unreadable, pdu_answered, refused

OK = FinalResult(kind=FinalKind.OK)


def cms(code: int) -> FinalResult:
    return FinalResult(kind=FinalKind.CMS_ERROR, code=code, text=str(code))


@pytest.mark.parametrize(
    ("reply", "partial", "outcome"),
    [
        (Response(("+CMGS: 42",), OK), (), Sent(42)),
        (Response(('+CMGS: 7,"26/03/01,12:00:00+04"',), OK), (), Sent(7)),
        # The +CMGS line came and its OK was lost: sent, never sent twice.
        (None, ("+CMGS: 42",), Sent(42, final_lost=True)),
        # Nothing at all, or only noise: whether it went out is unknown.
        (None, (), Unknown()),
        (None, ("+CMGS: 300",), Unknown()),
        (Response(("+CMGS: x",), OK), (), Unreadable("unreadable AT+CMGS answer: ")),
        (Response((), cms(42)), (), Refused("+CMS ERROR: 42", cms=42, permanent=False)),
        (
            Response((), FinalResult(kind=FinalKind.ERROR, text="ERROR")),
            (),
            Refused("AT+CMGS answered ERROR ERROR", cms=None, permanent=False),
        ),
    ],
)
def test_what_the_answer_to_the_pdu_says(
    reply: Response | None, partial: tuple[str, ...], outcome: object
) -> None:
    got = pdu_answered(reply, partial)
    if isinstance(outcome, Unreadable):
        assert isinstance(got, Unreadable) and got.reason.startswith(outcome.reason)
    else:
        assert got == outcome


@pytest.mark.parametrize(("code", "permanent"), [(1, True), (10, True), (38, False), (500, False)])
def test_a_cms_error_is_for_good_only_when_its_code_says_so(code: int, permanent: bool) -> None:
    assert refused(cms(code)) == Refused(f"+CMS ERROR: {code}", cms=code, permanent=permanent)


@given(st.lists(st.text(max_size=20), max_size=4))
def test_a_lost_answer_is_sent_only_when_a_reference_got_through(partial: list[str]) -> None:
    outcome = pdu_answered(None, tuple(partial))
    assert isinstance(outcome, Sent | Unknown)
    if isinstance(outcome, Sent):
        assert outcome.final_lost and 0 <= outcome.mr <= 255
        assert any(line.startswith("+CMGS") for line in partial)
