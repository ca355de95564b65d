"""Wall-clock time for the gateway, derived from trio's clock so virtual time moves it too.

Never reads `time.time()` after the first call: every stored or compared time goes through one
`Clock`, which keeps tests under `autojump_clock` consistent (README, Design rules: one clock).
"""

from __future__ import annotations

import time

import trio


class Clock:
    """Unix epoch seconds as `epoch_at_start + trio.current_time() - trio_at_start`.

    Both anchors are taken on first use inside `trio.run`, so a Clock may be built before the
    event loop starts. `start_epoch` pins the wall time at that moment (tests use it to place
    virtual time on a chosen date).
    """

    def __init__(self, start_epoch: float | None = None) -> None:
        self._start_epoch = start_epoch
        self._trio_at_start: float | None = None
        self._epoch_at_start = 0.0

    def _anchor(self) -> float:
        if self._trio_at_start is None:
            self._trio_at_start = trio.current_time()
            self._epoch_at_start = time.time() if self._start_epoch is None else self._start_epoch
        return self._trio_at_start

    def now(self) -> float:
        trio_at_start = self._anchor()
        return self._epoch_at_start + trio.current_time() - trio_at_start

    def trio_deadline(self, epoch: float) -> float:
        """The trio clock reading at which wall time reaches `epoch`."""
        trio_at_start = self._anchor()
        return trio_at_start + epoch - self._epoch_at_start

    async def sleep_until(self, epoch: float) -> None:
        await trio.sleep_until(self.trio_deadline(epoch))
