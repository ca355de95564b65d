"""The client address behind trusted reverse proxies (edgegw.http.forwarded), without trio:
X-Forwarded-For walked from the right, spoofing attempts, IPv6, ports in entries, garbage, and
hypothesis holding the rule that what a client writes itself never decides its address."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegw.http.forwarded import client_address
from edgegw.networks import Networks

# The proxy on the box, an inner network of proxies, and an IPv6 proxy network.
TRUSTED = Networks(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])
PROXY = "127.0.0.1"
CLIENT = "203.0.113.7"


@pytest.mark.parametrize("header", [None, "", CLIENT, f"{CLIENT}, 198.51.100.1", "10.0.0.1"])
def test_the_header_of_a_peer_that_is_no_trusted_proxy_is_never_read(header: str | None) -> None:
    assert client_address("192.0.2.9", header, TRUSTED) == "192.0.2.9"
    assert client_address("127.0.0.2", header, TRUSTED) == "127.0.0.2"
    assert client_address(PROXY, header, Networks()) == PROXY


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_address(PROXY, CLIENT, TRUSTED) == CLIENT
    assert client_address("10.9.8.7", CLIENT, TRUSTED) == CLIENT


def test_a_trusted_proxy_that_names_no_client_gives_none() -> None:
    # A request made on the box itself, or through a proxy that does not add the header: the
    # proxy's own address would say nothing of where its client is.
    assert client_address(PROXY, None, TRUSTED) is None
    assert client_address(PROXY, "", TRUSTED) is None


@pytest.mark.parametrize(
    ("header", "client"),
    [
        # Trusted hops are skipped from the right; the first untrusted entry is the client.
        (f"{CLIENT}, 10.1.2.3", CLIENT),
        (f"198.51.100.1, {CLIENT}, 10.1.2.3, 10.4.5.6", CLIENT),
        # All trusted: the leftmost is as far as the chain goes.
        ("10.0.0.5, 10.0.0.6", "10.0.0.5"),
        ("127.0.0.1", "127.0.0.1"),
        # Whitespace around entries is the header's, not the address's.
        (f"  {CLIENT}\t,10.1.2.3 ", CLIENT),
    ],
)
def test_the_chain_is_walked_from_the_right(header: str, client: str) -> None:
    assert client_address(PROXY, header, TRUSTED) == client


@pytest.mark.parametrize(
    "claimed",
    [
        "127.0.0.1",  # "I am the proxy": its hop is trusted, but the proxy appended the truth
        "10.0.0.1",
        "198.51.100.1",
        "198.51.100.1, 10.0.0.1",
        "unknown",
        "garbage, , ,",
    ],
)
def test_what_a_client_writes_before_its_proxy_appends_is_never_its_address(
    claimed: str,
) -> None:
    assert client_address(PROXY, f"{claimed}, {CLIENT}", TRUSTED) == CLIENT
    # Nor does it survive an inner proxy that appended the outer one's address.
    assert client_address(PROXY, f"{claimed}, {CLIENT}, 10.1.1.1", TRUSTED) == CLIENT


@pytest.mark.parametrize(
    ("header", "client"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),  # canonical, so one client is one key
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("2001:db8::1, 2001:db8:ffff::9", "2001:db8::1"),  # an IPv6 proxy skipped
        ("2001:db8:ffff::1, 2001:db8:ffff::2", "2001:db8:ffff::1"),
        ("::ffff:203.0.113.7", CLIENT),  # IPv4-mapped is the IPv4 address
        (f"{CLIENT}, ::ffff:10.0.0.1", CLIENT),
        # Unbracketed, the last group is part of the address, not a port.
        ("2001:db8::1:80", "2001:db8::1:80"),
    ],
)
def test_ipv6_entries(header: str, client: str) -> None:
    assert client_address(PROXY, header, TRUSTED) == client
    assert client_address("2001:db8:ffff::1", header, TRUSTED) == client


def test_a_proxy_on_the_ipv6_loopback() -> None:
    assert client_address("::1", "[2001:db8::1]:4711", Networks(["::1"])) == "2001:db8::1"
    assert client_address("::1", CLIENT, Networks(["::1"])) == CLIENT
    assert client_address("::1", CLIENT, Networks(["127.0.0.1"])) == "::1"


@pytest.mark.parametrize(
    "header",
    [f"{CLIENT}:51234", f"{CLIENT}:1", f"{CLIENT}:65535", f"{CLIENT}:0", f"{CLIENT}:080"],
)
def test_a_port_in_an_entry_is_left_out(header: str) -> None:
    assert client_address(PROXY, header, TRUSTED) == CLIENT


@pytest.mark.parametrize(
    "entry",
    [
        "unknown",  # RFC 7239's word for a hidden client
        "_hidden",
        "client.example",
        f"{CLIENT}:",
        f"{CLIENT}:65536",
        f"{CLIENT}:123456",
        f"{CLIENT}:\uff18\uff10",  # fullwidth digits are no port
        f"{CLIENT}:-1",
        f"{CLIENT}:1:2",
        f"[{CLIENT}]",  # brackets are for IPv6 only
        f"[{CLIENT}]:80",
        "[2001:db8::1",
        "[2001:db8::1]:",
        "[2001:db8::1]80",
        "[2001:db8::1]:x",
        "[]",
        f"{CLIENT}/32",
        f'"{CLIENT}"',
        f"{CLIENT} 198.51.100.1",
        "\u0661.\u0662.\u0663.\u0664",  # Arabic-Indic digits are no IPv4 address
        "01.2.3.4",  # nor are leading zeros (octal to some parsers)
        "1.2.3",
        "256.1.1.1",
        "\x00",
        "for=192.0.2.60",  # a Forwarded element in the wrong header
        "",
        "x" * 10_000,
        "fe80::1%eth0",  # a scope names an interface of the host that wrote it
        "::1%evil",
        "[::1%25lo]:80",
    ],
)
def test_a_malformed_entry_ends_the_walk_at_the_last_address_read(entry: str) -> None:
    # As the last entry: the header is malformed, and the proxy named no client.
    assert client_address(PROXY, entry, TRUSTED) is None
    assert client_address(PROXY, f"{CLIENT}, {entry}", TRUSTED) is None
    # Behind a trusted hop: that hop is as far as anyone vouches for.
    assert client_address(PROXY, f"{entry}, 10.2.2.2", TRUSTED) == "10.2.2.2"
    assert client_address(PROXY, f"{CLIENT}, {entry}, 10.2.2.2", TRUSTED) == "10.2.2.2"


def test_trailing_and_empty_entries_are_malformed() -> None:
    assert client_address(PROXY, f"{CLIENT},", TRUSTED) is None
    assert client_address(PROXY, ",", TRUSTED) is None
    assert client_address(PROXY, f"{CLIENT},,10.2.2.2", TRUSTED) == "10.2.2.2"


untrusted_clients = st.ip_addresses().filter(
    lambda address: (
        address not in TRUSTED
        and not (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped in TRUSTED)
    )
)


def canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@given(
    claimed=st.text(),
    client=untrusted_clients,
    inner=st.lists(
        st.sampled_from(["10.0.0.1", "127.0.0.1", "[2001:db8:ffff::1]:443"]), max_size=3
    ),
)
def test_whatever_a_client_writes_its_address_is_the_one_its_proxy_saw(
    claimed: str,
    client: ipaddress.IPv4Address | ipaddress.IPv6Address,
    inner: list[str],
) -> None:
    written = f"[{client}]:4711" if client.version == 6 else f"{client}:4711"
    header = ", ".join([claimed, written, *inner])
    assert client_address(PROXY, header, TRUSTED) == canonical(client)


@given(peer=st.ip_addresses(), header=st.one_of(st.none(), st.text()))
def test_any_header_gives_the_peer_an_address_or_none_and_never_raises(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address, header: str | None
) -> None:
    found = client_address(str(peer), header, TRUSTED)
    if str(peer) not in TRUSTED:
        assert found == str(peer)
    else:
        assert found is None or found == str(ipaddress.ip_address(found))
