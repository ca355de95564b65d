"""Lists of IP addresses and networks as the configuration writes them ("127.0.0.1",
"10.0.0.0/8", "::1"): the check that names a bad entry, and whether an address is in a list;
and whether an address, or the host a `Host` header names, is loopback. Pure: no sockets, no
I/O. SMTP's `allow` lists and HTTP's `trusted_proxies` are read through it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

__all__ = ["Networks", "is_loopback", "is_loopback_host", "network_problems"]

_IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def is_loopback(address: str) -> bool:
    """Whether `address` (text) is a loopback address; text that is no address is not."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """Whether a `Host` header (`localhost`, `127.0.0.1:8080`, `[::1]:8080`) names this box by
    a loopback name or address. A browser's request from a page on a name the attacker owns
    and pointed at 127.0.0.1 (DNS rebinding) names that name: it reaches a loopback socket but
    is not a call from this box's own software."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
    else:
        name, _, port = host.partition(":")
        port = ":" + port if _ else ""
    if port and not port[1:].isdigit():
        return False
    return name in ("localhost", "localhost.") or is_loopback(name)


# The widest networks `trusted_proxies` may list: a proxy's X-Forwarded-For is believed, so any
# host in a wider one could name any client address (0.0.0.0/0, or 0.0.0.0/1 and 128.0.0.0/1).
# IPv6's is the unique local range, fc00::/7. The IPv6 ranges that hold the whole IPv4 space
# (IPv4-mapped, NAT64's well-known prefix, 6to4) count as IPv4: a network inside one as the
# IPv4 network it maps, one holding one as every IPv4 address.
_WIDEST_IPV4: Final = 8
_WIDEST_IPV6: Final = 7
_IPV4_INSIDE: Final = (
    _IPV4_MAPPED,
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("2002::/16"),
)


def network_problems(key: str, entries: Iterable[str], *, proxies: bool = False) -> list[str]:
    """A config problem, with its key path, for each entry that is no IP address or network;
    with `proxies`, also for one wider than a /8 of IPv4 or a /7 of IPv6."""
    problems = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            problems.append(f"{key}: {entry!r} is not an IP address or network")
            continue
        if proxies and _ipv4_width(network) < _WIDEST_IPV4:
            problems.append(f"{key}: {entry!r} {_TOO_WIDE.format(4, _WIDEST_IPV4)}")
        elif proxies and network.version == 6 and network.prefixlen < _WIDEST_IPV6:
            problems.append(f"{key}: {entry!r} {_TOO_WIDE.format(6, _WIDEST_IPV6)}")
    return problems


_TOO_WIDE: Final = (
    "holds more IPv{} addresses than a /{}; list the proxies themselves, since any host in it"
    " could name any client address"
)


def _ipv4_width(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """The prefix length of the IPv4 addresses `network` holds (33 for none)."""
    if isinstance(network, ipaddress.IPv4Network):
        return network.prefixlen
    for inside in _IPV4_INSIDE:
        if inside.subnet_of(network):
            return 0
        if network.subnet_of(inside):
            # 6to4 puts the IPv4 address right after its /16, the others at the end.
            width = network.prefixlen - inside.prefixlen
            return min(32, width) if inside.prefixlen == 16 else width
    return 33


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
