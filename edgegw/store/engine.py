"""The store's engine: the SQLite file's connections, schema and migrations, and the writer.

One writer task owns the write connection and commits every waiting job in one transaction
(group commit); nobody is told "done" before the commit. Never blocks the event loop with SQL.
After a commit the engine wakes whoever subscribed to a topic its jobs touched.
README, Design rules (the store is the queue).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import trio

from edgegw.clock import Clock
from edgegw.store.transactions import Topic

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
WRITE_QUEUE_DEPTH = 4096  # jobs waiting for the writer; callers wait when it is full
MAX_JOBS_PER_COMMIT = 512
UNWRITABLE_RETRY = 5.0  # seconds between tries of a write that must wait out a full disk


class Offload(Protocol):
    """Runs blocking SQLite work off the event loop: `trio.to_thread.run_sync` in service.

    Virtual-time tests pass a runner that calls the function inline, because trio's autojump
    clock counts time spent waiting for a thread as idle and would jump over it.
    """

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


async def run_inline(fn: Callable[[], T], /) -> T:
    """An Offload that runs the SQL on the event loop thread (deterministic virtual time)."""
    return fn()


class StoreError(Exception):
    """The store cannot be used (closed, or written by a newer edgegw)."""


class StoreClosed(StoreError):
    """The writer is not running, so a write could not be committed."""


class StoreTooNew(StoreError):
    """The store was written by a newer edgegw, whose schema this one does not know."""


class StoreDamaged(StoreError):
    """SQLite found the store's file damaged (a corrupt page, or no database at all): nothing
    it holds can be trusted until a backup is restored."""


class StoreUnwritable(StoreError):
    """The store's file cannot take writes now: its disk is full, or the system failed a write
    to it. Not damage: what was committed is whole, and writes work again once there is room,
    without a restart. `cause` is the error SQLite or the system gave."""

    def __init__(self, path: str | Path, cause: str) -> None:
        super().__init__(
            f"{path}: the store cannot take writes ({cause}); nothing new is accepted and"
            " received SMS stay on the modems until there is room: free space on its disk"
        )
        self.cause = cause


# The primary result codes of a damaged file (extended ones such as SQLITE_CORRUPT_INDEX
# carry them in their low byte).
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# A write the disk did not take: full (SQLITE_FULL: ENOSPC, or the database's page limit), or
# failed in the system (EFBIG, EDQUOT, EIO) writing or syncing a file or growing the WAL's index.
# SQLite then rolls the transaction back, or the one statement, and the file stays as the last
# commit left it. Extended codes, so that a read the disk failed (SQLITE_IOERR_READ,
# _SHORT_READ, _CORRUPTFS: a failing card, a damaged file system) is not one: no free space
# mends it, and retrying it for ever would hide it.
_REFUSED_WRITE_CODES = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR_WRITE,
        sqlite3.SQLITE_IOERR_FSYNC,
        sqlite3.SQLITE_IOERR_DIR_FSYNC,
        sqlite3.SQLITE_IOERR_TRUNCATE,
        sqlite3.SQLITE_IOERR_SHMSIZE,
    }
)


# The same from the system, when edgegw itself creates the store's folder or file (an EIO there
# may be a read of the folder, so it is not one).
_UNWRITABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _has_code(exc: BaseException, codes: frozenset[int]) -> bool:
    # Errors the sqlite3 module raises itself (a closed connection, say) carry no code.
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in codes


def write_refused(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's answer to a write its disk did not take (full, or a write or
    sync the system failed); not to a read, and not damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    # SQLITE_FULL has no extended codes of its own.
    return isinstance(code, int) and code in _REFUSED_WRITE_CODES


def _damage(path: str | Path, exc: BaseException) -> StoreDamaged | None:
    """`StoreDamaged`, naming the file and the fix, when `exc` says the file is damaged."""
    if _has_code(exc, _DAMAGE_CODES):
        return StoreDamaged(
            f"{path}: the store is damaged ({exc}); stop edgegw and restore a backup"
        )
    return None


def _unwritable(path: str | Path, exc: BaseException) -> StoreUnwritable | None:
    """`StoreUnwritable`, naming the file, the cause and the fix, when `exc` is a write the
    disk did not take."""
    if write_refused(exc) or (isinstance(exc, OSError) and exc.errno in _UNWRITABLE_ERRNOS):
        return StoreUnwritable(path, str(exc))
    return None


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
    # Schema 6 (issue 10): answers to sends that carried an Idempotency-Key
    # (edgegw.http.idempotency), and clientReference lookups per service.
    (
        """CREATE TABLE idempotent_responses (
            key TEXT PRIMARY KEY,
            fingerprint BLOB NOT NULL,
            status INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX idempotent_responses_age ON idempotent_responses (created_at)",
        # For services that keep clientReference unique (spec 7.7).
        "CREATE INDEX messages_client_reference ON messages (service_id, client_reference)"
        " WHERE client_reference IS NOT NULL",
    ),
    # v7, retention of inbound SMS (edgegw.store.retention): deleting an inbound message looks
    # up its parts (the foreign key), which without this index reads every part each time.
    ("CREATE INDEX inbound_parts_message ON inbound_parts (message_id)",),
    # v8, smpp_outbox ids never come round again: retention deletes waiting items, even the
    # newest, and an ESME's answer to a deliver_sm names its item by id, so a new item taking
    # a pruned one's id would be settled by the answer to the pruned one, unsent.
    (
        """CREATE TABLE smpp_outbox_v8 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
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
        "INSERT INTO smpp_outbox_v8 SELECT * FROM smpp_outbox",
        "DROP TABLE smpp_outbox",
        "ALTER TABLE smpp_outbox_v8 RENAME TO smpp_outbox",
        "CREATE INDEX smpp_outbox_pending ON smpp_outbox (service_id, id) WHERE state = 'pending'",
    ),
    # v9, DR 362 no sooner than the SMSC gives up (edgegw.pipeline.reports): the moment each
    # part's TP-VP runs out at the SMSC, which the encoding rounds up past the validity, and for
    # a sent message the latest of its parts' (NULL where no part recorded one: a send before
    # this version, which counts as its validity's end); the sweep reads them by that moment,
    # and by their modem while a modem has not read its SIM since the start.
    # A modem's last matched report (the SMSC's clock against ours) is read without walking
    # the unmatched reports after it.
    (
        "ALTER TABLE parts ADD COLUMN smsc_expires_at REAL",
        "ALTER TABLE messages ADD COLUMN smsc_expires_at REAL",
        "DROP INDEX messages_awaiting_report",
        "CREATE INDEX messages_report_overdue"
        " ON messages (coalesce(smsc_expires_at, expires_at), modem)"
        " WHERE state = 'sent' AND done_at IS NULL AND status_report = 1",
        "CREATE INDEX status_reports_matched ON status_reports (modem, id)"
        " WHERE message_id IS NOT NULL",
    ),
    # v10: crash recovery finds the parts left in `sending` off an index of their own, rather
    # than by reading every part the store holds (a million, most of them final) at each start.
    ("CREATE INDEX parts_sending ON parts (message_id) WHERE state = 'sending'",),
    # v11, a fair queue across services (edgegw.pipeline.dispatcher): priority orders the
    # messages of one service (spec 7.7), so the queue is read service by service, each one
    # range per priority, and the services with queued messages are found by skipping from one
    # to the next in the same index.
    (
        "DROP INDEX messages_due",
        "CREATE INDEX messages_service_due ON messages (service_id, priority, due_at)"
        " WHERE state = 'queued'",
    ),
    # v12, SMPP replace_sm (edgegw.pipeline.smpp_backend): the data_coding a submit_sm's
    # short_message came in, which a replace_sm's new one is read in (it carries none; SMPP 3.4
    # section 4.10.1). NULL for a message from another door.
    ("ALTER TABLE messages ADD COLUMN data_coding INTEGER",),
    # v13, batchReference uniqueness (spec 7.7, edgegw.store.responses): whether a service's
    # messages of the last hour carry a reference is one range of this index, not a read of
    # every message the service created in that hour (the planner's choice on v12's index).
    (
        "DROP INDEX messages_batch",
        "CREATE INDEX messages_batch ON messages (service_id, batch_reference, created_at)",
    ),
    # v14, the modems' queues (GET /api/modems, the status page every 2 s): the queued messages
    # bound to a modem (parts of them sent there) are a few; counted off this index, and the
    # rest off a queued index alone, not by reading the row of each of 100,000 queued.
    (
        "CREATE INDEX messages_queued_modem ON messages (modem)"
        " WHERE state = 'queued' AND modem IS NOT NULL",
    ),
    # v15, SMPP receipts (edgegw.delivery.smpp_outbox): the user_message_reference TLV of a
    # submit_sm, which its receipt's deliver_sm carries back (SMPP 3.4 4.6.1, 5.3.2.17). NULL
    # when the ESME gave none, and for a message from another door.
    ("ALTER TABLE messages ADD COLUMN user_message_reference INTEGER",),
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
        raise StoreTooNew(
            f"the store has schema version {found}, from a newer edgegw; this one knows "
            f"{SCHEMA_VERSION}: run the newer edgegw, or restore a backup this one made"
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
        if found:
            log.info("store schema migrated to version %d", version + 1)
    if not found and target:
        # A new store: one line, not one "migrated" per version it was built through.
        log.info("store created at schema version %d", target)
    return found


# The queue's tables, whose first rows the open reads (`read_table_roots`).
QUEUE_TABLES = ("messages", "parts")


def read_table_roots(conn: sqlite3.Connection) -> None:
    """Read the first row of each of QUEUE_TABLES from the table itself: its root page and the
    pages down to its first leaf, so that a table torn where its b-tree starts (a power cut on
    an SD card) is found at the start, at a cost bounded by the tree's depth, not its size
    (crash recovery reads the parts in flight off an index, not every part). Damage elsewhere
    is found when a read or a write first meets it."""
    for table in QUEUE_TABLES:
        conn.execute(f"SELECT * FROM {table} NOT INDEXED LIMIT 1").fetchone()


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL: a commit is on disk (WAL fsynced) before anyone hears "done".
        conn.execute("PRAGMA synchronous = FULL")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        else:
            # Pruning (prune_final) frees pages that PRAGMA incremental_vacuum hands back, with
            # no VACUUM; this takes effect only on a new file, so it comes before WAL writes one.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
    except BaseException:
        # Not a store, or a disk that takes no writes: the caller hears why, and the file is
        # not held open by a connection nobody closes (Python 3.13 warns of those).
        conn.close()
        raise
    return conn


# ---------------------------------------------------------------------------------------------
# The writer's job queue.


def _rewrite_schema_version(conn: sqlite3.Connection) -> None:
    """A write that changes nothing but still needs room: its page goes to the WAL."""
    conn.execute("UPDATE schema_version SET version = version")


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "probe", "ran", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], *, probe: bool = False) -> None:
        self.fn = fn
        self.probe = probe  # the writer's own, to see whether the disk takes writes again
        self.ran = False
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class Engine:
    """The SQLite file, its writer and its readers. Start `run` in a nursery before any other
    method is used."""

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
        self._subscribers: dict[Topic, list[Callable[[], None]]] = {}
        self._touched: set[Topic] = set()  # by the batch being committed
        # The first StoreDamaged a read or a write met; the gateway stops on it.
        self.damage: StoreDamaged | None = None
        # Why the last commit failed, while the disk takes no writes; None once one commits.
        self.unwritable: StoreUnwritable | None = None
        self._refused = 0  # write jobs failed since the disk took none
        self._damage_found = trio.Event()

    def subscribe(self, topic: Topic, wake: Callable[[], None]) -> None:
        """Call `wake` after every commit that touched `topic` (the waiter then reads the
        store); its own poll is only a safety net."""
        self._subscribers.setdefault(topic, []).append(wake)

    def touch(self, topic: Topic) -> None:
        """Called by a write job: its commit concerns whoever waits on `topic`."""
        self._touched.add(topic)

    # -- the writer ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open and migrate the file, then commit write jobs until cancelled."""
        self._writer = await self._offload(self._open_writer)
        self._running = True
        try:
            task_status.started()
            while True:
                jobs: list[_Job[Any]] = [await self._next_job()]
                while len(jobs) < MAX_JOBS_PER_COMMIT:
                    try:
                        jobs.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    committed = await self._offload(functools.partial(self._commit, jobs))
                    touched, self._touched = self._touched, set()
                    if committed:
                        self._wake(touched)
                finally:
                    # Also on cancellation: a started batch has finished in its thread by now,
                    # and a batch cancelled before it started never ran.
                    for job in jobs:
                        if job.error is None and not job.ran:
                            job.error = StoreClosed("the store is shutting down")
                        job.done.set()
                    # Not kept while waiting for the next jobs: they hold their callers' rows
                    # (a thousand messages of a batch).
                    del jobs, job
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

    async def _next_job(self) -> _Job[Any]:
        """The next write job; while the disk takes no writes, one of the writer's own every
        UNWRITABLE_RETRY seconds that nobody sends, so that the store (and /ready) learns that
        it takes writes again even when nothing else writes."""
        if self.unwritable is None:
            return await self._receive.receive()
        with trio.move_on_after(UNWRITABLE_RETRY):
            return await self._receive.receive()
        return _Job(_rewrite_schema_version, probe=True)

    def _open_writer(self) -> sqlite3.Connection:
        try:
            # Messages are personal data: a new store and its folder are the owner's only (the
            # WAL and shared-memory files SQLite creates take the store's mode).
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            # Opening writes too (the WAL's index, a new file): a full disk is no reason to
            # restore a backup.
            unwritable = _unwritable(self.path, exc)
            if unwritable is not None:
                raise unwritable from exc
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from exc
        try:
            migrate(conn)
            read_table_roots(conn)
        except StoreTooNew as exc:
            conn.close()
            raise StoreTooNew(f"{self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            found = _damage(self.path, exc) or _unwritable(self.path, exc)
            if found is not None:
                raise found from exc
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from exc
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

    def _wake(self, touched: set[Topic]) -> None:
        for topic in touched:
            for wake in self._subscribers.get(topic, ()):
                try:
                    wake()
                except Exception:
                    log.exception("waking a subscriber of %s failed", topic)

    def _commit(self, jobs: list[_Job[Any]]) -> bool:
        """Run every job in one transaction and commit once; False when the transaction was
        rolled back.

        The jobs run one after the other with no savepoint of their own: a savepoint and its
        release are two more statements a job (and two more times the writer thread waits for
        the GIL) for what a job rarely needs. Only when a job raises is the transaction rolled
        back and every job run again, each in its own savepoint, so that the failing job's
        changes alone are undone."""
        conn = self._writer
        assert conn is not None
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            failure = self._run_together(conn, jobs)
            if failure is not None:
                # A full disk may have rolled the whole transaction back already.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if write_refused(failure):
                    # Each job in its own savepoint would only meet the full disk again.
                    raise failure
                conn.execute("BEGIN IMMEDIATE")
                self._run_isolated(conn, jobs)
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
            self._log_failed_commit(exc, sum(not job.probe for job in jobs))
            return False
        # Only a commit that changed rows wrote to the disk: one that changed none (a sweep that
        # found nothing) gets through a full disk all the same, and says nothing of its room.
        if self.unwritable is not None and conn.total_changes > changes:
            log.warning(
                "%s: the store takes writes again (%d write jobs failed meanwhile)",
                self.path,
                self._refused,
            )
            self.unwritable, self._refused = None, 0
        self.commits += 1
        self.jobs += len(jobs)
        return True

    def _log_failed_commit(self, exc: Exception, jobs: int) -> None:
        """A full disk once, in one line, until a commit works again; damage in one line (the
        gateway stops on it); anything else with its traceback."""
        unwritable = _unwritable(self.path, exc)
        if unwritable is not None:
            if self.unwritable is None:
                log.error("%s", unwritable)
            self.unwritable = unwritable
            self._refused += jobs
        elif _damage(self.path, exc) is not None:
            log.error("store commit failed; %d write jobs rolled back: %s", jobs, exc)
        else:
            log.exception("store commit failed; %d write jobs rolled back", jobs)

    @staticmethod
    def _run_together(conn: sqlite3.Connection, jobs: list[_Job[Any]]) -> Exception | None:
        """Run the jobs in the open transaction; stop at the first that raises, and return
        what it raised."""
        for job in jobs:
            job.ran = True
            try:
                job.result = job.fn(conn)
            except Exception as exc:
                return exc
        return None

    @staticmethod
    def _run_isolated(conn: sqlite3.Connection, jobs: list[_Job[Any]]) -> None:
        """Run each job in its own savepoint: one that raises has its changes undone and keeps
        its error, the others keep theirs. A full disk fails them all (raised)."""
        for job in jobs:
            job.ran = True
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn)
            except Exception as exc:
                if write_refused(exc):
                    raise
                conn.execute("ROLLBACK TO job")
                job.result = None
                job.error = exc
            conn.execute("RELEASE job")

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in the writer's next transaction; return its result once committed.

        `fn` runs in the writer's thread, and may run twice: when a job of the same commit
        raises, the transaction starts again with every job in its own savepoint (see
        `_commit`). So `fn` changes nothing but the store (and `touch`es topics). If it raises,
        only its own changes are undone and the exception is raised here.
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
            damaged = self._found(job.error)
            if damaged is not None:
                raise damaged from job.error
            unwritable = _unwritable(self.path, job.error)
            if unwritable is not None:
                raise unwritable from job.error
            raise job.error
        return job.result  # type: ignore[return-value]

    async def once_writable(self, write: Callable[[], Awaitable[T]]) -> T:
        """`write()` (a write of this store), tried again every UNWRITABLE_RETRY seconds while
        the disk takes no writes: for what nothing but this process holds (the network took a
        part, a try of a claimed message ended), which a refused write would lose or leave to
        be done twice."""
        while True:
            try:
                return await write()
            except StoreUnwritable:
                await self._clock.sleep_until(self._clock.now() + UNWRITABLE_RETRY)

    async def write_with_room(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`write(fn)`, waited out through a full disk (`once_writable`)."""
        return await self.once_writable(functools.partial(self.write, fn))

    def _found(self, exc: BaseException) -> StoreDamaged | None:
        """StoreDamaged when `exc` says the file is damaged; the first one is kept for
        `damaged()`."""
        damaged = _damage(self.path, exc)
        if damaged is not None and self.damage is None:
            self.damage = damaged
            self._damage_found.set()
        return damaged

    async def damaged(self) -> StoreDamaged:
        """Wait until a read or a write finds the file damaged; return what it found."""
        await self._damage_found.wait()
        assert self.damage is not None
        return self.damage

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

        try:
            return await self._offload(in_thread)
        except sqlite3.DatabaseError as exc:
            damaged = self._found(exc)
            if damaged is None:
                raise
            raise damaged from exc
