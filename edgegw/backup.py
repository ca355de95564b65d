"""`edgegw backup`: a consistent copy of a store, taken while the gateway runs, with SQLite's
online backup API in one step (one read transaction, so the copy is one moment of the store;
WAL readers do not block the gateway's writer). The copy is created 0600, never overwrites a
file, and is removed again when it fails SQLite's quick_check."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from edgegw.store import connect, write_refused

__all__ = ["BackupError", "backup_store"]


class BackupError(Exception):
    """The copy could not be made; the message says why."""


def backup_store(source: str | Path, target: str | Path) -> int:
    """Copy the store at `source` into the new file `target`; return its messages."""
    if not Path(source).is_file():
        raise BackupError(f"{source}: no store there")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{target} exists already; choose a new file") from None
    except OSError as exc:
        raise BackupError(f"{target}: {exc.strerror}") from None
    os.close(fd)
    try:
        reader = connect(source, readonly=True)
        try:
            copy = sqlite3.connect(target)
            try:
                reader.backup(copy)
                (count,) = copy.execute("SELECT count(*) FROM messages").fetchone()
                (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            finally:
                copy.close()
        finally:
            reader.close()
    except sqlite3.Error as exc:
        Path(target).unlink(missing_ok=True)
        # Only the copy is written: the store is read through a read-only connection.
        if write_refused(exc):
            raise BackupError(
                f"{target}: the copy could not be written ({exc}), so none was kept; make room"
                " there and back up again (the store is not affected)"
            ) from None
        raise BackupError(f"{source}: {exc}") from None
    if verdict != "ok":
        # The copy holds the store's pages as they are: the damage is the store's, and a file
        # left under the backup's name would pass for a good one.
        Path(target).unlink(missing_ok=True)
        raise BackupError(
            f"{source}: the copy does not check out ({'; '.join(verdict.splitlines())}), so"
            " none was kept; the store may be damaged"
        )
    return int(count)
