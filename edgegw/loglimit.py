"""Logs a client cannot use to fill the disk: a repeating record about client input (or a bug a
client keeps hitting) is written the first time, then at most once a `period` per kind and peer
with the count of those left out. `LogLimiter` decides with `now` given (pure); `log_limited`
writes through a logger, and `write_overdue_summaries` writes the count of a kind and peer that
went quiet, which no later record would carry. Issue 10, item 3.
"""

from __future__ import annotations

import collections
import logging
from typing import Final, NamedTuple

import trio

from edgegw.shares import ConnectionShares, Refusal

__all__ = ["LogLimiter", "Summary", "log_limited", "log_refused", "write_overdue_summaries"]

# Kinds and peers remembered at most; past it the stalest are forgotten (and logged again).
_MAX_KEYS: Final = 10_000


class Summary(NamedTuple):
    """The last record left out of a kind and peer, and how many were left out with it."""

    level: int
    message: str
    args: tuple[object, ...]
    left_out: int


class _Seen:
    __slots__ = ("emitted_at", "last", "suppressed")

    def __init__(self, now: float) -> None:
        self.emitted_at = now
        self.suppressed = 0
        self.last: tuple[int, str, tuple[object, ...]] | None = None


class LogLimiter:
    """One record per (kind, peer) per `period` seconds; the rest are counted."""

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._seen: collections.OrderedDict[tuple[str, str | None], _Seen] = (
            collections.OrderedDict()
        )

    def admit(
        self,
        kind: str,
        peer: str | None,
        now: float,
        record: tuple[int, str, tuple[object, ...]] | None = None,
    ) -> int | None:
        """None: leave this record out (`record`, its level, message and arguments, is kept
        for the summary). Otherwise write it, mentioning the returned count of records like it
        left out since the last one written (0 for the first)."""
        key = (kind, peer)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(now)
            if len(self._seen) > _MAX_KEYS:
                self._seen.popitem(last=False)
            return 0
        self._seen.move_to_end(key)
        if now - seen.emitted_at < self.period:
            seen.suppressed += 1
            seen.last = record
            return None
        left_out, seen.suppressed, seen.emitted_at = seen.suppressed, 0, now
        return left_out

    def overdue(self, now: float) -> list[Summary]:
        """The summaries due by `now`: every kind and peer with records left out for a whole
        period and none written since. Each counts as written now."""
        due = []
        for seen in self._seen.values():
            if seen.suppressed and seen.last is not None and now - seen.emitted_at >= self.period:
                due.append(Summary(*seen.last, seen.suppressed))
                seen.suppressed, seen.emitted_at, seen.last = 0, now, None
        return due


def _with_count(message: str, left_out: int) -> str:
    return f"{message} ({left_out} more like it since the last one, not logged)"


def log_limited(
    logger: logging.Logger,
    limiter: LogLimiter,
    level: int,
    kind: str,
    peer: str | None,
    now: float,
    message: str,
    *args: object,
    exc_info: bool = False,
    stacklevel: int = 2,
) -> None:
    """Write `message % args` at `level` if the limiter admits it, one line, with the count of
    records left out; a traceback (`exc_info`) only with the first of a kind and peer. The
    record names the function `stacklevel` frames up (2: the caller) as where it was logged."""
    left_out = limiter.admit(kind, peer, now, (level, message, args))
    if left_out is None or not logger.isEnabledFor(level):
        return
    if left_out:
        message = _with_count(message, left_out)
    logger.log(level, message, *args, exc_info=exc_info and left_out == 0, stacklevel=stacklevel)


def log_refused(
    logger: logging.Logger,
    limiter: LogLimiter,
    shares: ConnectionShares,
    address: str | None,
    refusal: Refusal,
    open_now: int,
) -> None:
    """A connection refused at accept (ConnectionShares.admit): over its address's share, once a
    minute per address; at a full listener, once a minute whatever the address, so that a flood
    from many addresses is one line a minute with its count, not a line for each address."""
    log_limited(
        logger,
        limiter,
        logging.WARNING,
        "refused" if refusal is Refusal.SHARE else "refused, full",
        address if refusal is Refusal.SHARE else None,
        trio.current_time(),
        "%s connection from %s refused: %d connections open, %d from it",
        shares.door.upper(),
        address,
        open_now,
        shares.open[address] if address is not None else 0,
        stacklevel=3,  # the listener that refused
    )


async def write_overdue_summaries(logger: logging.Logger, limiter: LogLimiter) -> None:
    """Until cancelled, once a period: write the summary of every kind and peer that went quiet
    with records left out, so a client that stops still has its count in the log."""
    while True:
        await trio.sleep(limiter.period)
        for summary in limiter.overdue(trio.current_time()):
            message = _with_count(summary.message, summary.left_out)
            logger.log(summary.level, message, *summary.args)
