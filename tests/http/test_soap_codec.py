"""The SOAP codec against the spec's example envelopes (tests/vectors/soap, see SOURCES.md),
faults for every way an envelope can be wrong, hostile XML, charsets, the management operations
in both namespaces, and hypothesis: arbitrary bytes either decode or raise SoapFault."""

from __future__ import annotations

import contextlib
from pathlib import Path
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegw.http.soap import (
    ENVELOPE_NAMESPACE,
    FAULT_NAMESPACE,
    MANAGEMENT_NAMESPACES,
    SEND_NAMESPACE,
    ManagementOperation,
    SoapFault,
    decode_management,
    decode_send,
    encode_fault,
    encode_management_response,
    encode_send_response,
    parse_envelope,
)
from edgegw.model import MessageRequest, MessageStatus, SendRequest, SendResponse

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "soap"
REQUEST_NS = "http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def envelope(body: str, *, namespace: str = ENVELOPE_NAMESPACE, header: str = "") -> bytes:
    return (
        f'<e:Envelope xmlns:e="{namespace}">{header}<e:Body>{body}</e:Body></e:Envelope>'
    ).encode()


def send_body(inner: str) -> str:
    return (
        f'<s:sendMessages xmlns:s="{SEND_NAMESPACE}"><r:request xmlns:r="{REQUEST_NS}">'
        f"{inner}</r:request></s:sendMessages>"
    )


MINIMAL = (
    "<serviceId>1000</serviceId><username>u</username><password>p</password>"
    "<message><recipient>+4741000000</recipient><content>Hi</content></message>"
)


def test_every_vector_has_a_source() -> None:
    listed = (VECTORS / "SOURCES.md").read_text()
    for path in VECTORS.iterdir():
        assert f"| {path.name} |" in listed or path.name == "SOURCES.md", path.name


def test_spec_request_envelope_decodes_like_rest() -> None:
    request = decode_send(parse_envelope(vector("request-spec.xml")))
    assert request == SendRequest(
        serviceId=1000,
        username="u",
        password="p",
        message=[MessageRequest(recipient="+4741000000", content="Hi")],
    )


def test_response_is_the_spec_example_byte_for_byte() -> None:
    response = SendResponse(
        batchReference="b-1",
        messageStatus=[
            MessageStatus(
                statusCode=1,
                statusMessage="Message enqueued for sending",
                clientReference=None,
                recipient="+4741000000",
                messageId="7a0081hfe800",
                sessionId=None,
                sequenceIndex=1,
            )
        ],
    )
    encoded = encode_send_response(response)
    assert encoded == vector("response.xml")
    # The spec prints it indented; without the layout whitespace it is the same document.
    spec = ElementTree.canonicalize(vector("response-spec.xml"), strip_text=True)
    assert ElementTree.canonicalize(encoded, strip_text=True) == spec


def test_batch_and_settings_decode_in_any_order() -> None:
    body = send_body(
        "<message><content>b</content><recipient>+4741000001</recipient>"
        "<settings><parameter><key>flash</key><value>true</value></parameter>"
        "<priority> 3 </priority></settings></message>"
        "<password>p</password><batchReference>b-7</batchReference>"
        "<message><recipient>+4741000002</recipient><content>c</content></message>"
        "<username>u</username><serviceId>1000</serviceId>"
    )
    request = decode_send(parse_envelope(envelope(body)))
    assert request.batchReference == "b-7"
    assert [m.recipient for m in request.message] == ["+4741000001", "+4741000002"]
    settings = request.message[0].settings
    assert settings is not None and settings.priority == 3
    assert [(p.key, p.value) for p in settings.parameter] == [("flash", "true")]


@pytest.mark.parametrize(
    ("body", "faultcode", "words"),
    [
        (b"", "Client", "malformed XML"),
        (b"<e:Envelope", "Client", "malformed XML"),
        (b"<Envelope/>", "VersionMismatch", "SOAP 1.1"),
        (b"<html><body>hi</body></html>", "Client", "not a SOAP Envelope"),
        (envelope(send_body(MINIMAL), namespace="urn:other"), "VersionMismatch", "SOAP 1.1"),
        (
            envelope(send_body(MINIMAL), namespace="http://www.w3.org/2003/05/soap-envelope"),
            "VersionMismatch",
            "SOAP 1.2",
        ),
        (envelope(""), "Client", "holds 0"),
        (envelope(send_body(MINIMAL) * 2), "Client", "holds 2"),
        (envelope('<x:other xmlns:x="urn:x"/>'), "Client", "unknown operation"),
        (envelope(f'<s:sendMessages xmlns:s="{SEND_NAMESPACE}"/>'), "Client", "wraps 0"),
        (envelope(send_body("<serviceId>x</serviceId>")), "Client", "Syntax error: serviceId"),
        (envelope(send_body("<serviceId>1</serviceId>")), "Client", "Syntax error: message"),
        (
            envelope(
                send_body(MINIMAL),
                header='<e:Header><h:auth xmlns:h="urn:h" e:mustUnderstand="1"/></e:Header>',
            ),
            "MustUnderstand",
            "'auth'",
        ),
    ],
)
def test_wrong_envelopes_are_faults(body: bytes, faultcode: str, words: str) -> None:
    with pytest.raises(SoapFault) as caught:
        decode_send(parse_envelope(body))
    assert caught.value.faultcode == faultcode
    assert words in caught.value.reason


@pytest.mark.parametrize(
    ("actor", "refused"),
    [
        (None, True),
        ("http://schemas.xmlsoap.org/soap/actor/next", True),
        ("urn:example:audit-proxy", False),
    ],
)
def test_must_understand_binds_only_headers_addressed_to_us(
    actor: str | None, refused: bool
) -> None:
    """SOAP 1.1 section 4.2.3: mustUnderstand is for the actor the entry names; an entry for
    an intermediary is not ours to refuse."""
    addressed = "" if actor is None else f' e:actor="{actor}"'
    header = f'<e:Header><h:auth xmlns:h="urn:h" e:mustUnderstand="1"{addressed}/></e:Header>'
    body = envelope(send_body(MINIMAL), header=header)
    if refused:
        with pytest.raises(SoapFault) as caught:
            parse_envelope(body)
        assert caught.value.faultcode == "MustUnderstand"
    else:
        assert decode_send(parse_envelope(body)).serviceId == 1000


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaa">]>'
            + envelope(send_body(MINIMAL.replace("Hi", "&a;"))),
            "document type declaration",
        ),
        (
            envelope(
                send_body(MINIMAL)
                + '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd"/>'
            ),
            "XInclude",
        ),
        (
            envelope(send_body(MINIMAL).replace("<message>", "<message>&lol;", 1)),
            "malformed XML",
        ),
    ],
)
def test_dtds_entities_and_xinclude_are_refused(body: bytes, words: str) -> None:
    with pytest.raises(SoapFault) as caught:
        decode_send(parse_envelope(body))
    assert caught.value.faultcode == "Client"
    assert words in caught.value.reason


@pytest.mark.parametrize(
    ("prefix", "encoding", "charset"),
    [
        ("", "latin-1", "iso-8859-1"),
        # A declaration that says otherwise: the Content-Type wins (RFC 7303 section 3.2).
        ('<?xml version="1.0" encoding="UTF-8"?>', "latin-1", "latin1"),
        ("", "utf-16", "utf-16"),
        ('<?xml version="1.0" encoding="ISO-8859-1"?>', "latin-1", None),
    ],
)
def test_an_envelope_is_read_in_its_declared_charset(
    prefix: str, encoding: str, charset: str | None
) -> None:
    text = prefix + envelope(send_body(MINIMAL.replace("Hi", "Blåbær"))).decode()
    request = decode_send(parse_envelope(text.encode(encoding), charset))
    assert request.message[0].content == "Blåbær"


@pytest.mark.parametrize(
    ("body", "charset", "words"),
    [
        (envelope(send_body(MINIMAL)), "rot13", "charset: 'rot13' is not a text encoding"),
        (envelope(send_body(MINIMAL)), "x" * 41, "is not a text encoding"),
        (
            envelope(send_body(MINIMAL.replace("Hi", "Blåbær"))),
            "us-ascii",
            "body: not us-ascii at byte",
        ),
        (
            b'<?xml version="1.0" encoding="hex"?>' + envelope(send_body(MINIMAL)),
            None,
            "charset: the XML declaration's encoding",
        ),
    ],
)
def test_a_charset_that_cannot_be_read_is_a_client_fault(
    body: bytes, charset: str | None, words: str
) -> None:
    with pytest.raises(SoapFault) as caught:
        parse_envelope(body, charset)
    assert (caught.value.faultcode, caught.value.code) == ("Client", 5)
    assert caught.value.reason.startswith("Syntax error: ")
    assert words in caught.value.reason


def test_fault_is_soap_11_with_the_puzzel_detail() -> None:
    encoded = encode_fault(SoapFault("Client", "no batch 'a<b' for this service", 1000))
    root = ElementTree.fromstring(encoded)
    fault = root.find(f"{{{ENVELOPE_NAMESPACE}}}Body/{{{ENVELOPE_NAMESPACE}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext("faultstring") == "no batch 'a<b' for this service"
    assert fault.findtext(f"detail/{{{FAULT_NAMESPACE}}}fault/code") == "1000"
    bare = ElementTree.fromstring(encode_fault(SoapFault("Server", "down")))
    assert bare.find(f".//{{{ENVELOPE_NAMESPACE}}}Fault/detail") is None


@pytest.mark.parametrize("namespace", MANAGEMENT_NAMESPACES)
@pytest.mark.parametrize("operation", list(ManagementOperation))
def test_management_operations_in_both_namespaces(
    namespace: str, operation: ManagementOperation
) -> None:
    reference = (
        ""
        if operation is ManagementOperation.GET_BATCH_LIST
        else "<clientBatchReference>b&amp;1</clientBatchReference>"
    )
    body = (
        f'<m:{operation.value}Request xmlns:m="{namespace}"><serviceId> 1000 </serviceId>'
        f"<username>u</username><password>p</password>{reference}</m:{operation.value}Request>"
    )
    call = decode_management(parse_envelope(envelope(body)))
    assert (call.operation, call.namespace, call.service_id) == (operation, namespace, 1000)
    assert (call.username, call.password) == ("u", "p")
    expected = None if operation is ManagementOperation.GET_BATCH_LIST else "b&1"
    assert call.batch_reference == expected
    answer = ElementTree.fromstring(encode_management_response(call, "<x>1</x>"))
    assert answer.findtext(f".//{{{namespace}}}{operation.value}Response/x") == "1"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "<m:getBatchStatusRequest xmlns:m='{ns}'><serviceId>1</serviceId>"
            "<username>u</username><password>p</password></m:getBatchStatusRequest>",
            "clientBatchReference: required",
        ),
        (
            "<m:getBatchListRequest xmlns:m='{ns}'><serviceId>one</serviceId>"
            "<username>u</username><password>p</password></m:getBatchListRequest>",
            "serviceId",
        ),
        (
            "<m:getBatchListRequest xmlns:m='{ns}'><serviceId>1</serviceId><serviceId>1</serviceId>"
            "</m:getBatchListRequest>",
            "more than once",
        ),
        ("<m:deleteEverything xmlns:m='{ns}'/>", "unknown operation"),
        ("<m:getBatchListRequest xmlns:m='urn:v9'/>", "unknown operation"),
    ],
)
def test_bad_management_calls_are_client_faults(body: str, words: str) -> None:
    with pytest.raises(SoapFault) as caught:
        decode_management(parse_envelope(envelope(body.format(ns=MANAGEMENT_NAMESPACES[1]))))
    assert caught.value.faultcode == "Client"
    assert words in caught.value.reason


def _decode_any(body: bytes, charset: str | None = None) -> None:
    try:
        operation = parse_envelope(body, charset)
    except SoapFault:
        return
    for decode in (decode_send, decode_management):
        with contextlib.suppress(SoapFault):
            decode(operation)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_fault(body: bytes) -> None:
    _decode_any(body)


@given(
    st.binary(max_size=200),
    st.one_of(st.sampled_from(["utf-8", "utf-16", "latin-1", "rot13", "zlib", "idna"]), st.text()),
)
def test_arbitrary_bytes_in_any_charset_decode_or_fault(body: bytes, charset: str) -> None:
    _decode_any(body, charset)


_FRAGMENTS = st.sampled_from(
    [
        "<serviceId>1000</serviceId>",
        "<username>u</username>",
        "<password>p</password>",
        "<message>",
        "</message>",
        "<recipient>+4741000000</recipient>",
        "<content>x</content>",
        "<settings>",
        "</settings>",
        "<priority>9</priority>",
        "<parameter><key>k</key></parameter>",
        "<clientBatchReference>r</clientBatchReference>",
        "&amp;",
        "&#0;",
        "<![CDATA[x]]>",
        "<!-- c -->",
        "<?pi x?>",
        "<x/>",
        "]]>",
        "\x00",
        "é",
    ]
)


@given(st.lists(_FRAGMENTS, max_size=20), st.sampled_from(["send", *MANAGEMENT_NAMESPACES]))
def test_near_valid_envelopes_decode_or_fault(fragments: list[str], target: str) -> None:
    inner = "".join(fragments)
    if target == "send":
        body = envelope(send_body(inner))
    else:
        body = envelope(f'<m:stopBatchRequest xmlns:m="{target}">{inner}</m:stopBatchRequest>')
    _decode_any(body)
