"""The SMSC side of one SMPP session as a pure state machine: a table of which PDU is legal in
which bind state and what it asks for, outbound sequence numbers, the deliver_sm window, and the
enquire_link and inactivity timers as decisions taken at a given `now`.

Pure; no trio, sockets or clock (`now` is a parameter, in seconds of any monotonic clock).
SMPP 3.4 sections 2.2-2.3 (session states), 2.4 (which PDU in which state), 2.8 (errors) and 7.2
(timers).
"""

from __future__ import annotations

import enum

import msgspec

from edgegw.smpp.constants import MAX_SEQUENCE_NUMBER, RESPONSE_BIT, CommandId, CommandStatus

__all__ = [
    "TRANSITIONS",
    "Action",
    "Outcome",
    "Session",
    "State",
    "Step",
    "Tick",
    "Timers",
]

_C = CommandId
_S = CommandStatus


class State(enum.Enum):
    """SMPP 3.4 section 2.2 session states, seen from the SMSC."""

    OPEN = "open"  # connected, not bound yet
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"  # an unbind is under way (ours or the peer's)
    CLOSED = "closed"


class Action(enum.Enum):
    """What the shell does with a PDU the table allows."""

    BIND = "bind"  # authenticate, then `bound()` or answer the refusal
    SUBMIT = "submit"
    SUBMIT_MULTI = "submit_multi"
    QUERY = "query"
    CANCEL = "cancel"
    REPLACE = "replace"
    NOT_SUPPORTED = "not_supported"  # answer with its response and ESME_RINVCMDID
    ENQUIRE_LINK = "enquire_link"  # answer enquire_link_resp
    UNBIND = "unbind"  # answer unbind_resp, then close
    UNBIND_DONE = "unbind_done"  # the peer answered our unbind: close
    DELIVER_ANSWERED = "deliver_answered"  # deliver_sm_resp: `deliver_answered()`
    LINK_ANSWERED = "link_answered"  # enquire_link_resp
    NACKED = "nacked"  # the peer refused one of our PDUs with generic_nack
    REJECT = "reject"  # answer with `Step.status` (generic_nack when there is no response)
    IGNORE = "ignore"  # a response we are not waiting for: answering a response is wrong


_BOUND = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)
_TRANSMIT = (State.BOUND_TX, State.BOUND_TRX)
_RECEIVE = (State.BOUND_RX, State.BOUND_TRX)
_BINDS = (_C.BIND_TRANSMITTER, _C.BIND_RECEIVER, _C.BIND_TRANSCEIVER)
_LINK = (*_BOUND, State.OPEN, State.UNBOUND)


def _table() -> dict[tuple[State, int], tuple[State, Action]]:
    table: dict[tuple[State, int], tuple[State, Action]] = {}
    for command in _BINDS:
        table[State.OPEN, command] = (State.OPEN, Action.BIND)
    # SMPP 3.4 2.3: enquire_link is legal in every state of an open connection.
    for state in _LINK:
        table[state, _C.ENQUIRE_LINK] = (state, Action.ENQUIRE_LINK)
        table[state, _C.ENQUIRE_LINK_RESP] = (state, Action.LINK_ANSWERED)
        table[state, _C.GENERIC_NACK] = (state, Action.NACKED)
    for state in _TRANSMIT:
        table[state, _C.SUBMIT_SM] = (state, Action.SUBMIT)
        table[state, _C.SUBMIT_MULTI] = (state, Action.SUBMIT_MULTI)
        table[state, _C.QUERY_SM] = (state, Action.QUERY)
        table[state, _C.CANCEL_SM] = (state, Action.CANCEL)
        table[state, _C.REPLACE_SM] = (state, Action.REPLACE)
    for state in (*_BOUND,):
        # data_sm is legal in every bound state (SMPP 3.4 4.7); we do not carry it.
        table[state, _C.DATA_SM] = (state, Action.NOT_SUPPORTED)
        table[state, _C.UNBIND] = (State.UNBOUND, Action.UNBIND)
    for state in (*_RECEIVE, State.UNBOUND):
        table[state, _C.DELIVER_SM_RESP] = (state, Action.DELIVER_ANSWERED)
    table[State.UNBOUND, _C.UNBIND_RESP] = (State.CLOSED, Action.UNBIND_DONE)
    table[State.UNBOUND, _C.UNBIND] = (State.UNBOUND, Action.UNBIND)
    return table


TRANSITIONS: dict[tuple[State, int], tuple[State, Action]] = _table()

# Requests an ESME may send to an SMSC in some state; anything else it sends is not ours to take.
_ESME_REQUESTS = frozenset(
    {
        *_BINDS,
        _C.SUBMIT_SM,
        _C.SUBMIT_MULTI,
        _C.QUERY_SM,
        _C.CANCEL_SM,
        _C.REPLACE_SM,
        _C.DATA_SM,
        _C.UNBIND,
        _C.ENQUIRE_LINK,
    }
)

BIND_STATES: dict[int, State] = {
    _C.BIND_TRANSMITTER: State.BOUND_TX,
    _C.BIND_RECEIVER: State.BOUND_RX,
    _C.BIND_TRANSCEIVER: State.BOUND_TRX,
}


class Step(msgspec.Struct, frozen=True):
    """The table's answer for one received PDU; `status` matters for REJECT."""

    action: Action
    status: CommandStatus = _S.ESME_ROK


_STEPS = {action: Step(action) for action in Action}


class Outcome(enum.Enum):
    """What a deliver_sm_resp means for its outbox item."""

    DELIVERED = "delivered"  # every part acknowledged
    FAILED = "failed"  # a part refused
    PARTIAL = "partial"  # more parts to wait for


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """What the timers ask for at a given moment."""

    send_enquire_link: bool = False
    close: str = ""  # why the session must close, or ""
    expired: tuple[int, ...] = ()  # outbox ids whose deliver_sm went unanswered


class Timers(msgspec.Struct, frozen=True, kw_only=True):
    """SMPP 3.4 section 7.2 timers, in seconds; 0 disables one."""

    enquire_link_interval: float = 30.0  # enquire_link_timer: idle time before we probe
    response_timeout: float = 10.0  # response_timer: how long a request of ours may go unanswered
    inactivity_timeout: float = 120.0  # inactivity_timer: silence after which the peer is gone
    bind_timeout: float = 30.0  # session_init_timer: time an OPEN session has to bind


class _InFlight(msgspec.Struct):
    outbound_id: int
    sent_at: float


class Session:
    """One session's protocol state. The shell reports what arrives (`receive`, `bound`,
    `deliver_answered`, ...) and what it sends (`deliver_sent`, `enquire_link_sent`), and asks
    `tick(now)` and `next_deadline()` what the timers want."""

    def __init__(
        self, timers: Timers, *, window: int, max_pending_submits: int, now: float
    ) -> None:
        if window < 1 or max_pending_submits < 1:
            raise ValueError("window and max_pending_submits must be at least 1")
        self.timers = timers
        self.window = window
        self.max_pending_submits = max_pending_submits
        self.state = State.OPEN
        self.opened_at = now
        self.last_received = now
        self.pending_submits = 0
        self._sequence = 0
        self._enquire_link_sent_at: float | None = None
        self._enquire_link_sequence = 0
        self._unbind_sent_at: float | None = None
        self._deliveries: dict[int, _InFlight] = {}  # sequence number -> its outbox item
        self._parts_left: dict[int, int] = {}  # outbox id -> deliver_sm not yet acknowledged

    # -- state table ------------------------------------------------------------------------

    @property
    def is_bound(self) -> bool:
        return self.state in _BOUND

    @property
    def can_receive(self) -> bool:
        """Whether deliver_sm may go to this session (receiver or transceiver bind)."""
        return self.state in _RECEIVE

    def heard(self, now: float) -> None:
        """Any octets of a PDU from the peer, even one the codec refused, prove it alive."""
        self.last_received = now

    def receive(self, command_id: int, now: float) -> Step:
        """Note a PDU from the peer and say what to do with it."""
        self.last_received = now
        # An IntEnum hashes as its int, so the table answers a plain command id directly.
        found = TRANSITIONS.get((self.state, command_id))
        if found is not None:
            self.state = found[0]
            return _STEPS[found[1]]
        try:
            command = CommandId(command_id)
        except ValueError:
            return Step(Action.REJECT, _S.ESME_RINVCMDID)
        if command & RESPONSE_BIT:
            return Step(Action.IGNORE)
        if command in _BINDS and self.is_bound:
            return Step(Action.REJECT, _S.ESME_RALYBND)
        if command in _ESME_REQUESTS:
            return Step(Action.REJECT, _S.ESME_RINVBNDSTS)
        # deliver_sm, outbind, alert_notification: an SMSC never takes these from an ESME.
        return Step(Action.REJECT, _S.ESME_RINVCMDID)

    def bound(self, command_id: int) -> State:
        """The bind that `receive` asked about succeeded."""
        if self.state is not State.OPEN:
            raise RuntimeError(f"bound() in state {self.state}")
        self.state = BIND_STATES[command_id]
        return self.state

    def unbind_sent(self, now: float) -> None:
        """We asked the peer to unbind (shutdown): only responses and enquire_link remain."""
        self.state = State.UNBOUND
        self._unbind_sent_at = now

    def close(self) -> None:
        self.state = State.CLOSED

    def next_sequence(self) -> int:
        """The sequence number for our next request, 1..0x7FFFFFFF and round again."""
        self._sequence = self._sequence % MAX_SEQUENCE_NUMBER + 1
        return self._sequence

    # -- submits ----------------------------------------------------------------------------

    def submit_started(self) -> bool:
        """Count a submit in flight; False (answer ESME_RTHROTTLED) when too many are."""
        if self.pending_submits >= self.max_pending_submits:
            return False
        self.pending_submits += 1
        return True

    def submit_finished(self) -> None:
        self.pending_submits -= 1

    # -- deliver_sm window ------------------------------------------------------------------

    @property
    def window_free(self) -> int:
        return max(self.window - len(self._deliveries), 0)

    @property
    def deliveries_in_flight(self) -> frozenset[int]:
        """Outbox ids with a deliver_sm not yet answered."""
        return frozenset(self._parts_left)

    def deliver_sent(self, outbound_id: int, parts: int, now: float) -> list[int]:
        """Sequence numbers for the `parts` deliver_sm of one outbox item, now in flight."""
        sequences = [self.next_sequence() for _ in range(parts)]
        for sequence in sequences:
            self._deliveries[sequence] = _InFlight(outbound_id, now)
        self._parts_left[outbound_id] = parts
        return sequences

    def _forget(self, outbound_id: int) -> None:
        self._parts_left.pop(outbound_id, None)
        for sequence in [s for s, f in self._deliveries.items() if f.outbound_id == outbound_id]:
            del self._deliveries[sequence]

    def deliver_answered(self, sequence_number: int, status: int) -> tuple[int, Outcome] | None:
        """The outbox item a deliver_sm_resp (or generic_nack) answers and what it means for
        it; None when it answers nothing we sent."""
        flight = self._deliveries.pop(sequence_number, None)
        if flight is None:
            return None
        outbound_id = flight.outbound_id
        if status != _S.ESME_ROK:
            self._forget(outbound_id)
            return outbound_id, Outcome.FAILED
        left = self._parts_left[outbound_id] - 1
        if left:
            self._parts_left[outbound_id] = left
            return outbound_id, Outcome.PARTIAL
        del self._parts_left[outbound_id]
        return outbound_id, Outcome.DELIVERED

    # -- enquire_link and timers ------------------------------------------------------------

    def enquire_link_sent(self, sequence_number: int, now: float) -> None:
        self._enquire_link_sent_at = now
        self._enquire_link_sequence = sequence_number

    def link_answered(self, sequence_number: int) -> bool:
        """An enquire_link_resp (or a generic_nack, which also proves the peer alive) to
        our probe."""
        if self._enquire_link_sent_at is None or sequence_number != self._enquire_link_sequence:
            return False
        self._enquire_link_sent_at = None
        return True

    def _deadlines(self) -> list[float]:
        timers = self.timers
        deadlines: list[float] = []
        if self.state is State.OPEN and timers.bind_timeout:
            deadlines.append(self.opened_at + timers.bind_timeout)
        if timers.inactivity_timeout:
            deadlines.append(self.last_received + timers.inactivity_timeout)
        if timers.response_timeout:
            if self._enquire_link_sent_at is not None:
                deadlines.append(self._enquire_link_sent_at + timers.response_timeout)
            if self._unbind_sent_at is not None:
                deadlines.append(self._unbind_sent_at + timers.response_timeout)
            if self._deliveries:
                oldest = min(flight.sent_at for flight in self._deliveries.values())
                deadlines.append(oldest + timers.response_timeout)
        if timers.enquire_link_interval and self._enquire_link_sent_at is None:
            deadlines.append(self.last_received + timers.enquire_link_interval)
        return deadlines

    def next_deadline(self) -> float:
        """When `tick` next has something to decide (inf when nothing is timed)."""
        return min(self._deadlines(), default=float("inf"))

    def tick(self, now: float) -> Tick:
        """What the timers want at `now`."""
        timers = self.timers
        opened = self.opened_at
        if self.state is State.OPEN and timers.bind_timeout and now >= opened + timers.bind_timeout:
            return Tick(close="no bind within the session init time")
        if timers.inactivity_timeout and now >= self.last_received + timers.inactivity_timeout:
            return Tick(close="the peer has been silent too long")
        if timers.response_timeout:
            sent = self._enquire_link_sent_at
            if sent is not None and now >= sent + timers.response_timeout:
                return Tick(close="enquire_link went unanswered")
            if self._unbind_sent_at is not None and now >= (
                self._unbind_sent_at + timers.response_timeout
            ):
                return Tick(close="unbind went unanswered")
        expired: list[int] = []
        if timers.response_timeout:
            for flight in list(self._deliveries.values()):
                if now >= flight.sent_at + timers.response_timeout and (
                    flight.outbound_id not in expired
                ):
                    expired.append(flight.outbound_id)
            for outbound_id in expired:
                self._forget(outbound_id)
        probe = (
            bool(timers.enquire_link_interval)
            and self._enquire_link_sent_at is None
            and self.state is not State.CLOSED
            and now >= self.last_received + timers.enquire_link_interval
        )
        return Tick(send_enquire_link=probe, expired=tuple(expired))
