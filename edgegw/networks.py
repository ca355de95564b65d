"""Lists of IP addresses and networks as the configuration writes them ("127.0.0.1",
"10.0.0.0/8", "::1"): the check that names a bad entry, and whether an address is in a list;
and whether an address is loopback. Pure: no sockets, no I/O. SMTP's `allow` lists and HTTP's
`trusted_proxies` are read through it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

__all__ = ["Networks", "is_loopback", "network_problems"]

_IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def is_loopback(address: str) -> bool:
    """Whether `address` (text) is a loopback address; text that is no address is not."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# The widest network `trusted_proxies` may list: a proxy's X-Forwarded-For is believed, so any
# host in a wider one could name any client address (0.0.0.0/0, or 0.0.0.0/1 and 128.0.0.0/1).
_WIDEST_TRUSTED: Final = {4: 8, 6: 16}


def network_problems(key: str, entries: Iterable[str], *, proxies: bool = False) -> list[str]:
    """A config problem, with its key path, for each entry that is no IP address or network;
    with `proxies`, also for one wider than a /8 of IPv4 or a /16 of IPv6 (an IPv4-mapped
    network counts as its IPv4 one)."""
    problems = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            problems.append(f"{key}: {entry!r} is not an IP address or network")
            continue
        version, prefix = network.version, network.prefixlen
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
            version, prefix = 4, prefix - _IPV4_MAPPED.prefixlen
        if proxies and prefix < _WIDEST_TRUSTED[version]:
            problems.append(
                f"{key}: {entry!r} is wider than a /{_WIDEST_TRUSTED[version]}; list the proxies"
                " themselves, since any host in it could name any client address"
            )
    return problems


class Networks:
    """Addresses and networks ("10.0.0.1/8" is 10.0.0.0/8), from entries that
    `network_problems` passed; `address in networks` for an address or its text (text that is
    no address is in no list)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address)
            except ValueError:
                return False
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(address in network for network in self._networks)
