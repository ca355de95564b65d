"""Fair shares of a listener's connections: at most so many open at once from one client
address, so that one address (a slowloris, a flood of idle sockets) cannot take every slot.
Pure bookkeeping; no trio, no sockets. The HTTP, SMPP and SMTP listeners each keep one (issue 10,
item 5).
"""

from __future__ import annotations

import collections

from edgegw.networks import is_loopback

__all__ = ["ConnectionShares"]


class ConnectionShares:
    """Open connections per address. `per_address` 0 means a quarter of `total` (at least one).
    With `exempt_loopback`, loopback addresses (a reverse proxy on the box) are not capped. A
    connection without an address is not capped either: there is nothing to share it by."""

    def __init__(self, total: int, per_address: int = 0, *, exempt_loopback: bool = False) -> None:
        self.per_address = per_address or max(1, total // 4)
        self.exempt_loopback = exempt_loopback
        self.open: collections.Counter[str] = collections.Counter()
        self.refused_total = 0

    def take(self, address: str | None) -> bool:
        """Count a new connection from `address`; False (refuse it) when the address is at its
        share."""
        if address is None or (self.exempt_loopback and is_loopback(address)):
            return True
        if self.open[address] >= self.per_address:
            self.refused_total += 1
            return False
        self.open[address] += 1
        return True

    def give_back(self, address: str | None) -> None:
        """A connection that `take` admitted has closed."""
        if address is None or address not in self.open:
            return
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]
