"""Serial ports a modem may be on: candidates from glob patterns, and who holds which.

It looks at the file system only (glob, symlinks); it never opens a port. The process-wide
`CLAIMS` registry keeps modem drivers in one process from probing or opening a port that
another driver holds, whatever path (a /dev/serial/by-id link or the tty it points to) names it.
"""

from __future__ import annotations

import glob
import os

# A user's terminal is a pseudo-terminal: writing "AT" into it would type into their shell.
_PTY_DIR = "/dev/pts/"


def device_key(path: str) -> str:
    """One name per device: symlinks resolved, so a by-id link and its tty compare equal."""
    if "://" in path:
        return path
    return os.path.realpath(path)


def port_exists(path: str) -> bool:
    """True for a device or link that resolves now; URLs (socket://, loop://) always count."""
    return "://" in path or os.path.exists(path)


def candidate_ports(patterns: list[str]) -> list[str]:
    """Existing paths that match `patterns`, in pattern order, each device once.

    A path under /dev/pts/ is taken only from a pattern that itself starts with /dev/pts/;
    a link elsewhere that points into it counts.
    """
    seen: set[str] = set()
    found: list[str] = []
    for pattern in patterns:
        allow_pty = pattern.startswith(_PTY_DIR)
        for path in sorted(glob.glob(pattern)):
            key = device_key(path)
            if key in seen or not os.path.exists(key):
                continue
            # A link elsewhere that points at a pty was made on purpose (a simulator's by-id
            # style link, socat): only a match inside /dev/pts itself needs the pattern's say.
            if os.path.abspath(path).startswith(_PTY_DIR) and not allow_pty:
                continue
            seen.add(key)
            found.append(path)
    return found


class PortRegistry:
    """Which driver holds which device; a driver probes or opens only what it could claim."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}

    def claim(self, path: str, owner: str) -> bool:
        """Take `path` for `owner`; False when another owner holds the same device."""
        key = device_key(path)
        holder = self._holders.setdefault(key, owner)
        return holder == owner

    def release(self, path: str, owner: str) -> None:
        """Give `path` back; only its holder can."""
        key = device_key(path)
        if self._holders.get(key) == owner:
            del self._holders[key]

    def release_all(self, owner: str) -> None:
        for key in [key for key, holder in self._holders.items() if holder == owner]:
            del self._holders[key]

    def holder(self, path: str) -> str | None:
        return self._holders.get(device_key(path))


CLAIMS = PortRegistry()
