"""The SOAP 1.1 codec of the send service and the Management API: an envelope's bytes to the
operation it carries, and answers and faults back to envelopes. Pure: no sockets, no clock,
no logging. Spec sections 2.5 (document/literal wrapped `sendMessages`) and 5.3.

XML is parsed with defusedxml and DTDs, entities and XInclude are refused; every way a body can
fail to be one of our operations is a `SoapFault`, and nothing else escapes. A body is read in
its Content-Type's charset where one is declared, as REST XML is (RFC 7303 section 3.2).
"""

from __future__ import annotations

import enum
from typing import Final
from xml.etree.ElementTree import Element

import msgspec

from edgegw.http.inputs import utf8_pieces
from edgegw.http.puzzel import (
    RESPONSE_NAMESPACE,
    RequestSyntaxError,
    decode_request_element,
    parse_xml,
    response_children_xml,
    xml_text,
)
from edgegw.model import SendRequest, SendResponse, StatusCode

__all__ = [
    "ENVELOPE_NAMESPACE",
    "FAULT_NAMESPACE",
    "MANAGEMENT_NAMESPACES",
    "NO_SUCH_BATCH",
    "SEND_NAMESPACE",
    "ManagementCall",
    "ManagementOperation",
    "SoapFault",
    "decode_management",
    "decode_send",
    "encode_envelope",
    "encode_fault",
    "encode_management_response",
    "encode_send_response",
    "parse_envelope",
]

ENVELOPE_NAMESPACE: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SEND_NAMESPACE: Final = "http://chimera.intele.com/gw/wsdl/SMSGateway-v1.0"
FAULT_NAMESPACE: Final = "http://chimera.intele.com/gw/xsd/SMSGateway/Fault/2013/02"
# Spec 5.3: the docs put stopBatch in 1.0 and the two queries in 1.1, and mix them; both are
# accepted for every operation, and the answer uses the namespace of the request.
MANAGEMENT_NAMESPACES: Final = (
    "http://chimera.intele.com/gw/wsdl/GatewayManagement-v1.0",
    "http://chimera.intele.com/gw/wsdl/GatewayManagement-v1.1",
)
# Spec 5.3: the management error code for "no batch with that reference for this service".
NO_SUCH_BATCH: Final = 1000

_SOAP12_NAMESPACE: Final = "http://www.w3.org/2003/05/soap-envelope"
_XINCLUDE_NAMESPACE: Final = "http://www.w3.org/2001/XInclude"
_TRUE: Final = frozenset({"1", "true"})
# SOAP 1.1 section 4.2.2: a header entry without an actor, or for `next` (every node), is
# addressed to us; one for another actor is not, and its mustUnderstand is that actor's.
_NEXT_ACTOR: Final = "http://schemas.xmlsoap.org/soap/actor/next"


class SoapFault(Exception):
    """A request answered with a SOAP 1.1 Fault (HTTP 500). `faultcode` is the local name in
    the envelope namespace: `Client` for what the sender got wrong, `Server` for our failures,
    `VersionMismatch` and `MustUnderstand` as SOAP 1.1 section 4.4.1 defines them. `code`, when
    set, goes into the Puzzel fault detail (a status code of spec 6.1, or 1000)."""

    http_status: Final = 500

    def __init__(self, faultcode: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"{faultcode}: {reason}")
        self.faultcode = faultcode
        self.reason = reason
        self.code = code


def _client(reason: str) -> SoapFault:
    return SoapFault("Client", reason, StatusCode.SYNTAX_ERROR)


def _syntax_error(error: RequestSyntaxError) -> SoapFault:
    """The Client fault for `error`, with REST's status 5 in its detail. A charset REST answers
    with 415 is such a fault too: SOAP 1.1 section 6.2 answers any request it cannot process
    with HTTP 500 and a Fault, which is what a SOAP client reads."""
    return _client(f"Syntax error: {error.field}: {error.reason}")


def _qualified(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _split(tag: object) -> tuple[str, str]:
    """(namespace, local name); comments and processing instructions give ("", "")."""
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def parse_envelope(body: bytes | bytearray, charset: str | None = None) -> Element:
    """The one element inside the Body of a SOAP 1.1 envelope, or SoapFault. With `charset`
    (the Content-Type's) the body is read in it, and the XML declaration's encoding is not
    looked at; without, the bytes are read as the declaration says (UTF-8 without one)."""
    try:
        document = body if charset is None else utf8_pieces(body, charset)
        root = parse_xml(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except RequestSyntaxError as exc:
        raise _syntax_error(exc) from None
    namespace, name = _split(root.tag)
    if name != "Envelope":
        raise _client(f"the root element is {name or 'not an element'!r}, not a SOAP Envelope")
    if namespace != ENVELOPE_NAMESPACE:
        detail = "SOAP 1.2" if namespace == _SOAP12_NAMESPACE else repr(namespace)
        raise SoapFault("VersionMismatch", f"the envelope is {detail}; this service is SOAP 1.1")
    for element in root.iter():
        if _split(element.tag)[0] == _XINCLUDE_NAMESPACE:
            raise _client("XInclude is not allowed")
    header = root.find(_qualified(ENVELOPE_NAMESPACE, "Header"))
    if header is not None:
        for entry in header:
            actor = entry.get(_qualified(ENVELOPE_NAMESPACE, "actor"), _NEXT_ACTOR).strip()
            must = entry.get(_qualified(ENVELOPE_NAMESPACE, "mustUnderstand"), "0")
            if actor in (_NEXT_ACTOR, "") and must.strip() in _TRUE:
                raise SoapFault(
                    "MustUnderstand", f"header {_split(entry.tag)[1]!r} is not understood"
                )
    bodies = root.findall(_qualified(ENVELOPE_NAMESPACE, "Body"))
    if len(bodies) != 1:
        raise _client(f"an envelope has one Body, this one has {len(bodies)}")
    operations: list[Element] = [child for child in bodies[0] if _split(child.tag)[1]]
    if len(operations) != 1:
        raise _client(f"the Body must hold one operation element, it holds {len(operations)}")
    return operations[0]


# ---------------------------------------------------------------------------------------------
# The send service (spec 2.5)


def decode_send(operation: Element) -> SendRequest:
    """`sendMessages` wrapping one `request` (children unqualified, as in REST XML)."""
    namespace, name = _split(operation.tag)
    if (namespace, name) != (SEND_NAMESPACE, "sendMessages"):
        raise _client(f"unknown operation {{{namespace}}}{name}; this service has sendMessages")
    requests = [child for child in operation if _split(child.tag)[1] == "request"]
    if len(requests) != 1:
        raise _client(f"sendMessages must wrap one request element, it wraps {len(requests)}")
    try:
        return decode_request_element(requests[0])
    except RequestSyntaxError as exc:
        raise _syntax_error(exc) from None


def encode_send_response(response: SendResponse) -> bytes:
    """The `sendMessagesResponse` envelope, with the prefixes of the spec's example."""
    return encode_envelope(
        f'<ns3:sendMessagesResponse xmlns:ns3="{SEND_NAMESPACE}" xmlns:ns4="{RESPONSE_NAMESPACE}">'
        f"<ns4:response>{response_children_xml(response)}</ns4:response>"
        "</ns3:sendMessagesResponse>"
    )


# ---------------------------------------------------------------------------------------------
# The Management API (spec 5.3)


class ManagementOperation(enum.Enum):
    STOP_BATCH = "stopBatch"
    GET_BATCH_LIST = "getBatchList"
    GET_BATCH_STATUS = "getBatchStatus"


class ManagementCall(msgspec.Struct, frozen=True, kw_only=True):
    operation: ManagementOperation
    namespace: str  # of the request; the response uses the same
    service_id: int
    username: str
    password: str
    batch_reference: str | None  # None for getBatchList


_OPERATIONS: Final = {f"{op.value}Request": op for op in ManagementOperation}


def decode_management(operation: Element) -> ManagementCall:
    """One of the three `...Request` elements, in either management namespace."""
    namespace, name = _split(operation.tag)
    kind = _OPERATIONS.get(name)
    if kind is None or namespace not in MANAGEMENT_NAMESPACES:
        known = ", ".join(sorted(_OPERATIONS))
        raise _client(f"unknown operation {{{namespace}}}{name}; this service has {known}")
    fields: dict[str, str] = {}
    for child in operation:
        field = _split(child.tag)[1]
        if not field:
            continue
        if field in fields:
            raise _client(f"Syntax error: {field}: element given more than once")
        if len(child):
            raise _client(f"Syntax error: {field}: expected text, found child elements")
        fields[field] = child.text or ""
    needed = ["serviceId", "username", "password"]
    if kind is not ManagementOperation.GET_BATCH_LIST:
        needed.append("clientBatchReference")
    for field in needed:
        if field not in fields:
            raise _client(f"Syntax error: {field}: required element is missing")
    service_text = fields["serviceId"].strip()
    if not service_text.isascii() or not service_text.isdigit() or len(service_text) > 10:
        raise _client(f"Syntax error: serviceId: {service_text[:20]!r} is not a number")
    return ManagementCall(
        operation=kind,
        namespace=namespace,
        service_id=int(service_text),
        username=fields["username"],
        password=fields["password"],
        batch_reference=fields.get("clientBatchReference"),
    )


def encode_management_response(call: ManagementCall, children_xml: str) -> bytes:
    """`<operation>Response` in the request's namespace around unqualified children."""
    name = f"{call.operation.value}Response"
    return encode_envelope(f'<ns2:{name} xmlns:ns2="{call.namespace}">{children_xml}</ns2:{name}>')


# ---------------------------------------------------------------------------------------------
# Envelopes and faults


def encode_envelope(body_xml: str) -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{ENVELOPE_NAMESPACE}"><soap:Body>{body_xml}'
        "</soap:Body></soap:Envelope>"
    ).encode()


def encode_fault(fault: SoapFault) -> bytes:
    """A SOAP 1.1 Fault; with a code, the Puzzel `fault` (appendix C) as its detail."""
    detail = ""
    if fault.code is not None:
        detail = (
            f'<detail><ns2:fault xmlns:ns2="{FAULT_NAMESPACE}"><code>{fault.code}</code>'
            f"<reason>{xml_text(fault.reason)}</reason></ns2:fault></detail>"
        )
    return encode_envelope(
        f"<soap:Fault><faultcode>soap:{fault.faultcode}</faultcode>"
        f"<faultstring>{xml_text(fault.reason)}</faultstring>{detail}</soap:Fault>"
    )
