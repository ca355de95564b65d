"""The Puzzel send codec against the spec's examples (tests/vectors/http, see SOURCES.md), the
client tolerances of spec 2.1, hostile XML, and hypothesis: arbitrary input either decodes or
raises RequestSyntaxError."""

from __future__ import annotations

import codecs
import itertools
import json
import re
import sys
import tracemalloc
from collections.abc import Callable, Generator
from pathlib import Path
from random import Random
from typing import Any, TypeVar
from urllib.parse import quote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegw.http import inputs, puzzel
from edgegw.http.inputs import utf8_pieces
from edgegw.http.puzzel import (
    _NESTING,
    BATCH_CHUNK,
    MAX_INDEX,
    RESPONSE_NAMESPACE,
    STEP_CHUNKS,
    XML_PIECE,
    MessageChunks,
    RequestSyntaxError,
    ResponseFormat,
    ResponseWriter,
    UnsupportedCharset,
    _array_chunks,
    _JsonBatch,
    decode_form_batch,
    decode_json,
    decode_json_batch,
    decode_query,
    decode_xml_batch,
    encode_response,
    negotiate,
    syntax_error_response,
    whole_request,
    xml_media_type,
)
from edgegw.model import (
    MessageRequest,
    MessageStatus,
    OriginatorSettings,
    Parameter,
    SendRequest,
    SendResponse,
    SendWindow,
    Settings,
    UnreadableMessage,
)
from edgegw.pipeline.submit import STREAM_CHUNK, SUBMIT_CHUNK

T = TypeVar("T", bytes, str)
R = TypeVar("R")

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "http"


def decode_xml(body: bytes | bytearray) -> SendRequest:
    """An XML send request decoded whole, its messages back in the request."""
    return whole_request(*decode_xml_batch(body))


def decode_form(body: bytes | bytearray) -> SendRequest:
    """A form send request decoded whole, its messages back in the request."""
    return whole_request(*decode_form_batch(body))


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def test_every_vector_names_its_source() -> None:
    listed = set(re.findall(r"^\| ([\w.-]+) \|", (VECTORS / "SOURCES.md").read_text(), re.M))
    present = {path.name for path in VECTORS.iterdir()} - {"SOURCES.md"}
    assert present == listed - {"file"}


# ---------------------------------------------------------------------------------------------
# Requests: golden vectors

SPEC_XML_REQUEST = SendRequest(
    serviceId=1000,
    username="user",
    password="pw",
    message=[
        MessageRequest(
            recipient="+4741000000",
            content="Hello",
            price=0,
            settings=Settings(
                originatorSettings=OriginatorSettings(
                    originator="MyShop", originatorType="Alphanumeric"
                ),
                parameter=[Parameter(key="pid", value="65")],
            ),
        )
    ],
)


def test_json_minimal() -> None:
    assert decode_json(vector("request-minimal.json")) == SendRequest(
        serviceId=1000,
        username="user",
        password="pw",
        message=[MessageRequest(recipient="+4741000000", content="Hello")],
    )


def test_json_full() -> None:
    assert decode_json(vector("request-full.json")) == SendRequest(
        serviceId=1000,
        username="user",
        password="pw",
        batchReference="campaign-7",
        message=[
            MessageRequest(
                recipient="+4741000000",
                content="Din kode er 1234",
                price=0,
                clientReference="otp-1",
                settings=Settings(
                    priority=3,
                    validity=2,
                    differentiator="OTP",
                    invoiceNode="it-dept",
                    autoDetectEncoding=False,
                    originatorSettings=OriginatorSettings(
                        originatorType="ALPHANUMERIC", originator="MyShop"
                    ),
                    sendWindow=SendWindow(startDate="2026-03-21", startTime="09:00:00+01:00"),
                    parameter=[Parameter(key="flash", value="true")],
                ),
            )
        ],
    )


def test_json_from_the_204_client_coerces_parameter_values() -> None:
    request = decode_json(vector("request-client-204.json"))
    settings = request.message[0].settings
    assert settings is not None
    assert settings.safeRemoveNonGsmCharacters is True
    assert settings.parameter == [
        Parameter(key="pid", value="65"),
        Parameter(key="flash", value="true"),
    ]


def test_json_from_the_go_client_takes_parameter_as_a_map() -> None:
    settings = decode_json(vector("request-client-go.json")).message[0].settings
    assert settings is not None
    assert settings.parameter == [Parameter(key="dcs", value="F5")]


@pytest.mark.parametrize(
    "name", ["request.xml", "request-no-namespace.xml", "request-qualified-children.xml"]
)
def test_xml_in_any_namespace_and_order(name: str) -> None:
    assert decode_xml(vector(name)) == SPEC_XML_REQUEST


def test_form_example() -> None:
    assert decode_form(vector("request-form.txt")) == SendRequest(
        serviceId=1000,
        username="user",
        password="pw",
        message=[MessageRequest(recipient="+4741000000", content="Hello there")],
    )


def test_get_examples() -> None:
    minimal = decode_query(vector("request-get-minimal.txt").decode())
    assert minimal.message == [MessageRequest(recipient="+4799999999", content="Hei på deg")]
    assert (minimal.serviceId, minimal.username, minimal.password) == (1000, "u", "p")
    settings = decode_query(vector("request-get-settings.txt").decode()).message[0].settings
    assert settings == Settings(
        originatorSettings=OriginatorSettings(originatorType="ALPHANUMERIC", originator="MyShop"),
        parameter=[Parameter(key="pid", value="68")],
    )


def test_the_same_request_in_every_format() -> None:
    as_json = msgspec.json.encode(SPEC_XML_REQUEST)
    query = (
        "message%5B0%5D.settings.parameter%5B0%5D.value=65&serviceId=1000&username=user"
        "&password=pw&message[0].recipient=%2B4741000000&message[0].content=Hello"
        "&message[0].price=0&message[0].settings.originatorSettings.originator=MyShop"
        "&message[0].settings.originatorSettings.originatorType=Alphanumeric"
        "&message[0].settings.parameter[0].key=pid"
    )
    assert decode_json(as_json) == SPEC_XML_REQUEST
    assert decode_query(query) == SPEC_XML_REQUEST
    assert decode_form(query.encode()) == SPEC_XML_REQUEST


# ---------------------------------------------------------------------------------------------
# Requests: tolerance and refusal


def test_unknown_keys_are_ignored_everywhere() -> None:
    body = (
        b'{"serviceId": 1, "extra": {"a": [1]}, "message": [{"recipient": "+4741000000",'
        b' "content": "x", "priceXml": "<p/>", "unknown": 5, "settings": {"foo": 1}}]}'
    )
    message = decode_json(body).message[0]
    assert (message.content, message.priceXml) == ("x", "<p/>")
    xml = b"<request><x><y/></x><message><content>x</content></message></request>"
    assert decode_xml(xml).message[0].content == "x"
    query = "serviceId=1&utm_source=mail&message[0].content=x&message[0].bogus=1"
    assert decode_query(query).message == [MessageRequest(content="x")]


def test_numbers_and_booleans_as_strings_are_accepted() -> None:
    body = b'{"serviceId": "1000", "message": [{"settings": {"newSession": "true"}}]}'
    request = decode_json(body)
    assert request.serviceId == 1000
    assert request.message[0].settings == Settings(newSession=True)


SETTINGS_FIELDS = [
    "priority",
    "validity",
    "differentiator",
    "invoiceNode",
    "age",
    "newSession",
    "sessionId",
    "autoDetectEncoding",
    "safeRemoveNonGsmCharacters",
    "originatorSettings",
    "gasSettings",
    "sendWindow",
    "parameter",
]


@pytest.mark.parametrize(
    "path",
    [
        ("batchReference",),
        *(("message", 0, name) for name in ("price", "clientReference", "settings", "priceXml")),
        *(("message", 0, "settings", name) for name in SETTINGS_FIELDS),
        ("message", 0, "settings", "sendWindow", "stopDate"),
        ("message", 0, "settings", "sendWindow", "stopTime"),
    ],
    ids=lambda path: ".".join(str(step) for step in path),
)
def test_null_for_an_optional_field_is_the_field_left_out(path: tuple[str | int, ...]) -> None:
    """Spec 2.1: every optional field may be left unset; clients whose JSON mappers write unset
    fields as null (Jackson and Json.NET by default) mean the same."""
    request: dict[str, Any] = {
        "serviceId": 1000,
        "message": [{"recipient": "+4741000000", "content": "x", "settings": {"sendWindow": {}}}],
    }
    place: Any = request
    for step in path[:-1]:
        place = place[step]
    place[path[-1]] = None
    with_null = decode_json(json.dumps(request).encode())
    del place[path[-1]]
    assert with_null == decode_json(json.dumps(request).encode())


def test_one_message_as_an_object_is_a_list_of_one() -> None:
    request = decode_json(b'{"serviceId": 1, "message": {"content": "x"}}')
    assert request.message == [MessageRequest(content="x")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"serviceId": "abc", "message": [{}]}', "serviceId"),
        (b'{"serviceId": 1, "message": []}', "message"),
        (b'{"serviceId": 1}', "message"),
        (b"[]", "request"),
        (b'{"serviceId": 1,', "body"),
        (b"\xff", "body"),
        (b"", "body"),
    ],
)
def test_json_errors_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(RequestSyntaxError) as caught:
        decode_json(body)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("message", "field", "reason"),
    [
        ({"price": "free"}, "price", "expected an integer, got text"),
        ({"settings": {"priority": []}}, "settings.priority", "expected an integer, got a list"),
        (
            {"settings": {"parameter": [{"key": "pid", "value": None}]}},
            "settings.parameter[0].value",
            "expected text, got null",
        ),
        (
            {"settings": {"parameter": {"flash": None}}},
            "settings.parameter[0].value",
            "expected text, got null",
        ),
        ({"content": 5, "recipient": "+4741000001"}, "content", "expected text, got an integer"),
        (
            {"recipient": 4741000001, "clientReference": "r2"},
            "recipient",
            "expected text, got an integer",
        ),
        (5, "message", "expected an object, got an integer"),
    ],
)
def test_a_message_that_does_not_convert_keeps_its_place(
    message: object, field: str, reason: str
) -> None:
    good = {"recipient": "+4741000000", "content": "good"}
    body = json.dumps({"serviceId": 1, "message": [good, message, good]}).encode()
    request = decode_json(body)
    assert request.serviceId == 1
    expected = MessageRequest(recipient="+4741000000", content="good")
    assert request.message[0] == request.message[2] == expected
    odd = request.message[1]
    assert isinstance(odd, UnreadableMessage)
    assert (odd.field, odd.reason) == (field, reason)
    given = message if isinstance(message, dict) else {}
    texts = {name: value for name, value in given.items() if isinstance(value, str)}
    assert (odd.recipient, odd.clientReference) == (
        texts.get("recipient"),
        texts.get("clientReference"),
    )


XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


@pytest.mark.parametrize(
    ("place", "element"),
    [
        ("head", "batchReference"),
        *(("message", name) for name in ("price", "clientReference", "settings", "priceXml")),
        *(("settings", name) for name in SETTINGS_FIELDS),
        ("window", "stopDate"),
        ("window", "stopTime"),
    ],
)
def test_an_xml_element_marked_nil_is_the_element_left_out(place: str, element: str) -> None:
    """XML Schema's xsi:nil, as JAXB and .NET write a null for a nillable element, means what
    JSON's null does: the field left out. It used to be read as its (empty) text."""

    def document(nil: str) -> bytes:
        at = {where: nil if where == place else "" for where in ("head", "message", "settings")}
        window = (
            ""
            if element == "sendWindow"
            else f"<sendWindow><startDate>2030-01-01</startDate>"
            f"{nil if place == 'window' else ''}</sendWindow>"
        )
        return (
            f"<request {XSI}><serviceId>1000</serviceId>{at['head']}<message>"
            f"<recipient>+4741000000</recipient><content>x</content>{at['message']}"
            f"<settings>{at['settings']}{window}</settings></message></request>"
        ).encode()

    assert decode_xml(document(f'<{element} xsi:nil="true"/>')) == decode_xml(document(""))


def test_an_xml_message_that_does_not_convert_keeps_its_place() -> None:
    request = decode_xml(b"<request><message/><message><price>x</price></message></request>")
    assert request.message[0] == MessageRequest()
    assert request.message[1] == UnreadableMessage(
        field="price", reason="expected an integer, got text"
    )


def test_an_xml_field_holding_elements_refuses_its_message_alone() -> None:
    body = (
        b"<request><message><recipient><number>+4741000000</number></recipient></message>"
        b"<message><recipient>+4741000001</recipient><content>x</content></message></request>"
    )
    request = decode_xml(body)
    assert request.message[0] == UnreadableMessage(
        field="recipient", reason="expected text, got an object"
    )
    assert request.message[1] == MessageRequest(recipient="+4741000001", content="x")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"<request><serviceId>abc</serviceId><message/></request>", "serviceId"),
        (b"<request><serviceId>1</serviceId></request>", "message"),
        (b"<response><serviceId>1</serviceId></response>", "request"),
        (b"<request><serviceId>1</serviceId><serviceId>2</serviceId></request>", "serviceId"),
        (b"<request><username><b>x</b></username></request>", "username"),
        (b"<request><message>", "body"),
        (b"not xml", "body"),
    ],
)
def test_xml_errors_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml(body)
    assert caught.value.field == field


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<request><serviceId>1</serviceId><message><content>&lol3;</content></message></request>"""


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml(BILLION_LAUGHS)
    assert caught.value.field == "body"


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        "<request><message><content>&x;</content></message></request>"
    ).encode()
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml(body)
    assert "TOP-SECRET" not in str(caught.value)


def test_form_plus_is_a_space_but_a_lost_plus_on_the_recipient_comes_back() -> None:
    request = decode_query("message[0].recipient=+4799999999&message[0].content=a+b%2Bc")
    assert request.message == [MessageRequest(recipient="+4799999999", content="a b+c")]


def test_a_lost_plus_on_an_international_originator_comes_back_too() -> None:
    settings = "message[0].settings.originatorSettings"
    request = decode_query(
        f"message[0].recipient=+4799999999&{settings}.originatorType=INTERNATIONAL"
        f"&{settings}.originator=+4741000000"
    )
    assert request.message[0].settings == Settings(
        originatorSettings=OriginatorSettings(
            originatorType="INTERNATIONAL", originator="+4741000000"
        )
    )


def test_a_blank_before_a_number_written_with_spaces_is_no_lost_plus() -> None:
    # " 41 00 00 00" is as likely a national number typed after a blank as "+41 ..." with its
    # + lost: read as international it would go to another country, so it is left as it is
    # (and refused as no international number).
    request = decode_query("message[0].recipient=+41+00+00+00")
    assert request.message[0].recipient == " 41 00 00 00"


def test_form_recipient_with_letters_is_left_alone() -> None:
    request = decode_query("message[0].recipient=+47abc")
    assert request.message[0].recipient == " 47abc"


def test_form_names_are_case_sensitive() -> None:
    # The 3.0.1 client's PascalCase GET names nothing we know: no message, a syntax error.
    with pytest.raises(RequestSyntaxError) as caught:
        decode_query("Message=hi&Password=p&Username=u&BatchReference=b&ServiceId=1")
    assert caught.value.field == "message"


def test_an_index_with_leading_zeros_is_its_number() -> None:
    request = decode_query("message[0].content=a&message[0000001].content=b")
    assert [m.content for m in request.message] == ["a", "b"]


def test_many_messages_and_parameters_keep_their_order() -> None:
    pairs = [f"message[{i}].content=m{i}" for i in reversed(range(12))]
    pairs += [f"message[3].settings.parameter[{i}].key=k{i}" for i in range(11)]
    pairs += [f"message[3].settings.parameter[{i}].value=v{i}" for i in range(11)]
    request = decode_query("&".join(pairs))
    assert [m.content for m in request.message] == [f"m{i}" for i in range(12)]
    settings = request.message[3].settings
    assert settings is not None
    assert [p.key for p in settings.parameter] == [f"k{i}" for i in range(11)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("message[1].content=x", "message[0]"),
        ("message[0].content=x&message[2].content=y", "message[1]"),
        (
            "message[0].settings.parameter[1].key=a",
            "message[0].settings.parameter[0]",
        ),
        (f"message[{MAX_INDEX + 1}].content=x", f"message[{MAX_INDEX + 1}].content"),
        # Not taken for a foreign name and dropped: a message the client sent is never lost.
        ("message[0].content=x&message[1000000].content=y", "message[1000000].content"),
        (f"message[{'9' * 5000}].content=x", f"message[{'9' * 5000}].content"),
        ("message.content=x", "message.content"),
        ("message[0]=x", "message[0]"),
        ("serviceId[0]=1&message[0].content=x", "serviceId[0]"),
        ("serviceId.x=1&message[0].content=x", "serviceId.x"),
        ("message[0].settings=x", "message[0].settings"),
        ("message[0].content=a&message[0].content=b", "message[0].content"),
        ("message[0].settings..priority=1", "message[0].settings..priority"),
        ("serviceId=ten&message[0].content=x", "serviceId"),
        ("message[0].content=%FF", "query"),
    ],
)
def test_query_errors_name_the_field(query: str, field: str) -> None:
    with pytest.raises(RequestSyntaxError) as caught:
        decode_query(query)
    assert caught.value.field == field


def test_form_body_that_is_not_utf8() -> None:
    with pytest.raises(RequestSyntaxError) as caught:
        decode_form(b"message[0].content=\xe5")
    assert caught.value.field == "body"


# ---------------------------------------------------------------------------------------------
# Responses

SPEC_RESPONSE = SendResponse(
    batchReference="campaign-7",
    messageStatus=[
        MessageStatus(
            statusCode=1,
            statusMessage="Message enqueued for sending",
            clientReference="otp-1",
            recipient="+4741000000",
            messageId="7b00a1c2d300",
            sessionId=None,
            sequenceIndex=1,
        )
    ],
)


def test_json_response_is_the_spec_example() -> None:
    encoded = encode_response(SPEC_RESPONSE, ResponseFormat.JSON)
    assert encoded == vector("response.json")
    assert msgspec.json.decode(vector("response.json"), type=SendResponse) == SPEC_RESPONSE


def test_json_response_has_the_301_client_shape() -> None:
    # The 3.0.1 client reads camelCase keys only and needs JSON numbers for the ints.
    unset = MessageStatus(
        statusCode=2,
        statusMessage="Access denied",
        clientReference=None,
        recipient=None,
        messageId=None,
        sessionId=None,
        sequenceIndex=1,
    )
    response = SendResponse(batchReference="b", messageStatus=[unset])
    document = json.loads(encode_response(response, ResponseFormat.JSON))
    assert list(document) == ["batchReference", "messageStatus"]
    status = document["messageStatus"][0]
    assert list(status) == [
        "statusCode",
        "statusMessage",
        "clientReference",
        "recipient",
        "messageId",
        "sessionId",
        "sequenceIndex",
    ]
    assert status["statusCode"] == 2 and type(status["statusCode"]) is int
    assert status["sessionId"] is None and status["clientReference"] is None


def _xml_shape(document: bytes) -> tuple[str, list[tuple[str, object]]]:
    """The response tree without layout whitespace, as (root tag, [(child, text or children)])."""
    root = ElementTree.fromstring(document)

    def shape(element: ElementTree.Element) -> object:
        if len(element):
            return [(child.tag, shape(child)) for child in element]
        return element.text or ""

    return root.tag, [(child.tag, shape(child)) for child in root]


def test_xml_response_is_the_spec_example() -> None:
    response = SendResponse(
        batchReference="0c2c002f-ccc6-4c7b-86e1-c7871b1c98b3",
        messageStatus=SPEC_RESPONSE.messageStatus,
    )
    encoded = encode_response(response, ResponseFormat.XML)
    assert encoded == vector("response.xml")
    assert _xml_shape(encoded) == _xml_shape(vector("response-spec.xml"))
    assert encoded.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>')
    assert _xml_shape(encoded)[0] == f"{{{RESPONSE_NAMESPACE}}}response"


def test_xml_response_escapes_and_omits_nulls() -> None:
    hostile = MessageStatus(
        statusCode=5,
        statusMessage="Syntax error: content: <b>&amp;</b>\x00\r",
        clientReference="a]]>b",
        recipient=None,
        messageId=None,
        sessionId=None,
        sequenceIndex=1,
    )
    encoded = encode_response(
        SendResponse(batchReference="x&y", messageStatus=[hostile]), ResponseFormat.XML
    )
    root = ElementTree.fromstring(encoded)
    assert root.findtext("batchReference") == "x&y"
    status = root.find("messageStatus")
    assert status is not None
    assert [child.tag for child in status] == [
        "statusCode",
        "statusMessage",
        "clientReference",
        "sequenceIndex",
    ]
    assert status.findtext("statusMessage") == "Syntax error: content: <b>&amp;</b>\ufffd\r"
    assert status.findtext("clientReference") == "a]]>b"


def test_syntax_error_response() -> None:
    response = syntax_error_response(RequestSyntaxError("serviceId", "Expected `int`"))
    assert msgspec.json.decode(encode_response(response, ResponseFormat.JSON)) == {
        "batchReference": "",
        "messageStatus": [
            {
                "statusCode": 5,
                "statusMessage": "Syntax error: serviceId: Expected `int`",
                "clientReference": None,
                "recipient": None,
                "messageId": None,
                "sessionId": None,
                "sequenceIndex": 1,
            }
        ],
    }


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ResponseFormat.XML),
        ("", ResponseFormat.XML),
        ("*/*", ResponseFormat.XML),
        ("application/xml", ResponseFormat.XML),
        ("text/xml", ResponseFormat.XML),
        ("text/html", ResponseFormat.XML),
        ("application/json", ResponseFormat.JSON),
        ("Application/JSON; charset=utf-8", ResponseFormat.JSON),
        ("application/json, text/plain, */*", ResponseFormat.JSON),
        ("application/json, application/xml", ResponseFormat.JSON),
        ("application/xml, application/json", ResponseFormat.XML),
        ("application/xml;q=0.5, application/json", ResponseFormat.JSON),
        ("application/json;q=0.5, application/xml", ResponseFormat.XML),
        ("application/json;q=0, */*", ResponseFormat.XML),
        ("application/json;q=oops", ResponseFormat.XML),
        ("application/*", ResponseFormat.XML),
    ],
)
def test_negotiate(accept: str | None, expected: ResponseFormat) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "default/xml"),
        ("*/*", "default/xml"),
        ("application/json", "default/xml"),
        ("text/xml", "text/xml"),
        ("Text/XML; charset=utf-8", "text/xml"),
        ("text/*", "text/xml"),
        ("application/xml", "application/xml"),
        ("application/xml, text/xml", "application/xml"),
        ("text/xml, application/xml", "text/xml"),
        ("application/xml;q=0.5, text/xml", "text/xml"),
        ("text/xml;q=0, */*", "application/xml"),
        ("text/xml;q=0", "default/xml"),
    ],
)
def test_an_xml_answer_has_the_xml_type_accept_prefers(accept: str | None, expected: str) -> None:
    # A client that accepts only text/xml must not get application/xml (RFC 9110 12.5.1).
    assert xml_media_type(accept, "default/xml") == expected


# ---------------------------------------------------------------------------------------------
# Arbitrary input: decode, or raise the one error type


def decodes_or_refuses(decoder: Callable[[T], SendRequest], data: T) -> None:
    try:
        request = decoder(data)
    except RequestSyntaxError as exc:
        assert exc.field
        assert exc.reason
        return
    assert isinstance(request, SendRequest)
    assert request.message


@given(st.binary(max_size=512))
def test_json_arbitrary_bytes(body: bytes) -> None:
    decodes_or_refuses(decode_json, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["serviceId", "message", "settings", "parameter", "key", "value", "content", "priority"]
)
json_trees = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=4),
    max_leaves=20,
)


@given(json_trees)
def test_json_arbitrary_documents(tree: object) -> None:
    decodes_or_refuses(decode_json, json.dumps(tree).encode())


# Documents whose objects are written as lists of (name, value) pairs, so that a name may come
# twice; strings with the characters the quick count of colons looks at.
json_pairs_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=':"\\ab\u00e5', max_size=6),
    lambda inner: (
        st.tuples(st.just("array"), st.lists(inner, max_size=3))
        | st.tuples(
            st.just("object"),
            st.lists(
                st.tuples(field_names | st.sampled_from(["recipient", "x:y"]), inner), max_size=4
            ),
        )
    ),
    max_leaves=16,
)


def written(document: object, ascii_only: bool) -> str:
    if isinstance(document, tuple):
        kind, items = document
        if kind == "array":
            return "[" + ", ".join(written(item, ascii_only) for item in items) + "]"
        return (
            "{"
            + ",".join(
                f"{json.dumps(name, ensure_ascii=ascii_only)} :{written(value, ascii_only)}"
                for name, value in items
            )
            + "}"
        )
    return json.dumps(document, ensure_ascii=ascii_only)


def repeats_a_name(document: object) -> bool:
    if not isinstance(document, tuple):
        return False
    kind, items = document
    if kind == "array":
        return any(repeats_a_name(item) for item in items)
    names = [name for name, _ in items]
    return len(set(names)) < len(names) or any(repeats_a_name(value) for _, value in items)


@given(
    st.tuples(st.just("object"), st.lists(st.tuples(field_names, json_pairs_documents))),
    st.booleans(),
)
def test_json_refuses_a_name_given_twice_and_only_that(document: object, ascii_only: bool) -> None:
    try:
        decode_json(written(document, ascii_only).encode())
    except RequestSyntaxError as exc:
        assert (exc.reason == "given more than once") == repeats_a_name(document)
    else:
        assert not repeats_a_name(document)


@given(st.binary(max_size=512))
def test_xml_arbitrary_bytes(body: bytes) -> None:
    decodes_or_refuses(decode_xml, body)


xml_names = st.sampled_from(
    ["request", "message", "settings", "parameter", "key", "value", "serviceId", "price", "x"]
)
xml_trees: st.SearchStrategy[str] = st.recursive(
    st.text(alphabet="ab1 &<", max_size=5).map(
        lambda text: text.replace("&", "&amp;").replace("<", "&lt;")
    ),
    lambda inner: st.tuples(xml_names, st.lists(inner, max_size=3)).map(
        lambda node: f"<{node[0]}>{''.join(node[1])}</{node[0]}>"
    ),
    max_leaves=15,
)


@given(xml_trees)
def test_xml_arbitrary_documents(document: str) -> None:
    decodes_or_refuses(decode_xml, f"<request>{document}</request>".encode())


query_parts = st.lists(
    st.tuples(
        st.lists(
            st.tuples(
                st.sampled_from(["message", "settings", "parameter", "key", "value", "x", ""]),
                st.none() | st.integers(min_value=0, max_value=3),
            ),
            min_size=1,
            max_size=4,
        ).map(lambda segs: ".".join(n if i is None else f"{n}[{i}]" for n, i in segs)),
        st.text(max_size=5),
    ),
    max_size=8,
)


@given(query_parts)
def test_query_arbitrary_keys(pairs: list[tuple[str, str]]) -> None:
    decodes_or_refuses(decode_query, "&".join(f"{key}={value}" for key, value in pairs))


@given(st.binary(max_size=256))
def test_form_arbitrary_bytes(body: bytes) -> None:
    decodes_or_refuses(decode_form, body)


@given(st.text(max_size=64))
def test_negotiate_arbitrary_accept(accept: str) -> None:
    assert negotiate(accept) in (ResponseFormat.JSON, ResponseFormat.XML)


# ---------------------------------------------------------------------------------------------
# Round trips: any request, written as JSON, XML, form and query, decodes to itself

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n&<>+%[]."),
    max_size=12,
)
ints = st.integers(min_value=-(2**31), max_value=2**31)
maybe_text = st.none() | texts
settings_strategy = st.builds(
    Settings,
    priority=ints,  # forms cannot express an empty structure, so each has one field set
    validity=st.none() | ints,
    differentiator=maybe_text,
    newSession=st.none() | st.booleans(),
    sessionId=maybe_text,
    originatorSettings=st.none()
    | st.builds(OriginatorSettings, originator=texts, originatorType=maybe_text),
    sendWindow=st.none() | st.builds(SendWindow, startDate=texts, stopTime=maybe_text),
    parameter=st.lists(st.builds(Parameter, key=texts, value=texts), max_size=3),
)
requests = st.builds(
    SendRequest,
    serviceId=st.none() | ints,
    username=maybe_text,
    password=maybe_text,
    batchReference=maybe_text,
    message=st.lists(
        st.builds(
            MessageRequest,
            # A recipient of spaces and digits would be read as a lost `+` (spec 2.4).
            recipient=maybe_text.filter(lambda r: r is None or not r.startswith(" ")),
            content=texts,
            price=st.none() | ints,
            clientReference=maybe_text,
            settings=st.none() | settings_strategy,
            priceXml=maybe_text,
        ),
        min_size=1,
        max_size=3,
    ),
)


def _flatten(prefix: str, value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [
            pair
            for key, item in value.items()
            for pair in _flatten(f"{prefix}.{key}" if prefix else key, item)
        ]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _flatten(f"{prefix}[{i}]", item)]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def as_query(request: SendRequest) -> str:
    pairs = _flatten("", msgspec.to_builtins(request))
    return "&".join(f"{quote(key, safe='[].')}={quote(value, safe='')}" for key, value in pairs)


def _xml_element(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        inner = "".join(_xml_element(key, item) for key, item in value.items())
    elif isinstance(value, list):
        return "".join(_xml_element(name, item) for item in value)
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value)).replace("\r", "&#13;")
    return f"<{name}>{inner}</{name}>"


def as_xml(request: SendRequest) -> bytes:
    body = _xml_element("req:request", msgspec.to_builtins(request))
    body = body.replace(
        "<req:request>", '<req:request xmlns:req="http://example.invalid/any-namespace">', 1
    )
    return body.encode()


@given(requests)
def test_round_trip_in_every_format(request: SendRequest) -> None:
    assert decode_json(msgspec.json.encode(request)) == request
    assert decode_xml(as_xml(request)) == request
    query = as_query(request)
    assert decode_query(query) == request
    assert decode_form(query.encode()) == request


@pytest.mark.parametrize("fmt", list(ResponseFormat))
@pytest.mark.parametrize("cuts", [(0, 5), (0, 0, 2, 2, 5), (0, 2, 5, 5), (0, 1, 2, 3, 4, 5)])
def test_an_answer_written_in_pieces_is_the_whole_answer(
    fmt: ResponseFormat, cuts: tuple[int, ...]
) -> None:
    statuses = [
        MessageStatus(
            statusCode=1 if index % 2 else 5,
            statusMessage='<&> "quoted"',
            clientReference=None if index % 2 else f"ref {index}",
            recipient="+4741000000",
            messageId=f"m{index}" if index % 2 else None,
            sessionId=None,
            sequenceIndex=index + 1,
        )
        for index in range(5)
    ]
    whole = SendResponse(batchReference='b"1&', messageStatus=statuses)
    writer = ResponseWriter(fmt)
    pieces = [
        writer.piece(SendResponse(batchReference=whole.batchReference, messageStatus=statuses[a:b]))
        for a, b in itertools.pairwise(cuts)
    ]
    assert b"".join(pieces) + writer.end() == encode_response(whole, fmt)


def finish(steps: Generator[None, None, R]) -> R:
    """What a generator of steps returns, run to its end."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: R = done.value
            return result


def split_batch(body: bytes, more_than: int) -> tuple[SendRequest, MessageChunks] | None:
    return finish(decode_json_batch(body, more_than))


def test_a_big_json_batch_is_decoded_a_chunk_at_a_time() -> None:
    messages = [{"recipient": f"+47{41000000 + i}", "content": f"m{i}"} for i in range(12)]
    body = json.dumps({"serviceId": 1, "username": "u", "message": messages}).encode()
    batch = split_batch(body, more_than=10)
    assert batch is not None
    head, chunks = batch
    assert head.serviceId == 1 and head.username == "u" and head.message == []
    assert len(chunks) == 12
    assert chunks.decode(10, 20) == decode_json(body).message[10:]
    assert split_batch(body, more_than=12) is None  # few enough to decode whole
    # A message that needs the tolerant pass, or does not decode, leaves the body to decode_json.
    listed = [*messages, {"settings": {"parameter": {"key": "dcs", "value": "08"}}}]
    tolerant = json.dumps({"serviceId": 1, "message": listed}).encode()
    assert split_batch(tolerant, more_than=10) is None
    broken = json.dumps({"serviceId": 1, "message": [*messages, {"recipient": [1]}]}).encode()
    assert split_batch(broken, more_than=10) is None


# Any JSON value, to nest in a message's unknown fields (which are ignored, so that a message
# may hold anything); strings with the characters that end or escape a JSON string or nest.
_TRICKY_TEXT = st.text(alphabet=st.sampled_from('ab"\\{}[],: \n\u00e9\u20ac\U0001f600'))
_JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY_TEXT, inner, max_size=3),
    max_leaves=12,
)
_MESSAGE_JSON = st.fixed_dictionaries(
    {"recipient": _TRICKY_TEXT, "content": _TRICKY_TEXT},
    optional={
        "clientReference": _TRICKY_TEXT,
        "settings": st.fixed_dictionaries(
            {
                "parameter": st.lists(
                    st.fixed_dictionaries({"key": _TRICKY_TEXT, "value": _TRICKY_TEXT})
                )
            }
        ),
        "extra": _JSON_VALUE,
        "deep": st.integers(1, 12).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    },
)


@given(
    kinds=st.lists(_MESSAGE_JSON, min_size=1, max_size=4),
    count=st.integers(1, 3 * BATCH_CHUNK + 1),
    layout=st.sampled_from([{}, {"indent": 2}, {"separators": (",", ":")}, {"indent": "\t"}]),
    ascii_only=st.booleans(),
    cut=st.tuples(st.integers(0, 400), st.integers(0, 400)),
)
def test_a_streamed_json_batch_decodes_to_the_messages_decode_json_gives(
    kinds: list[dict[str, object]],
    count: int,
    layout: dict[str, object],
    ascii_only: bool,
    cut: tuple[int, int],
) -> None:
    """Whatever the texts hold (quotes, backslashes, brackets), however deep a message nests
    (past the split pattern's depth, where msgspec splits the array) and however the JSON is
    laid out, the chunks are the messages decode_json decodes, in order."""
    messages = [kinds[index % len(kinds)] for index in range(count)]
    request = {"serviceId": 1, "password": "p", "message": messages}
    body = json.dumps(request, ensure_ascii=ascii_only, **layout).encode()  # type: ignore[arg-type]
    whole = decode_json(body)
    batch = split_batch(body, more_than=0)
    assert batch is not None
    head, chunks = batch
    assert head == msgspec.structs.replace(whole, message=[])
    assert len(chunks) == count
    assert chunks.decode(0, count) == whole.message
    start, stop = sorted(cut)
    assert chunks.decode(start, stop) == whole.message[start:stop]
    # Messages no deeper than the split pattern's depth are split by it, not by msgspec.
    array = memoryview(msgspec.json.decode(body, type=_JsonBatch).message)
    fits = max(_depth(message) for message in messages[: len(kinds)]) <= _NESTING
    assert (finish(_array_chunks(array)) is not None) == fits


def _depth(value: object) -> int:
    """How many objects and arrays deep `value` is (a flat message is 1)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_a_streamed_batch_holds_no_object_a_message() -> None:
    """What a JSON batch of 20,000 messages keeps while it is streamed, beyond its body: a
    few offsets a chunk (an object per message would be 56 bytes, more than a tiny message's
    50 bytes of JSON). Every other message has `settings.parameter`, the deepest a message
    that the spec describes nests."""
    parameters = {"parameter": [{"key": "dcs", "value": "F5"}]}
    messages = [
        {
            "recipient": f"+47{41000000 + i}",
            "content": "Tiny",
            **({"settings": parameters} if i % 2 else {}),
        }
        for i in range(20000)
    ]
    body = json.dumps({"serviceId": 1, "message": messages}).encode()
    tracemalloc.start()
    try:
        batch = split_batch(body, more_than=1000)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert batch is not None and len(batch[1]) == 20000
    assert held < 0.01 * len(body), f"{held} bytes held for a body of {len(body)}"


def test_a_batch_chunk_is_the_submitters_chunk() -> None:
    """Each chunk the submitter decodes is one slice of the body."""
    assert BATCH_CHUNK == SUBMIT_CHUNK == STREAM_CHUNK


@pytest.mark.parametrize(
    "odd",
    [5, "text", None, [{"recipient": "+4741000000"}], {"recipient": [1]}],
    ids=["number", "string", "null", "array", "bad field"],
)
def test_a_big_batch_with_a_message_that_does_not_decode_is_left_to_decode_json(
    odd: object,
) -> None:
    messages: list[object] = [{"recipient": "+4741000000", "content": "m"}] * 250
    messages[170] = odd
    body = json.dumps({"serviceId": 1, "message": messages}).encode()
    assert split_batch(body, more_than=100) is None
    request = decode_json(body)
    assert len(request.message) == 250
    assert [i for i, m in enumerate(request.message) if isinstance(m, UnreadableMessage)] == [170]


@pytest.mark.parametrize(("count", "streamed"), [(1000, False), (1001, True)])
def test_a_batch_of_nested_messages_is_streamed_past_the_threshold_only(
    count: int, streamed: bool
) -> None:
    """Messages with a `settings.parameter` have three braces each, so the brace count does
    not tell that a 1000-message batch is too small to stream: msgspec counts it."""
    settings = {"parameter": [{"key": "dcs", "value": "F5"}]}
    messages = [{"recipient": "+4741000000", "content": "m", "settings": settings}] * count
    body = json.dumps({"serviceId": 1, "message": messages}).encode()
    batch = split_batch(body, more_than=1000)
    assert (batch is not None) is streamed
    if batch is not None:
        assert batch[1].decode(0, count) == decode_json(body).message


def test_a_big_batch_is_split_and_checked_a_few_chunks_a_step() -> None:
    """Each step between two yields splits or checks STEP_CHUNKS chunks, so that an event
    loop serves others meanwhile (a 25,000-message batch took 20 ms in one step)."""
    messages = [{"recipient": f"+47{41000000 + i}", "content": "m"} for i in range(25000)]
    body = json.dumps({"serviceId": 1, "message": messages}).encode()
    steps = decode_json_batch(body, more_than=1000)
    taken = 0
    while True:
        try:
            next(steps)
        except StopIteration as split:
            batch = split.value
            break
        taken += 1
    chunks = 25000 // BATCH_CHUNK
    assert taken == 2 * chunks // STEP_CHUNKS  # splitting, then checking
    assert batch is not None and len(batch[1]) == 25000


# ---------------------------------------------------------------------------------------------
# Big XML batches: parsed a piece at a time, each message packed into its chunk as it ends


def xml_batch(count: int, *, head_last: bool = False) -> bytes:
    """A request of `count` messages, every third with a `settings.parameter`; its own fields
    first, or after the messages (the parser takes any order, spec 2.1)."""
    messages = "".join(
        f"<message><recipient>+47{41000000 + i}</recipient><content>m{i}</content>"
        + (
            "<settings><parameter><key>dcs</key><value>F5</value></parameter></settings>"
            * (i % 3 == 0)
        )
        + "</message>"
        for i in range(count)
    )
    head = "<serviceId> 1000 </serviceId><username>u</username><password>p</password>"
    inside = messages + head if head_last else head + messages
    return f'<req:request xmlns:req="urn:any">{inside}</req:request>'.encode()


@pytest.mark.parametrize("head_last", [False, True])
def test_a_big_xml_batch_is_read_into_chunks(head_last: bool) -> None:
    body = xml_batch(2500, head_last=head_last)
    head, messages = decode_xml_batch(body)
    assert head == SendRequest(serviceId=1000, username="u", password="p")
    assert len(messages) == 2500
    parameter = Settings(parameter=[Parameter(key="dcs", value="F5")])
    expected = [
        MessageRequest(
            recipient=f"+47{41000000 + i}",
            content=f"m{i}",
            settings=parameter if i % 3 == 0 else None,
        )
        for i in range(2500)
    ]
    assert messages.decode(0, 2500) == expected
    assert messages.decode(1950, 2150) == expected[1950:2150]
    assert decode_xml(body) == SendRequest(
        serviceId=1000, username="u", password="p", message=expected
    )


TWO_REFERENCES = "<clientReference>a</clientReference><clientReference>b</clientReference>"


@pytest.mark.parametrize(
    ("mistakes", "field"),
    [
        # The first mistake in the document is named, however many pieces lie between.
        ({1500: "<content>a</content>", 2400: TWO_REFERENCES}, "message[1500].content"),
        ({1500: TWO_REFERENCES, 2400: "<content>a</content>"}, "message[1500].clientReference"),
        # A document that does not parse to its end is refused as malformed, whatever else.
        ({1500: "<content>a</content>", 2499: "<content>"}, "body"),
    ],
)
def test_a_big_xml_batch_names_its_first_mistake(mistakes: dict[int, str], field: str) -> None:
    body = xml_batch(2500).decode()
    for index, extra in mistakes.items():
        message = f"<content>m{index}</content>"
        body = body.replace(message, message + extra, 1)
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml_batch(body.encode())
    assert caught.value.field == field


def test_a_big_xml_batch_with_another_root_is_refused_for_it() -> None:
    body = xml_batch(2500).replace(b"req:request", b"req:response")
    body = body.replace(b"<content>m2000</content>", b"<content>m2000</content><content/>")
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml_batch(body)
    assert caught.value.field == "request"


@given(
    document=xml_trees,
    root=st.sampled_from(["request", "req:request", "response"]),
    tail=st.sampled_from(["", "<", "</x>", "&bad;"]),
    piece=st.integers(1, 40),
)
def test_xml_read_in_pieces_is_read_as_in_one(
    document: str, root: str, tail: str, piece: int
) -> None:
    """Wherever the pieces are cut, the request, or the mistake it is refused for, is the
    same as when the whole body is parsed at once."""
    body = f'<{root} xmlns:req="urn:any">{document}{tail}</{root}>'.encode()

    def outcome() -> object:
        try:
            return decode_xml(body)
        except RequestSyntaxError as exc:
            return (exc.field, exc.reason)

    whole = outcome()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(puzzel, "XML_PIECE", piece)
        assert outcome() == whole


@pytest.mark.parametrize("charset", [None, "utf-8", "iso-8859-1"])
@pytest.mark.parametrize("content", ["Batch", "Blåbær", None], ids=["ascii", "latin", "empty"])
def test_a_big_xml_batch_is_held_packed(content: str | None, charset: str | None) -> None:
    """Decoding holds no element and no tree beyond a piece's: the peak while a batch of
    10,000 messages (or as many empty ones as a megabyte holds) is read stays under twice its
    body, and its packed messages take less than the body (8 and 24 times the body when the
    document was built whole). A body in the charset its Content-Type declares is read in it
    a piece at a time (3 to 7.5 times the body when it was decoded whole first)."""
    if content is None:
        body = b"<request><serviceId>1</serviceId>" + b"<message/>" * 100_000 + b"</request>"
    else:
        text = xml_batch(10_000).decode().replace("<content>m", f"<content>{content}")
        body = text.encode(charset or "utf-8")
    tracemalloc.start()
    try:
        batch = decode_xml_batch(body if charset is None else utf8_pieces(body, charset))
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batch[1]) in (10_000, 100_000)
    assert peak < 2 * len(body), f"{peak} bytes at the peak for a body of {len(body)}"
    assert held < len(body), f"{held} bytes held for a body of {len(body)}"


@pytest.mark.parametrize(
    ("charset", "content"),
    [("utf-8", "ø€🙂"), ("utf-16", "ø€🙂"), ("iso-8859-1", "øæå"), ("windows-1252", "€øæ")],
)
def test_a_body_in_its_declared_charset_is_read_as_its_utf8_text_would_be(
    charset: str, content: str
) -> None:
    """Read a piece at a time, characters cut between pieces included."""
    text = xml_batch(2500).decode().replace("<content>m", f"<content>{content}")
    body = text.encode(charset)
    assert len(body) > 2 * XML_PIECE
    read = whole_request(*decode_xml_batch(utf8_pieces(body, charset)))
    assert read == decode_xml(text.encode())
    assert read.message[7].content == f"{content}7"


@pytest.mark.parametrize("charset", ["utf-16", "utf-32"])
def test_a_body_without_a_byte_order_mark_is_in_the_machines_order(charset: str) -> None:
    """As `bytes.decode` reads it whole, and as a form or JSON body in that charset is."""
    text = xml_batch(10).decode().replace("<content>m", "<content>ø")
    unmarked = text.encode(f"{charset}-{sys.byteorder[0]}e")
    assert whole_request(*decode_xml_batch(utf8_pieces(unmarked, charset))) == decode_xml(
        text.encode()
    )


@given(
    text=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60),
    charset=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "cp1252"]),
    piece=st.integers(1, 9),
)
def test_a_body_cut_anywhere_reads_as_the_whole_body_decoded(
    text: str, charset: str, piece: int
) -> None:
    try:
        body = text.encode(charset)
    except UnicodeEncodeError:
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "XML_PIECE", piece)
        assert b"".join(utf8_pieces(body, charset)).decode() == body.decode(charset)


def test_utf7_is_refused_as_no_charset_for_a_body() -> None:
    # Its decoder, fed a piece at a time, holds back a base64 run as long as the body and
    # decodes it again with every piece; and no HTTP client has a reason to send it.
    with pytest.raises(UnsupportedCharset):
        utf8_pieces(b"+AGEAYgBj-", "utf-7")


def test_bytes_that_do_not_fit_the_declared_charset_are_named_where_they_are() -> None:
    body = bytearray(xml_batch(2500))
    at = XML_PIECE + 5  # in the second piece
    assert body[at : at + 1].isalnum() or body[at : at + 1] in b"<>/:"
    body[at] = 0xFF
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml_batch(utf8_pieces(body, "utf-8"))
    assert (caught.value.field, caught.value.reason) == ("body", f"not utf-8 at byte {at}")
    # A character the first piece cut, its end missing in the second.
    body = bytearray(xml_batch(2500))
    body[XML_PIECE - 1 : XML_PIECE + 1] = "ø".encode()[:1] + b"x"
    with pytest.raises(RequestSyntaxError) as caught:
        decode_xml_batch(utf8_pieces(body, "utf-8"))
    assert caught.value.reason == f"not utf-8 at byte {XML_PIECE - 1}"
    # After a byte-order mark, which the offset counts, in the first piece as in the next.
    for at in (XML_PIECE - 1, XML_PIECE + 1):
        marked = bytearray(codecs.BOM_UTF8 + xml_batch(2500))
        marked[at] = 0xFF
        with pytest.raises(RequestSyntaxError) as caught:
            decode_xml_batch(utf8_pieces(marked, "utf-8-sig"))
        assert caught.value.reason == f"not utf-8-sig at byte {at}"


def test_a_charset_we_cannot_read_is_refused_before_any_byte_is() -> None:
    with pytest.raises(UnsupportedCharset):
        utf8_pieces(b"<request/>", "rot13")


# ---------------------------------------------------------------------------------------------
# Big forms: each message packed once its pairs have been placed


def form_batch(count: int, content: str = "m") -> list[str]:
    """The pairs of a form of `count` messages, every third with a `settings.parameter`."""
    pairs = ["serviceId=1000", "username=u", "password=p"]
    for i in range(count):
        pairs += [
            f"message%5B{i}%5D.recipient=%2B47{41000000 + i}",
            f"message[{i}].content={content}",
        ]
        if i % 3 == 0:
            pairs += [
                f"message[{i}].settings.parameter[0].key=dcs",
                f"message[{i}].settings.parameter[0].value=F5",
            ]
    return pairs


def test_a_big_form_is_read_into_chunks() -> None:
    pairs = form_batch(2500)
    head, messages = decode_form_batch("&".join(pairs).encode())
    assert head == SendRequest(serviceId=1000, username="u", password="p")
    parameter = Settings(parameter=[Parameter(key="dcs", value="F5")])
    expected = [
        MessageRequest(
            recipient=f"+47{41000000 + i}", content="m", settings=parameter if i % 3 == 0 else None
        )
        for i in range(2500)
    ]
    assert messages.decode(0, 2500) == expected
    # Pairs in any order: a message packed is taken up again for a pair of its own.
    shuffled = pairs[::-1][::2] + pairs[::-1][1::2]
    assert decode_form("&".join(shuffled).encode()) == whole_request(head, messages)


def test_a_form_whose_pairs_jump_between_groups_is_packed_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pairs alternating between two groups of messages (a parameter of message 0, one of
    message 100, ...) once packed a group again at every pair, the square of the body in CPU
    before any credentials were looked at; past 8 times the groups on average, they now
    stay unpacked."""
    packed: list[int] = []
    encoder = puzzel._pack

    class Counting:
        def encode(self, value: object) -> bytes:
            packed.append(1)
            return encoder.encode(value)

    monkeypatch.setattr(puzzel, "_pack", Counting())
    pairs = ["serviceId=1", "message[0].recipient=1", f"message[{BATCH_CHUNK}].recipient=2"]
    pairs += [
        f"message[{(n % 2) * BATCH_CHUNK}].settings.parameter[{n // 2}].{field}=x"
        for n in range(400)
        for field in ("key", "value")
    ]
    pairs += [f"message[{n}].recipient={n}" for n in range(1, 2 * BATCH_CHUNK) if n != BATCH_CHUNK]
    head, messages = decode_form_batch("&".join(pairs).encode())
    # While the pairs are read, once a reopening the budget allows (about 8 a
    # group), not once for each of the 400 changes of group; then once a group as a chunk.
    assert len(packed) <= 2 * (8 * 2 + 1) + 2, f"{len(packed)} packs"
    whole = whole_request(head, messages)
    assert len(whole.message) == 2 * BATCH_CHUNK
    for index in (0, BATCH_CHUNK):
        settings = whole.message[index].settings
        assert settings is not None and len(settings.parameter) == 200


@pytest.mark.parametrize("order", ["one pair late", "field by field"])
def test_a_big_form_sent_in_another_order_is_held_packed(order: str) -> None:
    """A pair for a message already packed (a clientReference added at the end, or a form
    written a field at a time for all messages) unpacks its group once more, and the form is
    still held packed: under twice its body at the peak, as in order (7 times when any pair
    out of order kept every group unpacked)."""
    pairs = form_batch(MAX_INDEX + 1)
    if order == "one pair late":
        pairs.append("message%5B0%5D.clientReference=late")
    else:
        pairs = sorted(pairs, key=lambda pair: pair.partition("=")[0].split(".", 1)[-1])
    body = "&".join(pairs).encode()
    tracemalloc.start()
    try:
        batch = decode_form_batch(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(batch[1]) == MAX_INDEX + 1
    assert peak < 2 * len(body), f"{peak} bytes at the peak for a body of {len(body)}"
    read = whole_request(*batch)
    if order == "one pair late":
        assert read.message[0].clientReference == "late"
    else:
        assert read == decode_form("&".join(form_batch(MAX_INDEX + 1)).encode())


@given(requests, st.randoms(use_true_random=False))
def test_a_form_in_any_order_is_the_same_request(request: SendRequest, random: Random) -> None:
    pairs = as_query(request).split("&")
    random.shuffle(pairs)
    assert decode_query("&".join(pairs)) == request


@pytest.mark.parametrize(
    ("form", "field"),
    [
        # A percent-encoding that is not UTF-8 is named first, wherever it is.
        ("message[0].content=a&message[0].content=b&message[1].content=%FF", "body"),
        # Then the first misplaced key, before any gap.
        ("message[2].content=a&message[0].content=a&message[0].content=b", "message[0].content"),
        # A gap in the messages before one in a message's parameters.
        ("message[0].settings.parameter[1].key=a&message[2].content=x", "message[1]"),
        (
            "message[0].settings.parameter[1].key=a&message[1].content=x",
            "message[0].settings.parameter[0]",
        ),
    ],
)
def test_a_form_names_its_first_mistake(form: str, field: str) -> None:
    with pytest.raises(RequestSyntaxError) as caught:
        decode_form_batch(form.encode())
    assert caught.value.field == field


@pytest.mark.parametrize("content", ["Batch", None], ids=["5-character", "empty"])
def test_a_big_form_is_held_packed(content: str | None) -> None:
    """No tree of the whole form is built: the peak while a form of the most messages it may
    hold is read (10,001, with a recipient and a text, or only an empty text) stays under
    twice its body, its text decoded included (10 and 18 times when the tree was built
    whole), and its packed messages take less than the body."""
    if content is None:
        pairs = [f"message%5B{i}%5D.content=" for i in range(MAX_INDEX + 1)]
    else:
        pairs = form_batch(MAX_INDEX + 1, content)
    body = "&".join(pairs).encode()
    tracemalloc.start()
    try:
        batch = decode_form_batch(body)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batch[1]) == MAX_INDEX + 1
    assert peak < 2 * len(body), f"{peak} bytes at the peak for a body of {len(body)}"
    assert held < len(body), f"{held} bytes held for a body of {len(body)}"
