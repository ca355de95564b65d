"""The lifecycle of a message and its parts: the table itself, and seeded random walks that
drive the store's transactions (on a real SQLite file, with the real notification step) through
random sequences of claims, sends (also a part's send committed with the next part's mark, as the
worker does), status reports, transient and permanent failures, requeues, cancels, expiry,
failover and restarts, of messages that ask for a DR, an SMPP receipt, both or neither, checking
the invariants after every step.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from support.store import new_message

from edgegw.delivery.fanout import final_outcomes
from edgegw.delivery.outbox import Endpoint, register_endpoints
from edgegw.model import (
    DUE,
    EXPIRY,
    MESSAGE_TRANSITIONS,
    PART_TRANSITIONS,
    WENT_OUT,
    DrStatus,
    IllegalTransition,
    MessageEvent,
    MessageState,
    NewMessage,
    PartEvent,
    is_final,
    message_move,
    part_move,
)
from edgegw.store import connect, migrate, transactions
from edgegw.store.transactions import Effects

T = TypeVar("T")
START = 1_754_380_800.0
MODEMS = ("m1", "m2", "m3")


def test_every_pair_outside_the_tables_is_refused() -> None:
    for state, event in itertools.product(MessageState, MessageEvent):
        if (state, event) in MESSAGE_TRANSITIONS:
            assert message_move(state, event, final=False) == MESSAGE_TRANSITIONS[state, event]
        else:
            with pytest.raises(IllegalTransition):
                message_move(state, event, final=False)
        with pytest.raises(IllegalTransition):  # a final message never moves
            message_move(state, event, final=True)
    for state, part_event in itertools.product(MessageState, PartEvent):
        if (state, part_event) in PART_TRANSITIONS:
            assert part_move(state, part_event) == PART_TRANSITIONS[state, part_event]
        else:
            with pytest.raises(IllegalTransition):
                part_move(state, part_event)


def test_terminal_states_have_no_way_out() -> None:
    for (state, _), _target in MESSAGE_TRANSITIONS.items():
        assert not is_final(state, None) or state is MessageState.SENT


def test_each_moment_has_come_alike_in_python_and_in_the_stores_sql(tmp_path: Path) -> None:
    """A message is due, and past its validity, at the moment itself: the dispatcher's and
    the worker's test in Python and the store's selects in SQL agree on either side of it and
    on it."""
    built = new_message("m1", now=START, expires_in=600)
    with contextlib.closing(connect(tmp_path / "moments.db")) as conn:
        migrate(conn)
        transactions.message_inserter([built])(conn)
        for moment, at in ((DUE, built.not_before), (EXPIRY, built.expires_at)):
            for now in (at - 0.001, at, at + 0.001):
                found = conn.execute(
                    f"SELECT count(*) FROM messages WHERE {moment.sql()}", (now,)
                ).fetchone()[0]
                assert (found == 1) is moment.reached(at, now), (moment.column, now - at)
            assert [moment.reached(at, at + d) for d in (-0.001, 0, 0.001)] == [False, True, True]


def test_a_claim_takes_a_message_only_while_it_is_due_and_within_its_validity(
    tmp_path: Path,
) -> None:
    """The claim checks the message as it is when the claim runs: one not yet due stays
    queued, one past its validity (which the sweep has not come round to) is expired as the
    sweep would expire it, DR 361; neither is handed to a modem."""
    later = msgspec.structs.replace(new_message("later"), not_before=START + 60)
    late = new_message("late", expires_in=20)
    fx = Effects(final_outcomes, lambda topic: None)
    with contextlib.closing(connect(tmp_path / "claims.db")) as conn:
        migrate(conn)
        transactions.message_inserter([later, late])(conn)
        # message_inserter makes due_at the not_before it is given.
        assert transactions.claim(conn, fx, [("later", "m1"), ("late", "m1")], START + 30) == []
        rows = conn.execute("SELECT id, state, dr_status, error FROM messages ORDER BY id")
        assert rows.fetchall() == [
            (
                "late",
                "expired",
                DrStatus.VALIDITY_EXPIRED,
                "validity period expired before sending",
            ),
            ("later", "queued", None, None),
        ]
        claims = transactions.claim(conn, fx, [("later", "m1")], START + 60)
        assert [claim.id for claim in claims] == ["later"]


def message(
    message_id: str, parts: int, now: float, validity: float, *, dr: bool = True
) -> NewMessage:
    """A message of `parts` GSM parts (153 characters each when concatenated) that asks for
    the customer's DR unless `dr` is False."""
    text = "x" * (153 * parts if parts > 1 else 1)
    built = new_message(message_id, text=text, now=now, expires_in=validity)
    assert len(built.parts) == parts
    return msgspec.structs.replace(built, report_to_customer=dr)


class Refused:
    """What `MessageLife.write` returns when the store raised IllegalTransition."""


REFUSED = Refused()


class Worker:
    """What a modem worker holds of one claimed message."""

    def __init__(self, modem: str, unsent: list[int]) -> None:
        self.modem = modem
        self.unsent = unsent
        self.in_flight: int | None = None


class MessageLife:
    """A store file and the dispatcher's and workers' view of it; each method is one step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(self.path)
        self.conn.execute("PRAGMA synchronous = OFF")  # the logic is under test, not the disk
        migrate(self.conn)
        self.conn.execute("BEGIN IMMEDIATE")
        register_endpoints(self.conn, [(1, Endpoint.DR, "s")])
        self.conn.execute("COMMIT")
        self.fx = Effects(final_outcomes, lambda topic: None)
        self.now = START
        self.ids: list[str] = []
        self.workers: dict[str, Worker] = {}
        # Per message, the modems its parts went out on since its last failover.
        self.sent_from: dict[str, set[str]] = {}
        self.references = itertools.count()
        # Per message, whether it asked for the customer's DR and for an SMPP receipt.
        self.asked: dict[str, tuple[bool, bool]] = {}

    def teardown(self) -> None:
        self.conn.close()
        self.path.unlink()

    # -- helpers ----------------------------------------------------------------------------

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T | Refused:
        """One transaction, as the writer runs a job: REFUSED when the lifecycle refused it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.conn)
        except IllegalTransition:
            self.conn.execute("ROLLBACK")
            return REFUSED
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    def live(self) -> list[str]:
        """The messages that have not reached their final outcome."""
        return [message_id for message_id in self.ids if not self.state(message_id)[1]]

    def state(self, message_id: str) -> tuple[MessageState, bool, str | None]:
        state, dr_status, modem = self.conn.execute(
            "SELECT state, dr_status, modem FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return MessageState(state), is_final(MessageState(state), dr_status), modem

    def parts(self, message_id: str) -> list[tuple[int, MessageState, str | None]]:
        return [
            (index, MessageState(state), modem)
            for index, state, modem in self.conn.execute(
                "SELECT idx, state, modem FROM parts WHERE message_id = ? ORDER BY idx",
                (message_id,),
            )
        ]

    def went_out(self, message_id: str) -> list[tuple[int, str]]:
        """The parts the network took on the message's current modem, with that modem."""
        return self.conn.execute(
            "SELECT idx, modem FROM parts WHERE message_id = ? AND reference IS NOT NULL"
            " ORDER BY idx",
            (message_id,),
        ).fetchall()

    # -- rules ------------------------------------------------------------------------------

    def submit(self, parts: int, validity: float, *, dr: bool = True, receipt: bool = True) -> None:
        """Queue a message; `dr`: it asks for the customer's DR, `receipt`: for an SMPP receipt
        of every outcome (registered_delivery 1, else 0)."""
        message_id = f"m{len(self.ids):04d}"
        self.write(
            lambda conn: transactions.insert_messages(
                conn,
                self.fx,
                [([message(message_id, parts, self.now, validity, dr=dr)], int(receipt))],
            )
        )
        self.ids.append(message_id)
        self.asked[message_id] = (dr, receipt)
        self.sent_from[message_id] = set()

    def work(self, message_id: str, modem: str, outcome: str) -> None:
        """One step of the dispatcher and the message's worker: claim it if it is queued, hand
        its next part to the modem, and (unless held in flight) settle that send."""
        claimed = message_id not in self.workers
        if claimed:
            self.claim(message_id, modem)
        worker = self.workers.get(message_id)
        if worker is None:
            return
        if worker.in_flight is None:
            if claimed and outcome == "expired":
                # The worker checks validity once, before the first part.
                self.worker_finds_it_expired(message_id)
                return
            self.send_next(message_id)
            if outcome == "hold" or message_id not in self.workers:
                return
        if outcome in ("taken", "expired", "hold"):
            self.network_takes(message_id)
        elif outcome == "chained":
            self.network_takes(message_id, chain=True)
        else:
            self.send_fails(message_id, permanent=outcome == "permanent")

    def claim(self, message_id: str, modem: str) -> None:
        """The dispatcher: a message bound to a modem goes there, any other anywhere."""
        state, _, bound = self.state(message_id)
        if state is not MessageState.QUEUED or message_id in self.workers:
            return
        modem = bound or modem
        due_at, expires_at = self.conn.execute(
            "SELECT due_at, expires_at FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        claims = self.write(
            lambda conn: transactions.claim(conn, self.fx, [(message_id, modem)], self.now)
        )
        assert not isinstance(claims, Refused)
        assert len(claims) == (due_at <= self.now < expires_at), (due_at, expires_at, self.now)
        if not claims:
            return  # not due yet (a retry's backoff), or expired by the claim
        (claim,) = claims
        self.workers[message_id] = Worker(modem, [p.index for p in claim.parts if not p.sent])

    def send_next(self, message_id: str) -> None:
        worker = self.workers[message_id]
        if worker.in_flight is not None:
            return
        if not worker.unsent:
            self.write(lambda conn: transactions.mark_sent(conn, message_id, self.now))
            del self.workers[message_id]
            return
        index = worker.unsent[0]
        _, final, _ = self.state(message_id)
        done = self.write(
            lambda conn: transactions.part_sending(conn, message_id, index, worker.modem, self.now)
        )
        if done is REFUSED:
            assert final, "part_sending refused while its message was not final"
            del self.workers[message_id]  # the worker stops: nothing more may be sent
            return
        assert not final, "a part was handed to a modem after its message was final"
        worker.in_flight = index

    def network_takes(self, message_id: str, *, chain: bool = False) -> None:
        """The network took the part in flight; with `chain`, the worker's next part of the
        message is marked `sending` in the same commit, as the worker does when nothing holds
        it back."""
        worker = self.workers[message_id]
        index = worker.in_flight
        assert index is not None
        last = len(worker.unsent) == 1
        following = None if last or not chain else (message_id, worker.unsent[1], worker.modem)
        reference = next(self.references) % 256
        more = self.write(
            lambda conn: transactions.part_sent(
                conn, message_id, index, reference, self.now, last=last, next_part=following
            )
        )
        assert not isinstance(more, Refused)
        self.sent_from[message_id].add(worker.modem)
        worker.unsent.pop(0)
        worker.in_flight = None
        if more.next_sending:
            assert not self.state(message_id)[1], "a part was handed to a modem after its final"
            worker.in_flight = worker.unsent[0]
        if last or not more.more:
            del self.workers[message_id]

    def send_fails(self, message_id: str, *, permanent: bool) -> None:
        worker = self.workers[message_id]
        if permanent:
            self.write(
                lambda conn: transactions.fail(
                    conn,
                    self.fx,
                    message_id,
                    error="rejected",
                    dr_status=DrStatus.SMSC_FAILED,
                    ext_status=None,
                    part_index=worker.in_flight,
                    counts_as_attempt=True,
                    now=self.now,
                )
            )
        else:
            self.write(
                lambda conn: transactions.requeue(
                    conn,
                    self.fx,
                    message_id,
                    next_attempt_at=self.now + 5,
                    error="timeout",
                    counts_as_attempt=True,
                    part_index=worker.in_flight,
                    now=self.now,
                )
            )
        del self.workers[message_id]

    def worker_finds_it_expired(self, message_id: str) -> None:
        self.write(lambda conn: transactions.expire(conn, self.fx, message_id, "late", self.now))
        del self.workers[message_id]

    def status_report(self, message_id: str, part: int, delivered: bool) -> None:
        went_out = [index for index, _ in self.went_out(message_id)]
        if not went_out:
            return
        index = went_out[part % len(went_out)]
        self.write(
            lambda conn: transactions.record_report(
                conn,
                self.fx,
                message_id,
                index,
                delivered=delivered,
                dr_status=None if delivered else DrStatus.UNKNOWN_RECIPIENT,
                raw="00" if delivered else "49",
                status=0 if delivered else 0x49,
                now=self.now,
            )
        )

    def cancel(self, message_id: str) -> None:
        """The customer's cancel, refused as the API's is, inside its write job: one of a
        queued message past its validity leaves it expired (DR 361) as the sweep would."""
        state, _, _ = self.state(message_id)
        (expires_at,) = self.conn.execute(
            "SELECT expires_at FROM messages WHERE id = ?", (message_id,)
        ).fetchone()

        def cancel(conn: sqlite3.Connection) -> bool:
            try:
                transactions.cancel(conn, self.fx, message_id, "stop", self.now)
            except IllegalTransition:
                return False
            return True

        pending = state is MessageState.QUEUED and not EXPIRY.reached(expires_at, self.now)
        assert self.write(cancel) is pending
        if state is MessageState.QUEUED and not pending:
            assert self.state(message_id)[0] is MessageState.EXPIRED

    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.write(lambda conn: transactions.expire_due(conn, self.fx, self.now))
        self.write(lambda conn: transactions.close_overdue(conn, self.fx, self.now - 60, self.now))

    def failover(self, message_id: str) -> None:
        """The message's modem stayed down past failover_after: resent whole elsewhere."""
        _, _, bound = self.state(message_id)
        if bound is None:
            return
        released = self.write(
            lambda conn: transactions.release_from_modem(conn, self.fx, message_id, bound, self.now)
        )
        if released is True:
            self.sent_from[message_id] = set()

    def restart(self, resend: bool) -> None:
        self.workers.clear()
        self.write(
            lambda conn: transactions.recover_in_flight(conn, self.fx, resend=resend, now=self.now)
        )

    # -- invariants -------------------------------------------------------------------------

    def check(self) -> None:
        self.parts_leave_from_one_modem()
        self.each_final_outcome_sends_one_dr_and_one_receipt()
        self.the_message_agrees_with_its_parts()

    def parts_leave_from_one_modem(self) -> None:
        for message_id in self.ids:
            assert len(self.sent_from[message_id]) <= 1, (message_id, self.sent_from[message_id])
            modems = {modem for _, modem in self.went_out(message_id)}
            assert len(modems) <= 1, (message_id, modems)

    def each_final_outcome_sends_one_dr_and_one_receipt(self) -> None:
        for message_id in self.ids:
            _, final, _ = self.state(message_id)
            (drs,) = self.conn.execute(
                "SELECT count(*) FROM outbox WHERE message_id = ? AND kind = 'dr'", (message_id,)
            ).fetchone()
            (receipts,) = self.conn.execute(
                "SELECT count(*) FROM smpp_outbox WHERE message_id = ?", (message_id,)
            ).fetchone()
            dr, receipt = self.asked[message_id]
            assert (drs, receipts) == (final and dr, final and receipt), message_id

    def the_message_agrees_with_its_parts(self) -> None:
        for message_id in self.ids:
            state, final, _ = self.state(message_id)
            states = [part_state for _, part_state, _ in self.parts(message_id)]
            sending = [s for s in states if s is MessageState.SENDING]
            worker = self.workers.get(message_id)
            in_flight = 0 if worker is None or worker.in_flight is None else 1
            assert len(sending) == in_flight, (message_id, states)
            if final:
                # Nothing of a final message waits to be sent.
                assert MessageState.QUEUED not in states, (message_id, states)
            if state in (MessageState.CANCELLED, MessageState.EXPIRED):
                assert all(s is state or s in WENT_OUT for s in states), (message_id, states)
            if state is MessageState.DELIVERED:
                assert all(s is MessageState.DELIVERED for s in states)
            elif state is MessageState.FAILED:
                assert MessageState.FAILED in states
            elif state in (MessageState.QUEUED, MessageState.SENDING):
                assert MessageState.FAILED not in states
                assert not all(s is MessageState.DELIVERED for s in states)
            elif state is MessageState.SENT:
                assert all(s in WENT_OUT for s in states)
                assert final or MessageState.FAILED not in states
            if worker is not None:
                assert state is MessageState.SENDING or final


WALKS = 150
STEPS = 40
OUTCOMES = ("taken", "chained", "transient", "permanent", "hold", "expired")


# Weights: mostly the dispatcher, the workers and the network, now and then a customer, the
# clock, a modem that stays down or a restart.
ACTIONS = ("work",) * 6 + ("report",) * 3 + ("submit", "cancel", "time", "failover", "restart")


def step(life: MessageLife, rng: random.Random) -> str:
    """One random step; returns what it did, for the report of a failing walk."""
    action = rng.choice(ACTIONS)
    live = life.live()
    if action == "submit" or not live:
        if len(live) >= 2:
            return "submit (skipped: two messages in progress)"
        parts, validity = rng.randint(1, 3), rng.choice([600.0, 86400.0])
        # Mostly a message that asks for both, now and then one that asks for one or neither.
        dr, receipt = rng.random() < 0.8, rng.random() < 0.8
        life.submit(parts, validity, dr=dr, receipt=receipt)
        return f"submit({parts}, {validity}, dr={dr}, receipt={receipt})"
    message_id = rng.choice(live)
    if action == "work":
        modem, outcome = rng.choice(MODEMS), rng.choice(OUTCOMES)
        life.work(message_id, modem, outcome)
        return f"work({message_id}, {modem}, {outcome})"
    if action == "report":
        # Also on a message already final: a late report must not send a second DR.
        message_id = rng.choice(life.ids)
        part, delivered = rng.randrange(3), rng.random() < 0.7
        life.status_report(message_id, part, delivered)
        return f"status_report({message_id}, {part}, {delivered})"
    if action == "cancel":
        life.cancel(message_id)
        return f"cancel({message_id})"
    if action == "time":
        seconds = rng.choice([1.0, 1.0, 1.0, 60.0, 3600.0, 2 * 86400.0])
        life.time_passes(seconds)
        return f"time_passes({seconds})"
    if action == "failover":
        life.failover(message_id)
        return f"failover({message_id})"
    resend = rng.random() < 0.5
    life.restart(resend)
    return f"restart({resend})"


def test_random_lives_keep_the_invariants(tmp_path: Path) -> None:
    """Seeded random walks (reproducible): every invariant holds after every step."""
    for seed in range(WALKS):
        rng = random.Random(seed)
        life = MessageLife(tmp_path / f"walk-{seed}.db")
        done: list[str] = []
        try:
            for _ in range(STEPS):
                done.append(step(life, rng))
                life.check()
        except AssertionError as failure:
            raise AssertionError(f"walk {seed}: {' -> '.join(done)}") from failure
        finally:
            life.teardown()
