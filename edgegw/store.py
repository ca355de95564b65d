"""The durable store: one SQLite file that is the queue of MT messages, their parts and history.

One writer task owns the write connection and commits every waiting job in one transaction
(group commit); nobody is told "done" before the commit. Never blocks the event loop with SQL.
ARCHITECTURE.md (Store); message states and DR codes follow spec sections 4.4 and 7.
"""

from __future__ import annotations

import datetime
import enum
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import trio

from drivers.gsm.parts import EncodedPart
from edgegw.clock import Clock
from edgegw.delivery.outbox import enqueue_drs
from edgegw.delivery.smpp_outbox import enqueue_receipts
from edgegw.model import TERMINAL_STATES, EventView, MessageState, MessageView, PartView

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
WRITE_QUEUE_DEPTH = 4096  # jobs waiting for the writer; callers wait when it is full
MAX_JOBS_PER_COMMIT = 512
DUE_SCAN_LIMIT = 1000  # due messages read per dispatch round


class Offload(Protocol):
    """Runs blocking SQLite work off the event loop: `trio.to_thread.run_sync` in service.

    Virtual-time tests pass a runner that calls the function inline, because trio's autojump
    clock counts time spent waiting for a thread as idle and would jump over it.
    """

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


async def run_inline(fn: Callable[[], T], /) -> T:
    """An Offload that runs the SQL on the event loop thread (deterministic virtual time)."""
    return fn()


class DrStatus(enum.IntEnum):
    """The DR status code a message's final state maps to (spec section 4.4)."""

    DELIVERED = 0
    UNKNOWN_RECIPIENT = 351
    VALIDITY_EXPIRED = 361
    SMSC_FAILED = 363
    UNSPECIFIED = 370
    TRANSMIT_ERROR = 371


class StoreError(Exception):
    """The store cannot be used (closed, or written by a newer edgegw)."""


class StoreClosed(StoreError):
    """The writer is not running, so a write could not be committed."""


# ---------------------------------------------------------------------------------------------
# Schema. Each entry of MIGRATIONS takes the file from version i to i + 1; a file is upgraded
# by applying the missing steps in order, each version in its own transaction. Never edit a
# released step: add a new one.

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: messages and their parts; the queue is the partial index over queued messages.
    (
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            service_id INTEGER NOT NULL,
            batch_reference TEXT NOT NULL,
            client_reference TEXT,
            recipient TEXT NOT NULL,
            originator TEXT NOT NULL,
            originator_type TEXT NOT NULL,
            content TEXT NOT NULL,
            alphabet TEXT NOT NULL,
            priority INTEGER NOT NULL,
            validity_minutes INTEGER NOT NULL,
            state TEXT NOT NULL,
            modem TEXT,
            error TEXT,
            not_before REAL NOT NULL,
            expires_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            due_at REAL NOT NULL,
            status_report INTEGER NOT NULL,
            pid INTEGER NOT NULL,
            flash INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            sent_at REAL,
            done_at REAL
        )""",
        # due_at = max(not_before, next_attempt_at): "what is due" is one range per priority.
        "CREATE INDEX messages_due ON messages (priority, due_at) WHERE state = 'queued'",
        "CREATE INDEX messages_expiry ON messages (expires_at) WHERE state = 'queued'",
        """CREATE TABLE parts (
            message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            dcs INTEGER NOT NULL,
            udh BLOB NOT NULL,
            payload BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',
            modem TEXT,
            reference INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            sent_at REAL,
            PRIMARY KEY (message_id, idx)
        ) WITHOUT ROWID""",
    ),
    # v2: DR-style status codes, customer DR switch, daily send windows, and the event log.
    (
        "ALTER TABLE messages ADD COLUMN dr_status INTEGER",
        "ALTER TABLE messages ADD COLUMN ext_status TEXT",
        "ALTER TABLE messages ADD COLUMN report_to_customer INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN window_zone TEXT",
        "ALTER TABLE messages ADD COLUMN window_first TEXT",
        "ALTER TABLE messages ADD COLUMN window_last TEXT",
        "ALTER TABLE messages ADD COLUMN window_opens INTEGER",
        "ALTER TABLE messages ADD COLUMN window_closes INTEGER",
        # Crash recovery looks at messages in flight only.
        "CREATE INDEX messages_sending ON messages (id) WHERE state = 'sending'",
        # Status reports are matched to a part by modem and TP-MR.
        "CREATE INDEX parts_reference ON parts (modem, reference) WHERE reference IS NOT NULL",
        """CREATE TABLE message_events (
            message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            at REAL NOT NULL,
            state TEXT NOT NULL,
            part INTEGER,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX message_events_message ON message_events (message_id, at)",
    ),
    # v3, the receive side (edgegw.pipeline.inbound and .reports): per-part status reports,
    # received status reports, raw inbound parts (unique per PDU, so a re-read of a SIM message
    # is a no-op) and reassembled inbound messages; pacing counts parts sent per modem.
    (
        "ALTER TABLE parts ADD COLUMN report_status INTEGER",
        "ALTER TABLE parts ADD COLUMN reported_at REAL",
        "CREATE INDEX parts_modem_sent ON parts (modem, sent_at) WHERE sent_at IS NOT NULL",
        "CREATE INDEX messages_awaiting_report ON messages (expires_at)"
        " WHERE state = 'sent' AND done_at IS NULL",
        """CREATE TABLE status_reports (
            id INTEGER PRIMARY KEY,
            modem TEXT NOT NULL,
            reference INTEGER NOT NULL,
            recipient TEXT NOT NULL,
            status INTEGER NOT NULL,
            sc_timestamp TEXT NOT NULL,
            discharge_time TEXT NOT NULL,
            received_at REAL NOT NULL,
            pdu BLOB NOT NULL,
            message_id TEXT,
            part INTEGER,
            rematch_until REAL,
            UNIQUE (modem, pdu)
        )""",
        "CREATE INDEX status_reports_rematch ON status_reports (rematch_until)"
        " WHERE rematch_until IS NOT NULL",
        """CREATE TABLE inbound_messages (
            id TEXT PRIMARY KEY,
            service_id INTEGER,
            modem TEXT NOT NULL,
            sno TEXT NOT NULL,
            originator TEXT NOT NULL,
            content TEXT NOT NULL,
            command TEXT NOT NULL,
            stripped_content TEXT NOT NULL,
            dcs INTEGER NOT NULL,
            received_at REAL NOT NULL,
            sc_timestamp TEXT NOT NULL,
            complete INTEGER NOT NULL,
            parts_expected INTEGER NOT NULL,
            parts_received INTEGER NOT NULL,
            mcc INTEGER,
            mnc INTEGER
        )""",
        "CREATE INDEX inbound_messages_service ON inbound_messages (service_id, received_at)",
        """CREATE TABLE inbound_parts (
            id INTEGER PRIMARY KEY,
            modem TEXT NOT NULL,
            storage TEXT NOT NULL,
            storage_index INTEGER,
            smsc TEXT NOT NULL,
            originator TEXT NOT NULL,
            sc_timestamp TEXT NOT NULL,
            pid INTEGER NOT NULL,
            dcs INTEGER NOT NULL,
            udh BLOB NOT NULL,
            payload BLOB NOT NULL,
            concat_ref INTEGER,
            concat_total INTEGER,
            concat_seq INTEGER,
            received_at REAL NOT NULL,
            pdu BLOB NOT NULL,
            message_id TEXT REFERENCES inbound_messages (id),
            duplicate INTEGER NOT NULL DEFAULT 0,
            UNIQUE (modem, pdu)
        )""",
        "CREATE INDEX inbound_parts_group ON inbound_parts"
        " (modem, originator, concat_ref, concat_total, concat_seq)",
        "CREATE INDEX inbound_parts_pending ON inbound_parts (received_at)"
        " WHERE message_id IS NULL AND duplicate = 0",
    ),
    # v4, the customer side (edgegw.delivery.outbox): the MO/DR callback outbox, the endpoints
    # the configuration delivers to, and the indexes of the Management API and /api/messages.
    (
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            service_id INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            message_id TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT,
            last_status INTEGER,
            done_at REAL
        )""",
        "CREATE INDEX outbox_due ON outbox (service_id, endpoint, next_attempt_at)"
        " WHERE state = 'pending'",
        "CREATE INDEX outbox_message ON outbox (message_id)",
        """CREATE TABLE delivery_endpoints (
            service_id INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            service_name TEXT NOT NULL,
            PRIMARY KEY (service_id, endpoint)
        ) WITHOUT ROWID""",
        "CREATE INDEX messages_batch ON messages (service_id, batch_reference)",
        "CREATE INDEX messages_service_created ON messages (service_id, created_at, id)",
    ),
    # v5, the SMPP door (edgegw.delivery.smpp_outbox): the receipt an ESME asked for
    # (registered_delivery bits 1..0), the outbox of receipts and MO to bound ESMEs, and the
    # services that take their MO by SMPP.
    (
        "ALTER TABLE messages ADD COLUMN registered_delivery INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE smpp_outbox (
            id INTEGER PRIMARY KEY,
            service_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            message_id TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_status INTEGER,
            state TEXT NOT NULL DEFAULT 'pending',
            done_at REAL
        )""",
        "CREATE INDEX smpp_outbox_pending ON smpp_outbox (service_id, id) WHERE state = 'pending'",
        "CREATE TABLE smpp_mo_services (service_id INTEGER PRIMARY KEY)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the file up to `target`, one version per transaction; return the version found."""
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {found}; this edgegw knows {SCHEMA_VERSION}"
        )
    for version in range(found, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("store schema migrated to version %d", version + 1)
    return found


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # FULL: a commit is on disk (WAL fsynced) before anyone hears "done".
    conn.execute("PRAGMA synchronous = FULL")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        # Pruning (prune_final) frees pages that PRAGMA incremental_vacuum hands back, with no
        # VACUUM; this takes effect only on a new file, so it comes before WAL writes one.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
    return conn


# ---------------------------------------------------------------------------------------------
# Records passed in and out.


class DailyWindow(msgspec.Struct, frozen=True, kw_only=True):
    """A send window that opens every day from `first_day` to `last_day` (spec section 7.5).

    `opens`/`closes` are seconds after local midnight in `zone` (an IANA name or "+hh:mm").
    """

    zone: str
    first_day: str  # YYYY-MM-DD
    last_day: str
    opens: int
    closes: int


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted MT message, encoded and ready to queue."""

    id: str
    service_id: int
    batch_reference: str
    client_reference: str | None
    recipient: str
    originator: str
    originator_type: str
    content: str
    alphabet: str
    priority: int
    validity_minutes: int
    not_before: float
    expires_at: float
    status_report: bool
    report_to_customer: bool
    pid: int
    flash: bool
    created_at: float
    window: DailyWindow | None
    parts: tuple[EncodedPart, ...]


class DueMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A queued message whose time has come, as the dispatcher routes it."""

    id: str
    service_id: int
    priority: int
    modem: str | None  # set when some part already went out on this modem: it must stay there
    expires_at: float
    window: DailyWindow | None
    recipient: str = ""  # for routing by recipient prefix


# Part states of a part the network already took: a retry of its message must not send it
# again, also when its status report came before the retry.
_WENT_OUT = frozenset({MessageState.SENT, MessageState.DELIVERED, MessageState.FAILED})


class ClaimedPart(msgspec.Struct, frozen=True, kw_only=True):
    index: int  # 1-based
    part: EncodedPart
    sent: bool


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A message now in `sending` on `modem`, with what the worker needs to send it."""

    id: str
    modem: str
    recipient: str
    status_report: bool
    validity_minutes: int
    pid: int
    expires_at: float
    attempts: int
    parts: tuple[ClaimedPart, ...]


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """What `recover_in_flight` did to the messages it found in `sending`."""

    requeued: list[str]
    failed: list[str]


class MessageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Columns of one message that pipeline code and tests inspect."""

    id: str
    state: MessageState
    modem: str | None
    error: str | None
    dr_status: int | None
    ext_status: str | None
    attempts: int
    priority: int
    not_before: float
    next_attempt_at: float
    expires_at: float
    sent_at: float | None
    done_at: float | None


# ---------------------------------------------------------------------------------------------
# The writer's job queue.


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "ran", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.ran = False
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


_INSERT_MESSAGE = """INSERT INTO messages (
    id, service_id, batch_reference, client_reference, recipient, originator, originator_type,
    content, alphabet, priority, validity_minutes, not_before, expires_at, status_report,
    report_to_customer, pid, flash, created_at, window_zone, window_first, window_last,
    window_opens, window_closes, state, next_attempt_at, due_at, updated_at
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19, ?20, ?21, ?22, ?23, 'queued', ?12, ?12, ?18)"""
_INSERT_PART = "INSERT INTO parts (message_id, idx, dcs, udh, payload) VALUES (?, ?, ?, ?, ?)"
_INSERT_EVENT = (
    "INSERT INTO message_events (message_id, at, state, part, detail) VALUES (?,?,?,?,?)"
)
_MESSAGE_FIELDS = len(msgspec.structs.fields(NewMessage)) - 2  # without window and parts
_NO_WINDOW = (None, None, None, None, None)

_RECORD_COLUMNS = (
    "id, state, modem, error, dr_status, ext_status, attempts, priority, not_before, "
    "next_attempt_at, expires_at, sent_at, done_at"
)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def _window(row: Sequence[Any]) -> DailyWindow | None:
    zone, first, last, opens, closes = row
    if zone is None:
        return None
    return DailyWindow(zone=zone, first_day=first, last_day=last, opens=opens, closes=closes)


def _event(
    conn: sqlite3.Connection,
    message_id: str,
    now: float,
    state: MessageState,
    detail: str,
    part: int | None = None,
) -> None:
    conn.execute(_INSERT_EVENT, (message_id, now, state, part, detail))


def _finish(
    conn: sqlite3.Connection,
    message_id: str,
    now: float,
    state: MessageState,
    *,
    error: str | None,
    dr_status: int | None,
    ext_status: str | None = None,
    only_if: tuple[MessageState, ...] = (),
) -> bool:
    """Move a message to a final state; with `only_if`, only from one of those states."""
    condition = ""
    params: list[Any] = [state, error, dr_status, ext_status, now, now, message_id]
    if only_if:
        condition = f" AND state IN ({','.join('?' * len(only_if))})"
        params += only_if
    cursor = conn.execute(
        "UPDATE messages SET state = ?, error = ?, dr_status = ?, ext_status = ?, done_at = ?,"
        " updated_at = ? WHERE id = ?" + condition,
        params,
    )
    if cursor.rowcount != 1:
        return False
    _event(conn, message_id, now, state, error or state.value)
    if state in TERMINAL_STATES or dr_status is not None:
        # The customer's DR commits with the final outcome, or neither does. A message closed
        # as `sent` with a DR code (no report came) has its final outcome too.
        enqueue_drs(conn, (message_id,), now)
        enqueue_receipts(conn, (message_id,), now)
    return True


def message_inserter(messages: Sequence[NewMessage]) -> Callable[[sqlite3.Connection], None]:
    """A write that queues accepted messages with their parts, for callers that add their own
    rows to the same transaction."""
    message_rows = []
    part_rows = []
    astuple = msgspec.structs.astuple
    for message in messages:
        fields = astuple(message)
        window = message.window
        message_rows.append(
            fields[:_MESSAGE_FIELDS] + (_NO_WINDOW if window is None else astuple(window))
        )
        message_id = message.id
        part_rows += [
            (message_id, index, part.dcs, part.udh, part.payload)
            for index, part in enumerate(message.parts, 1)
        ]

    def insert(conn: sqlite3.Connection) -> None:
        conn.executemany(_INSERT_MESSAGE, message_rows)
        conn.executemany(_INSERT_PART, part_rows)

    return insert


class Store:
    """The gateway's SQLite store. Start `run` in a nursery before any other method is used."""

    def __init__(self, path: str | Path, *, clock: Clock, offload: Offload | None = None) -> None:
        self.path = str(path)
        self._clock = clock
        self._offload: Offload = offload or trio.to_thread.run_sync
        self._send, self._receive = trio.open_memory_channel[_Job[Any]](WRITE_QUEUE_DEPTH)
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._running = False
        self.commits = 0  # transactions committed by the writer
        self.jobs = 0  # write jobs run

    # -- the writer ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open and migrate the file, then commit write jobs until cancelled."""
        self._writer = await self._offload(self._open_writer)
        self._running = True
        try:
            task_status.started()
            while True:
                jobs: list[_Job[Any]] = [await self._receive.receive()]
                while len(jobs) < MAX_JOBS_PER_COMMIT:
                    try:
                        jobs.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    await self._offload(functools.partial(self._commit, jobs))
                finally:
                    # Also on cancellation: a started batch has finished in its thread by now,
                    # and a batch cancelled before it started never ran.
                    for job in jobs:
                        if not job.ran:
                            job.error = StoreClosed("the store is shutting down")
                        job.done.set()
        finally:
            self._running = False
            self._send.close()
            while True:
                try:
                    job = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                job.error = StoreClosed("the store is shutting down")
                job.done.set()
            self._close_connections()

    def _open_writer(self) -> sqlite3.Connection:
        try:
            # Messages are personal data: a new store and its folder are the owner's only (the
            # WAL and shared-memory files SQLite creates take the store's mode).
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from exc
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_connections(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        """Run every job in one transaction, each in its own savepoint, and commit once."""
        conn = self._writer
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                job.ran = True
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    job.error = exc
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.result = None
                if job.error is None:
                    job.error = exc if isinstance(exc, Exception) else StoreError(repr(exc))
            if not isinstance(exc, Exception):
                raise
            log.exception("store commit failed; %d write jobs rolled back", len(jobs))
            return
        self.commits += 1
        self.jobs += len(jobs)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in the writer's next transaction; return its result once committed.

        `fn` runs in a worker thread inside a savepoint: if it raises, only its own changes are
        undone and the exception is raised here.
        """
        if not self._running:
            # A caller cancelled together with the store hears Cancelled, not StoreClosed.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise StoreClosed("the store is not running")
        job = _Job(fn)
        try:
            await self._send.send(job)
        except trio.ClosedResourceError:
            raise StoreClosed("the store is shutting down") from None
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    # -- readers ------------------------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = connect(self.path, readonly=True)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._readers_lock:
                if self._running:
                    self._readers.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on a read connection in a worker thread, in one read transaction."""
        if not self._running:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise StoreClosed("the store is not running")

        def in_thread() -> T:
            with self._reader() as conn:
                conn.execute("BEGIN")
                return fn(conn)

        return await self._offload(in_thread)

    # -- typed writes -------------------------------------------------------------------------

    async def insert_messages(self, messages: Sequence[NewMessage]) -> None:
        """Queue accepted messages with their parts, in one job (one commit for the request)."""
        await self.write(message_inserter(messages))

    async def expire_due(self, now: float | None = None) -> list[str]:
        """Queued messages past their validity (or the end of their send window) -> `expired`."""
        at = self._now(now)

        def expire(conn: sqlite3.Connection) -> list[str]:
            detail = "validity period expired before sending"
            rows = conn.execute(
                "UPDATE messages SET state = 'expired', error = ?, dr_status = ?, done_at = ?,"
                " updated_at = ? WHERE state = 'queued' AND expires_at <= ? RETURNING id",
                (detail, DrStatus.VALIDITY_EXPIRED, at, at, at),
            ).fetchall()
            ids = [row[0] for row in rows]
            conn.executemany(
                _INSERT_EVENT, [(mid, at, MessageState.EXPIRED, None, detail) for mid in ids]
            )
            enqueue_drs(conn, ids, at)
            enqueue_receipts(conn, ids, at)
            return ids

        return await self.write(expire)

    async def expire(self, message_id: str, detail: str, now: float | None = None) -> bool:
        """Expire one queued or claimed message (validity checked again before sending)."""
        at = self._now(now)

        def expire(conn: sqlite3.Connection) -> bool:
            return _finish(
                conn,
                message_id,
                at,
                MessageState.EXPIRED,
                error=detail,
                dr_status=DrStatus.VALIDITY_EXPIRED,
                only_if=(MessageState.QUEUED, MessageState.SENDING),
            )

        return await self.write(expire)

    async def reschedule(
        self, message_id: str, not_before: float, now: float | None = None
    ) -> None:
        """A queued message waits for its send window to open again."""
        at = self._now(now)

        def reschedule(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE messages SET not_before = ?, due_at = max(?, next_attempt_at),"
                " updated_at = ? WHERE id = ? AND state = 'queued'",
                (not_before, not_before, at, message_id),
            )
            _event(
                conn,
                message_id,
                at,
                MessageState.QUEUED,
                f"send window opens at {_iso(not_before)}",
            )

        await self.write(reschedule)

    async def claim(
        self, assignments: Sequence[tuple[str, str]], now: float | None = None
    ) -> list[Claim]:
        """Move queued messages to `sending` on the given modems; return what was claimed.

        A message that left `queued` since it was read (cancelled, expired) is left out.
        """
        at = self._now(now)

        def claim(conn: sqlite3.Connection) -> list[Claim]:
            claims: list[Claim] = []
            for message_id, modem in assignments:
                row = conn.execute(
                    "UPDATE messages SET state = 'sending', modem = ?, updated_at = ?"
                    " WHERE id = ? AND state = 'queued'"
                    " RETURNING recipient, status_report, validity_minutes, pid, expires_at,"
                    " attempts",
                    (modem, at, message_id),
                ).fetchone()
                if row is None:
                    continue
                _event(conn, message_id, at, MessageState.SENDING, f"claimed for modem {modem}")
                parts = tuple(
                    ClaimedPart(
                        index=index,
                        part=EncodedPart(dcs=dcs, udh=udh, payload=payload),
                        sent=state in _WENT_OUT,
                    )
                    for index, dcs, udh, payload, state in conn.execute(
                        "SELECT idx, dcs, udh, payload, state FROM parts WHERE message_id = ?"
                        " ORDER BY idx",
                        (message_id,),
                    )
                )
                recipient, status_report, validity, pid, expires_at, attempts = row
                claims.append(
                    Claim(
                        id=message_id,
                        modem=modem,
                        recipient=recipient,
                        status_report=bool(status_report),
                        validity_minutes=validity,
                        pid=pid,
                        expires_at=expires_at,
                        attempts=attempts,
                        parts=parts,
                    )
                )
            return claims

        return await self.write(claim)

    async def mark_part_sending(
        self, message_id: str, index: int, modem: str, now: float | None = None
    ) -> None:
        """The part is about to be handed to the modem; after a crash its fate is unknown."""
        at = self._now(now)

        def sending(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE parts SET state = 'sending', modem = ?, attempts = attempts + 1"
                " WHERE message_id = ? AND idx = ?",
                (modem, message_id, index),
            )
            _event(
                conn, message_id, at, MessageState.SENDING, f"part {index} to modem {modem}", index
            )

        await self.write(sending)

    async def mark_part_sent(
        self,
        message_id: str,
        index: int,
        reference: int,
        *,
        last: bool,
        now: float | None = None,
    ) -> None:
        """The network took the part (TP-MR `reference`); with `last`, the message is `sent`."""
        at = self._now(now)

        def sent(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE parts SET state = 'sent', reference = ?, error = NULL, sent_at = ?"
                " WHERE message_id = ? AND idx = ?",
                (reference, at, message_id, index),
            )
            if last:
                # Only from `sending`: a status report may already have failed the message.
                conn.execute(
                    "UPDATE messages SET state = 'sent', error = NULL, sent_at = ?,"
                    " updated_at = ? WHERE id = ? AND state = 'sending'",
                    (at, at, message_id),
                )
                _event(
                    conn,
                    message_id,
                    at,
                    MessageState.SENT,
                    f"part {index} sent, MR {reference}",
                    index,
                )
            else:
                _event(
                    conn,
                    message_id,
                    at,
                    MessageState.SENDING,
                    f"part {index} sent, MR {reference}",
                    index,
                )

        await self.write(sent)

    async def mark_sent(self, message_id: str, now: float | None = None) -> None:
        """Every part is out: the message is `sent` (waiting for status reports)."""
        at = self._now(now)

        def sent(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE messages SET state = 'sent', error = NULL, sent_at = ?, updated_at = ?"
                " WHERE id = ? AND state = 'sending'",
                (at, at, message_id),
            )
            _event(conn, message_id, at, MessageState.SENT, "all parts sent")

        await self.write(sent)

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
        """Back to `queued`, due at `next_attempt_at`. The modem is kept only when a part of the
        message already went out on it (every part of a message goes through one modem)."""
        at = self._now(now)

        def requeue(conn: sqlite3.Connection) -> None:
            if part_index is not None:
                conn.execute(
                    "UPDATE parts SET state = 'queued', error = ? WHERE message_id = ? AND idx = ?",
                    (error, message_id, part_index),
                )
            conn.execute(
                "UPDATE messages SET state = 'queued', error = ?,"
                " attempts = attempts + ?, next_attempt_at = ?, due_at = max(not_before, ?),"
                " updated_at = ?,"
                " modem = CASE WHEN EXISTS (SELECT 1 FROM parts WHERE message_id = messages.id"
                "   AND state = 'sent') THEN modem END"
                " WHERE id = ?",
                (error, int(counts_as_attempt), next_attempt_at, next_attempt_at, at, message_id),
            )
            _event(
                conn,
                message_id,
                at,
                MessageState.QUEUED,
                f"{error or 'released'}; next attempt at {_iso(next_attempt_at)}",
                part_index,
            )

        await self.write(requeue)

    async def fail(
        self,
        message_id: str,
        *,
        error: str,
        dr_status: int,
        ext_status: str | None = None,
        part_index: int | None = None,
        counts_as_attempt: bool = True,
        now: float | None = None,
    ) -> None:
        """The message failed for good (`failed`, with its DR code)."""
        at = self._now(now)

        def fail(conn: sqlite3.Connection) -> None:
            if part_index is not None:
                conn.execute(
                    "UPDATE parts SET state = 'failed', error = ? WHERE message_id = ? AND idx = ?",
                    (error, message_id, part_index),
                )
            if counts_as_attempt:
                conn.execute(
                    "UPDATE messages SET attempts = attempts + 1 WHERE id = ?", (message_id,)
                )
            _finish(
                conn,
                message_id,
                at,
                MessageState.FAILED,
                error=error,
                dr_status=dr_status,
                ext_status=ext_status,
            )

        await self.write(fail)

    async def recover_in_flight(self, *, resend: bool, now: float | None = None) -> Recovery:
        """Resolve messages left in `sending` by a crash or a stop.

        Parts never handed to a modem simply go back to the queue. A part in `sending` may or
        may not have reached the network: with `resend` (at-least-once) it is queued again,
        otherwise (at-most-once) it and its message fail.
        """
        at = self._now(now)

        def recover(conn: sqlite3.Connection) -> Recovery:
            requeued: list[str] = []
            failed: list[str] = []
            in_flight = conn.execute("SELECT id FROM messages WHERE state = 'sending'").fetchall()
            for (message_id,) in in_flight:
                unknown = [
                    row[0]
                    for row in conn.execute(
                        "SELECT idx FROM parts WHERE message_id = ? AND state = 'sending'",
                        (message_id,),
                    )
                ]
                if unknown and not resend:
                    detail = (
                        f"part {unknown[0]} was being sent when the gateway stopped;"
                        " not resent (policy: fail)"
                    )
                    conn.execute(
                        "UPDATE parts SET state = 'failed', error = ? WHERE message_id = ?"
                        " AND state = 'sending'",
                        (detail, message_id),
                    )
                    _finish(
                        conn,
                        message_id,
                        at,
                        MessageState.FAILED,
                        error=detail,
                        dr_status=DrStatus.UNSPECIFIED,
                    )
                    failed.append(message_id)
                    continue
                conn.execute(
                    "UPDATE parts SET state = 'queued' WHERE message_id = ? AND state = 'sending'",
                    (message_id,),
                )
                conn.execute(
                    "UPDATE messages SET state = 'queued', updated_at = ?,"
                    " modem = CASE WHEN EXISTS (SELECT 1 FROM parts WHERE message_id = messages.id"
                    "   AND state = 'sent') THEN modem END"
                    " WHERE id = ?",
                    (at, message_id),
                )
                detail = "in flight when the gateway stopped; queued again"
                if unknown:
                    detail += f" (part {unknown[0]} may be sent twice: policy resend)"
                _event(conn, message_id, at, MessageState.QUEUED, detail)
                requeued.append(message_id)
            return Recovery(requeued=requeued, failed=failed)

        return await self.write(recover)

    # -- typed reads --------------------------------------------------------------------------

    async def due(self, now: float | None = None, limit: int = DUE_SCAN_LIMIT) -> list[DueMessage]:
        """Queued messages due at `now`: priority 3 first, then the longest waiting."""
        at = self._now(now)

        def due(conn: sqlite3.Connection) -> list[DueMessage]:
            found: list[DueMessage] = []
            for priority in (3, 2, 1):
                if len(found) >= limit:
                    break
                rows = conn.execute(
                    "SELECT id, service_id, modem, expires_at, window_zone, window_first,"
                    " window_last, window_opens, window_closes, recipient FROM messages"
                    " WHERE state = 'queued' AND priority = ? AND due_at <= ?"
                    " ORDER BY due_at LIMIT ?",
                    (priority, at, limit - len(found)),
                )
                found += [
                    DueMessage(
                        id=row[0],
                        service_id=row[1],
                        priority=priority,
                        modem=row[2],
                        expires_at=row[3],
                        window=_window(row[4:9]),
                        recipient=row[9],
                    )
                    for row in rows
                ]
            return found

        return await self.read(due)

    async def next_times(self) -> tuple[float | None, float | None]:
        """(earliest due time, earliest expiry) over queued messages; None when none is queued."""

        def earliest(conn: sqlite3.Connection) -> tuple[float | None, float | None]:
            due = [
                row[0]
                for priority in (1, 2, 3)
                for row in conn.execute(
                    "SELECT due_at FROM messages WHERE state = 'queued' AND priority = ?"
                    " ORDER BY due_at LIMIT 1",
                    (priority,),
                )
            ]
            expiry = conn.execute(
                "SELECT expires_at FROM messages WHERE state = 'queued' ORDER BY expires_at LIMIT 1"
            ).fetchone()
            return min(due, default=None), None if expiry is None else expiry[0]

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
                    sentAt=_iso(sent_at),
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
                createdAt=_iso(row[7]) or "",
                updatedAt=_iso(row[8]) or "",
                sentAt=_iso(row[9]),
                doneAt=_iso(row[10]),
                parts=parts,
                events=[
                    EventView(at=_iso(at) or "", state=MessageState(state), part=part, detail=text)
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


# ---------------------------------------------------------------------------------------------
# Retention (`[store] keep_final_days`, edgegw.retention): write jobs that delete, in small
# batches, what has been final for longer than the retention. Each walks its table in rowid
# order from a cursor, so a batch reads at most `limit` rows and needs no index: rows are
# created in rowid order and finish after they are created, so the walk stops at the first
# row created after the cutoff. Pages freed go back to the file with incremental_vacuum.

PRUNE_BATCH = 500


class PruneStep(msgspec.Struct, frozen=True, kw_only=True):
    deleted: int  # rows deleted by this batch
    cursor: int  # the rowid to continue after
    finished: bool  # no row at or past the cursor is old enough yet: start over next round


# What each walk deletes: (table, its rowid column, its creation time, the condition of a row
# that may go, given the cutoff as the one parameter). Parts and message events go with their
# message (ON DELETE CASCADE).
_PRUNED: dict[str, tuple[str, str, str]] = {
    "messages": ("rowid", "created_at", "done_at IS NOT NULL AND done_at < ?"),
    "outbox": ("id", "created_at", "state != 'pending' AND done_at < ?"),
    "smpp_outbox": ("id", "created_at", "state != 'pending' AND done_at < ?"),
    "status_reports": ("id", "received_at", "rematch_until IS NULL AND received_at < ?"),
}
PRUNED_TABLES = tuple(_PRUNED)


def prune_batch(
    conn: sqlite3.Connection, *, table: str, before: float, after: int, limit: int = PRUNE_BATCH
) -> PruneStep:
    """Delete the final rows of `table` among the next `limit` rows after rowid `after` that
    were final before `before` (epoch): messages (with parts and events), delivered or
    abandoned callbacks and SMPP deliveries, and settled status reports."""
    key, created, condition = _PRUNED[table]
    rows = conn.execute(
        f"SELECT {key}, {created} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
        (after, limit),
    ).fetchall()
    if not rows:
        return PruneStep(deleted=0, cursor=after, finished=True)
    last = int(rows[-1][0])
    deleted = conn.execute(
        f"DELETE FROM {table} WHERE {key} > ? AND {key} <= ? AND {condition}",
        (after, last, before),
    ).rowcount
    finished = len(rows) < limit or rows[-1][1] >= before
    return PruneStep(deleted=deleted, cursor=last, finished=finished)


def release_free_pages(conn: sqlite3.Connection, pages: int = 20000) -> int:
    """Give up to `pages` free pages back to the file system; the number still free."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    # Python's sqlite3 steps a pragma statement once, and each step of incremental_vacuum
    # frees one page: so one statement per page (microseconds each).
    for _ in range(min(free, pages)):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])
