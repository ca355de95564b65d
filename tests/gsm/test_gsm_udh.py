"""The user data header as a receiver reads it (TS 23.040 9.2.3.24): which concatenation
element counts, and when the whole header is ignored; the application port elements."""

from __future__ import annotations

import pytest

from drivers.gsm import GsmError, concat_info, port_ie, port_info


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # A repeated 8-bit element: the last occurrence is used.
        ("0A 00030A0201 00030B0302", (0x0B, 3, 2)),
        # An 8-bit and a 16-bit element exclude each other: the last occurring one is used.
        ("0B 00030A0201 0804ABCD0302", (0xABCD, 3, 2)),
        ("0B 0804ABCD0302 00030A0201", (0x0A, 2, 1)),
        # A malformed last element (total 0) is ignored, so the one before it counts.
        ("0A 00030A0201 00030B0002", (0x0A, 2, 1)),
        # Other elements around it change nothing.
        ("0B 0A0400000000 00030A0201", (0x0A, 2, 1)),
    ],
)
def test_the_last_usable_concatenation_element_counts(
    header: str, expected: tuple[int, int, int]
) -> None:
    assert concat_info(bytes.fromhex(header)) == expected


@pytest.mark.parametrize(
    "header",
    [
        # The final element says 5 octets where 2 are left: too few.
        "09 00030A0201 0A05FFFF",
        # One stray octet after the last element: too many for another element.
        "06 00030A0201 FF",
    ],
)
def test_a_header_whose_last_element_does_not_fit_is_ignored_whole(header: str) -> None:
    assert concat_info(bytes.fromhex(header)) is None


def test_port_element_is_destination_then_originator_in_16_bits() -> None:
    ie = port_ie(2948, 9200)
    assert ie == bytes.fromhex("05040B8423F0")
    assert port_info(b"\x06" + ie) == (2948, 9200)
    with pytest.raises(GsmError):
        port_ie(65536, 0)


@pytest.mark.parametrize(
    ("header", "ports"),
    [
        ("0B0003090301" + "05040B8423F0", (2948, 9200)),
        ("0404020500", (5, 0)),  # 8-bit ports, TS 23.040 9.2.3.24.3
        ("0505030B8423", None),  # a 16-bit element of the wrong length is ignored
        ("050003090301", None),
    ],
)
def test_ports_are_read_from_either_port_element(
    header: str, ports: tuple[int, int] | None
) -> None:
    assert port_info(bytes.fromhex(header)) == ports
