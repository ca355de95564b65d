"""HTTP routes of the SOAP doors: the send service at /gw/ws/SMSGatewayV10 (and /gw/SMSGateway)
and the Management API at /mgmt/ws/GatewayManagementV10, each with its WSDL (`?wsdl`) and
schemas (`?xsd=name`), shipped as package data. Routing, auth and the calls only; the envelopes
are `edgegw.http.soap`. Spec sections 2.5 and 5.3.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final
from xml.sax.saxutils import escape

from edgegw.http.app import Submit, answered
from edgegw.http.inputs import media_type_and_charset
from edgegw.http.management import Route, batch_xml, stop_xml
from edgegw.http.server import ErrorRenderer, Request, Response, plain_error
from edgegw.http.soap import (
    NO_SUCH_BATCH,
    ManagementCall,
    ManagementOperation,
    SoapFault,
    decode_management,
    decode_send,
    encode_fault,
    encode_management_response,
    encode_send_response,
    parse_envelope,
)
from edgegw.model import SendRequest, SendResponse, StatusCode
from edgegw.offload import decoded
from edgegw.pipeline.management import Management

__all__ = [
    "DOOR_PATHS",
    "MANAGEMENT_PATH",
    "SEND_ALIAS_PATH",
    "SEND_PATH",
    "SEND_PATHS",
    "refusal_fault",
    "soap_errors",
    "soap_routes",
    "wsdl_document",
]

log = logging.getLogger(__name__)

SEND_PATH: Final = "/gw/ws/SMSGatewayV10"
# Spec 2.5: the REST page names this as where the WSDL lives too. A SOAP stack serves `?wsdl`
# at its endpoint's own address, and clients set up by hand take that address without `?wsdl`
# for the endpoint: it is one, the same as SEND_PATH.
SEND_ALIAS_PATH: Final = "/gw/SMSGateway"
SEND_PATHS: Final = frozenset({SEND_PATH, SEND_ALIAS_PATH})
MANAGEMENT_PATH: Final = "/mgmt/ws/GatewayManagementV10"
# Every path of the SOAP doors: a POST is a call, a GET asks for a WSDL or a schema.
DOOR_PATHS: Final = SEND_PATHS | {MANAGEMENT_PATH}

_SEND_WSDL: Final = "SMSGatewayV10.wsdl"
_MANAGEMENT_WSDL: Final = "GatewayManagementV10.wsdl"
# `?xsd=<name>` to the file; the WSDLs import them by these names.
_SCHEMAS: Final = {
    "request": "SMSGateway-Request-2013-02.xsd",
    "response": "SMSGateway-Response-2013-02.xsd",
    "fault": "SMSGateway-Fault-2013-02.xsd",
    "management-1.0": "GatewayManagement-v1.0.xsd",
    "management-1.1": "GatewayManagement-v1.1.xsd",
}
_ADDRESS_PLACEHOLDER: Final = "http://EDGEGW-ADDRESS"
# A Host header fit to be written into the WSDL as the endpoint's authority.
_HOST: Final = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_XML_TYPE: Final = "text/xml; charset=utf-8"
# What a door's address takes: POST a call, GET (or HEAD) a WSDL or a schema.
_METHODS: Final = "GET, HEAD, POST"


def wsdl_document(name: str) -> bytes:
    """A WSDL or XSD file shipped in the package (and in the single executable)."""
    return importlib.resources.files("edgegw.http").joinpath("wsdl", name).read_bytes()


def _send_request(body: bytes | bytearray, charset: str | None) -> SendRequest:
    return decode_send(parse_envelope(body, charset))


def _management_call(body: bytes | bytearray, charset: str | None) -> ManagementCall:
    return decode_management(parse_envelope(body, charset))


def _charset(request: Request) -> str | None:
    """The charset the request's Content-Type declares, which the envelope is read in."""
    return media_type_and_charset(request.headers.get("content-type", ""))[1]


def _origin(request: Request) -> str:
    """Scheme and authority of the URL the client used, for the WSDL's endpoint addresses:
    ours (http, its Host header), or behind a trusted proxy the one it forwarded (https, say,
    where the proxy terminates TLS)."""
    proto = (request.forwarded("proto") or "").lower()
    scheme = proto if proto in ("http", "https") else "http"
    host = request.host()
    if _HOST.fullmatch(host) is None:
        host = "localhost"
    return escape(f"{scheme}://{host}")


def soap_routes(
    submit: Submit,
    management: Management,
    authenticate: Callable[[str, str], Awaitable[int | None]],
) -> Route:
    """The routes, for `make_app(..., routes=[...])`; other paths get None. `submit` is the
    same entry point REST uses, so SOAP requests get the same validation and statuses."""
    documents = {name: wsdl_document(name) for name in (_SEND_WSDL, _MANAGEMENT_WSDL)}
    schemas = {key: wsdl_document(name) for key, name in _SCHEMAS.items()}

    async def route(request: Request) -> Response | None:
        path = request.path
        if path in SEND_PATHS:
            if request.method == "POST":
                return await _call(request, _send)
            return _document(request, documents[_SEND_WSDL])
        if path == MANAGEMENT_PATH:
            if request.method == "POST":
                return await _call(request, _manage)
            return _document(request, documents[_MANAGEMENT_WSDL])
        return None

    def _document(request: Request, wsdl: bytes) -> Response:
        # HEAD as GET without the body (RFC 9110 section 9.3.2), which the listener leaves out.
        if request.method not in ("GET", "HEAD"):
            refusal = plain_error(request, 405, f"{request.method} is not one of {_METHODS}")
            refusal.headers.append(("allow", _METHODS))
            return refusal
        query = request.query
        if query.lower() == "wsdl":
            return _xml(wsdl.replace(_ADDRESS_PLACEHOLDER.encode(), _origin(request).encode()))
        key, _, name = query.partition("=")
        if key.lower() == "xsd" and name in schemas:
            return _xml(schemas[name])
        known = ", ".join(f"?xsd={name}" for name in schemas)
        return plain_error(request, 404, f"ask for ?wsdl or one of {known}")

    async def _call(
        request: Request, operation: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            return await operation(request)
        except SoapFault as fault:
            return _fault(fault)
        except Exception:
            log.exception("SOAP %s failed", request.path)
            return _fault(SoapFault("Server", "Internal error", StatusCode.INTERNAL_ERROR))

    async def _send(request: Request) -> Response:
        read = functools.partial(_send_request, charset=_charset(request))
        send_request = await decoded(read, request.body)

        def answer(response: SendResponse) -> Response:
            answer = _xml(encode_send_response(response))
            if response.failed_login():
                answer.auth_failure = send_request.username or ""
            return answer

        return await answered(request, submit, send_request, answer)

    async def _manage(request: Request) -> Response:
        # Parsed before the credentials are checked: anyone's megabyte of XML would stall
        # every other client for most of a second if it were not read in a worker thread.
        read = functools.partial(_management_call, charset=_charset(request))
        call = await decoded(read, request.body)
        if await authenticate(call.username, call.password) != call.service_id:
            refusal = _fault(SoapFault("Client", "Access denied", StatusCode.ACCESS_ERROR))
            refusal.auth_failure = call.username
            return refusal
        return _xml(encode_management_response(call, await _management_children(call)))

    async def _management_children(call: ManagementCall) -> str:
        service_id = call.service_id
        if call.operation is ManagementOperation.GET_BATCH_LIST:
            return "".join(batch_xml(batch) for batch in await management.batches(service_id))
        reference = call.batch_reference or ""
        if call.operation is ManagementOperation.GET_BATCH_STATUS:
            batch = await management.batch(service_id, reference)
            if batch is None:
                raise _no_such_batch(reference)
            return batch_xml(batch)
        stopped = await management.stop_batch(service_id, reference)
        if stopped is None:
            raise _no_such_batch(reference)
        return stop_xml(service_id, reference, stopped)

    return route


def soap_errors(fallback: ErrorRenderer) -> ErrorRenderer:
    """The listener's own refusals (413, 431, 408, a broken request) and the login guard's 429
    of a SOAP call as a SOAP 1.1 Fault, keeping their HTTP status (nothing was processed);
    others go to `fallback`."""

    def render(request: Request | None, status: int, reason: str) -> Response:
        if request is None or request.path not in DOOR_PATHS:
            return fallback(request, status, reason)
        return refusal_fault(status, reason)

    return render


def refusal_fault(status: int, reason: str) -> Response:
    """A SOAP call refused before it was processed, as a SOAP 1.1 Fault that keeps the refusal's
    HTTP status: what a SOAP client can read, where a REST client gets plain text or JSON."""
    response = _fault(SoapFault("Client" if status < 500 else "Server", reason))
    response.status = status
    return response


def _no_such_batch(reference: str) -> SoapFault:
    return SoapFault("Client", f"no batch {reference!r} for this service", NO_SUCH_BATCH)


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(status=status, headers=[("content-type", _XML_TYPE)], body=body)


def _fault(fault: SoapFault) -> Response:
    return _xml(encode_fault(fault), fault.http_status)
