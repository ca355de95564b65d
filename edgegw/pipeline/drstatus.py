"""TP-ST of an SMS-STATUS-REPORT (3GPP TS 23.040 section 9.2.3.15) mapped to the DR status code
of spec section 4.4, following the spec's suggested mapping for a modem-based gateway.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum

from edgegw.model import DrStatus


class ReportOutcome(enum.StrEnum):
    """What a TP-ST says about the part."""

    DELIVERED = "delivered"  # transaction completed (0x00-0x1F)
    PENDING = "pending"  # temporary error, the SC is still trying (0x20-0x3F)
    FAILED = "failed"  # permanent error, or the SC gave up (0x40-0xFF)


def report_outcome(status: int) -> ReportOutcome:
    if status < 0x20:
        return ReportOutcome.DELIVERED
    if status < 0x40:
        return ReportOutcome.PENDING
    return ReportOutcome.FAILED


def dr_status(status: int) -> DrStatus | None:
    """The spec 4.4 code for a TP-ST; None while the SC is still trying (no final DR yet)."""
    if status < 0x20:
        # 0x00 received, 0x01 forwarded but unconfirmed, 0x02 replaced; 0x03-0x1F are reserved
        # or SC-specific values of the same "transaction completed" group.
        return DrStatus.DELIVERED
    if status < 0x40:
        return None
    if status == 0x41:  # incompatible destination
        return DrStatus.SYNTAX_ERROR
    if status == 0x46:  # SM validity period expired
        return DrStatus.VALIDITY_EXPIRED
    if status == 0x49:  # SM does not exist
        return DrStatus.UNKNOWN_RECIPIENT
    if 0x60 <= status < 0x80:
        # Temporary errors after which the SC makes no more attempts (0x60-0x65, and the
        # reserved/SC-specific rest of that group).
        return DrStatus.TIMED_OUT_IN_SMSC
    # 0x40, 0x42-0x45, 0x47, 0x48, the reserved 0x4A-0x5F and the reserved 0x80-0xFF.
    return DrStatus.UNSPECIFIED


def ext_status(status: int) -> str:
    """The raw TP-ST as the DR's `extstatuscode`: two hex digits, e.g. "46"."""
    return f"{status:02X}"
