"""Routing: which modem sends a message. Pure: no I/O, no clock, no modem calls.

A message goes to a ready modem of its service's pool (an empty pool means every modem) with the
shortest queue; once a part went out on a modem, every other part must follow it there
(concatenated parts reach the handset from one sender). ARCHITECTURE.md, the flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def choose_modem(
    *,
    pool: Sequence[str],
    sticky: str | None,
    free: Mapping[str, int],
    load: Mapping[str, int],
) -> str | None:
    """The modem for one message, or None when it has to wait.

    `free` holds the spare queue slots of each ready modem (a modem that is not ready is not
    in it); `load` is each modem's current queue length.
    """
    if sticky is not None:
        return sticky if free.get(sticky, 0) > 0 else None
    candidates = [name for name in (pool or free) if free.get(name, 0) > 0]
    if not candidates:
        return None
    return min(candidates, key=lambda name: (load.get(name, 0), name))
