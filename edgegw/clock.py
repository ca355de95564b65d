"""Wall-clock time for the gateway, derived from trio's clock so virtual time moves it too.

Never reads `time.time()` for a stored or compared time after the first call: every such time
goes through one `Clock`, which keeps tests under `autojump_clock` consistent (README, Design
rules: one clock), and which a step of the system's clock (NTP after a boot without a real-time
clock, an admin setting it right) does not move while the gateway runs. Only a time another
machine checks against its own clock (`wall`) follows such a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from edgegw.ids import ID_EPOCH


def system_step() -> float:
    """How far the system's wall clock is ahead of its monotonic clock: the same from one
    reading to the next until the wall clock is stepped, or the box resumes from a suspend
    (which the monotonic clock does not count)."""
    return time.time() - time.monotonic()


class Clock:
    """Unix epoch seconds as `epoch_at_start + trio.current_time() - trio_at_start`.

    Both anchors are taken on first use inside `trio.run`, so a Clock may be built before the
    event loop starts. `start_epoch` pins the wall time at that moment (tests use it to place
    virtual time on a chosen date); `step` reads the system's `system_step` (tests step the
    system's clock with it). A reading before ID_EPOCH (2020) is wrong for certain (a board
    that boots at 1970, an RTC reset to 2000) and no message id can be made from it: the
    clock starts at ID_EPOCH then, and NTP's step later shows in `wall`.
    """

    def __init__(
        self, start_epoch: float | None = None, *, step: Callable[[], float] = system_step
    ) -> None:
        self._start_epoch = start_epoch
        self._step = step
        self._trio_at_start: float | None = None
        self._epoch_at_start = 0.0
        self._ahead_at_start = 0.0  # how far epoch_at_start is ahead of the system's reading
        self._step_at_start = 0.0

    def _anchor(self) -> float:
        if self._trio_at_start is None:
            self._trio_at_start = trio.current_time()
            reading = time.time() if self._start_epoch is None else self._start_epoch
            self._epoch_at_start = max(reading, ID_EPOCH)
            self._ahead_at_start = self._epoch_at_start - reading
            self._step_at_start = self._step()
        return self._trio_at_start

    def now(self) -> float:
        trio_at_start = self._anchor()
        return self._epoch_at_start + trio.current_time() - trio_at_start

    def wall(self) -> float:
        """The system's wall-clock time now: `now()` with every step of the system's clock since
        the start, less what the start was taken ahead of it. For a time another machine
        compares with its own clock (a signature's timestamp), never for one the gateway stores
        or compares."""
        return self.now() - self._ahead_at_start + self._step() - self._step_at_start

    def trio_deadline(self, epoch: float) -> float:
        """The trio clock reading at which wall time reaches `epoch`."""
        trio_at_start = self._anchor()
        return trio_at_start + epoch - self._epoch_at_start

    async def sleep_until(self, epoch: float) -> None:
        await trio.sleep_until(self.trio_deadline(epoch))
