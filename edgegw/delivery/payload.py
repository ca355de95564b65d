"""The wire shapes of MO and DR callbacks: the GET URL template, the batched JSON and XML bodies,
and the HMAC signature header. Pure: no I/O, no clock (signing time is a parameter).
Implements spec sections 3.1-3.3 (MO) and 4.1-4.3 (DR).
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote
from xml.sax.saxutils import escape

import msgspec

__all__ = [
    "MO_TYPE",
    "NETWORK_UNKNOWN",
    "SIGNATURE_HEADER",
    "CallbackKind",
    "DrReport",
    "MoReport",
    "encode_json_batch",
    "encode_xml_batch",
    "mo_time",
    "placeholders",
    "render_template",
    "sign",
]


MO_TYPE: Final = 1  # spec 3.1 `type` of every MO
# A modem does not learn the network of the other party (spec 3.1 and 4.1 `mcc`, `mnc`); 0
# keeps the fields numbers, as customers' parsers expect.
NETWORK_UNKNOWN: Final = 0
# The spec leaves the MO time zone open and suggests Norwegian local time (spec 3.1).
MO_ZONE: Final = zoneinfo.ZoneInfo("Europe/Oslo")


def mo_time(epoch: float) -> str:
    """Spec 3.1 `timestamp` and `sctimestamp` of the moment `epoch` (seconds): yyyyMMdd
    HH:mm:ss in Norwegian local time."""
    return datetime.datetime.fromtimestamp(epoch, MO_ZONE).strftime("%Y%m%d %H:%M:%S")


class CallbackKind(enum.StrEnum):
    MO = "mo"
    DR = "dr"


class MoReport(msgspec.Struct, kw_only=True):
    """An inbound message as the customer receives it, fields in the spec's example order
    (section 3.3); `serviceid`, `mcc`, `mnc` and `type` are numbers, the rest strings."""

    messageid: str
    serviceid: int
    servicename: str
    sno: str
    originator: str
    mcc: int = NETWORK_UNKNOWN
    mnc: int = NETWORK_UNKNOWN
    content: str
    command: str
    strippedcontent: str
    type: int = MO_TYPE
    timestamp: str  # yyyyMMdd HH:mm:ss, Europe/Oslo
    sctimestamp: str
    sessionid: str = ""


class DrReport(msgspec.Struct, kw_only=True):
    """A delivery report in the spec's example order (section 4.3). `statuscode` is a number,
    `extstatuscode` a string. `originator` is in the spec's table but not in its bodies, so it
    is offered to GET templates only."""

    messageid: str
    customerbatchreference: str
    customermessagereference: str
    serviceid: int
    servicename: str
    mcc: int = NETWORK_UNKNOWN
    mnc: int = NETWORK_UNKNOWN
    type: int = 6
    statuscode: int
    statusdescription: str
    extstatuscode: str
    extstatusdescription: str
    originator: str = ""


# Fields that go into POST bodies; the rest of a report is for GET templates only.
_BODY_FIELDS: Final[dict[CallbackKind, tuple[str, ...]]] = {
    CallbackKind.MO: tuple(f.name for f in msgspec.structs.fields(MoReport)),
    CallbackKind.DR: tuple(
        f.name for f in msgspec.structs.fields(DrReport) if f.name != "originator"
    ),
}

# Directory and number-lookup fields (spec 3.1, VAS): a modem gateway has none, so they are
# empty, but templates that name them must still render.
_VAS_FIELDS: Final = [
    "di_recordtype",
    "di_firstname",
    "di_middlename",
    "di_lastname",
    "di_gender",
    "di_birthdate",
    "di_streetname",
    "di_house_number",
    "di_entrance",
    "di_zip",
    "di_zip_location",
    "di_municipiality",
    "di_country",
    "di_orgnr",
    "di_boxtext",
    "di_boxnumber",
    "di_boxoffice",
    "di_boxzip",
    "di_boxcity",
    "di_boxcountry",
    "di_coord_matchtype",
    "di_coord_xpos",
    "di_coord_ypos",
    "msisdn_errorcode",
    "msisdn_errortext",
    "msisdn_mnc",
    "msisdn_mcc",
    "msisdn_spid",
    "msisdn_spname",
    "msisdn_cc",
]


SIGNATURE_HEADER: Final = "X-Edgegw-Signature"

_PLACEHOLDER: Final = re.compile(r"\[([A-Za-z0-9_]+)\]")
_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'
# Characters XML 1.0 cannot carry at all, not even escaped; an SMS may hold them.
_XML_ILLEGAL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def placeholders(report: MoReport | DrReport) -> dict[str, str]:
    """Every placeholder value of a report as text, keyed by lower-case name."""
    values = {name: str(value) for name, value in msgspec.structs.asdict(report).items()}
    if isinstance(report, MoReport):
        values["commandtype"] = ""
        values.update(dict.fromkeys(_VAS_FIELDS, ""))
    return values


def render_template(template: str, values: Mapping[str, str], *, encode: bool = True) -> str:
    """The GET URL: each `[name]` (any case) replaced by its URL-encoded value; unknown names
    become empty (spec 3.2). Everything outside the brackets is the customer's and kept as is.
    Without `encode` the values go in raw (the email templates of spec 3.4)."""

    def value(match: re.Match[str]) -> str:
        text = values.get(match.group(1).lower(), "")
        return quote(text, safe="") if encode else text

    return _PLACEHOLDER.sub(value, template)


def encode_json_batch(kind: CallbackKind, reports: Sequence[MoReport | DrReport]) -> bytes:
    """`{"mo": [...]}` or `{"dr": [...]}` with the spec's key order and JSON types."""
    fields = _BODY_FIELDS[kind]
    items = [{name: getattr(report, name) for name in fields} for report in reports]
    return msgspec.json.encode({kind.value: items})


def encode_xml_batch(kind: CallbackKind, reports: Sequence[MoReport | DrReport]) -> bytes:
    """`<mo><message>...</message></mo>` (or `<dr>`), no namespace, empty values as `<x/>`.
    Characters XML cannot carry become U+FFFD, so a customer's parser never rejects the body."""
    fields = _BODY_FIELDS[kind]
    out = [_XML_DECLARATION, f"<{kind.value}>"]
    for report in reports:
        out.append("<message>")
        for name in fields:
            text = _XML_ILLEGAL.sub("\ufffd", str(getattr(report, name)))
            # A raw CR would reach the customer's parser as LF (XML line-end normalisation).
            text = escape(text, {"\r": "&#13;"})
            out.append(f"<{name}>{text}</{name}>" if text else f"<{name}/>")
        out.append("</message>")
    out.append(f"</{kind.value}>")
    return "".join(out).encode("utf-8")


def sign(key: bytes, timestamp: int, signed: bytes) -> str:
    """The `X-Edgegw-Signature` value: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + signed>`,
    where `signed` is the raw body of a POST or the path and query of a GET."""
    digest = hmac.new(key, str(timestamp).encode("ascii") + b"." + signed, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"
