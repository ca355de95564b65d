"""The user data header as a receiver reads it (TS 23.040 9.2.3.24): which concatenation
element counts, and when the whole header is ignored."""

from __future__ import annotations

import pytest

from drivers.gsm import concat_info


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
