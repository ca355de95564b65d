"""The user data header: its information elements and the concatenation IEs.

Pure; no I/O. Implements 3GPP TS 23.040 section 9.2.3.24 (UDH layout), 9.2.3.24.1 (8-bit
reference concatenation, IEI 00), 9.2.3.24.3/9.2.3.24.4 (application port addressing, IEI 04 and
05) and 9.2.3.24.8 (16-bit reference concatenation, IEI 08).
"""

from __future__ import annotations

from drivers.gsm.errors import GsmError

IEI_CONCAT_8BIT = 0x00
IEI_CONCAT_16BIT = 0x08
IEI_PORTS_8BIT = 0x04
IEI_PORTS_16BIT = 0x05
CONCAT_UDH_LENGTH = 6  # UDHL + IEI + IEDL + reference + total + sequence


def concat_ie(reference: int, total: int, seq: int) -> bytes:
    """One 8-bit reference concatenation IE (IEI, IEDL and its three octets)."""
    return bytes((IEI_CONCAT_8BIT, 3, reference, total, seq))


def concat_udh(reference: int, total: int, seq: int) -> bytes:
    """The whole UDH (with UDHL) holding one 8-bit reference concatenation IE."""
    return whole_udh(concat_ie(reference, total, seq))


def whole_udh(elements: bytes) -> bytes:
    """Information elements as a whole UDH, their UDHL in front; no elements, no header."""
    if len(elements) > 0xFF:
        raise GsmError(f"information elements of {len(elements)} octets exceed a UDHL")
    return bytes((len(elements),)) + elements if elements else b""


def port_ie(destination: int, originator: int) -> bytes:
    """The 16-bit application port addressing IE (9.2.3.24.4): destination port, then
    originator port, each two octets."""
    for name, port in (("destination", destination), ("originator", originator)):
        if not 0 <= port <= 0xFFFF:
            raise GsmError(f"{name} port must be 0..65535, not {port}")
    return (
        bytes((IEI_PORTS_16BIT, 4)) + destination.to_bytes(2, "big") + originator.to_bytes(2, "big")
    )


def check_udh(udh: bytes) -> None:
    """A whole UDH must start with its own length (UDHL); an empty one means no header."""
    if udh and udh[0] != len(udh) - 1:
        raise GsmError(f"UDHL {udh[0]} does not match a header of {len(udh)} octets")


def information_elements(udh: bytes) -> list[tuple[int, bytes]]:
    """The (IEI, data) pairs of a whole UDH; none when its last element has too few or too
    many octets for the header, which TS 23.040 9.2.3.24 says makes the whole header ignored."""
    check_udh(udh)
    elements: list[tuple[int, bytes]] = []
    pos = 1
    while pos < len(udh):
        if pos + 2 > len(udh):
            return []
        iei, length = udh[pos], udh[pos + 1]
        end = pos + 2 + length
        if end > len(udh):
            return []
        elements.append((iei, udh[pos + 2 : end]))
        pos = end
    return elements


def concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, seq) from the header's concatenation IE, or None when it has none.

    A concatenation IE with a wrong length, a total of 0 or a sequence outside 1..total is
    malformed; TS 23.040 9.2.3.24.1 says to ignore such an element, so it counts as absent.
    Of several (repeated, or an 8-bit and a 16-bit one, which exclude each other), the last
    counts, as 9.2.3.24 asks.
    """
    found = None
    for iei, data in information_elements(udh):
        if iei == IEI_CONCAT_8BIT and len(data) == 3:
            reference, total, seq = data
        elif iei == IEI_CONCAT_16BIT and len(data) == 4:
            reference, total, seq = int.from_bytes(data[:2], "big"), data[2], data[3]
        else:
            continue
        if total and 1 <= seq <= total:
            found = reference, total, seq
    return found


def port_info(udh: bytes) -> tuple[int, int] | None:
    """(destination, originator) port from the header's application port addressing IE, 8-bit
    (9.2.3.24.3) or 16-bit (9.2.3.24.4), or None when it has none; one of a wrong length is
    ignored, and of several the last counts (9.2.3.24)."""
    found = None
    for iei, data in information_elements(udh):
        if iei == IEI_PORTS_8BIT and len(data) == 2:
            found = data[0], data[1]
        elif iei == IEI_PORTS_16BIT and len(data) == 4:
            found = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")
    return found
