"""Per-SIM pacing: a minimum interval between sends with jitter, and caps on the parts sent in
any rolling hour and 24 hours, so that operators do not block a SIM for spamming.

Pure: no I/O and no clock (times are parameters). The gateway loads the recent send times from
the store at start-up (`edgegw.pipeline.modems.recent_sends`), so a restart does not reset the
caps.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Iterable, Mapping

import msgspec

HOUR = 3600.0
DAY = 86400.0


class PacingRule(msgspec.Struct, frozen=True, kw_only=True):
    min_interval: float = 0.0  # seconds from one send to the next
    jitter: float = 0.0  # plus a random 0..jitter seconds
    hourly_cap: int = 0  # parts in any rolling hour; 0 = no cap
    daily_cap: int = 0  # parts in any rolling 24 hours; 0 = no cap


class _ModemPace:
    __slots__ = ("next_at", "sent")

    def __init__(self) -> None:
        self.sent: deque[float] = deque()  # send times within the last DAY, oldest first
        self.next_at = 0.0  # earliest time of the next send, by the interval


class Pacer:
    """Tracks each modem's sends and tells when the next may go."""

    def __init__(self, rules: Mapping[str, PacingRule], rng: random.Random | None = None) -> None:
        self._rules = dict(rules)
        self._rng = rng or random.Random()
        self._modems: dict[str, _ModemPace] = {}

    def _pace(self, modem: str) -> _ModemPace:
        pace = self._modems.get(modem)
        if pace is None:
            pace = self._modems[modem] = _ModemPace()
        return pace

    def load(self, modem: str, sent_times: Iterable[float], now: float) -> None:
        """Remember earlier sends (from the store), so caps and the interval hold across a
        restart. A send the store dates after `now` went out before this start, under a clock
        that was ahead and has been set back since by at least how far the newest is ahead: each
        is taken back by that much, the newest counting as sent `now`, so the interval and the
        caps hold the SIM from the start as long as their rules say, and the sends that were
        more than a day before the newest do not count (the store may hold weeks of them)."""
        times = sorted(sent_times)
        ahead = max(0.0, times[-1] - now) if times else 0.0
        for at in (at - ahead if at > now else at for at in times):
            if at > now - DAY:
                self.record(modem, at)

    def record(self, modem: str, at: float) -> None:
        """A part went out on `modem` at `at`."""
        pace = self._pace(modem)
        bisect.insort(pace.sent, at)
        # Trimmed here, not only when counted: a modem without caps is counted only when
        # someone asks (/api/modems, the status page), and its sends must not pile up meanwhile.
        self._trim(pace, at)
        rule = self._rules.get(modem, PacingRule())
        gap = rule.min_interval + (self._rng.uniform(0, rule.jitter) if rule.jitter else 0.0)
        pace.next_at = max(pace.next_at, at + gap)

    def _trim(self, pace: _ModemPace, now: float) -> None:
        while pace.sent and pace.sent[0] <= now - DAY:
            pace.sent.popleft()

    def counts(self, modem: str, now: float) -> tuple[int, int]:
        """Parts sent in the last hour and in the last 24 hours."""
        pace = self._pace(modem)
        self._trim(pace, now)
        in_hour = len(pace.sent) - bisect.bisect_right(pace.sent, now - HOUR)
        return in_hour, len(pace.sent)

    def capped_until(self, modem: str, now: float) -> float | None:
        """When a cap that blocks `modem` now lets it send again; None when no cap blocks it."""
        rule = self._rules.get(modem)
        if rule is None or not (rule.hourly_cap or rule.daily_cap):
            return None
        pace = self._pace(modem)
        in_hour, in_day = self.counts(modem, now)
        until: float | None = None
        if rule.daily_cap and in_day >= rule.daily_cap:
            # The cap frees up when enough of the oldest sends leave the 24-hour window.
            until = pace.sent[in_day - rule.daily_cap] + DAY
        if rule.hourly_cap and in_hour >= rule.hourly_cap:
            first_in_hour = len(pace.sent) - in_hour
            hourly = pace.sent[first_in_hour + in_hour - rule.hourly_cap] + HOUR
            until = hourly if until is None else max(until, hourly)
        return until

    def slots(self, modem: str, now: float, queue: int) -> int:
        """How many messages `modem` may hold ahead of sending at `now`: none while a cap or
        its rest between sends holds it back, one when it rests after each send (min_interval,
        jitter), so that what it could not send soon waits for whichever SIM is free first;
        else `queue` (dispatch.queue_per_modem)."""
        if self.next_send_at(modem, now) > now:
            return 0
        rule = self._rules.get(modem)
        return 1 if rule is not None and (rule.min_interval or rule.jitter) else queue

    def next_send_at(self, modem: str, now: float) -> float:
        """The earliest time the next part may go on `modem` (`now` when it may go now)."""
        pace = self._pace(modem)
        return max(now, pace.next_at, self.capped_until(modem, now) or now)

    def last_used(self, modem: str) -> float:
        """When `modem` last sent (0 when never): the router prefers the least recently used."""
        pace = self._modems.get(modem)
        return pace.sent[-1] if pace is not None and pace.sent else 0.0
