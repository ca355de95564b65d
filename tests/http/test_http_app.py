"""The HTTP routes over a small dictionary-backed `Backend`: content types, Accept negotiation,
Puzzel error bodies, the switchable 401, message lookup with Basic auth."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from typing import Final
from xml.etree import ElementTree

import httpx
import msgspec
import pytest
import trio

from edgegw.http import app as routes
from edgegw.http.app import Backend, make_app
from edgegw.http.puzzel import (
    RESPONSE_NAMESPACE,
    MessageChunks,
    decode_form_batch,
    decode_json,
    whole_request,
)
from edgegw.http.server import App, HttpLimits, Request, Response, serve_http
from edgegw.model import (
    STATUS_ENQUEUED,
    MessageStatus,
    SendRequest,
    SendResponse,
    StatusCode,
)
from edgegw.offload import DECODED_IN_A_THREAD
from edgegw.store import AnswerSeal

SERVICES = {1000: ("user", "pw"), 2000: ("other", "secret")}


class DictBackend:
    """Services in a dictionary; accepts every message of a good login."""

    def __init__(self) -> None:
        self.submitted: list[SendRequest] = []
        self.broken = False

    async def submit_stream(
        self,
        request: SendRequest,
        messages: MessageChunks,
        emit: Callable[[SendResponse], Awaitable[None]],
        refused: StatusCode | None,
    ) -> None:
        # The whole answer as one piece: what the app makes of the pieces is tested with the
        # real submitter (tests/integration/test_big_batch.py).
        whole = msgspec.structs.replace(request, message=messages.decode(0, len(messages)))
        await emit(await self.submit(whole))

    async def submit(self, request: SendRequest, seal: AnswerSeal | None = None) -> SendResponse:
        # It writes nothing, so a seal has nothing to commit with.
        if self.broken:
            raise RuntimeError("store is gone")
        self.submitted.append(request)
        login = SERVICES.get(request.serviceId or 0)
        allowed = login == (request.username, request.password)
        return SendResponse(
            batchReference=request.batchReference or "generated-1",
            messageStatus=[
                MessageStatus(
                    statusCode=StatusCode.OK if allowed else StatusCode.ACCESS_ERROR,
                    statusMessage=STATUS_ENQUEUED if allowed else "Access denied",
                    clientReference=message.clientReference,
                    recipient=message.recipient,
                    messageId=f"m{index:011d}" if allowed else None,
                    sessionId=None,
                    sequenceIndex=index,
                )
                for index, message in enumerate(request.message, start=1)
            ],
        )

    async def refusal(self, request: SendRequest) -> StatusCode | None:
        if SERVICES.get(request.serviceId or 0) == (request.username, request.password):
            return None
        return StatusCode.ACCESS_ERROR


@pytest.fixture
def backend() -> DictBackend:
    return DictBackend()


@pytest.fixture
def app(backend: DictBackend) -> App:
    checked: Backend = backend  # the in-test backend satisfies the protocol
    return make_app(checked)


def request(
    method: str,
    target: str,
    body: bytes = b"",
    /,
    **headers: str,
) -> Request:
    path, _, query = target.partition("?")
    return Request(
        method=method,
        path=path,
        query=query,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
        body=body,
    )


def header(response: Response, name: str) -> str | None:
    return next((value for key, value in response.headers if key == name), None)


GOOD_JSON = json.dumps(
    {
        "serviceId": 1000,
        "username": "user",
        "password": "pw",
        "message": [{"recipient": "+4741000000", "content": "Hello", "clientReference": "c1"}],
    }
).encode()
BAD_LOGIN_JSON = GOOD_JSON.replace(b'"pw"', b'"nope"')
GOOD_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<req:request xmlns:req="http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02">'
    b"<serviceId>1000</serviceId><username>user</username><password>pw</password>"
    b"<message><recipient>+4741000000</recipient><content>Hei p\xc3\xa5 deg</content></message>"
    b"</req:request>"
)
GOOD_FORM = (
    b"serviceId=1000&username=user&password=pw&message%5B0%5D.recipient=%2B4741000000"
    b"&message%5B0%5D.content=Hello+there"
)
GOOD_QUERY = (
    "serviceId=1000&username=user&password=pw&message[0].recipient=%2B4799999999"
    "&message[0].content=Hei+p%C3%A5+deg"
)


def xml_statuses(body: bytes) -> list[dict[str, str]]:
    root = ElementTree.fromstring(body)
    assert root.tag == f"{{{RESPONSE_NAMESPACE}}}response"
    return [
        {child.tag: child.text or "" for child in status} for status in root.iter("messageStatus")
    ]


# ---------------------------------------------------------------------------------------------
# POST /gw/rs/sendMessages


async def test_json_in_json_out(app: App, backend: DictBackend) -> None:
    response = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            GOOD_JSON,
            content_type="application/json; charset=UTF-8",
            accept="application/json",
        )
    )
    assert (response.status, header(response, "content-type")) == (200, "application/json")
    assert json.loads(response.body) == {
        "batchReference": "generated-1",
        "messageStatus": [
            {
                "statusCode": 1,
                "statusMessage": "Message enqueued for sending",
                "clientReference": "c1",
                "recipient": "+4741000000",
                "messageId": "m00000000001",
                "sessionId": None,
                "sequenceIndex": 1,
            }
        ],
    }
    assert backend.submitted[0].message[0].content == "Hello"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (GOOD_JSON, "application/json"),
        (GOOD_JSON, "application/json; charset=utf-8"),
        (GOOD_FORM, "application/x-www-form-urlencoded"),
    ],
    ids=["json", "json-utf-8", "form"],
)
async def test_a_utf8_byte_order_mark_is_read_as_the_xml_one_is(
    app: App, backend: DictBackend, body: bytes, content_type: str
) -> None:
    # As a Windows editor saves a file that curl then sends with --data-binary @file.
    response = await app(
        request("POST", "/gw/rs/sendMessages", b"\xef\xbb\xbf" + body, content_type=content_type)
    )
    assert response.status == 200
    assert xml_statuses(response.body)[0]["statusCode"] == "1"
    (submitted,) = backend.submitted
    assert (submitted.serviceId, submitted.message[0].recipient) == (1000, "+4741000000")


@pytest.mark.parametrize(
    ("method", "accept", "content_type"),
    [
        ("POST", "text/xml", "text/xml"),
        ("POST", "application/xml", "application/xml"),
        ("GET", "application/xml", "application/xml"),
        ("GET", "text/xml", "text/xml"),
    ],
)
async def test_an_xml_answer_has_the_type_the_client_accepts(
    app: App, method: str, accept: str, content_type: str
) -> None:
    if method == "POST":
        sent = request(
            method, "/gw/rs/sendMessages", GOOD_JSON, content_type="application/json", accept=accept
        )
    else:
        sent = request(method, f"/gw/rs/sendMessages?{GOOD_QUERY}", accept=accept)
    response = await app(sent)
    assert (response.status, header(response, "content-type")) == (200, content_type)
    assert xml_statuses(response.body)[0]["statusCode"] == "1"


async def test_a_refused_body_has_the_xml_type_the_client_accepts(app: App) -> None:
    response = await app(
        request(
            "POST", "/gw/rs/sendMessages", b"{", content_type="application/json", accept="text/xml"
        )
    )
    assert (response.status, header(response, "content-type")) == (400, "text/xml")


async def test_json_in_xml_out_without_accept(app: App) -> None:
    response = await app(
        request("POST", "/gw/rs/sendMessages", GOOD_JSON, content_type="application/json")
    )
    assert (response.status, header(response, "content-type")) == (200, "application/xml")
    assert xml_statuses(response.body)[0]["messageId"] == "m00000000001"


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml; charset=utf-8"])
async def test_xml_in(app: App, backend: DictBackend, content_type: str) -> None:
    response = await app(
        request("POST", "/gw/rs/sendMessages", GOOD_XML, content_type=content_type)
    )
    assert response.status == 200
    assert xml_statuses(response.body)[0]["statusCode"] == "1"
    assert backend.submitted[0].message[0].content == "Hei på deg"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # No declaration: the Content-Type's charset says how to read it.
        (
            GOOD_XML.split(b"?>", 1)[1].decode().encode("latin-1"),
            "application/xml; charset=iso-8859-1",
        ),
        # A declaration that disagrees: the Content-Type wins (RFC 7303 section 3.2).
        (GOOD_XML.replace(b"UTF-8", b"ISO-8859-1"), "text/xml; charset=utf-8"),
    ],
    ids=["charset-only", "charset-over-declaration"],
)
async def test_xml_in_the_declared_charset(
    app: App, backend: DictBackend, body: bytes, content_type: str
) -> None:
    response = await app(request("POST", "/gw/rs/sendMessages", body, content_type=content_type))
    assert response.status == 200
    assert backend.submitted[0].message[0].content == "Hei på deg"


async def test_xml_in_a_charset_that_is_no_text_encoding_is_415(app: App) -> None:
    response = await app(
        request(
            "POST", "/gw/rs/sendMessages", GOOD_XML, content_type="application/xml; charset=rot13"
        )
    )
    assert response.status == 415


async def test_form_in_json_out(app: App, backend: DictBackend) -> None:
    response = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            GOOD_FORM,
            content_type="application/x-www-form-urlencoded",
            accept="application/json",
        )
    )
    assert json.loads(response.body)["messageStatus"][0]["statusCode"] == 1
    assert backend.submitted[0].message[0].content == "Hello there"


async def test_a_big_form_body_is_decoded_off_the_event_loop(
    app: App, backend: DictBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pairs read, and its messages taken out of their chunks for a request answered
    whole, in a worker thread."""
    decoded_in: list[int] = []
    whole_in: list[int] = []

    def recording(body: bytes | bytearray, encoding: str) -> tuple[SendRequest, MessageChunks]:
        decoded_in.append(threading.get_ident())
        return decode_form_batch(body, encoding)

    def recording_whole(head: SendRequest, messages: MessageChunks) -> SendRequest:
        whole_in.append(threading.get_ident())
        return whole_request(head, messages)

    monkeypatch.setattr(routes, "decode_form_batch", recording)
    monkeypatch.setattr(routes, "whole_request", recording_whole)
    padding = b"&pad=" + b"x" * DECODED_IN_A_THREAD  # a foreign field, ignored
    for body in (GOOD_FORM, GOOD_FORM + padding):
        response = await app(
            request(
                "POST",
                "/gw/rs/sendMessages",
                body,
                content_type="application/x-www-form-urlencoded",
                accept="application/json",
            )
        )
        assert json.loads(response.body)["messageStatus"][0]["statusCode"] == 1
    loop = threading.get_ident()
    assert decoded_in[0] == loop and whole_in[0] == loop
    assert decoded_in[1] != loop and whole_in[1] != loop
    assert [sent.message[0].content for sent in backend.submitted] == ["Hello there"] * 2


async def test_a_big_json_body_is_decoded_off_the_event_loop(
    app: App, backend: DictBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON body with a foreign field is read token by token for a name given twice, Python
    for every member: a big one (a megabyte of foreign members held the loop 0.2 s) is read in
    a worker thread, a small one on the loop."""
    decoded_in: list[int] = []

    def recording(body: bytes | bytearray) -> SendRequest:
        decoded_in.append(threading.get_ident())
        return decode_json(body)

    monkeypatch.setattr(routes, "decode_json", recording)
    members = b",".join(b'"k%d":0' % key for key in range(DECODED_IN_A_THREAD // 8))
    padded = GOOD_JSON[:-1] + b', "pad": {' + members + b"}}"  # a foreign field, ignored
    for body in (GOOD_JSON, padded):
        response = await app(
            request("POST", "/gw/rs/sendMessages", body, content_type="application/json")
        )
        assert response.status == 200
    loop = threading.get_ident()
    assert decoded_in[0] == loop
    assert decoded_in[1] != loop
    assert [sent.message[0].content for sent in backend.submitted] == ["Hello"] * 2


async def test_form_in_a_declared_latin1_charset(app: App, backend: DictBackend) -> None:
    body = "serviceId=1000&message[0].content=blå".encode("latin-1")
    await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            body,
            content_type="application/x-www-form-urlencoded; charset=ISO-8859-1",
        )
    )
    assert backend.submitted[0].message[0].content == "blå"


async def test_form_percent_encoded_in_a_declared_latin1_charset(
    app: App, backend: DictBackend
) -> None:
    # As a browser, Java's URLEncoder or PHP's urlencode write a Latin-1 form: every non-ASCII
    # octet percent-encoded.
    body = b"serviceId=1000&message[0].content=bl%E5+b%E6r&message[0].clientReference=%F8"
    response = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            body,
            content_type="application/x-www-form-urlencoded; charset=ISO-8859-1",
        )
    )
    assert response.status == 200
    (message,) = backend.submitted[0].message
    assert (message.content, message.clientReference) == ("blå bær", "ø")


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x"])
async def test_unsupported_content_type_is_415(app: App, content_type: str | None) -> None:
    headers = {"accept": "application/json"}
    if content_type:
        headers["content_type"] = content_type
    response = await app(request("POST", "/gw/rs/sendMessages", GOOD_JSON, **headers))
    assert response.status == 415
    [status] = json.loads(response.body)["messageStatus"]
    assert status["statusCode"] == 5
    assert status["statusMessage"].startswith("Syntax error: Content-Type: ")


async def test_unparseable_body_is_400_in_the_asked_format(app: App, backend: DictBackend) -> None:
    as_json = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            b'{"serviceId": "abc", "message": [{}]}',
            content_type="application/json",
            accept="application/json",
        )
    )
    assert (as_json.status, header(as_json, "content-type")) == (400, "application/json")
    assert json.loads(as_json.body) == {
        "batchReference": "",
        "messageStatus": [
            {
                "statusCode": 5,
                "statusMessage": "Syntax error: serviceId: expected an integer, got text",
                "clientReference": None,
                "recipient": None,
                "messageId": None,
                "sessionId": None,
                "sequenceIndex": 1,
            }
        ],
    }
    as_xml = await app(
        request("POST", "/gw/rs/sendMessages", b"<request>", content_type="application/xml")
    )
    assert (as_xml.status, header(as_xml, "content-type")) == (400, "application/xml")
    [status] = xml_statuses(as_xml.body)
    assert status["statusCode"] == "5"
    assert status["statusMessage"].startswith("Syntax error: body: malformed XML")
    assert backend.submitted == []


def json_batch(body: bytes, count: int) -> bytes:
    """The JSON request `body` with its one message sent `count` times."""
    request = json.loads(body)
    return json.dumps({**request, "message": request["message"] * count}).encode()


async def whole_body(response: Response) -> bytes:
    """The body of a response, whole or written piece by piece."""
    if response.stream is None:
        return response.body
    pieces: list[bytes] = []

    async def write(piece: bytes) -> None:
        pieces.append(piece)

    await response.stream(write)
    return b"".join(pieces)


# A batch of more messages than the app answers whole (STREAMED_MORE_THAN).
BIG: Final = 1500


@pytest.mark.parametrize("count", [1, BIG])
async def test_bad_login_is_status_2_by_default(app: App, count: int) -> None:
    response = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            json_batch(BAD_LOGIN_JSON, count),
            content_type="application/json",
            accept="application/json",
        )
    )
    assert response.status == 200
    assert response.auth_failure == "user"  # for the failed-login throttle
    statuses = json.loads(await whole_body(response))["messageStatus"]
    assert [status["statusCode"] for status in statuses] == [2] * count


@pytest.mark.parametrize("count", [1, BIG])
async def test_bad_login_can_be_a_401_problem(backend: DictBackend, count: int) -> None:
    app = make_app(backend, auth_failure_problem=True)
    response = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            json_batch(BAD_LOGIN_JSON, count),
            content_type="application/json",
        )
    )
    assert (response.status, header(response, "content-type")) == (
        401,
        "application/problem+json",
    )
    assert response.auth_failure == "user"
    problem = json.loads(response.body)
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == 401
    good = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            json_batch(GOOD_JSON, count),
            content_type="application/json",
        )
    )
    assert good.status == 200


async def test_backend_failure_is_status_6_per_message(
    app: App, backend: DictBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.broken = True
    two = GOOD_JSON.replace(b'"message": [{', b'"message": [{"content": "a"}, {')
    response = await app(
        request(
            "POST",
            "/gw/rs/sendMessages",
            two,
            content_type="application/json",
            accept="application/json",
        )
    )
    assert response.status == 500
    statuses = json.loads(response.body)["messageStatus"]
    assert [(s["statusCode"], s["sequenceIndex"]) for s in statuses] == [(6, 1), (6, 2)]
    assert statuses[1]["clientReference"] == "c1"
    assert "store is gone" in caplog.text


async def test_other_methods_are_405(app: App) -> None:
    response = await app(request("PUT", "/gw/rs/sendMessages", accept="application/json"))
    assert (response.status, header(response, "allow")) == (405, "GET, POST")
    assert json.loads(response.body)["status"] == 405


# ---------------------------------------------------------------------------------------------
# GET /gw/rs/sendMessages


async def test_get_answers_text_xml(app: App, backend: DictBackend) -> None:
    response = await app(request("GET", f"/gw/rs/sendMessages?{GOOD_QUERY}"))
    assert (response.status, header(response, "content-type")) == (200, "text/xml")
    assert xml_statuses(response.body)[0]["recipient"] == "+4799999999"
    assert backend.submitted[0].message[0].content == "Hei på deg"


async def test_get_answers_json_when_asked(app: App) -> None:
    response = await app(
        request("GET", f"/gw/rs/sendMessages?{GOOD_QUERY}", accept="application/json")
    )
    assert header(response, "content-type") == "application/json"
    assert json.loads(response.body)["messageStatus"][0]["statusCode"] == 1


async def test_get_with_pascal_case_names_is_a_syntax_error(app: App) -> None:
    response = await app(
        request("GET", "/gw/rs/sendMessages?Message=hi&Username=u&Password=p&ServiceId=1000")
    )
    assert (response.status, header(response, "content-type")) == (400, "text/xml")
    [status] = xml_statuses(response.body)
    assert (status["statusCode"], status["sequenceIndex"]) == ("5", "1")
    assert status["statusMessage"].startswith("Syntax error: message: ")


# ---------------------------------------------------------------------------------------------
# the rest


async def test_unknown_path_is_404_in_the_asked_format(app: App) -> None:
    as_xml = await app(request("GET", "/nothing"))
    assert (as_xml.status, header(as_xml, "content-type")) == (404, "application/xml")
    root = ElementTree.fromstring(as_xml.body)
    assert root.tag.endswith("}fault") and root.findtext("code") == "404"
    as_json = await app(request("GET", "/nothing", accept="application/json"))
    assert (as_json.status, header(as_json, "content-type")) == (404, "application/problem+json")
    assert json.loads(as_json.body)["status"] == 404


# ---------------------------------------------------------------------------------------------
# Through the listener, as a client sees it


async def test_over_real_sockets(nursery: trio.Nursery, backend: DictBackend) -> None:
    port: int = await nursery.start(serve_http, make_app(backend), "127.0.0.1", 0, HttpLimits())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        posted = await client.post(
            "/gw/rs/sendMessages",
            content=GOOD_JSON,
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        # A raw `+` in the query, as one of the docs' examples sends it.
        got = await client.get(
            "/gw/rs/sendMessages?serviceId=1000&username=user&password=pw"
            "&message[0].recipient=+4799999999&message[0].content=Hi"
        )
    assert posted.json()["messageStatus"][0]["statusCode"] == 1
    assert got.headers["content-type"] == "text/xml"
    assert xml_statuses(got.content)[0]["recipient"] == "+4799999999"
