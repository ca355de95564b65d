"""Message ids in the Puzzel shape (12 chars of [0-9a-z]) and batch references (UUID4).

No database round trip and no clock of its own: the caller passes the current epoch seconds.
Spec section 1 (messageId, batchReference).
"""

from __future__ import annotations

import random
import uuid

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Two base-36 digits per lookup: a 12-char id is six table reads instead of twelve divmods.
_PAIRS = tuple(a + b for a in _DIGITS for b in _DIGITS)

# 2020-01-01T00:00:00Z. Six base-36 digits of seconds after it last until 2089.
ID_EPOCH = 1_577_836_800
_SECONDS_SPACE = 36**6
_LOW_SPACE = 36**6  # 2,176,782,336 ids per logical second
_RANDOM_START = 2**30  # where a second's counter may start
_PER_SECOND = _LOW_SPACE - _RANDOM_START  # ids one second can hold before the next is borrowed


def _base36_6(value: int) -> str:
    high, rest = divmod(value, 1296 * 1296)
    mid, low = divmod(rest, 1296)
    return _PAIRS[high] + _PAIRS[mid] + _PAIRS[low]


class MessageIdGenerator:
    """Time-ordered ids: 6 base-36 digits of logical seconds, then 6 of a per-second counter.

    Why they do not collide:
    - Within one process the pair (logical second, counter) only ever grows: the logical second
      is max(wall second, last logical second), and when a second's counter range (over 10^9
      ids) runs out the next second is borrowed. A wall clock stepping back cannot repeat an id.
    - Across restarts the new process starts at a later wall second than any id the old one
      issued (it cannot have borrowed seconds ahead without issuing 10^9 ids a second), so the
      time digits differ.
    - Each second's counter starts at a fresh random offset in [0, 2^30). Two processes issuing
      ids in the same second (two gateways, or a wall clock set back across a restart) collide
      only if their counter ranges overlap: with n and m ids that second the chance is at most
      (n + m) / 2^30, about 10^-4 at 50,000 ids/s each. A store has one writer process, and its
      primary key turns such a collision into a rejected insert rather than a silent overwrite.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()
        self._second = -1
        self._next = 0
        self._end = 0

    def _start_second(self, second: int) -> None:
        self._second = second
        self._next = self._rng.randrange(_RANDOM_START)
        self._end = self._next + _PER_SECOND

    def next_ids(self, now: float, count: int) -> list[str]:
        """`count` fresh ids in increasing order."""
        second = int(now) - ID_EPOCH
        if not 0 <= second < _SECONDS_SPACE:
            raise ValueError(f"time {now} is outside the message id range (2020..2089)")
        if second > self._second:
            self._start_second(second)
        ids: list[str] = []
        while len(ids) < count:
            take = min(count - len(ids), self._end - self._next)
            if take <= 0:
                self._start_second(self._second + 1)
                continue
            prefix = _base36_6(self._second)
            # _base36_6 written out: a function call and two divmods an id cost more than the
            # rest of making it (a batch makes a thousand on the event loop).
            pairs = _PAIRS
            ids += [
                prefix + pairs[low // 1_679_616] + pairs[low // 1296 % 1296] + pairs[low % 1296]
                for low in range(self._next, self._next + take)
            ]
            self._next += take
        return ids


def new_batch_reference() -> str:
    """A batch reference for a request that brought none (spec section 1: a UUID)."""
    return str(uuid.uuid4())
