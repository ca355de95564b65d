"""What the simulated network received: one SMS-SUBMIT, decoded for inspection by tests.

Pure, no I/O. Decodes the TPDU with `drivers.gsm` (3GPP TS 23.040 section 9.2.2.2 SMS-SUBMIT,
TS 23.038 for the text and the message class, sections 9.2.3.24.1 for concatenation and
9.2.3.24.3/9.2.3.24.4 for application ports).
"""

from __future__ import annotations

import msgspec

from drivers.gsm import concat_info, decode_text, message_class, parse_submit, port_info


class SentSms(msgspec.Struct, frozen=True):
    """One SMS-SUBMIT as the network saw it; also the JSON line of the `record` file."""

    recipient: str  # TP-DA, "+" prefixed when international
    text: str  # the decoded user data; 8-bit data shows as upper-case hex
    dcs: int  # TP-DCS
    udh: bytes  # the whole user data header including UDHL, or empty
    payload: bytes  # user data after the header: septet values (GSM 7-bit) or octets
    message_reference: int  # the TP-MR the modem assigned and answered with +CMGS
    status_report: bool  # TP-SRR
    validity_minutes: int | None  # TP-VP in relative format, None when absent
    concat: tuple[int, int, int] | None  # (reference, total, sequence) from the UDH
    pid: int = 0  # TP-PID (9.2.3.9): 0x41-0x47 replace an earlier SMS of the same type
    ports: tuple[int, int] | None = None  # (destination, originator) application ports
    message_class: int | None = None  # from the TP-DCS: 0 flash, 1 ME, 2 SIM, 3 TE


def decode_sent_sms(tpdu: bytes, message_reference: int) -> SentSms:
    """Decode an SMS-SUBMIT TPDU (no SMSC octets); raises `GsmError` if it does not parse."""
    submit = parse_submit(tpdu)
    return SentSms(
        recipient=submit.destination,
        text=decode_text(submit.part),
        dcs=submit.dcs,
        udh=submit.udh,
        payload=submit.payload,
        message_reference=message_reference,
        status_report=submit.status_report,
        validity_minutes=submit.validity_minutes,
        concat=concat_info(submit.udh),
        pid=submit.pid,
        ports=port_info(submit.udh),
        message_class=message_class(submit.dcs),
    )
