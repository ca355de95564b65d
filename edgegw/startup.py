"""What must hold before the gateway touches its store or a modem: one instance per store (an
exclusive `flock` on `<store>.lock`, holding the owner's pid), and start-up failures as one line
that names the thing and the fix. Never opens the store itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["StartupError", "instance_lock", "lock_path", "private_folder"]


class StartupError(Exception):
    """The gateway cannot start. The message is one line: what failed, and how to fix it."""


def lock_path(store: str | Path) -> Path:
    """The lock file of a store: next to it, so every config naming the store shares it."""
    return Path(f"{store}.lock")


def private_folder(folder: Path) -> None:
    """Create `folder` (and its parents) readable by the owner only (0700) when missing; an
    existing folder keeps the mode its owner gave it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextlib.contextmanager
def instance_lock(store: str | Path) -> Iterator[Path]:
    """Hold the store's instance lock for the duration; a second holder gets `StartupError`
    naming the lock file and the running instance's pid. The lock goes with the process, so a
    crashed instance never leaves a stale one behind."""
    path = lock_path(store)
    try:
        private_folder(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(
            f"cannot create the instance lock {path}: {exc.strerror}; check that the store's "
            "folder exists and is writable by this user"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise StartupError(
                f"{path} is held by a running edgegw (pid {holder}); stop it first, or give "
                "this instance its own [gateway] store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)
