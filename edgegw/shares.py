"""Fair shares of a listener's connections: at most so many open at once from one client
address, so that one address (a slowloris, a flood of idle sockets) cannot take every slot.
Pure bookkeeping; no trio, no sockets. The HTTP, SMPP and SMTP listeners each keep one (issue 10,
item 5).
"""

from __future__ import annotations

import collections
import enum

from edgegw.networks import is_loopback

__all__ = ["ConnectionShares", "Refusal"]


class Refusal(enum.Enum):
    """Why a listener refused a new connection."""

    FULL = "full"  # the listener has max_connections open
    SHARE = "share"  # the address has its share open


class ConnectionShares:
    """Open connections per address. `per_address` 0 means a quarter of `total` (at least one).
    With `exempt_loopback`, loopback addresses (a reverse proxy on the box) are not capped. A
    connection without an address is not capped either: there is nothing to share it by.
    Refusals are counted in `refused` under `door`; the gateway passes every listener the one
    counter it shows in /metrics."""

    def __init__(
        self,
        total: int,
        per_address: int = 0,
        *,
        exempt_loopback: bool = False,
        door: str = "",
        refused: collections.Counter[str] | None = None,
    ) -> None:
        self.total = total
        self.per_address = per_address or max(1, total // 4)
        self.exempt_loopback = exempt_loopback
        self.open: collections.Counter[str] = collections.Counter()
        self.door = door
        self.refused: collections.Counter[str] = (
            collections.Counter() if refused is None else refused
        )

    def admit(self, address: str | None, open_now: int) -> Refusal | None:
        """Count a new connection from `address`, the listener having `open_now` open; or say
        why it is refused (and count the refusal)."""
        if open_now >= self.total:
            refusal = Refusal.FULL
        elif address is None or (self.exempt_loopback and is_loopback(address)):
            return None
        elif self.open[address] >= self.per_address:
            refusal = Refusal.SHARE
        else:
            self.open[address] += 1
            return None
        self.refused[self.door] += 1
        return refusal

    def give_back(self, address: str | None) -> None:
        """A connection that `admit` let in has closed."""
        if address is None or address not in self.open:
            return
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]
