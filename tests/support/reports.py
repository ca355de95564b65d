"""Status reports as a modem hands them to the gateway, built from their fields (TS 23.040
9.2.2.3 SMS-STATUS-REPORT). Pure builders: no store, no clock, no I/O."""

from __future__ import annotations

import datetime as dt

from drivers.events import StatusReportReceived
from drivers.gsm import build_status_report, parse_status_report

SCTS = dt.datetime(2025, 8, 5, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def report_event(
    modem: str, reference: int, recipient: str, status: int, submitted: dt.datetime = SCTS
) -> StatusReportReceived:
    # TP-SCTS is when the SMSC took the SMS-SUBMIT; the discharge time comes a little later.
    pdu = build_status_report(
        reference,
        recipient,
        sc_timestamp=submitted,
        discharge_time=submitted + dt.timedelta(seconds=5),
        status=status,
    )
    return StatusReportReceived(
        modem=modem, storage="SM", index=None, smsc="", pdu=pdu, report=parse_status_report(pdu)
    )
