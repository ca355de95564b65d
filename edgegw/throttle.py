"""Credential guessing made slow: failed logins counted per client address (an IPv6 one by its
/64) and per account in a sliding window, answered with a growing delay, and an address refused
for a cool-down once it has failed too often. Pure: `now` is a parameter (any monotonic
seconds); no trio, no logging. The HTTP, SMPP and SMTP shells consult one shared `AuthThrottle`
(issue 10, item 6).
"""

from __future__ import annotations

import collections
import hashlib
import ipaddress
from typing import Annotated, Final

import msgspec

__all__ = ["Admission", "AuthThrottle", "AuthThrottleConfig", "Failure", "client_key"]


class AuthThrottleConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[security.auth]`: the lockout policy shared by every door that checks credentials."""

    # Seconds over which failed logins are counted (a sliding window).
    window: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    # Failures in the window answered at full speed, per address and per account.
    free_failures: Annotated[int, msgspec.Meta(ge=0)] = 5
    # The delay of the first slowed answer; each further failure doubles it, up to `max_delay`.
    base_delay: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    max_delay: Annotated[float, msgspec.Meta(ge=0)] = 8.0
    # Failures in the window after which the address is refused outright for `cooldown` seconds.
    # Only an address is ever refused: an account under attack is slowed, never locked, so its
    # owner can still log in from another address.
    lockout_failures: Annotated[int, msgspec.Meta(ge=1)] = 20
    cooldown: Annotated[float, msgspec.Meta(ge=0)] = 900.0


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """Whether an attempt from an address may proceed, and how long to wait first."""

    refused_until: float = 0.0  # > now: refuse without checking the credentials
    delay: float = 0.0


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """What one failed login means: how long to wait before answering it, and whether the
    shell should log (once per window and key, and when a lockout begins)."""

    delay: float
    first_in_window: bool
    locked_until: float = 0.0  # > 0 when this failure started a lockout


# An IPv6 client is counted by its /64: one subscriber, host or LAN segment gets a whole /64
# and may pick any of its 2**64 addresses for each try (RFC 4941 makes that routine), so
# counted one by one its guesses would never reach the lockout.
_IPV6_CLIENT_PREFIX: Final = 64


def client_key(address: str) -> str:
    """The key one client's failures are counted under: an IPv4 address as it is (also
    written IPv4-mapped, `::ffff:192.0.2.1`), an IPv6 address as its /64 network; text that
    is no address as it is."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def _account_key(account: str) -> str:
    """The key one account's failures are counted under: a digest of its name, of one size
    however long the name a client sent (a send's `username` may fill the whole body)."""
    return hashlib.blake2b(account.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# Addresses and accounts remembered at most; past it the stalest are forgotten, so a flood of
# spoofed-looking names cannot grow memory without bound. Each holds a key of bounded size
# (an address, an account's digest) and at most `AuthThrottle.history` failure times.
_MAX_KEYS: Final = 10_000
# Doublings of the delay counted at most: past them it stays at max_delay whatever the count.
_DOUBLINGS: Final = 32


class _Window:
    """Failure times of one key within the window, oldest first; the newest `history` only."""

    def __init__(self, history: int) -> None:
        self.times: collections.deque[float] = collections.deque(maxlen=history)
        self.locked_until = 0.0

    def prune(self, now: float, window: float) -> int:
        times = self.times
        while times and times[0] <= now - window:
            times.popleft()
        return len(times)


class AuthThrottle:
    """Failed-login bookkeeping. Before checking credentials a shell asks `admit(address, now)`;
    after a failure it reports `failed(door, address, account, now)` and waits the delay it
    returns before answering. Counters (`failures_total`, `refusals_total`, per door) are for
    the metrics page to read."""

    def __init__(self, config: AuthThrottleConfig | None = None) -> None:
        self.config = config = config or AuthThrottleConfig()
        # Failures in the window past which neither the delay nor the lockout changes: only the
        # newest so many of a key are kept, however many come within the window.
        self.history = max(config.lockout_failures, config.free_failures + 1 + _DOUBLINGS)
        self._addresses: collections.OrderedDict[str, _Window] = collections.OrderedDict()
        self._accounts: collections.OrderedDict[str, _Window] = collections.OrderedDict()
        self.failures_total: collections.Counter[str] = collections.Counter()
        self.refusals_total: collections.Counter[str] = collections.Counter()

    def _delay(self, failures: int) -> float:
        config = self.config
        over = failures - config.free_failures
        if over <= 0:
            return 0.0
        return min(config.base_delay * 2.0 ** min(over - 1, _DOUBLINGS), config.max_delay)

    def admit(self, door: str, address: str | None, now: float) -> Admission:
        """May an attempt from `address` go on, and after how long? None (no address) always
        may."""
        if address is None:
            return Admission()
        window = self._addresses.get(client_key(address))
        if window is None:
            return Admission()
        if window.locked_until > now:
            self.refusals_total[door] += 1
            return Admission(refused_until=window.locked_until)
        return Admission(delay=self._delay(window.prune(now, self.config.window)))

    def failed(self, door: str, address: str | None, account: str, now: float) -> Failure:
        """Count a failed login at `door`; the delay before its answer is the larger of what
        the address and the account have earned."""
        self.failures_total[door] += 1
        config = self.config
        first = False
        delay = 0.0
        locked_until = 0.0
        client = None if address is None else client_key(address)
        for table, key in ((self._addresses, client), (self._accounts, _account_key(account))):
            if key is None:
                continue
            window = _remember(table, key, self.history)
            count = window.prune(now, config.window)
            first = first or count == 0
            window.times.append(now)
            delay = max(delay, self._delay(count + 1))
            if (
                table is self._addresses
                and count + 1 >= config.lockout_failures
                and window.locked_until <= now
            ):
                locked_until = window.locked_until = now + config.cooldown
        return Failure(delay=delay, first_in_window=first, locked_until=locked_until)

    def failure_line(
        self, door: str, address: str | None, account: str, failure: Failure
    ) -> str | None:
        """The one line to log about a failed login: for the first of a window and for the one
        that starts a lockout; None for the failures that are only counted."""
        config = self.config
        if failure.locked_until:
            cooldown = f"{config.cooldown:.0f} s"
            return f"{door} logins from {address} refused for {cooldown}: too many failures"
        if failure.first_in_window:
            return (
                f"{door} login failed from {address} for account {account[:64]!r} (more within"
                f" {config.window:.0f} s are counted, not logged)"
            )
        return None


def _remember(table: collections.OrderedDict[str, _Window], key: str, history: int) -> _Window:
    window = table.get(key)
    if window is None:
        window = table[key] = _Window(history)
        if len(table) > _MAX_KEYS:
            table.popitem(last=False)
    else:
        table.move_to_end(key)
    return window
