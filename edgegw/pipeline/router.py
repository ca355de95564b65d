"""Routing: which modem sends a message. Pure: no I/O, no clock, no modem calls.

A message goes to a ready modem of its service's pool (an empty pool means every modem) that
serves its recipient's prefix, with the shortest queue, then the least recently used; once a part
went out on a modem, every other part must follow it there (concatenated parts reach the handset
from one sender). README, Design rules (the flow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def serves(prefixes: Sequence[str], recipient: str) -> bool:
    """True when a modem with these recipient prefixes may send to `recipient` ([] = any)."""
    return not prefixes or recipient.startswith(tuple(prefixes))


def choose_modem(
    *,
    pool: Sequence[str],
    sticky: str | None,
    free: Mapping[str, int],
    load: Mapping[str, int],
    recipient: str = "",
    prefixes: Mapping[str, Sequence[str]] | None = None,
    last_used: Mapping[str, float] | None = None,
) -> str | None:
    """The modem for one message, or None when it has to wait.

    `free` holds the spare queue slots of each ready modem (a modem that is not ready, or is
    held back by its pacing caps, is not in it); `load` is each modem's current queue length.
    A modem with `prefixes` only takes recipients that start with one of them. Among modems
    with equal load the least recently used (`last_used`, epoch of its last send) wins, so the
    traffic spreads over the SIMs.
    """
    if sticky is not None:
        return sticky if free.get(sticky, 0) > 0 else None
    prefixes = prefixes or {}
    last_used = last_used or {}
    candidates = [
        name
        for name in (pool or free)
        if free.get(name, 0) > 0 and serves(prefixes.get(name, ()), recipient)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda name: (load.get(name, 0), last_used.get(name, 0.0), name))
