"""The systemd service protocol (sd_notify(3)), without libsystemd: READY=1 once the gateway
serves, STOPPING=1 when it begins to stop, and WATCHDOG=1 from a task of the event loop, so a
loop that stalls stops feeding the watchdog and systemd restarts the service; and log lines
the journal reads at their level (sd-daemon(3) prefixes). Does nothing outside systemd (no
NOTIFY_SOCKET, no JOURNAL_STREAM)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TextIO

import trio

__all__ = [
    "JournalFormatter",
    "feed_watchdog",
    "journal_excepthook",
    "notify",
    "print_error",
    "supervised",
    "to_journal",
    "watchdog_interval",
]

# sd-daemon(3): the syslog priority a line of a service's output starting `<N>` is stored at;
# a line without one is stored at info.
_PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_DEBUG_PRIORITY = 7


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send one notification (e.g. "READY=1"); False when not run by systemd."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False  # systemd went away; nothing to tell
    return True


def supervised(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether systemd runs us as a service (it sets INVOCATION_ID for each run): then no
    terminal can hang up, and a SIGHUP is someone asking for a reload."""
    return bool(environ.get("INVOCATION_ID"))


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between two WATCHDOG=1 (half of WatchdogSec, as sd_watchdog_enabled(3) advises),
    or None when the watchdog is off or meant for another process. The watchdog is meant for
    the service's main process; the PyInstaller one-file executable's main process is its
    bootloader, which runs the gateway as its child, so the parent's pid counts as ours."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid.isdigit() and int(pid) not in (os.getpid(), os.getppid()):
        return None
    return int(usec) / 2_000_000


async def feed_watchdog(interval: float, environ: Mapping[str, str] = os.environ) -> None:
    """Tell systemd the loop is alive every `interval` seconds, until cancelled."""
    while True:
        notify("WATCHDOG=1", environ)
        await trio.sleep(interval)


def to_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether `stream` is the journal's: systemd names the stream it connected a service's
    output to in JOURNAL_STREAM, as "<device>:<inode>" (systemd.exec(5))."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def _journal_lines(text: str, level: int) -> str:
    """`text` for the journal to store at the priority of the logging `level`: every line (a
    traceback's too) starts with it, so that `journalctl -p warning` shows them."""
    priority = next((value for floor, value in _PRIORITIES if level >= floor), _DEBUG_PRIORITY)
    return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))


class JournalFormatter(logging.Formatter):
    """A record as the journal should store it: at its level's priority, and without a time of
    its own, since the journal stamps each line."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _journal_lines(super().format(record), record.levelno)


def print_error(text: str) -> None:
    """Print `text` to stderr, each line at priority err when stderr is the journal's."""
    if to_journal(sys.stderr):
        text = _journal_lines(text, logging.ERROR)
    print(text, file=sys.stderr, flush=True)


def journal_excepthook(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """`sys.excepthook` for the journal: an exception nothing caught (a crash, or a start-up
    failure with --debug) is printed as the interpreter prints it, each line at priority err;
    without a prefix the journal stored its traceback at info, out of `journalctl -p err`."""
    print_error("".join(traceback.format_exception(kind, error, trace)).rstrip("\n"))
