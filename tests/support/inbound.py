"""Received SMS as a modem's driver reports them, built from real SMS-DELIVER PDUs
(TS 23.040 9.2.2.1), for tests of the inbound pipeline and what follows it."""

from __future__ import annotations

import datetime as dt

from drivers.events import InboundSms
from drivers.gsm import EncodedPart, build_deliver, encode_message, parse_deliver

SCTS = dt.datetime(2025, 8, 5, 9, 59, 58, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def sms(
    text: str | EncodedPart,
    *,
    originator: str = "+4799999999",
    modem: str = "sim0",
    index: int | None = 1,
    timestamp: dt.datetime = SCTS,
) -> InboundSms:
    part = text if isinstance(text, EncodedPart) else encode_message(text).parts[0]
    pdu = build_deliver(originator, part, timestamp=timestamp)
    return InboundSms(
        modem=modem,
        storage="SM",
        index=index,
        smsc="+4792001000",
        pdu=pdu,
        deliver=parse_deliver(pdu),
    )
