"""The SMPP session state machine: the legality table for every command in every state, the
deliver_sm window, sequence numbers and the timers as decisions at a given time."""

from __future__ import annotations

import pytest

from edgegw.smpp.constants import MAX_SEQUENCE_NUMBER, CommandId, CommandStatus
from edgegw.smpp.session import TRANSITIONS, Action, Outcome, Session, State, Step, Timers

_C = CommandId
_S = CommandStatus

TIMERS = Timers(
    enquire_link_interval=30.0, response_timeout=10.0, inactivity_timeout=120.0, bind_timeout=20.0
)


def session_in(state: State, now: float = 0.0) -> Session:
    session = Session(TIMERS, window=3, max_pending_submits=2, now=now)
    if state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
        bind = {
            State.BOUND_TX: _C.BIND_TRANSMITTER,
            State.BOUND_RX: _C.BIND_RECEIVER,
            State.BOUND_TRX: _C.BIND_TRANSCEIVER,
        }[state]
        assert session.receive(bind, now) == Step(Action.BIND)
        session.bound(bind)
    elif state is State.UNBOUND:
        session.receive(_C.BIND_TRANSCEIVER, now)
        session.bound(_C.BIND_TRANSCEIVER)
        session.unbind_sent(now)
    assert session.state is state
    return session


# What the ESME's PDUs get in each state: an action, or a refusal with its status.
EXPECTED: dict[State, dict[CommandId, Step]] = {
    State.OPEN: {
        _C.BIND_TRANSMITTER: Step(Action.BIND),
        _C.BIND_RECEIVER: Step(Action.BIND),
        _C.BIND_TRANSCEIVER: Step(Action.BIND),
        _C.SUBMIT_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.SUBMIT_MULTI: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.QUERY_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.CANCEL_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.REPLACE_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.DATA_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.UNBIND: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.DELIVER_SM_RESP: Step(Action.IGNORE),
    },
    State.BOUND_TX: {
        _C.BIND_TRANSMITTER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.BIND_RECEIVER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.BIND_TRANSCEIVER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.SUBMIT_SM: Step(Action.SUBMIT),
        _C.SUBMIT_MULTI: Step(Action.SUBMIT_MULTI),
        _C.QUERY_SM: Step(Action.QUERY),
        _C.CANCEL_SM: Step(Action.CANCEL),
        _C.REPLACE_SM: Step(Action.REPLACE),
        _C.DATA_SM: Step(Action.NOT_SUPPORTED),
        _C.UNBIND: Step(Action.UNBIND),
        _C.DELIVER_SM_RESP: Step(Action.IGNORE),
    },
    State.BOUND_RX: {
        _C.BIND_TRANSMITTER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.BIND_RECEIVER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.BIND_TRANSCEIVER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.SUBMIT_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.SUBMIT_MULTI: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.QUERY_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.CANCEL_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.REPLACE_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.DATA_SM: Step(Action.NOT_SUPPORTED),
        _C.UNBIND: Step(Action.UNBIND),
        _C.DELIVER_SM_RESP: Step(Action.DELIVER_ANSWERED),
    },
    State.BOUND_TRX: {
        _C.BIND_TRANSMITTER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.BIND_RECEIVER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.BIND_TRANSCEIVER: Step(Action.REJECT, _S.ESME_RALYBND),
        _C.SUBMIT_SM: Step(Action.SUBMIT),
        _C.SUBMIT_MULTI: Step(Action.SUBMIT_MULTI),
        _C.QUERY_SM: Step(Action.QUERY),
        _C.CANCEL_SM: Step(Action.CANCEL),
        _C.REPLACE_SM: Step(Action.REPLACE),
        _C.DATA_SM: Step(Action.NOT_SUPPORTED),
        _C.UNBIND: Step(Action.UNBIND),
        _C.DELIVER_SM_RESP: Step(Action.DELIVER_ANSWERED),
    },
    State.UNBOUND: {
        _C.BIND_TRANSMITTER: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.BIND_RECEIVER: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.BIND_TRANSCEIVER: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.SUBMIT_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.SUBMIT_MULTI: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.QUERY_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.CANCEL_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.REPLACE_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.DATA_SM: Step(Action.REJECT, _S.ESME_RINVBNDSTS),
        _C.UNBIND: Step(Action.UNBIND),
        _C.DELIVER_SM_RESP: Step(Action.DELIVER_ANSWERED),
        _C.UNBIND_RESP: Step(Action.UNBIND_DONE),
    },
}
# In every state of an open connection.
for steps in EXPECTED.values():
    steps.setdefault(_C.ENQUIRE_LINK, Step(Action.ENQUIRE_LINK))
    steps.setdefault(_C.ENQUIRE_LINK_RESP, Step(Action.LINK_ANSWERED))
    steps.setdefault(_C.GENERIC_NACK, Step(Action.NACKED))
    # An SMSC never takes these from an ESME.
    for command in (_C.DELIVER_SM, _C.OUTBIND, _C.ALERT_NOTIFICATION):
        steps.setdefault(command, Step(Action.REJECT, _S.ESME_RINVCMDID))
    # Responses to nothing we asked are dropped, never answered.
    for command in _C:
        if command & 0x80000000:
            steps.setdefault(command, Step(Action.IGNORE))

CASES = [
    pytest.param(state, command, step, id=f"{state.name}-{command.name}")
    for state, steps in EXPECTED.items()
    for command, step in steps.items()
]


def test_the_expectations_cover_every_command() -> None:
    for steps in EXPECTED.values():
        assert set(steps) == set(CommandId)


@pytest.mark.parametrize(("state", "command", "step"), CASES)
def test_each_command_in_each_state(state: State, command: CommandId, step: Step) -> None:
    session = session_in(state)
    assert session.receive(command, 5.0) == step
    assert session.last_received == 5.0


def test_a_command_id_outside_the_spec_is_refused() -> None:
    assert session_in(State.BOUND_TRX).receive(0x1234, 0.0) == Step(
        Action.REJECT, _S.ESME_RINVCMDID
    )


def test_unbind_moves_to_unbound_and_the_answer_closes() -> None:
    session = session_in(State.BOUND_TX)
    session.receive(_C.UNBIND, 0.0)
    assert session.state is State.UNBOUND
    ours = session_in(State.UNBOUND)
    ours.receive(_C.UNBIND_RESP, 0.0)
    assert ours.state is State.CLOSED


def test_table_entries_name_only_real_states_and_actions() -> None:
    for (state, _command), (next_state, action) in TRANSITIONS.items():
        assert state is not State.CLOSED
        assert isinstance(next_state, State)
        assert isinstance(action, Action)


def test_sequence_numbers_wrap_within_the_spec_range() -> None:
    session = session_in(State.OPEN)
    assert [session.next_sequence() for _ in range(3)] == [1, 2, 3]
    session._sequence = MAX_SEQUENCE_NUMBER - 1
    assert [session.next_sequence() for _ in range(3)] == [MAX_SEQUENCE_NUMBER, 1, 2]


def test_pending_submits_are_bounded() -> None:
    session = session_in(State.BOUND_TX)
    assert [session.submit_started() for _ in range(3)] == [True, True, False]
    session.submit_finished()
    assert session.submit_started()


def test_the_window_counts_deliver_sm_and_parts() -> None:
    session = session_in(State.BOUND_RX)
    first = session.deliver_sent(outbound_id=7, parts=2, now=0.0)
    assert session.window_free == 1
    second = session.deliver_sent(outbound_id=8, parts=1, now=0.0)
    assert session.window_free == 0
    assert session.deliveries_in_flight == {7, 8}
    assert session.deliver_answered(first[0], 0) == (7, Outcome.PARTIAL)
    assert session.deliver_answered(first[1], 0) == (7, Outcome.DELIVERED)
    assert session.deliver_answered(second[0], _S.ESME_RX_T_APPN) == (8, Outcome.FAILED)
    assert session.deliver_answered(second[0], 0) is None  # answered twice
    assert session.window_free == 3


def test_a_failed_part_settles_the_whole_item() -> None:
    session = session_in(State.BOUND_TRX)
    parts = session.deliver_sent(outbound_id=9, parts=3, now=0.0)
    assert session.deliver_answered(parts[1], _S.ESME_RX_P_APPN) == (9, Outcome.FAILED)
    assert session.deliver_answered(parts[0], 0) is None
    assert session.window_free == 3


def test_enquire_link_after_idle_interval_and_close_when_unanswered() -> None:
    session = session_in(State.BOUND_TRX)
    assert session.next_deadline() == 30.0
    assert session.tick(29.9).send_enquire_link is False
    assert session.tick(30.0).send_enquire_link is True
    session.enquire_link_sent(sequence_number=5, now=30.0)
    assert session.next_deadline() == 40.0
    assert session.tick(39.0).close == ""
    assert session.tick(40.0).close == "enquire_link went unanswered"


def test_an_answered_enquire_link_restarts_the_interval() -> None:
    session = session_in(State.BOUND_TRX)
    session.enquire_link_sent(sequence_number=5, now=30.0)
    session.receive(_C.ENQUIRE_LINK_RESP, 31.0)
    assert not session.link_answered(4)
    assert session.link_answered(5)
    assert session.next_deadline() == 61.0


def test_the_peer_silent_past_the_inactivity_timer_is_dropped() -> None:
    timers = Timers(enquire_link_interval=0, inactivity_timeout=120.0, bind_timeout=20.0)
    session = Session(timers, window=1, max_pending_submits=1, now=0.0)
    session.receive(_C.BIND_TRANSMITTER, 1.0)
    session.bound(_C.BIND_TRANSMITTER)
    assert session.next_deadline() == 121.0
    assert session.tick(120.9).close == ""
    assert session.tick(121.0).close == "the peer has been silent too long"


def test_an_open_session_must_bind_in_time() -> None:
    session = session_in(State.OPEN)
    assert session.next_deadline() == 20.0
    assert session.tick(20.0).close == "no bind within the session init time"


def test_unanswered_deliver_sm_expire_without_closing() -> None:
    session = session_in(State.BOUND_RX)
    session.deliver_sent(outbound_id=3, parts=2, now=1.0)
    session.deliver_sent(outbound_id=4, parts=1, now=5.0)
    assert session.next_deadline() == 11.0
    tick = session.tick(11.0)
    assert (tick.expired, tick.close) == ((3,), "")
    assert session.deliveries_in_flight == {4}
    assert session.tick(15.0).expired == (4,)
    assert session.window_free == 3


def test_an_unanswered_unbind_closes() -> None:
    session = session_in(State.UNBOUND, now=0.0)
    assert session.tick(10.0).close == "unbind went unanswered"
