"""The outbox and management queries use the v4 indexes, so they stay fast on a large store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgegw.store import connect, migrate
from edgegw.store.responses import BATCH_REFERENCE_USED

QUERIES = {
    "outbox_due": "SELECT id FROM outbox WHERE state = 'pending' AND service_id = 1"
    " AND endpoint = 'dr' AND next_attempt_at <= 5 ORDER BY next_attempt_at, id LIMIT 10",
    "messages_batch": "SELECT count(*), sum(state = 'queued') FROM messages"
    " WHERE service_id = 1 AND batch_reference = 'b'",
    "messages_service_created": "SELECT id FROM messages WHERE service_id = 1"
    " AND (created_at, id) > (5.0, 'x') ORDER BY created_at, id LIMIT 101",
    "outbox_message": "SELECT id FROM outbox WHERE message_id = 'm'",
}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "db")
    migrate(conn)
    yield conn
    conn.close()


@pytest.mark.parametrize(("index", "query"), QUERIES.items(), ids=list(QUERIES))
def test_query_uses_its_index(conn: sqlite3.Connection, index: str, query: str) -> None:
    plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query))
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_a_batch_reference_is_looked_up_in_one_range_of_its_index(
    conn: sqlite3.Connection,
) -> None:
    """Spec 7.7: whether a service's messages of the last hour carry a batchReference reads the
    index entries of that reference and hour alone, not every message of the service's hour."""
    query = "EXPLAIN QUERY PLAN " + BATCH_REFERENCE_USED
    plan = " ".join(row[3] for row in conn.execute(query, (1, "b", 5.0)))
    ranged = "messages_batch (service_id=? AND batch_reference=? AND created_at>?)"
    assert f"USING COVERING INDEX {ranged}" in plan, plan
