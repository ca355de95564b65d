"""A read-only look at a store file from outside the gateway, closed when done.

`with sqlite3.connect(...)` only ends a transaction; the connection stays open until collected,
and Python 3.13 warns about that (an error in this suite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()
