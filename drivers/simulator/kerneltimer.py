"""A kernel timer for the simulated modems' alarm: Linux's timerfd, waited on like any file.

Trio wakes a task at its deadline through epoll's timeout, which counts whole milliseconds
rounded up, so a reply due 500 ms after a PDU would leave 500 to 501 ms after it. A timerfd
set to the same moment becomes readable within the kernel's timer slack (tens of
microseconds), and waiting for it costs nothing until then. Where there is no timerfd
(another OS, or a libc without it), `KernelTimer.open` returns None and the alarm keeps to
trio's deadlines.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os

import trio

CLOCK_MONOTONIC = 1  # the clock of time.perf_counter, so of trio's own clock
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
NS = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library the interpreter runs on (its own symbols), typed for the timerfd calls;
    None where it has none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        )
    except (OSError, AttributeError):
        return None
    return libc


class KernelTimer:
    """One timerfd on CLOCK_MONOTONIC, one shot, set again for each wake-up."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self._fd = fd

    @classmethod
    def open(cls) -> KernelTimer | None:
        """A new timer, unset; None where the system has no timerfd."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            return None
        return cls(libc, fd)

    def set(self, delay: float) -> None:
        """Fire `delay` seconds from now (at once when it is not positive; never when it is
        infinite). Replaces the time set before, and forgets a firing not yet waited for."""
        if math.isinf(delay) and delay > 0:
            value = _Timespec(0, 0)  # all zero: the timer is unset
        else:
            # At least a nanosecond: an it_value of zero would unset the timer, not fire it.
            ns = max(1, math.ceil(delay * NS))
            value = _Timespec(ns // NS, ns % NS)
        spec = _Itimerspec(_Timespec(0, 0), value)
        if self._libc.timerfd_settime(self._fd, 0, ctypes.byref(spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    async def wait(self) -> None:
        """Until the timer fires."""
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                os.read(self._fd, 8)
            except BlockingIOError:
                # Set again between becoming readable and this read: wait for the new time.
                continue
            return

    def close(self) -> None:
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            os.close(self._fd)
            self._fd = -1
