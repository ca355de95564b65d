"""The AT modem driver: a pure framer and command codec, and the trio driver that uses them.

`framer` and `commands` are sans-IO (no trio, no serial); `driver` is the trio shell that owns
the port, the timeouts and recovery. 3GPP TS 27.005 (SMS, PDU mode) and TS 27.007.
"""

from drivers.at.commands import (
    CME_TEXT,
    CMS_TEXT,
    CmeError,
    CmsError,
    Operator,
    Registration,
    RegistrationStatus,
    SignalQuality,
    cme_code_from_text,
    cmgs,
    cms_code_from_text,
    cms_is_permanent,
    cpin_enter,
    parse_cmgs,
    parse_cops,
    parse_cpin,
    parse_creg,
    parse_csq,
    parse_iccid,
    parse_imei,
)
from drivers.at.driver import AtModem, AtOptions
from drivers.at.errors import AtProtocolError
from drivers.at.framer import (
    NEED_DATA,
    AtEvent,
    AtFramer,
    FinalKind,
    FinalResult,
    Garbage,
    Prompt,
    Response,
    Urc,
)

__all__ = [
    "CME_TEXT",
    "CMS_TEXT",
    "NEED_DATA",
    "AtEvent",
    "AtFramer",
    "AtModem",
    "AtOptions",
    "AtProtocolError",
    "CmeError",
    "CmsError",
    "FinalKind",
    "FinalResult",
    "Garbage",
    "Operator",
    "Prompt",
    "Registration",
    "RegistrationStatus",
    "Response",
    "SignalQuality",
    "Urc",
    "cme_code_from_text",
    "cmgs",
    "cms_code_from_text",
    "cms_is_permanent",
    "cpin_enter",
    "parse_cmgs",
    "parse_cops",
    "parse_cpin",
    "parse_creg",
    "parse_csq",
    "parse_iccid",
    "parse_imei",
]
