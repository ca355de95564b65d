"""The SOAP doors of the running gateway (spec 2.5 and 5.3) through a stock SOAP client: zeep
loads our WSDLs (and the schemas they import) from the gateway, sends one message and a batch,
reads statuses and message ids, and calls the management operations. Raw envelopes check what
a client without a WSDL sees: any SOAPAction, faults for garbage, a refused oversized body, an
envelope read in its Content-Type's charset and a fault for a charset that cannot be read.

zeep is blocking; its calls run in `trio.to_thread.run_sync`."""

from __future__ import annotations

import datetime
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import httpx
import msgspec
import pytest
import trio
import zeep
import zeep.exceptions
from support.gateway import start_behind_proxy

from edgegw.config import Config
from edgegw.gateway import Gateway
from edgegw.http import soap, soap_routes
from edgegw.http.soap import ENVELOPE_NAMESPACE, FAULT_NAMESPACE
from edgegw.offload import DECODED_IN_A_THREAD
from edgegw.throttle import AuthThrottleConfig

CREDENTIALS: dict[str, Any] = {"serviceId": 1000, "username": "demo", "password": "demo"}
# The README's curl example, verbatim.
README_ENVELOPE = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:sms="http://chimera.intele.com/gw/wsdl/SMSGateway-v1.0"
    xmlns:ns="http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02">
  <soapenv:Body><sms:sendMessages><ns:request>
    <serviceId>1000</serviceId><username>demo</username><password>demo</password>
    <message><recipient>+4741000000</recipient><content>Hello over SOAP</content></message>
  </ns:request></sms:sendMessages></soapenv:Body>
</soapenv:Envelope>"""


def port_of(gateway: Gateway) -> int:
    assert gateway.bound is not None
    return gateway.bound.http_port


def client(port: int, path: str) -> Any:
    """zeep's client for the WSDL the gateway serves at `path` (zeep's own types are partial)."""
    build: Callable[[str], Any] = zeep.Client
    return build(f"http://127.0.0.1:{port}{path}?wsdl")


def message(recipient: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"recipient": recipient, "content": content, **extra}


async def test_zeep_sends_one_message_and_a_batch(gateway: Gateway) -> None:
    port = port_of(gateway)

    def session() -> tuple[Any, Any, Any]:
        soap = client(port, "/gw/ws/SMSGatewayV10")
        one = soap.service.sendMessages(
            request={
                **CREDENTIALS,
                "message": [message("+47 41 00 00 00", "Hi", clientReference="c1")],
            }
        )
        batch = soap.service.sendMessages(
            request={
                **CREDENTIALS,
                "batchReference": "soap-batch",
                "message": [
                    message("+4741000001", "first", settings={"priority": 3}),
                    message("not-a-number", "second"),
                    message(
                        "+4741000002",
                        "third",
                        settings={"parameter": [{"key": "flash", "value": "true"}]},
                    ),
                ],
            }
        )
        wrong = soap.service.sendMessages(
            request={**CREDENTIALS, "password": "nope", "message": [message("+4741000000", "x")]}
        )
        return one, batch, wrong

    one, batch, wrong = await trio.to_thread.run_sync(session)
    (status,) = one.messageStatus
    assert (status.statusCode, status.statusMessage) == (1, "Message enqueued for sending")
    assert (status.recipient, status.clientReference, status.sequenceIndex) == (
        "+4741000000",
        "c1",
        1,
    )
    view = await gateway.store.message_view(1000, status.messageId)
    assert view is not None and view.recipient == "+4741000000"

    assert batch.batchReference == "soap-batch"
    codes = [(s.sequenceIndex, s.statusCode) for s in batch.messageStatus]
    assert codes == [(1, 1), (2, 5), (3, 1)]
    assert "recipient" in batch.messageStatus[1].statusMessage
    assert batch.messageStatus[1].messageId is None
    for accepted in (batch.messageStatus[0], batch.messageStatus[2]):
        stored = await gateway.store.message_view(1000, accepted.messageId)
        assert stored is not None and stored.batchReference == "soap-batch"

    assert [(s.statusCode, s.messageId) for s in wrong.messageStatus] == [(2, None)]


async def stored_content(gateway: Gateway, message_id: str) -> str:
    def read(conn: sqlite3.Connection) -> str:
        row = conn.execute("SELECT content FROM messages WHERE id = ?", (message_id,)).fetchone()
        return str(row[0])

    return await gateway.store.read(read)


async def test_zeep_sends_text_beyond_ascii(gateway: Gateway) -> None:
    """zeep declares `text/xml; charset=utf-8`, which the envelope is read in."""
    port = port_of(gateway)

    def send() -> Any:
        soap = client(port, "/gw/ws/SMSGatewayV10")
        return soap.service.sendMessages(
            request={**CREDENTIALS, "message": [message("+4741000000", "Blåbær på lager")]}
        )

    (status,) = (await trio.to_thread.run_sync(send)).messageStatus
    assert status.statusCode == 1
    assert await stored_content(gateway, status.messageId) == "Blåbær på lager"


async def test_an_envelope_is_read_in_the_charset_its_content_type_declares(
    gateway: Gateway,
) -> None:
    latin_1 = README_ENVELOPE.replace("Hello over SOAP", "Blåbær på lager").encode("latin-1")
    base = f"http://127.0.0.1:{port_of(gateway)}"
    async with httpx.AsyncClient(base_url=base) as http:
        for body in (latin_1, b'<?xml version="1.0" encoding="UTF-8"?>' + latin_1):
            # With or without a declaration (saying otherwise): the Content-Type wins, RFC 7303
            # section 3.2.
            sent = await http.post(
                "/gw/ws/SMSGatewayV10",
                content=body,
                headers={"content-type": "text/xml; charset=ISO-8859-1"},
            )
            assert sent.status_code == 200
            answer = ElementTree.fromstring(sent.content)
            assert answer.findtext(".//messageStatus/statusCode") == "1"
            message_id = answer.findtext(".//messageStatus/messageId")
            assert message_id is not None
            assert await stored_content(gateway, message_id) == "Blåbær på lager"


@pytest.mark.parametrize(
    ("path", "content_type", "body", "reason"),
    [
        (path, f"text/xml; charset={charset}", README_ENVELOPE.encode(), f"{charset}' is not")
        for path in ("/gw/ws/SMSGatewayV10", "/mgmt/ws/GatewayManagementV10")
        for charset in ("rot13", "base64", "bogus-enc")
    ]
    + [
        (
            "/gw/ws/SMSGatewayV10",
            "text/xml",
            b'<?xml version="1.0" encoding="bogus-enc"?>' + README_ENVELOPE.encode(),
            "the XML declaration's encoding",
        ),
        (
            "/gw/ws/SMSGatewayV10",
            "text/xml; charset=us-ascii",
            README_ENVELOPE.replace("Hello", "Hællo").encode(),
            "not us-ascii at byte",
        ),
    ],
)
async def test_a_charset_that_cannot_be_read_is_a_client_fault(
    gateway: Gateway,
    caplog: pytest.LogCaptureFixture,
    path: str,
    content_type: str,
    body: bytes,
    reason: str,
) -> None:
    """As any body it cannot read: HTTP 500 with a soap:Client fault (SOAP 1.1 section 6.2),
    the detail's code 5 as REST's status, nothing logged at ERROR."""
    base = f"http://127.0.0.1:{port_of(gateway)}"
    async with httpx.AsyncClient(base_url=base) as http:
        refused = await http.post(path, content=body, headers={"content-type": content_type})
    assert refused.status_code == 500
    fault = ElementTree.fromstring(refused.content).find(f".//{{{ENVELOPE_NAMESPACE}}}Fault")
    assert fault is not None and fault.findtext("faultcode") == "soap:Client"
    assert reason in (fault.findtext("faultstring") or "")
    assert fault.findtext(f"detail/{{{FAULT_NAMESPACE}}}fault/code") == "5"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_the_wsdl_is_served_at_both_addresses(gateway: Gateway) -> None:
    port = port_of(gateway)

    def load() -> list[str]:
        return [
            str(client(port, path).service._binding_options["address"])
            for path in ("/gw/ws/SMSGatewayV10", "/gw/SMSGateway")
        ]

    addresses = await trio.to_thread.run_sync(load)
    assert addresses == [f"http://127.0.0.1:{port}/gw/ws/SMSGatewayV10"] * 2


async def test_head_on_a_wsdl_or_schema_answers_as_get_without_the_body(gateway: Gateway) -> None:
    """RFC 9110 section 9.3.2: a document GET serves is there for HEAD too (a link checker, a
    proxy's cache validation); the door's Allow names it."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_of(gateway)}") as http:
        for path in ("/gw/ws/SMSGatewayV10", "/gw/SMSGateway", "/mgmt/ws/GatewayManagementV10"):
            for query in ("wsdl", "xsd=request"):
                got = await http.get(f"{path}?{query}")
                head = await http.head(f"{path}?{query}")
                assert (head.status_code, head.content) == (200, b""), (path, query)
                assert head.headers["content-length"] == str(len(got.content)), (path, query)
                assert head.headers["content-type"] == got.headers["content-type"]
            refused = await http.put(f"{path}?wsdl")
            assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD, POST")


async def test_a_client_pointed_at_the_wsdl_alias_is_served_there(gateway: Gateway) -> None:
    """/gw/SMSGateway is where the REST page says the WSDL lives; a client set up by hand takes
    that address, without `?wsdl`, for the endpoint, as a SOAP stack's `?wsdl` is served at its
    endpoint's own. It is served there like at /gw/ws/SMSGatewayV10, and its logins are
    counted the same, so that it is no way around the login guard."""
    port = port_of(gateway)
    binding = f"{{{soap.SEND_NAMESPACE}}}SMSGatewayV10Binding"

    def session() -> tuple[Any, Any]:
        alias = client(port, "/gw/SMSGateway").create_service(
            binding, f"http://127.0.0.1:{port}/gw/SMSGateway"
        )
        sent = alias.sendMessages(
            request={**CREDENTIALS, "message": [message("+4741000000", "Hi")]}
        )
        wrong = alias.sendMessages(
            request={**CREDENTIALS, "password": "x", "message": [message("+4741000000", "x")]}
        )
        return sent, wrong

    sent, wrong = await trio.to_thread.run_sync(session)
    (status,) = sent.messageStatus
    assert status.statusCode == 1
    view = await gateway.store.message_view(1000, status.messageId)
    assert view is not None and view.recipient == "+4741000000"
    assert [s.statusCode for s in wrong.messageStatus] == [2]
    assert gateway.throttle.failures_total == {"http": 1}


@pytest.mark.parametrize("trusted", [True, False])
async def test_behind_a_trusted_proxy_the_wsdl_names_the_url_its_client_used(
    config: Config, nursery: trio.Nursery, trusted: bool
) -> None:
    """A proxy that terminates TLS forwards the scheme and host its client used: a WSDL naming
    http:// and our own address would send every generated client past the proxy. Such headers
    from anyone else are not read."""
    gateway = await start_behind_proxy(config, nursery, trusted=trusted)
    assert gateway.bound is not None
    base = f"http://127.0.0.1:{gateway.bound.http_port}"
    forwarded = {"x-forwarded-proto": "https, http", "x-forwarded-host": "sms.example.com"}
    async with httpx.AsyncClient(base_url=base) as plain:
        answers = [
            await plain.get(f"{path}?wsdl", headers=forwarded)
            for path in ("/gw/ws/SMSGatewayV10", "/mgmt/ws/GatewayManagementV10")
        ]
    gateway.stop()
    origin = "https://sms.example.com" if trusted else base
    addresses = [
        ElementTree.fromstring(answer.content).find(
            ".//{http://schemas.xmlsoap.org/wsdl/soap/}address"
        )
        for answer in answers
    ]
    locations = [address.get("location") for address in addresses if address is not None]
    assert locations == [f"{origin}/gw/ws/SMSGatewayV10", f"{origin}/mgmt/ws/GatewayManagementV10"]


async def test_zeep_manages_a_scheduled_batch(gateway: Gateway) -> None:
    port = port_of(gateway)
    later = datetime.date.today() + datetime.timedelta(days=2)

    def session() -> dict[str, Any]:
        soap = client(port, "/gw/ws/SMSGatewayV10")
        window = {"startDate": later, "startTime": datetime.time(9, 0)}
        soap.service.sendMessages(
            request={
                **CREDENTIALS,
                "batchReference": "later",
                "message": [
                    message(
                        f"+474100000{i}",
                        "later",
                        clientReference=f"r{i}",
                        settings={"sendWindow": window},
                    )
                    for i in range(2)
                ],
            }
        )
        mgmt = client(port, "/mgmt/ws/GatewayManagementV10")
        seen: dict[str, Any] = {
            "list": mgmt.service.getBatchList(**CREDENTIALS),
            "status": mgmt.service.getBatchStatus(**CREDENTIALS, clientBatchReference="later"),
            "stop": mgmt.service.stopBatch(**CREDENTIALS, clientBatchReference="later"),
            "after": mgmt.service.getBatchStatus(**CREDENTIALS, clientBatchReference="later"),
        }
        refused: list[tuple[str, str, dict[str, Any]]] = [
            ("unknown", "stopBatch", {**CREDENTIALS, "clientBatchReference": "x"}),
            ("denied", "getBatchList", {**CREDENTIALS, "password": "no"}),
        ]
        for name, operation, arguments in refused:
            try:
                mgmt.service[operation](**arguments)
            except zeep.exceptions.Fault as fault:
                seen[name] = fault
        return seen

    seen = await trio.to_thread.run_sync(session)
    assert [(b.clientBatchReference, b.totalSize, b.onHold) for b in seen["list"]] == [
        ("later", 2, 0)
    ]
    assert (seen["status"].clientBatchReference, seen["status"].totalSize) == ("later", 2)
    stop = seen["stop"]
    assert (stop.serviceId, stop.clientBatchReference) == (1000, "later")
    assert sorted(m.clientMessageReference for m in stop.stoppedMessages) == ["r0", "r1"]
    for stopped in stop.stoppedMessages:
        view = await gateway.store.message_view(1000, stopped.messageId)
        assert view is not None and view.state == "cancelled"
    assert seen["after"].totalSize == 0
    for name, code in (("unknown", "1000"), ("denied", "2")):
        fault = seen[name]
        assert fault.code == "soap:Client"
        assert fault.detail.findtext(f"{{{FAULT_NAMESPACE}}}fault/code") == code


async def test_zeep_reads_batches_whose_references_xml_cannot_carry(gateway: Gateway) -> None:
    """A reference sent as JSON may hold a control character, which XML 1.0 cannot carry,
    and a CR, which an XML parser reads as LF unless escaped: the listing stays readable (the
    character replaced) and a batch is stopped by the reference it was sent with."""
    port = port_of(gateway)
    later = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    window = {"sendWindow": {"startDate": later, "startTime": "09:00:00"}}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for reference, client_reference in (("bad\x01", "c0"), ("line\rtwo", "ref\x02")):
            one = message("+4741000000", "later", clientReference=client_reference, settings=window)
            sent = await http.post(
                "/gw/rs/sendMessages",
                json={**CREDENTIALS, "batchReference": reference, "message": [one]},
                headers={"accept": "application/json"},
            )
            assert sent.json()["messageStatus"][0]["statusCode"] == 1

    def session() -> tuple[Any, Any]:
        mgmt = client(port, "/mgmt/ws/GatewayManagementV10")
        listed = mgmt.service.getBatchList(**CREDENTIALS)
        stopped = mgmt.service.stopBatch(**CREDENTIALS, clientBatchReference="line\rtwo")
        return listed, stopped

    listed, stopped = await trio.to_thread.run_sync(session)
    assert sorted(batch.clientBatchReference for batch in listed) == ["bad\ufffd", "line\rtwo"]
    assert stopped.clientBatchReference == "line\rtwo"
    assert [m.clientMessageReference for m in stopped.stoppedMessages] == ["ref\ufffd"]


async def test_any_soap_action_and_the_other_management_namespace(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{port_of(gateway)}"
    async with httpx.AsyncClient(base_url=base) as http:
        for headers in ({}, {"soapaction": '""'}, {"soapaction": '"urn:whatever"'}):
            sent = await http.post(
                "/gw/ws/SMSGatewayV10",
                content=README_ENVELOPE,
                headers={"content-type": "text/xml; charset=utf-8", **headers},
            )
            assert sent.status_code == 200
            root = ElementTree.fromstring(sent.content)
            assert root.findtext(".//messageStatus/statusCode") == "1"
        listed = await http.post(
            "/mgmt/ws/GatewayManagementV10",
            content=(
                f'<e:Envelope xmlns:e="{ENVELOPE_NAMESPACE}"><e:Body>'
                '<m:getBatchListRequest xmlns:m="http://chimera.intele.com/gw/wsdl/'
                'GatewayManagement-v1.0"><serviceId>1000</serviceId><username>demo</username>'
                "<password>demo</password></m:getBatchListRequest></e:Body></e:Envelope>"
            ),
        )
        assert listed.status_code == 200
        answer = ElementTree.fromstring(listed.content)
        response = answer.find(
            ".//{http://chimera.intele.com/gw/wsdl/GatewayManagement-v1.0}getBatchListResponse"
        )
        assert response is not None


async def test_an_envelope_decoded_in_a_worker_thread_answers_the_same(gateway: Gateway) -> None:
    padded = README_ENVELOPE.replace("<soapenv:Body>", " " * DECODED_IN_A_THREAD + "<soapenv:Body>")
    broken = padded.replace("</soapenv:Envelope>", "")
    base = f"http://127.0.0.1:{port_of(gateway)}"
    async with httpx.AsyncClient(base_url=base) as http:
        sent = await http.post("/gw/ws/SMSGatewayV10", content=padded)
        assert sent.status_code == 200
        assert ElementTree.fromstring(sent.content).findtext(".//messageStatus/statusCode") == "1"
        refused = await http.post("/gw/ws/SMSGatewayV10", content=broken)
        assert refused.status_code == 500
        fault = ElementTree.fromstring(refused.content).find(f".//{{{ENVELOPE_NAMESPACE}}}Fault")
        assert fault is not None and fault.findtext("faultcode") == "soap:Client"


async def test_a_big_management_envelope_is_parsed_off_the_event_loop(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It is parsed before its credentials are checked: a stranger's megabyte of XML must not
    hold up every other client for as long as it takes."""
    parsed_in: list[int] = []

    def recording(body: bytes | bytearray, charset: str | None = None) -> ElementTree.Element:
        parsed_in.append(threading.get_ident())
        return soap.parse_envelope(body, charset)

    monkeypatch.setattr(soap_routes, "parse_envelope", recording)
    listing = (
        f'<e:Envelope xmlns:e="{ENVELOPE_NAMESPACE}"><e:Header>{{padding}}</e:Header><e:Body>'
        '<m:getBatchListRequest xmlns:m="http://chimera.intele.com/gw/wsdl/'
        'GatewayManagement-v1.1"><serviceId>1000</serviceId><username>demo</username>'
        "<password>demo</password></m:getBatchListRequest></e:Body></e:Envelope>"
    )
    base = f"http://127.0.0.1:{port_of(gateway)}"
    async with httpx.AsyncClient(base_url=base) as http:
        for padding in ("", "<x/>" * (DECODED_IN_A_THREAD // 4)):
            listed = await http.post(
                "/mgmt/ws/GatewayManagementV10", content=listing.format(padding=padding)
            )
            assert listed.status_code == 200
    loop = threading.get_ident()
    assert parsed_in[0] == loop
    assert parsed_in[1] != loop


@pytest.mark.parametrize(
    ("body", "faultcode"),
    [
        (b"\x00\xffgarbage", "soap:Client"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "soap:Client"),
        (README_ENVELOPE.replace("sendMessages", "deleteMessages").encode(), "soap:Client"),
        (
            README_ENVELOPE.replace("soap/envelope/", "soap/envelop/").encode(),
            "soap:VersionMismatch",
        ),
    ],
)
async def test_garbage_gets_a_fault_and_the_door_stays_open(
    gateway: Gateway, body: bytes, faultcode: str
) -> None:
    base = f"http://127.0.0.1:{port_of(gateway)}"
    async with httpx.AsyncClient(base_url=base) as http:
        refused = await http.post("/gw/ws/SMSGatewayV10", content=body)
        assert refused.status_code == 500
        assert refused.headers["content-type"].startswith("text/xml")
        fault = ElementTree.fromstring(refused.content).find(f".//{{{ENVELOPE_NAMESPACE}}}Fault")
        assert fault is not None and fault.findtext("faultcode") == faultcode
        assert b"Traceback" not in refused.content
        after = await http.post("/gw/ws/SMSGatewayV10", content=README_ENVELOPE)
        assert after.status_code == 200


async def test_a_50_mb_envelope_is_refused_and_others_are_served(gateway: Gateway) -> None:
    port = port_of(gateway)

    def oversized() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /gw/ws/SMSGatewayV10 HTTP/1.1\r\nhost: x\r\n"
                b"content-type: text/xml\r\ncontent-length: 52428800\r\n\r\n" + b"<" * 65536
            )
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http, trio.open_nursery() as nursery:
        answers: list[bytes] = []

        async def refuse() -> None:
            answers.append(await trio.to_thread.run_sync(oversized))

        nursery.start_soon(refuse)
        served = await http.post("/gw/ws/SMSGatewayV10", content=README_ENVELOPE)
        assert served.status_code == 200
    assert answers[0].startswith(b"HTTP/1.1 413 ")
    assert b"<faultcode>soap:Client</faultcode>" in answers[0]


async def test_wrong_soap_credentials_count_as_failed_logins(gateway: Gateway) -> None:
    """The SOAP doors carry their credentials in the envelope; the login guard counts a refused
    send (every status 2) and a refused management call like a REST send's."""
    base = f"http://127.0.0.1:{port_of(gateway)}"
    wrong_send = README_ENVELOPE.replace("<password>demo</password>", "<password>x</password>")
    wrong_list = (
        f'<e:Envelope xmlns:e="{ENVELOPE_NAMESPACE}"><e:Body>'
        '<m:getBatchListRequest xmlns:m="http://chimera.intele.com/gw/wsdl/'
        'GatewayManagement-v1.0"><serviceId>1000</serviceId><username>demo</username>'
        "<password>x</password></m:getBatchListRequest></e:Body></e:Envelope>"
    )
    async with httpx.AsyncClient(base_url=base) as http:
        refused = await http.post("/gw/ws/SMSGatewayV10", content=wrong_send)
        assert refused.status_code == 200
        assert ElementTree.fromstring(refused.content).findtext(".//statusCode") == "2"
        denied = await http.post("/mgmt/ws/GatewayManagementV10", content=wrong_list)
        assert denied.status_code == 500
        assert (await http.post("/gw/ws/SMSGatewayV10", content=README_ENVELOPE)).status_code == 200
    assert gateway.throttle.failures_total == {"http": 2}


def locked_out_after_two_failures(config: Config) -> Config:
    """`config` whose login guard locks an address out at its second failure, without delays."""
    no_waiting = AuthThrottleConfig(
        free_failures=1, base_delay=0.0, max_delay=0.0, lockout_failures=2
    )
    security = msgspec.structs.replace(config.security, auth=no_waiting)
    return msgspec.structs.replace(config, security=security)


async def test_a_locked_out_soap_client_gets_a_fault_it_can_read(config: Config) -> None:
    """The login guard's 429 to a SOAP call is a SOAP Fault, as every other refusal of one is:
    a stock client reports it as such instead of failing to read the answer."""
    gateway = Gateway(locked_out_after_two_failures(config))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(gateway.run)

        def session() -> list[Any]:
            soap = client(bound.http_port, "/gw/ws/SMSGatewayV10")
            mgmt = client(bound.http_port, "/mgmt/ws/GatewayManagementV10")
            wrong = {**CREDENTIALS, "password": "guess", "message": [message("+4741000000", "x")]}
            answers: list[Any] = [soap.service.sendMessages(request=wrong) for _ in range(2)]
            try:
                soap.service.sendMessages(request={**wrong, **CREDENTIALS})
            except zeep.exceptions.Fault as fault:
                answers.append(fault)
            try:
                mgmt.service.getBatchList(**CREDENTIALS)
            except zeep.exceptions.Fault as fault:
                answers.append(fault)
            return answers

        denied, denied_again, send_refused, list_refused = await trio.to_thread.run_sync(session)
        gateway.stop()
    assert [s.statusCode for s in (*denied.messageStatus, *denied_again.messageStatus)] == [2, 2]
    for refused in (send_refused, list_refused):
        assert isinstance(refused, zeep.exceptions.Fault)
        assert refused.code == "soap:Client"
        assert "too many failed logins" in refused.message


async def test_a_locked_out_client_still_gets_the_wsdls(
    config: Config, nursery: trio.Nursery
) -> None:
    """The WSDLs and schemas carry no credentials, so the login guard leaves them alone: an
    address locked out for failed logins can still build its client, whose calls then get the
    guard's fault, instead of failing to load the WSDL at all."""
    gateway = Gateway(locked_out_after_two_failures(config))
    await nursery.start(gateway.run)
    port = port_of(gateway)
    wrong = README_ENVELOPE.replace("<password>demo</password>", "<password>x</password>")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(2):
            assert (await http.post("/gw/ws/SMSGatewayV10", content=wrong)).status_code == 200
        locked = await http.post("/gw/ws/SMSGatewayV10", content=README_ENVELOPE)
        assert locked.status_code == 429
        schema = await http.get("/gw/ws/SMSGatewayV10?xsd=request")
        assert schema.status_code == 200

    def load() -> list[str]:
        return [
            str(client(port, path).service._binding_options["address"])
            for path in ("/gw/ws/SMSGatewayV10", "/gw/SMSGateway", "/mgmt/ws/GatewayManagementV10")
        ]

    addresses = await trio.to_thread.run_sync(load)
    gateway.stop()
    assert [address.rsplit("/", 1)[1] for address in addresses] == [
        "SMSGatewayV10",
        "SMSGatewayV10",
        "GatewayManagementV10",
    ]
    assert gateway.throttle.refusals_total == {"http": 1}
