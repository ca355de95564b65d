"""Decoding a big body in a worker thread, so that the event loop keeps taking its turns.

The decoders of forms, XML and mail run Python for every field or part (a megabyte of form
pairs held the loop 0.76 s), and a body is decoded before its sender's credentials are checked.
Every door that decodes a body it received takes this one threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

import trio

__all__ = ["DECODED_IN_A_THREAD", "decoded"]

T = TypeVar("T")
B = TypeVar("B", bound=bytes | bytearray | str)

# A body longer than this is decoded in a worker thread; a shorter one costs less than the
# hand-off.
DECODED_IN_A_THREAD: Final = 64 * 1024
# Big bodies decoded at once. Their senders may not have logged in yet, so they get threads of
# their own: trio's default limiter is shared with the store's reads and the modems' ports.
DECODING_THREADS: Final = 4
_decoding: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("edgegw_decoding")


async def decoded(decode: Callable[[B], T], body: B) -> T:
    """`decode(body)`, in a worker thread when `body` is longer than DECODED_IN_A_THREAD."""
    if len(body) > DECODED_IN_A_THREAD:
        return await trio.to_thread.run_sync(decode, body, limiter=_limiter())
    return decode(body)


def _limiter() -> trio.CapacityLimiter:
    """This run's limiter of decoding threads."""
    try:
        return _decoding.get()
    except LookupError:
        limiter = trio.CapacityLimiter(DECODING_THREADS)
        _decoding.set(limiter)
        return limiter
