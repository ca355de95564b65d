"""The client address of an HTTP request that reached us through reverse proxies we trust
(`[http] trusted_proxies`): its X-Forwarded-For walked from the right past the trusted hops;
and the scheme and host the client asked for (X-Forwarded-Proto, X-Forwarded-Host).
Pure: no sockets, no trio. The header of a peer that is not a trusted proxy is never read, so a
client cannot choose its own address. RFC 7239 `Forwarded` is not read (README, Security).
"""

from __future__ import annotations

import ipaddress

from edgegw.networks import Networks

__all__ = ["client_address", "first_forwarded"]


def client_address(peer: str, forwarded_for: str | None, trusted: Networks) -> str | None:
    """The address a request from `peer` (the TCP peer) came from; None when `peer` is a
    trusted proxy that named no client.

    From a peer in `trusted`, the X-Forwarded-For entries are read from the right: a trusted
    one is a proxy that passed the request on, the first untrusted one is the client, and when
    all are trusted the leftmost is. An entry that is no address ends the walk at the last
    address read, or at None when the header is missing or its last entry is malformed: what
    stands left of it was not written by a proxy we trust, and the proxy's own address says
    nothing of where its client is. An entry may carry a port ("192.0.2.1:4711",
    "[2001:db8::1]:4711"); the address comes back in its canonical form ("2001:db8::1", and
    "192.0.2.1" for "::ffff:192.0.2.1"). An IPv6 scope ("fe80::1%eth0") names an interface of
    the host that wrote it, no address of ours, and is malformed.
    """
    if peer not in trusted:
        return peer
    client = None
    for entry in reversed((forwarded_for or "").split(",")):
        address = _entry_address(entry.strip())
        if address is None:
            break
        client = str(address)
        if address not in trusted:
            break
    return client


def _entry_address(
    entry: str,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of one X-Forwarded-For entry without its port; None for anything else."""
    host = entry
    bracketed = entry.startswith("[")
    if bracketed:
        host, closed, rest = entry[1:].partition("]")
        if not closed or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
    elif entry.count(":") == 1:  # IPv4 and a port; an IPv6 address has two colons or more
        host, _, port = entry.partition(":")
        if not _is_port(port):
            return None
    if "%" in host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return None if bracketed else address
    return address.ipv4_mapped or address


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def first_forwarded(value: str | None) -> str | None:
    """The leftmost entry of an X-Forwarded-Proto or X-Forwarded-Host: what the proxy the
    client reached wrote (each proxy after it appends its own); None when there is none."""
    first = (value or "").split(",")[0].strip()
    return first or None
