"""Address and network lists of the configuration: membership of addresses and of text, and
the check naming each bad entry with its key."""

from __future__ import annotations

import ipaddress

import pytest

from edgegw.networks import Networks, is_loopback, is_loopback_host, network_problems


def test_addresses_and_networks_of_both_families_contain_what_they_should() -> None:
    networks = Networks(["192.0.2.7", "10.0.0.1/8", "2001:db8::/32"])
    assert "192.0.2.7" in networks
    assert "192.0.2.8" not in networks
    assert "10.255.0.1" in networks  # host bits of an entry are ignored
    assert "2001:DB8::1" in networks
    assert ipaddress.ip_address("2001:db8::2") in networks
    assert "2001:db9::1" not in networks
    assert "::ffff:192.0.2.7" not in networks  # another family, another address


def test_text_that_is_no_address_is_in_no_list() -> None:
    networks = Networks(["0.0.0.0/0", "::/0"])
    for text in ("", "intranet", "192.0.2.7:80", "10.0.0.0/8", " 192.0.2.7", "01.2.3.4"):
        assert text not in networks
    assert 7 not in networks
    assert "192.0.2.7" not in Networks()


def test_each_bad_entry_is_a_problem_with_its_key() -> None:
    entries = ["127.0.0.1", "10.0.0.0/33", "intranet", "::1", "fe80::/129"]
    assert network_problems("a.allow", entries) == [
        "a.allow: '10.0.0.0/33' is not an IP address or network",
        "a.allow: 'intranet' is not an IP address or network",
        "a.allow: 'fe80::/129' is not an IP address or network",
    ]


def test_loopback_is_the_whole_of_127_0_0_0_8_and_1_and_nothing_that_is_no_address() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.9.10")
    assert is_loopback("::1")
    assert not is_loopback("192.0.2.7")
    assert not is_loopback("localhost")
    assert not is_loopback("")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST:8080", True),
        ("127.0.0.1:8080", True),
        ("127.1.2.3", True),
        ("[::1]:8080", True),
        ("[::1]", True),
        ("attacker.example:8080", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.attacker.example", False),
        ("[::1]x", False),
        ("127.0.0.1:80x", False),
        ("192.0.2.1:8080", False),
        ("", False),
    ],
)
def test_a_host_header_is_loopback_only_by_a_loopback_name_or_address(
    host: str, loopback: bool
) -> None:
    assert is_loopback_host(host) is loopback
