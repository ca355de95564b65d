"""Events a modem driver emits, in the driver's own terms (the gateway maps them to its model).

Pure data. An inbound SMS or a status report stays in the modem's storage until the gateway has
committed it and calls `Modem.acknowledge(event)`; only then may the driver delete it.
"""

from __future__ import annotations

import enum

import msgspec

from drivers.gsm.tpdu import SmsDeliver, SmsStatusReport


class ModemState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    # Recovery failed too often in a row; the driver rests before it tries again.
    QUARANTINED = "quarantined"


class HealthChanged(msgspec.Struct, frozen=True, kw_only=True):
    modem: str
    state: ModemState
    detail: str


class InboundSms(msgspec.Struct, frozen=True, kw_only=True):
    """An SMS-DELIVER the modem received (TS 27.005 +CMTI then +CMGR/+CMGL, or +CMT)."""

    modem: str
    storage: str  # "SM", "ME", ... where it is stored; "" when delivered directly (+CMT)
    index: int | None  # its index in that storage; None when delivered directly
    smsc: str  # the service centre address that came with the PDU, "" when absent
    pdu: bytes  # the TPDU as received (without the SMSC address), kept raw for the store
    deliver: SmsDeliver  # the same TPDU decoded


class StatusReportReceived(msgspec.Struct, frozen=True, kw_only=True):
    """An SMS-STATUS-REPORT (TS 27.005 +CDS, or +CDSI then +CMGR)."""

    modem: str
    storage: str
    index: int | None
    smsc: str
    pdu: bytes
    report: SmsStatusReport


class StorageRead(msgspec.Struct, frozen=True, kw_only=True):
    """The driver has read the modem's storage whole for the first time (AT+CMGL in every
    storage in use, every message listed readably and emitted): what the storage held then
    came before this event, once."""

    modem: str


class RegistrationChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The modem became registered on the network (+CREG or +CEREG <stat> home, roaming or SMS
    only, TS 27.007 sections 7.2 and 10.1.22) or stopped being so, or its port was lost. The
    network holds the status reports and SMS for a modem it cannot reach, and delivers them
    once the modem is registered again (TS 23.040, Messages-Waiting and Alert-SC)."""

    modem: str
    registered: bool


ModemEvent = HealthChanged | InboundSms | StatusReportReceived | StorageRead | RegistrationChanged
