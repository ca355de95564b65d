"""The single writer: group commit, isolation of a failing job, durability, pragmas."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from support.store import START, damage_table, new_message, start_store

from edgegw.clock import Clock
from edgegw.model import MessageState
from edgegw.store import (
    Store,
    StoreClosed,
    StoreDamaged,
    StoreError,
    StoreUnwritable,
    connect,
    migrate,
    transactions,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edgegw.db"


@pytest.fixture
async def store(db_path: Path, nursery: trio.Nursery) -> Store:
    return await start_store(db_path, nursery)


async def test_concurrent_writes_share_few_commits_and_answer_after_commit(
    store: Store, db_path: Path
) -> None:
    await store.write(lambda conn: conn.execute("CREATE TABLE probe (n INTEGER PRIMARY KEY)"))
    commits_when_run: dict[int, int] = {}
    commits_when_answered: dict[int, int] = {}
    seen_by_outsider: dict[int, bool] = {}
    commits, jobs = store.commits, store.jobs

    async def client(number: int) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            commits_when_run[number] = store.commits
            conn.execute("INSERT INTO probe (n) VALUES (?)", (number,))

        await store.write(insert)
        commits_when_answered[number] = store.commits
        outsider = sqlite3.connect(db_path)
        row = outsider.execute("SELECT 1 FROM probe WHERE n = ?", (number,)).fetchone()
        outsider.close()
        seen_by_outsider[number] = row is not None

    async with trio.open_nursery() as nursery:
        for number in range(300):
            nursery.start_soon(client, number)

    assert len(seen_by_outsider) == 300 and all(seen_by_outsider.values())
    assert all(commits_when_answered[n] > commits_when_run[n] for n in commits_when_run)
    assert store.jobs - jobs == 300
    # 300 concurrent writers: grouped into a handful of transactions, not 300.
    assert store.commits - commits <= 10


async def test_a_failing_job_does_not_fail_its_neighbours(store: Store) -> None:
    results: dict[str, object] = {}

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE messages SET state = 'failed' WHERE id = ?", ("000000000001",))
        raise ValueError("this job is broken")

    async def run(name: str, job: Callable[[sqlite3.Connection], object]) -> None:
        try:
            results[name] = await store.write(job)
        except ValueError as exc:
            results[name] = exc

    await store.insert_messages([new_message("000000000001")])
    commits = store.commits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first", lambda conn: conn.execute("SELECT 1").fetchone())
        nursery.start_soon(run, "broken", failing)
        nursery.start_soon(
            run,
            "last",
            lambda conn: (
                conn.execute(
                    "UPDATE messages SET error = 'kept' WHERE id = '000000000001'"
                ).rowcount
            ),
        )
    assert results["first"] == (1,)
    assert isinstance(results["broken"], ValueError)
    assert results["last"] == 1
    assert store.commits == commits + 1  # all three in one transaction
    record = await store.message("000000000001")
    assert record is not None
    assert record.state is MessageState.QUEUED  # the broken job's update was rolled back
    assert record.error == "kept"


async def test_jobs_run_once_without_savepoints_and_again_isolated_when_one_fails(
    store: Store,
) -> None:
    await store.write(lambda conn: conn.execute("CREATE TABLE probe (n INTEGER)"))
    runs: list[str] = []
    statements: list[str] = []

    def job(name: str, fail: bool = False) -> Callable[[sqlite3.Connection], None]:
        def run(conn: sqlite3.Connection) -> None:
            runs.append(name)
            conn.set_trace_callback(statements.append)
            conn.execute("INSERT INTO probe (n) VALUES (?)", (len(name),))
            if fail:
                raise ValueError(name)

        return run

    async def write(name: str, fail: bool = False) -> None:
        with contextlib.suppress(ValueError):
            await store.write(job(name, fail))

    async with trio.open_nursery() as nursery:
        for name in ("a", "bb", "ccc"):
            nursery.start_soon(write, name)
    assert sorted(runs) == ["a", "bb", "ccc"]  # each once
    assert not any("SAVEPOINT" in statement for statement in statements)

    runs.clear()
    commits = store.commits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, "dddd")
        nursery.start_soon(write, "eeeee", True)
        nursery.start_soon(write, "ffffff")
    assert store.commits == commits + 1
    # Every job ran again, each in its own savepoint, once the failing one had raised.
    assert len(runs) > 3 and sorted(set(runs)) == ["dddd", "eeeee", "ffffff"]
    assert any("SAVEPOINT" in statement for statement in statements)
    rows = await store.read(lambda conn: conn.execute("SELECT n FROM probe ORDER BY n").fetchall())
    assert rows == [(1,), (2,), (3,), (4,), (6,)]  # the neighbours' rows once, none of the failed


async def test_a_duplicate_id_fails_only_its_own_request(store: Store) -> None:
    await store.insert_messages([new_message("000000000001")])
    with pytest.raises(sqlite3.IntegrityError):
        await store.insert_messages([new_message("000000000002"), new_message("000000000001")])
    # The failed request left nothing behind, not even its first message.
    assert await store.message("000000000002") is None


async def test_a_damaged_table_is_store_damaged_naming_the_file(
    db_path: Path, nursery: trio.Nursery
) -> None:
    damage_table(db_path, "message_events")
    store = await start_store(db_path, nursery)

    async def read() -> None:
        await store.read(lambda conn: conn.execute("SELECT max(rowid) FROM message_events"))

    async def write() -> None:
        await store.write(lambda conn: conn.execute("DELETE FROM message_events"))

    for attempt in (read, write):
        with pytest.raises(StoreDamaged) as caught:
            await attempt()
        assert str(caught.value) == (
            f"{db_path}: the store is damaged (database disk image is malformed); stop edgegw"
            " and restore a backup"
        )
    # A table that is whole still works.
    await store.write(lambda conn: conn.execute("DELETE FROM messages"))


async def test_a_full_disk_fails_every_job_of_its_commit_with_its_cause_and_passes(
    store: Store, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A write the disk cannot take (SQLITE_FULL: here the page limit, as on a full SD card)
    fails the jobs committed with it, each with the cause and the file, none as "shutting
    down"; the store is not damaged, one line says so, and writes work again once there is
    room."""
    await store.write(lambda conn: conn.execute("CREATE TABLE probe (n INTEGER, data BLOB)"))
    (pages,) = await store.write(lambda conn: conn.execute("PRAGMA page_count").fetchone())
    await store.write(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))

    def insert(n: int, size: int) -> Callable[[sqlite3.Connection], object]:
        return lambda conn: conn.execute("INSERT INTO probe VALUES (?, zeroblob(?))", (n, size))

    outcomes: dict[int, BaseException | None] = {}

    async def writer(n: int, size: int) -> None:
        try:
            await store.write(insert(n, size))
        except Exception as exc:
            outcomes[n] = exc
        else:
            outcomes[n] = None

    for _ in range(2):
        # Started together, so that the writer commits the three jobs in one transaction: one
        # before the job the disk cannot take and one after it, which never runs.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, 1, 10)
            nursery.start_soon(writer, 2, 1_000_000)
            nursery.start_soon(writer, 3, 10)
        for n in (1, 2, 3):
            error = outcomes[n]
            assert isinstance(error, StoreUnwritable), (n, error)
            assert str(error) == (
                f"{db_path}: the store cannot take writes (database or disk is full); nothing"
                " new is accepted and received SMS stay on the modems until there is room: free"
                " space on its disk"
            )
    assert store.damage is None
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.getMessage(), r.exc_info) for r in failures] == [(str(outcomes[1]), None)]
    # A job that changes no row (a sweep that finds nothing) commits through the full disk, and
    # says nothing of its room: the store still takes no writes (/ready, the metrics).
    await store.write(lambda conn: conn.execute("DELETE FROM probe WHERE n < 0"))
    assert isinstance(store.unwritable, StoreUnwritable)

    await store.write(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
    await store.write(insert(4, 1_000_000))
    rows = await store.read(lambda conn: conn.execute("SELECT n FROM probe").fetchall())
    assert rows == [(4,)]
    assert f"{db_path}: the store takes writes again (6 write jobs failed meanwhile)" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    "code",
    [sqlite3.SQLITE_IOERR_READ, sqlite3.SQLITE_IOERR_SHORT_READ, sqlite3.SQLITE_IOERR_CORRUPTFS],
)
async def test_a_read_the_disk_failed_is_not_a_full_disk(
    db_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, code: int
) -> None:
    """A failing SD card that cannot read a page (EIO) is no full disk: the write fails with
    SQLite's error as it is, the store does not tell the operator to free space nor say at
    /ready that it takes no writes, and a write that must wait out a full disk is not retried
    for ever."""

    def read_fails(conn: sqlite3.Connection) -> None:
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorcode = code
        raise error

    store = await start_store(db_path, nursery, inline=True)
    with trio.move_on_after(60) as waited:
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error") as caught:
            await store.once_writable(functools.partial(store.write, read_fails))
    assert not waited.cancelled_caught
    assert not isinstance(caught.value, StoreUnwritable)
    assert store.unwritable is None


async def test_an_error_without_an_sqlite_code_is_raised_as_it_is(store: Store) -> None:
    def misuse(conn: object) -> None:
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    for attempt in (store.read, store.write):
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            await attempt(misuse)


async def test_acknowledged_messages_survive_a_restart(db_path: Path) -> None:
    ids = [f"{n:012d}" for n in range(50)]
    async with trio.open_nursery() as nursery:
        first = Store(db_path, clock=Clock(start_epoch=START))
        await nursery.start(first.run)
        await first.insert_messages([new_message(message_id) for message_id in ids])
        nursery.cancel_scope.cancel()
    with pytest.raises(StoreClosed):
        await first.insert_messages([new_message("000000000999")])

    async with trio.open_nursery() as nursery:
        second = Store(db_path, clock=Clock(start_epoch=START))
        await nursery.start(second.run)
        views = [await second.message_view(1, message_id) for message_id in ids]
        nursery.cancel_scope.cancel()
    assert [view.messageId for view in views if view is not None] == ids


async def test_connections_use_wal_full_sync_and_foreign_keys(store: Store) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
        )

    journal, synchronous, foreign_keys, busy = await store.write(pragmas)
    assert journal == "wal"
    assert synchronous == 2  # FULL
    assert foreign_keys == 1
    assert busy >= 1000
    with pytest.raises(sqlite3.IntegrityError):
        await store.write(
            lambda conn: conn.execute(
                "INSERT INTO parts (message_id, idx, dcs, udh, payload) VALUES ('nope', 1, 0,"
                " x'', x'')"
            )
        )


def test_crash_recovery_reads_only_the_messages_and_parts_waiting_to_go(tmp_path: Path) -> None:
    """Every start runs crash recovery, clock set back or not: on a store of hundreds of
    thousands of finished messages (a million parts) it reads those waiting to go (queued,
    sending) and the parts in flight off their partial indexes, never a whole table."""
    conn = connect(tmp_path / "db")
    migrate(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    fx = transactions.Effects(transactions.no_final_outcomes, lambda topic: None)
    transactions.recover_in_flight(conn, fx, resend=True, now=START)
    conn.set_trace_callback(None)
    steps = [
        row[3]
        for sql in statements
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql)
    ]
    conn.close()
    assert any("parts" in step for step in steps), steps
    assert not [step for step in steps if step.startswith("SCAN") and "USING" not in step], steps


async def test_due_and_expiry_queries_are_index_range_scans(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher's reads find the services with queued messages and each service's due
    messages by steps in an index, never by reading the queue or a service's whole queue; a
    service's look for its messages past their validity (before a list of them), and their
    expiry, find those in the expiry index, never by the service's whole queue."""
    await store.insert_messages(
        [new_message(f"00000000000{n}", service_id=n % 3 + 1, priority=n % 3 + 1) for n in range(9)]
    )
    statements: list[str] = []

    def traced(
        run: Callable[[Callable[[sqlite3.Connection], object]], Awaitable[object]],
    ) -> Callable[[Callable[[sqlite3.Connection], object]], Awaitable[object]]:
        async def tracing(fn: Callable[[sqlite3.Connection], object]) -> object:
            def with_trace(conn: sqlite3.Connection) -> object:
                conn.set_trace_callback(statements.append)
                try:
                    return fn(conn)
                finally:
                    conn.set_trace_callback(None)

            return await run(with_trace)

        return tracing

    monkeypatch.setattr(store, "read", traced(store.read))
    monkeypatch.setattr(store, "write", traced(store.write))
    assert list(await store.due([3, 1, 2], START)) == [3, 1, 2]
    assert await store.queue_times() == ({1: START, 2: START, 3: START}, START + 3600)
    assert not await store.expire_if_past(1, now=START)
    assert await store.expire_if_past(1, now=START + 3600)  # service 1's three messages
    monkeypatch.undo()

    def plans(conn: sqlite3.Connection) -> list[str]:
        return [
            " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
            for sql in statements
            if sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE MESSAGES "))
        ]

    found = await store.read(plans)
    # 3 priorities a service, queue_times, expire_if_past's look twice and its expiry once
    assert len(found) == 3 * 3 + 2 + 2 + 1, statements
    assert all("SCAN messages" not in plan.replace("SCAN messages USING", "") for plan in found)
    assert all("TEMP B-TREE" not in plan for plan in found), found
    assert (
        sum(
            "USING INDEX messages_service_due (service_id=? AND priority=? AND due_at<?)" in plan
            for plan in found
        )
        == 3 * 3
    )
    assert "USING INDEX messages_service_due (service_id>?)" in found[-5]
    assert "USING INDEX messages_expiry" in found[-4]
    for look_or_expiry in found[-3:]:
        assert "SEARCH messages USING INDEX messages_expiry (expires_at<?)" in look_or_expiry


def open_descriptors(path: Path) -> list[str]:
    """This process's open file descriptors on the store's file (or its WAL and index)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(path)):
                found.append(target)
    return found


async def test_a_file_that_is_no_store_is_refused_with_its_connection_closed(
    db_path: Path,
) -> None:
    """A store pointed at a file that is not SQLite refuses to start, and the connection it
    opened to find that out is closed by then, not left for the garbage collector (which
    Python 3.13 reports as an unclosed database)."""
    await trio.Path(db_path).write_bytes(b"not a database " * 512)
    store = Store(db_path, clock=Clock(start_epoch=START))
    with pytest.raises(StoreError) as caught, trio.fail_after(10):
        await store.run()
    assert str(caught.value).startswith(f"{db_path}: cannot open the store")
    # The refusal and its cause are still held here, as a caller reporting it holds them.
    assert open_descriptors(db_path) == []
