"""The SMPP 3.4 door: ESMEs bind to edgegw as to an SMSC (spec section 2.7).

`pdu`, `session`, `submission` and `outbound` are pure codecs; `server` is the trio shell and
`backend` the contract the gateway core implements.
"""

from edgegw.smpp.backend import (
    Accepted,
    Account,
    AccountTable,
    BindMode,
    BindRefused,
    QueryResult,
    SmppBackend,
    SubmitRefused,
)
from edgegw.smpp.config import SmppAccount, SmppConfig
from edgegw.smpp.constants import CommandId, CommandStatus, MessageState, Tag
from edgegw.smpp.errors import BrokenFrame, EncodeError, InvalidField, InvalidPdu, SmppError
from edgegw.smpp.outbound import MobileOriginated, Outbound, Receipt, deliver_sms, receipt_text
from edgegw.smpp.pdu import NEED_DATA, Pdu, SmppDecoder, encode
from edgegw.smpp.server import serve_smpp
from edgegw.smpp.session import Session, State, Timers
from edgegw.smpp.submission import Address, ReceiptRequest, Submission

__all__ = [
    "NEED_DATA",
    "Accepted",
    "Account",
    "AccountTable",
    "Address",
    "BindMode",
    "BindRefused",
    "BrokenFrame",
    "CommandId",
    "CommandStatus",
    "EncodeError",
    "InvalidField",
    "InvalidPdu",
    "MessageState",
    "MobileOriginated",
    "Outbound",
    "Pdu",
    "QueryResult",
    "Receipt",
    "ReceiptRequest",
    "Session",
    "SmppAccount",
    "SmppBackend",
    "SmppConfig",
    "SmppDecoder",
    "SmppError",
    "State",
    "Submission",
    "SubmitRefused",
    "Tag",
    "Timers",
    "deliver_sms",
    "encode",
    "receipt_text",
    "serve_smpp",
]
