"""Packing of 7-bit septets into octets and back, with optional leading fill bits.

Pure; no I/O. Implements 3GPP TS 23.038 section 6.1.2.1 (packing) and the fill bits that
TS 23.040 section 9.2.3.24 puts between a user data header and septet-aligned text.
"""

from __future__ import annotations

import functools

from drivers.gsm.errors import GsmError

# The septets are squeezed eight at a time (8 octets -> 7) with whole-integer shifts and masks
# rather than a per-septet loop, so a 160-septet part costs a handful of big-int operations.


@functools.lru_cache(maxsize=64)
def _masks(groups: int) -> tuple[int, ...]:
    def repeat(pattern: bytes) -> int:
        return int.from_bytes(pattern * groups, "little")

    return (
        # packing: low and high halves of 16-, 32- and 64-bit lanes
        repeat(b"\xff\x00" * 4),
        repeat(b"\x00\xff" * 4),
        repeat(b"\xff\xff\x00\x00" * 2),
        repeat(b"\x00\x00\xff\xff" * 2),
        repeat(b"\xff\xff\xff\xff\x00\x00\x00\x00"),
        repeat(b"\x00\x00\x00\x00\xff\xff\xff\xff"),
        # unpacking: the 7-, 14- and 28-bit halves to spread apart again
        repeat(b"\x7f\x00" * 4),
        repeat(b"\x80\x3f" * 4),
        repeat(b"\xff\x3f\x00\x00" * 2),
        repeat(b"\x00\xc0\xff\x0f" * 2),
        repeat(b"\xff\xff\xff\x0f\x00\x00\x00\x00"),
        repeat(b"\x00\x00\x00\xf0\xff\xff\xff\x00"),
    )


def _check_fill(fill_bits: int) -> None:
    if not 0 <= fill_bits <= 6:
        raise GsmError(f"fill bits must be 0..6, not {fill_bits}")


def packed_length(count: int, fill_bits: int = 0) -> int:
    """Octets that `count` septets take after `fill_bits` fill bits."""
    return (fill_bits + 7 * count + 7) // 8


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septet values (one per byte, each below 128) least significant bit first."""
    _check_fill(fill_bits)
    if not septets.isascii():
        raise GsmError("septet values must be below 128")
    count = len(septets)
    groups = (count + 7) // 8
    m = _masks(groups)
    x = int.from_bytes(septets, "little")
    x = (x & m[0]) | ((x & m[1]) >> 1)
    x = (x & m[2]) | ((x & m[3]) >> 2)
    x = (x & m[4]) | ((x & m[5]) >> 4)
    octets = bytearray(x.to_bytes(8 * groups, "little"))
    del octets[7::8]
    length = packed_length(count, fill_bits)
    if fill_bits == 0:
        return bytes(octets[:length])
    return (int.from_bytes(octets, "little") << fill_bits).to_bytes(length + 1, "little")[:length]


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """The first `count` septets after `fill_bits` fill bits, one value per byte."""
    _check_fill(fill_bits)
    if count < 0:
        raise GsmError(f"septet count must not be negative, not {count}")
    if len(data) * 8 < fill_bits + 7 * count:
        raise GsmError(
            f"{len(data)} octets cannot hold {count} septets after {fill_bits} fill bits"
        )
    groups = (count + 7) // 8
    m = _masks(groups)
    x = (int.from_bytes(data, "little") >> fill_bits) & ((1 << (7 * count)) - 1)
    packed = x.to_bytes(7 * groups, "little")
    spread = bytearray(8 * groups)
    for k in range(7):
        spread[k::8] = packed[k::7]
    x = int.from_bytes(spread, "little")
    x = (x & m[10]) | ((x & m[11]) << 4)
    x = (x & m[8]) | ((x & m[9]) << 2)
    x = (x & m[6]) | ((x & m[7]) << 1)
    return x.to_bytes(8 * groups, "little")[:count]
