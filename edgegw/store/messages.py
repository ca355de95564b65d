"""The store as the pipeline uses it: the engine plus the typed transactions of a message's
life (`edgegw.store.transactions`) and the typed reads the dispatcher and the API views need.

Every write here runs one function of `transactions` in the writer's next commit.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgegw.clock import Clock
from edgegw.model import (
    DUE,
    EXPIRY,
    Claim,
    DrStatus,
    DueMessage,
    EventView,
    MessageRecord,
    MessageState,
    MessageView,
    NewMessage,
    PartSent,
    PartView,
    Recovery,
)
from edgegw.store import transactions as tx
from edgegw.store.engine import Engine, Offload, StoreUnwritable
from edgegw.store.transactions import Effects, FinalOutcomes, iso, no_final_outcomes

DUE_SCAN_LIMIT = 1000  # due messages of one service read per dispatch round

# The services with queued messages, each found by one step in messages_service_due from the
# one before (SQLite does not skip through an index by itself), never by reading the queue.
_QUEUED_SERVICES = (
    "WITH RECURSIVE queued (service_id) AS ("
    "SELECT (SELECT service_id FROM messages WHERE state = 'queued'"
    " ORDER BY service_id LIMIT 1)"
    " UNION ALL SELECT (SELECT service_id FROM messages WHERE state = 'queued'"
    " AND service_id > queued.service_id ORDER BY service_id LIMIT 1)"
    " FROM queued WHERE queued.service_id IS NOT NULL) "
)
PRIORITIES = (3, 2, 1)  # the order of a service's messages (spec 7.7), then the longest waiting
# Each service with queued messages and the earliest due time at each priority (NULL: none).
_SERVICE_HEADS = (
    _QUEUED_SERVICES
    + "SELECT service_id, "
    + ", ".join(
        "(SELECT due_at FROM messages WHERE state = 'queued'"
        f" AND service_id = queued.service_id AND priority = {priority}"
        " ORDER BY due_at LIMIT 1)"
        for priority in PRIORITIES
    )
    + " FROM queued WHERE service_id IS NOT NULL"
)

_RECORD_COLUMNS = (
    "id, state, modem, error, dr_status, ext_status, attempts, priority, not_before, "
    "next_attempt_at, expires_at, sent_at, done_at"
)


def _record(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        id=row[0],
        state=MessageState(row[1]),
        modem=row[2],
        error=row[3],
        dr_status=row[4],
        ext_status=row[5],
        attempts=row[6],
        priority=row[7],
        not_before=row[8],
        next_attempt_at=row[9],
        expires_at=row[10],
        sent_at=row[11],
        done_at=row[12],
    )


class Store(Engine):
    """The gateway's SQLite store. Start `run` in a nursery before any other method is used.

    `final_outcomes` is the notification step run in the transaction that gives a message its
    final outcome (the composition root passes `edgegw.delivery.fanout.final_outcomes`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock,
        offload: Offload | None = None,
        final_outcomes: FinalOutcomes = no_final_outcomes,
    ) -> None:
        super().__init__(path, clock=clock, offload=offload)
        self.effects = Effects(final_outcomes, self.touch)

    # -- typed writes -------------------------------------------------------------------------

    async def insert_messages(
        self,
        messages: Sequence[NewMessage],
        *,
        registered_delivery: int = 0,
        along: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Queue accepted messages with their parts, in one job (one commit for the request);
        `along` writes the caller's own rows in the same job, so they commit or roll back with
        the messages (the answer remembered for an Idempotency-Key)."""
        insert = functools.partial(
            tx.insert_messages, fx=self.effects, groups=[(messages, registered_delivery)]
        )
        if along is None:
            await self.write(insert)
            return

        def insert_along(conn: sqlite3.Connection) -> None:
            insert(conn)
            along(conn)

        await self.write(insert_along)

    async def insert_message_groups(
        self, groups: Sequence[tuple[Sequence[NewMessage], int]]
    ) -> None:
        """Queue groups of messages, each with its SMPP receipt request (`registered_delivery`),
        in one job: the submit_sm of one read of an SMPP session."""
        await self.write(functools.partial(tx.insert_messages, fx=self.effects, groups=groups))

    async def expire_due(
        self,
        now: float | None = None,
        message_ids: Sequence[str] | None = None,
        service_id: int | None = None,
    ) -> list[str]:
        """Queued messages past their validity (or the end of their send window) -> `expired`:
        all of them, or those of `message_ids`; with `service_id`, only that service's."""
        return await self.write(
            functools.partial(
                tx.expire_due,
                fx=self.effects,
                now=self._now(now),
                message_ids=message_ids,
                service_id=service_id,
            )
        )

    async def expire(self, message_id: str, detail: str, now: float | None = None) -> None:
        """Expire one queued or claimed message (validity checked again before sending)."""
        await self.write(
            functools.partial(
                tx.expire, fx=self.effects, message_id=message_id, detail=detail, now=self._now(now)
            )
        )

    async def expire_if_past(
        self, service_id: int, message_id: str | None = None, now: float | None = None
    ) -> bool:
        """Expire the service's message (or, without `message_id`, every message of the
        service) as the sweep would when it is queued and past its validity though the sweep
        has not come round to it yet, so that the service's read of it (of a list or a count
        of its messages) shows what it is; True when it did. One read, and a write only then:
        never for another service's message, which that read does not show. While the disk
        takes no writes, which holds the sweep too, it stays as it is and the read shows
        that."""
        at = self._now(now)
        # `+service_id`: found in messages_expiry, as tx.expire_due finds them.
        where = f"+service_id = ? AND state = 'queued' AND {EXPIRY.sql()}"
        args: tuple[object, ...] = (service_id, at)
        if message_id is not None:
            where, args = "id = ? AND " + where, (message_id, *args)

        def past(conn: sqlite3.Connection) -> bool:
            row = conn.execute(f"SELECT 1 FROM messages WHERE {where} LIMIT 1", args).fetchone()
            return row is not None

        if not await self.read(past):
            return False
        ids = None if message_id is None else (message_id,)
        try:
            return bool(await self.expire_due(at, ids, service_id))
        except StoreUnwritable:
            return False

    async def reschedule(
        self, message_id: str, not_before: float, now: float | None = None
    ) -> None:
        """A queued message waits for its send window to open again."""
        await self.write(
            functools.partial(
                tx.reschedule, message_id=message_id, not_before=not_before, now=self._now(now)
            )
        )

    async def release_from_modem(self, message_id: str, modem: str, now: float) -> bool:
        """Unbind a queued message from a modem that stayed down (failover_after)."""
        return await self.write(
            functools.partial(
                tx.release_from_modem, fx=self.effects, message_id=message_id, modem=modem, now=now
            )
        )

    async def claim(
        self, assignments: Sequence[tuple[str, str]], now: float | None = None
    ) -> list[Claim]:
        """Move queued messages to `sending` on the given modems; return what was claimed (those
        still queued, due and within their validity when the claim runs)."""
        return await self.write(
            functools.partial(
                tx.claim, fx=self.effects, assignments=assignments, now=self._now(now)
            )
        )

    async def mark_part_sending(
        self, message_id: str, index: int, modem: str, now: float | None = None
    ) -> None:
        """The part is about to be handed to the modem; after a crash its fate is unknown."""
        await self.write(
            functools.partial(
                tx.part_sending, message_id=message_id, index=index, modem=modem, now=self._now(now)
            )
        )

    async def mark_part_sent(
        self,
        message_id: str,
        index: int,
        reference: int,
        *,
        last: bool,
        next_part: tuple[str, int, str] | None = None,
        smsc_expires_at: float | None = None,
        now: float | None = None,
    ) -> PartSent:
        """The network took the part (TP-MR `reference`); with `last`, the message is `sent`;
        with `next_part` (message id, index, modem), that part is `sending` in the same
        commit when it still may be sent. `smsc_expires_at`: when the validity the SMSC was
        given runs out there. Only the caller knows the part went out, so a full disk is
        waited out: lost, the part would stay `sending` and be sent again."""
        sent = functools.partial(
            tx.part_sent,
            message_id=message_id,
            index=index,
            reference=reference,
            now=self._now(now),
            last=last,
            next_part=next_part,
            smsc_expires_at=smsc_expires_at,
        )
        return await self.write_with_room(sent)

    async def mark_sent(self, message_id: str, now: float | None = None) -> None:
        """Every part is out: the message is `sent` (waiting for status reports)."""
        await self.write(functools.partial(tx.mark_sent, message_id=message_id, now=self._now(now)))

    async def requeue(
        self,
        message_id: str,
        *,
        next_attempt_at: float,
        error: str | None,
        counts_as_attempt: bool,
        part_index: int | None = None,
        now: float | None = None,
    ) -> None:
        """Back to `queued`, due at `next_attempt_at`; the modem is kept while a part of the
        message went out on it."""
        await self.write(
            functools.partial(
                tx.requeue,
                fx=self.effects,
                message_id=message_id,
                next_attempt_at=next_attempt_at,
                error=error,
                counts_as_attempt=counts_as_attempt,
                part_index=part_index,
                now=self._now(now),
            )
        )

    async def fail(
        self,
        message_id: str,
        *,
        error: str,
        dr_status: DrStatus,
        ext_status: str | None = None,
        part_index: int | None = None,
        counts_as_attempt: bool = True,
        now: float | None = None,
    ) -> None:
        """The message failed for good (`failed`, with its DR code)."""
        await self.write(
            functools.partial(
                tx.fail,
                fx=self.effects,
                message_id=message_id,
                error=error,
                dr_status=dr_status,
                ext_status=ext_status,
                part_index=part_index,
                counts_as_attempt=counts_as_attempt,
                now=self._now(now),
            )
        )

    async def recover_in_flight(self, *, resend: bool, now: float | None = None) -> Recovery:
        """Resolve messages left in `sending` by a crash or a stop, and bring forward those
        written under a clock set back since (see transactions)."""
        return await self.write(
            functools.partial(
                tx.recover_in_flight, fx=self.effects, resend=resend, now=self._now(now)
            )
        )

    # -- typed reads --------------------------------------------------------------------------

    async def due(
        self, services: Sequence[int], now: float | None = None, limit: int = DUE_SCAN_LIMIT
    ) -> dict[int, list[DueMessage]]:
        """Queued messages due at `now`, up to `limit` of each of `services` that has some, in
        the order of `services`; a service's own in its order (spec 7.7): priority 3 first,
        then the longest waiting."""
        at = self._now(now)

        def due(conn: sqlite3.Connection) -> dict[int, list[DueMessage]]:
            found: dict[int, list[DueMessage]] = {}
            for service_id in services:
                messages: list[DueMessage] = []
                for priority in PRIORITIES:
                    if len(messages) >= limit:
                        break
                    rows = conn.execute(
                        "SELECT id, modem, expires_at, window_zone, window_first, window_last,"
                        " window_opens, window_closes, recipient FROM messages"
                        " WHERE state = 'queued' AND service_id = ? AND priority = ?"
                        f" AND {DUE.sql()} ORDER BY due_at LIMIT ?",
                        (service_id, priority, at, limit - len(messages)),
                    )
                    messages += [
                        DueMessage(
                            id=row[0],
                            service_id=service_id,
                            priority=priority,
                            modem=row[1],
                            expires_at=row[2],
                            window=tx.daily_window(row[3:8]),
                            recipient=row[8],
                        )
                        for row in rows
                    ]
                if messages:
                    found[service_id] = messages
            return found

        return await self.read(due)

    async def queue_times(self) -> tuple[dict[int, float], float | None]:
        """The earliest due time of each service with queued messages, by service id, and the
        earliest expiry over queued messages (None when none is queued)."""

        def earliest(conn: sqlite3.Connection) -> tuple[dict[int, float], float | None]:
            heads: dict[int, float] = {}
            for service_id, *firsts in conn.execute(_SERVICE_HEADS):
                known = [at for at in firsts if at is not None]
                if known:
                    heads[service_id] = min(known)
            expiry = conn.execute(
                "SELECT expires_at FROM messages WHERE state = 'queued' ORDER BY expires_at LIMIT 1"
            ).fetchone()
            return heads, None if expiry is None else expiry[0]

        return await self.read(earliest)

    async def message(self, message_id: str) -> MessageRecord | None:
        def record(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            return None if row is None else _record(row)

        return await self.read(record)

    async def events(self, message_id: str) -> list[tuple[float, MessageState, int | None, str]]:
        """The message's history: (time, state, part, detail), oldest first."""

        def events(conn: sqlite3.Connection) -> list[tuple[float, MessageState, int | None, str]]:
            return [
                (at, MessageState(state), part, detail)
                for at, state, part, detail in conn.execute(
                    "SELECT at, state, part, detail FROM message_events WHERE message_id = ?"
                    " ORDER BY at, rowid",
                    (message_id,),
                )
            ]

        return await self.read(events)

    async def message_view(self, service_id: int, message_id: str) -> MessageView | None:
        """The message as `GET /api/messages/{id}` shows it; None if the service has no such id."""

        def view(conn: sqlite3.Connection) -> MessageView | None:
            row = conn.execute(
                "SELECT batch_reference, client_reference, recipient, originator, state, modem,"
                " error, created_at, updated_at, sent_at, done_at FROM messages"
                " WHERE id = ? AND service_id = ?",
                (message_id, service_id),
            ).fetchone()
            if row is None:
                return None
            parts = [
                PartView(
                    index=index,
                    state=MessageState(state),
                    modem=modem,
                    reference=reference,
                    attempts=attempts,
                    error=error,
                    sentAt=iso(sent_at),
                )
                for index, state, modem, reference, attempts, error, sent_at in conn.execute(
                    "SELECT idx, state, modem, reference, attempts, error, sent_at FROM parts"
                    " WHERE message_id = ? ORDER BY idx",
                    (message_id,),
                )
            ]
            return MessageView(
                messageId=message_id,
                serviceId=service_id,
                batchReference=row[0],
                clientReference=row[1],
                recipient=row[2],
                originator=row[3],
                state=MessageState(row[4]),
                modem=row[5],
                error=row[6],
                createdAt=iso(row[7]) or "",
                updatedAt=iso(row[8]) or "",
                sentAt=iso(row[9]),
                doneAt=iso(row[10]),
                parts=parts,
                events=[
                    EventView(at=iso(at) or "", state=MessageState(state), part=part, detail=text)
                    for at, state, part, text in conn.execute(
                        "SELECT at, state, part, detail FROM message_events WHERE message_id = ?"
                        " ORDER BY at, rowid",
                        (message_id,),
                    )
                ],
            )

        return await self.read(view)

    def _now(self, now: float | None) -> float:
        return self._clock.now() if now is None else now
