"""The Puzzel SMSGW send codec: JSON, XML, web form and GET query to `SendRequest`, and
`SendResponse` back to JSON or XML. Pure (sans-IO): bytes or text in, model or bytes out; no
sockets, no clock, no logging. Implements spec sections 2.1-2.4 and the status codes of 6.1.
"""

from __future__ import annotations

import enum
import functools
import itertools
import re
from array import array as Array
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, ClassVar, Final, TypeAlias, cast
from urllib.parse import unquote_plus
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml
import defusedxml.ElementTree
import msgspec
import msgspec.inspect

from edgegw.model import (
    MessageRequest,
    MessageStatus,
    SendRequest,
    SendResponse,
    StatusCode,
    UnreadableMessage,
)

__all__ = [
    "BATCH_CHUNK",
    "MAX_INDEX",
    "REQUEST_NAMESPACE",
    "RESPONSE_NAMESPACE",
    "STEP_CHUNKS",
    "XML_PIECE",
    "MessageChunks",
    "RequestSyntaxError",
    "ResponseFormat",
    "ResponseWriter",
    "UnsupportedCharset",
    "decode_form_batch",
    "decode_json",
    "decode_json_batch",
    "decode_query",
    "decode_request_element",
    "decode_xml_batch",
    "encode_response",
    "lost_plus",
    "negotiate",
    "parse_xml",
    "response_children_xml",
    "syntax_error_response",
    "whole_request",
    "xml_media_type",
    "xml_text",
]

REQUEST_NAMESPACE: Final = "http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02"
RESPONSE_NAMESPACE: Final = "http://chimera.intele.com/gw/xsd/SMSGateway/Response/2013/02"

# The highest `message[n]` / `parameter[n]` index a form or query may use. The spec sets no
# batch maximum; the old TCP page advised 1000 messages, so ten times that is generous.
MAX_INDEX: Final = 10_000


class RequestSyntaxError(ValueError):
    """A send request that cannot be decoded at all: answered with HTTP 400 and one
    `statusCode 5` entry (spec 2.3, "unparseable body"). `field` names where it broke."""

    http_status: ClassVar[int] = 400
    status_code: Final = StatusCode.SYNTAX_ERROR

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnsupportedCharset(RequestSyntaxError):
    """A body in a charset we cannot read, declared by `Content-Type` or by the XML declaration:
    HTTP 415 with the same one `statusCode 5` entry."""

    http_status: ClassVar[int] = 415

    def __init__(self, reason: str) -> None:
        super().__init__("charset", reason)


class ResponseFormat(enum.Enum):
    JSON = "json"
    XML = "xml"


# ---------------------------------------------------------------------------------------------
# The request's shape, one table shared by the XML, form and query decoders: each known element
# is a leaf (text), a nested structure, or a repeated structure (`message`, `parameter`). It is
# read from the model's Structs, so a field added there is accepted in every format. Names not
# in it are ignored (official clients send extras, spec 2.1).

_Shape: TypeAlias = "dict[str, _Shape | tuple[_Shape] | None]"


def _shape_of(struct: msgspec.inspect.StructType, scalars: set[str]) -> _Shape:
    shape: _Shape = {}
    for field in struct.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.UnionType):
            kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(kind, msgspec.inspect.StructType):
            shape[field.encode_name] = _shape_of(kind, scalars)
        elif isinstance(kind, msgspec.inspect.ListType) and isinstance(
            kind.item_type, msgspec.inspect.StructType
        ):
            shape[field.encode_name] = (_shape_of(kind.item_type, scalars),)
        else:
            shape[field.encode_name] = None
            if not isinstance(kind, msgspec.inspect.StrType):
                scalars.add(field.encode_name)
    return shape


def _request_shape() -> tuple[_Shape, frozenset[str]]:
    """The shape of `SendRequest`, and the leaves typed as numbers or booleans (whose XML text
    may carry layout whitespace)."""
    scalars: set[str] = set()
    info = cast(msgspec.inspect.StructType, msgspec.inspect.type_info(SendRequest))
    return _shape_of(info, scalars), frozenset(scalars)


_REQUEST, _SCALAR_LEAVES = _request_shape()
_MESSAGE_SHAPE: Final = cast(tuple[_Shape], _REQUEST["message"])[0]


def _convert(tree: dict[str, Any]) -> SendRequest:
    """The generic tree (SOAP's `request` element, a JSON body the typed decoder refused) to
    the model, with strings accepted for numbers and booleans (XML carries nothing else; JSON
    clients are forgiven the same). A message whose fields do not convert becomes an
    UnreadableMessage in its place; the rest of the request still goes."""
    try:
        request = msgspec.convert(tree, SendRequest, strict=False)
    except msgspec.ValidationError as exc:
        error = _from_validation_error(exc)
        messages = tree.get("message")
        if not (error.field.startswith("message[") and isinstance(messages, list)):
            raise error from None
        request = _convert_each(tree, messages)
    if not request.message:
        raise _no_message()
    return request


def _convert_each(tree: dict[str, Any], messages: list[Any]) -> SendRequest:
    request = _convert_head({**tree, "message": []})
    request.message += map(_convert_message, messages)
    return request


def _convert_head(head: dict[str, Any]) -> SendRequest:
    """A request's own fields (a tree without messages) to the model."""
    try:
        return msgspec.convert(head, SendRequest, strict=False)
    except msgspec.ValidationError as exc:
        raise _from_validation_error(exc) from None


def _no_message() -> RequestSyntaxError:
    return RequestSyntaxError("message", "at least one message is required")


def _convert_message(item: Any) -> MessageRequest:
    """One message's tree to the model, or an UnreadableMessage in its place."""
    try:
        return msgspec.convert(item, MessageRequest, strict=False)
    except msgspec.ValidationError as exc:
        error = _from_validation_error(exc, whole="message")
        fields = item if isinstance(item, dict) else {}
        recipient, reference = fields.get("recipient"), fields.get("clientReference")
        return UnreadableMessage(
            recipient=recipient if isinstance(recipient, str) else None,
            clientReference=reference if isinstance(reference, str) else None,
            field=error.field,
            reason=error.reason,
        )


def _from_validation_error(
    exc: msgspec.ValidationError, whole: str = "request"
) -> RequestSyntaxError:
    """The field msgspec names (`whole` when it names none) and its complaint in plain words:
    `Expected `int | null`, got `str`` becomes `expected an integer, got text`."""
    reason, sep, path = str(exc).rpartition(" - at `")
    if not sep:
        reason, path = path, ""
    field = path.rstrip("`").removeprefix("$").removeprefix(".") or whole
    return RequestSyntaxError(field, _EXPECTED.sub(_plain_types, reason).replace("`", ""))


_EXPECTED = re.compile(r"Expected `([^`]*)`, got `([^`]*)`")
_TYPE_WORDS: Final = {
    "str": "text",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def _plain_types(match: re.Match[str]) -> str:
    expected = [kind for kind in match.group(1).split(" | ") if kind != "null"]
    words = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in expected or ["null"])
    return f"expected {words}, got {_TYPE_WORDS.get(match.group(2), match.group(2))}"


# ---------------------------------------------------------------------------------------------
# Big batches: messages kept compact and decoded a chunk at a time (issue 10 item 7)

# Messages of a batch decoded together: the submitter's chunks (SUBMIT_CHUNK and STREAM_CHUNK of
# edgegw.pipeline.submit) are this size, so that each is one chunk (of JSON, one slice of the
# body).
BATCH_CHUNK: Final = 100


class MessageChunks:
    """The messages of a send request kept compact, BATCH_CHUNK to a chunk (slices of a JSON
    body, or message trees packed as msgpack), and decoded a chunk at a time, so that a big
    batch never holds every decoded message at once (a decoded message takes about four times
    its JSON). The `chunk` it is made with decodes chunk n; every chunk is known to decode."""

    def __init__(self, count: int, chunk: Callable[[int], list[MessageRequest]]) -> None:
        self._count = count
        self._chunk = chunk

    def __len__(self) -> int:
        return self._count

    def decode(self, start: int, stop: int) -> list[MessageRequest]:
        """Messages `start` to `stop` (0-based, `stop` excluded)."""
        stop = min(stop, self._count)
        if start >= stop:
            return []
        first = start // BATCH_CHUNK
        messages: list[MessageRequest] = []
        for number in range(first, (stop - 1) // BATCH_CHUNK + 1):
            messages += self._chunk(number)
        offset = first * BATCH_CHUNK
        return messages[start - offset : stop - offset]


def whole_request(head: SendRequest, messages: MessageChunks) -> SendRequest:
    """The request with every one of its messages decoded."""
    return msgspec.structs.replace(head, message=messages.decode(0, len(messages)))


_packed_trees = msgspec.msgpack.Decoder()
_pack = msgspec.msgpack.Encoder()


class _TreeChunks:
    """Message trees (as the XML and form decoders build them) packed BATCH_CHUNK to a msgpack
    array as they come: a message costs about half its XML that way, against four to five
    times as a tree of Python objects."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._trees: list[dict[str, Any]] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, tree: dict[str, Any]) -> None:
        self._trees.append(tree)
        self._count += 1
        if len(self._trees) == BATCH_CHUNK:
            self._chunks.append(_pack.encode(self._trees))
            self._trees = []

    def messages(self) -> MessageChunks:
        """The messages, the last chunk's trees read as they are (packing fewer than a chunk's
        would only be undone at once)."""
        chunks, trees = self._chunks, self._trees
        self._chunks, self._trees = [], []

        def chunk(number: int) -> list[MessageRequest]:
            if number == len(chunks):
                return _tree_messages(trees)
            return _tree_messages(_packed_trees.decode(chunks[number]))

        return MessageChunks(self._count, chunk)


def _tree_messages(trees: list[dict[str, Any]]) -> list[MessageRequest]:
    try:
        return msgspec.convert(trees, list[MessageRequest], strict=False)
    except msgspec.ValidationError:
        return [_convert_message(tree) for tree in trees]


def _with_messages(
    head: dict[str, Any], messages: _TreeChunks
) -> tuple[SendRequest, MessageChunks]:
    """A request's own fields (`head`, a tree without `message`) to the model, and its
    messages; refused as `_convert` refuses a whole tree (a field of the wrong type, or no
    message at all)."""
    request = _convert_head(head)
    if not len(messages):
        raise _no_message()
    return request, messages.messages()


# ---------------------------------------------------------------------------------------------
# JSON (spec 2.3)

_json_request = msgspec.json.Decoder(SendRequest, strict=False)
_json_encoder = msgspec.json.Encoder()  # requests (counted) and responses


def decode_json(body: bytes | bytearray) -> SendRequest:
    """Decode a JSON send request. The common, well-typed body takes one msgspec call; only a
    body needing the client tolerances of spec 2.1 goes through the generic repair pass. An
    object that gives a name twice is refused (`_repeated_name`)."""
    try:
        request = _json_request.decode(body)
    except msgspec.ValidationError:
        return _decode_json_tolerant(body)
    except msgspec.DecodeError as exc:
        raise RequestSyntaxError("body", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    if _may_repeat_names(body, _json_encoder.encode(request).count(b":")):
        _refuse_repeated_name(body)
    if not request.message:
        raise _no_message()
    return request


class _JsonBatch(msgspec.Struct, kw_only=True):
    """`SendRequest` with its messages left as one raw JSON value (a slice of the body, not a
    copy): msgspec checks the whole document's syntax in one pass, without an object per
    message."""

    serviceId: int | None = None
    username: str | None = None
    password: str | None = None
    batchReference: str | None = None
    message: msgspec.Raw = msgspec.Raw(b"[]")


_json_batch = msgspec.json.Decoder(_JsonBatch, strict=False)
_json_messages = msgspec.json.Decoder(list[MessageRequest], strict=False)
_json_raw_messages = msgspec.json.Decoder(list[msgspec.Raw])

# BATCH_CHUNK messages of a JSON array whose syntax msgspec has checked, in one C-speed match
# (no Python object per message). A string is found by skipping to its next quote (the second
# form is for a quote after a backslash). Objects and arrays nest up to _NESTING deep in a
# message (one with `settings.parameter` is 4 deep), and a closing bracket need not be of the
# opening one's kind, since the document is known to balance them. A message nested deeper or
# one that is not an object stops the match; msgspec then splits the array (`_raw_chunks`).
_NESTING: Final = 6
_STRING: Final = rb'(?:"[^"]*+(?<!\\)"|"[^"\\]*+(?:\\.[^"\\]*+)*+")'
_SPACE: Final = rb"[ \t\n\r]*+"


def _nested(depth: int) -> bytes:
    """The inside of an object or an array holding `depth` - 1 levels of them."""
    inner = rb"|[\[{]" + _nested(depth - 1) + rb"[\]}]" if depth > 1 else b""
    return rb'(?:[^"{}\[\]]++|' + _STRING + inner + rb")*+"


_MESSAGE: Final = rb"\{" + _nested(_NESTING) + rb"\}"
_MESSAGES: Final = re.compile(
    b"%s%s(?:%s,%s%s){0,%d}+%s"
    % (_SPACE, _MESSAGE, _SPACE, _SPACE, _MESSAGE, BATCH_CHUNK - 1, _SPACE),
    re.DOTALL,
)
_COMMA: Final = ord(",")
_OPENING: Final = ord("[")
# A batch with no more braces than this many a message it needs to be streamed is counted by
# msgspec's split into Raw objects first: a batch of nested messages (a `settings.parameter`
# takes three braces) that is too small to stream is then told faster (0.15 us a message)
# than by the pattern (1.4 us), and those objects are dropped before any message is decoded.
_RAW_COUNTED: Final = 4

# Chunks of a batch split or checked between two yields of `decode_json_batch`, so that an
# event loop driving it can serve others meanwhile (a 25,000-message batch took 20 ms).
STEP_CHUNKS: Final = 10

# The number of chunks of an array and the JSON text of chunk `n`, an array of up to
# BATCH_CHUNK messages from message `n * BATCH_CHUNK` on.
_Chunks: TypeAlias = "tuple[int, Callable[[int], bytes]]"


def _array_chunks(array: memoryview) -> Generator[None, None, _Chunks | None]:
    """The chunks of a JSON array as slices of it between offsets (8 bytes a chunk), or None
    where _MESSAGES does not apply; yields every STEP_CHUNKS chunks."""
    ends = Array("q")
    position, last = 1, len(array) - 1  # inside the brackets
    while position < last:
        match = _MESSAGES.match(array, position, last)
        if match is None:
            return None
        position = match.end()
        ends.append(position)
        if position < last:
            if array[position] != _COMMA:
                return None  # a message _MESSAGES cannot match follows
            position += 1
        if not len(ends) % STEP_CHUNKS:
            yield

    def chunk(number: int) -> bytes:
        start = ends[number - 1] + 1 if number else 1
        return b"[" + array[start : ends[number]] + b"]"

    return len(ends), chunk


def _raw_chunks(raw: list[msgspec.Raw]) -> _Chunks:
    """The chunks of a JSON array split by msgspec: an object per message held (48 bytes,
    and 8 for its place in the list)."""

    def chunk(number: int) -> bytes:
        start = number * BATCH_CHUNK
        return b"[" + b",".join(raw[start : start + BATCH_CHUNK]) + b"]"

    return -(-len(raw) // BATCH_CHUNK), chunk


# A name given twice in one object: msgspec, as most JSON parsers, keeps the last value and says
# nothing, so `{"recipient": "+4741000001", "recipient": "+4741000002"}` would go to the second
# number. I-JSON (RFC 7493 section 2.3) forbids such objects; the XML, form and GET decoders
# refuse a field given twice, and so does JSON, at any depth, with the same 400 and status 5.
# Finding one takes a Python step per token (`_repeated_name`, about 1.5 us a message), so a
# body is first counted at C speed (`_may_repeat_names`, about 0.1 us a message).

# Tokens of a JSON text known to be well formed: strings, and the punctuation around them
# (numbers, literals and white space, between them, are skipped).
_JSON_TOKEN: Final = re.compile(_STRING + rb"|[{}\[\],:]")
_QUOTE: Final = ord('"')
_COLON: Final = ord(":")
_COMMA_TOKEN: Final = ord(",")
_OBJECT: Final = ord("{")
_ARRAY: Final = ord("[")
# Tokens `_repeated_name` reads between two yields (about a thousand small messages).
STEP_TOKENS: Final = 10_000


def _may_repeat_names(body: bytes | bytearray, held: int) -> bool:
    """Whether an object of the well-formed JSON `body` may give a name twice; `held`: the
    colons of its decoded request encoded again (only the fields given, `omit_defaults`). Each
    member of an object has its colon, and a colon inside a string is one of the body's too: a
    body whose names are all known and written once, none null, has exactly the colons of its
    encoding, and one that repeats a name has more. A colon written as the escape \\u003a is
    the encoding's alone, so a body with such an escape is always looked at."""
    return body.count(b":") != held or b"\\u003" in body


def _refuse_repeated_name(body: bytes | bytearray) -> None:
    """Raise the refusal of the first name an object of the well-formed JSON `body` repeats."""
    finding = _repeated_name(body)
    while True:
        try:
            next(finding)
        except StopIteration as found:
            error: RequestSyntaxError | None = found.value
            break
    if error is not None:
        raise error


def _repeated_name(body: bytes | bytearray) -> Generator[None, None, RequestSyntaxError | None]:
    """The refusal of the first name an object of the well-formed JSON `body` gives twice,
    naming its path as the other decoders do (`message[1].recipient`), or None; yields every
    STEP_TOKENS tokens."""
    names: list[set[str] | None] = []  # per open object its names so far; None for an array
    places: list[str] = []  # per open object or array, the member or `[item]` being read
    string = b""
    for count, match in enumerate(_JSON_TOKEN.finditer(body), 1):
        token = match.group()
        kind = token[0]
        if kind == _QUOTE:
            string = token
        elif kind == _COLON:
            name: str = msgspec.json.decode(string)
            held = names[-1]
            assert held is not None  # a colon follows a name, inside an object
            if name in held:
                return RequestSyntaxError(_json_path([*places[:-1], name]), "given more than once")
            held.add(name)
            places[-1] = name
        elif kind == _COMMA_TOKEN:
            if names[-1] is None:
                places[-1] = f"[{int(places[-1][1:-1]) + 1}]"
        elif kind == _OBJECT:
            names.append(set())
            places.append("")
        elif kind == _ARRAY:
            names.append(None)
            places.append("[0]")
        else:
            names.pop()
            places.pop()
        if not count % STEP_TOKENS:
            yield
    return None


def _json_path(places: list[str]) -> str:
    """`["message", "[1]", "recipient"]` as `message[1].recipient`."""
    path = ""
    for place in places:
        path += place if place.startswith("[") or not path else f".{place}"
    return path


def decode_json_batch(
    body: bytes | bytearray, more_than: int
) -> Generator[None, None, tuple[SendRequest, MessageChunks] | None]:
    """A JSON send request of more than `more_than` messages, each of which decodes as
    `decode_json` would decode it: the request without its messages, and its messages to be
    decoded chunk by chunk. None for anything else (fewer messages, a body that needs the
    client tolerances or is malformed): `decode_json` then answers it. RequestSyntaxError for
    an object that gives a name twice, as `decode_json` refuses it. A generator that yields
    every STEP_CHUNKS chunks it has split or checked, and returns the answer."""
    braces = body.count(b"{")
    if braces <= more_than + 1:
        return None  # one brace for the request and one a message: too few messages
    try:
        batch = _json_batch.decode(body)
        array = memoryview(batch.message)
        if array[0] != _OPENING:
            return None  # one message not in a list: decode_json forgives that
        if (
            braces <= _RAW_COUNTED * more_than
            and len(_json_raw_messages.decode(array)) <= more_than
        ):
            return None
        split = yield from _array_chunks(array)
        chunks, chunk = split or _raw_chunks(_json_raw_messages.decode(array))
        if chunks * BATCH_CHUNK <= more_than:
            return None
        # Every message is checked now, so that a bad one refuses them all, and counted for
        # `_may_repeat_names`.
        count = held = 0
        for number in range(chunks):
            messages = _json_messages.decode(chunk(number))
            count += len(messages)
            held += _json_encoder.encode(messages).count(b":")
            if not (number + 1) % STEP_CHUNKS:
                yield
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    if count <= more_than:
        return None
    head = SendRequest(
        serviceId=batch.serviceId,
        username=batch.username,
        password=batch.password,
        batchReference=batch.batchReference,
    )
    # The colon of `message` and the head's own fields', beside its messages'.
    held += 1 + _json_encoder.encode(head).count(b":")
    if _may_repeat_names(body, held):
        error = yield from _repeated_name(body)
        if error is not None:
            raise error
    return head, MessageChunks(count, lambda number: _json_messages.decode(chunk(number)))


def _decode_json_tolerant(body: bytes | bytearray) -> SendRequest:
    try:
        tree = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        # The typed pass can stop at a type error before it reaches malformed bytes.
        raise RequestSyntaxError("body", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    _refuse_repeated_name(body)
    if not isinstance(tree, dict):
        raise RequestSyntaxError("request", "expected a JSON object")
    messages = tree.get("message")
    if isinstance(messages, dict):
        # Some JSON mappers write a one-element list as the element itself.
        messages = tree["message"] = [messages]
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and isinstance(message.get("settings"), dict):
                settings = message["settings"]
                if "parameter" in settings:
                    settings["parameter"] = _tolerant_parameters(settings["parameter"])
    return _convert(tree)


def _too_deep() -> RequestSyntaxError:
    # msgspec stops at its own nesting limit (about a thousand levels) with RecursionError, long
    # before the interpreter's stack is at risk; no send request nests more than four deep.
    return RequestSyntaxError("body", "JSON nested too deeply")


def _tolerant_parameters(raw: object) -> object:
    """`parameter` as a list of {key, value}, one such object, or a {key: value} map (the legacy
    Go client), and null as no parameters, as null is no value for every other optional field
    (mappers that write unset fields as null); values that are JSON numbers or booleans become
    strings (the 2.0.4 client). A value of another type (null, a list) is left for its message's
    conversion to refuse, that message alone."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        if set(raw) == {"key", "value"}:
            raw = [raw]
        else:
            raw = [{"key": key, "value": value} for key, value in raw.items()]
    if not isinstance(raw, list):
        return raw
    repaired: list[object] = []
    for item in raw:
        if isinstance(item, dict) and "value" in item:
            item = {**item, "value": _parameter_value(item["value"])}
        repaired.append(item)
    return repaired


def _parameter_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------
# XML (spec 2.3, appendix C)


# What the (defused) parser raises for a body it cannot read; _xml_refusal says what it was.
_XML_ERRORS: Final = (defusedxml.DefusedXmlException, ParseError, ValueError, LookupError)

# A body is parsed this much at a time; the messages that ended in a piece are read and their
# elements dropped before the next (about 800 typical messages' elements, 0.3 MB, at most).
XML_PIECE: Final = 64 * 1024


def decode_xml_batch(
    document: bytes | bytearray | Iterator[bytes],
) -> tuple[SendRequest, MessageChunks]:
    """Decode an XML send request: bytes as the XML declaration says (UTF-8 without one), or
    pieces of UTF-8 (a body read in the charset its Content-Type declares, `utf8_pieces`: the
    declaration's encoding is then not read); the request without its messages, and its
    messages. The document is parsed a piece at a time, each message read into its chunk as
    soon as it has ended and its elements dropped, so that a big batch costs little more than
    its body. DTDs are refused outright, which refuses entity expansion (billion laughs) and
    external entities with them. Namespaces are ignored: the root may be qualified or not,
    children may be qualified although the XSD leaves them unqualified."""
    builder = _RootedTreeBuilder()
    reader = _RequestReader()
    _parse(document, builder, lambda: reader.take(builder.root, last_open=True), forbid_dtd=True)
    reader.take(builder.root, last_open=False)
    return reader.request()


def parse_xml(document: bytes | bytearray | Iterator[bytes], **forbid: bool) -> Element:
    """The root element of a whole XML document, read as `decode_xml_batch` reads one, with
    defusedxml's `forbid` switches; RequestSyntaxError (or UnsupportedCharset) for one that
    cannot be read."""
    builder = _RootedTreeBuilder()
    _parse(document, builder, None, **forbid)
    assert builder.root is not None  # the parser refuses a document without one
    return builder.root


def _parse(
    document: bytes | bytearray | Iterator[bytes],
    target: _RootedTreeBuilder,
    each_piece: Callable[[], None] | None,
    **forbid: bool,
) -> None:
    """Feed `document` to a defused parser building `target`, calling `each_piece` after every
    piece: bytes cut in XML_PIECE slices and read as their declaration says, or UTF-8 pieces
    read as UTF-8 whatever it says. What the parser gives up on is a RequestSyntaxError (or
    UnsupportedCharset) saying why, as is a piece that does not fit the declared charset."""
    if isinstance(document, bytes | bytearray):
        view = memoryview(document)
        pieces: Iterable[bytes | memoryview] = (
            view[start : start + XML_PIECE] for start in range(0, len(view), XML_PIECE)
        )
        encoding = None
    else:
        pieces, encoding = document, "utf-8"
    try:
        parser = defusedxml.ElementTree.DefusedXMLParser(target=target, encoding=encoding, **forbid)
        for piece in pieces:
            parser.feed(piece)
            if each_piece is not None:
                each_piece()
        parser.close()
    except RequestSyntaxError:
        raise  # the bytes do not fit the declared charset
    except _XML_ERRORS as exc:
        raise _xml_refusal(exc) from None


def _xml_refusal(error: Exception) -> RequestSyntaxError:
    """What a client is told of an XML body the parser gave up on with `error`, one of
    _XML_ERRORS: a syntax error in the body, or UnsupportedCharset when its declaration names an
    encoding we cannot read."""
    if isinstance(error, defusedxml.DTDForbidden):
        return RequestSyntaxError("body", "a document type declaration is not allowed")
    if isinstance(error, defusedxml.DefusedXmlException):
        return RequestSyntaxError("body", f"forbidden XML construct: {error}")
    if isinstance(error, LookupError):
        # The declaration names an encoding Python does not know or that is no charset.
        return UnsupportedCharset(f"the XML declaration's encoding: {error}")
    return RequestSyntaxError("body", f"malformed XML: {error}")


class _RootedTreeBuilder:
    """The parser's target: ElementTree's own builder (in C), which also gives the root element
    while the document is still being parsed."""

    def __init__(self) -> None:
        builder = TreeBuilder()
        self.root: Element | None = None
        self.start: Callable[[str, dict[str, str]], Element] = self._start_root
        self.end = builder.end
        self.data = builder.data
        self.close = builder.close
        self._start = builder.start

    def _start_root(self, tag: str, attributes: dict[str, str]) -> Element:
        self.root = self._start(tag, attributes)
        self.start = self._start  # every later element goes to the builder alone
        return self.root


class _RequestReader:
    """Reads the children of a send request's root element as they end, as `_xml_structure`
    reads them: the request's own fields into a tree of their own, each message into its
    chunk. The first mistake is kept, not raised: a document that does not parse to its end
    is refused as malformed, whatever else is wrong in it."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._messages = _TreeChunks()
        self._checked_root = False
        self._error: RequestSyntaxError | None = None

    def take(self, root: Element | None, *, last_open: bool) -> None:
        """Read and drop the root's children; the last one is left while it may be open."""
        if root is None:
            return
        if not self._checked_root:
            self._checked_root = True
            if _local_name(root.tag) != "request":
                self._error = RequestSyntaxError(
                    "request", f"root element is {_local_name(root.tag)!r}"
                )
        ended = len(root) - 1 if last_open else len(root)
        if self._error is None:
            try:
                for child in root[:ended]:
                    if _local_name(child.tag) == "message":
                        path = f"message[{len(self._messages)}]"
                        self._messages.add(_xml_structure(child, _MESSAGE_SHAPE, path))
                    else:
                        _read_child(self._head, child, _REQUEST, "request")
            except RequestSyntaxError as exc:
                self._error = exc
        del root[:ended]

    def request(self) -> tuple[SendRequest, MessageChunks]:
        """The request read; or its first mistake."""
        if self._error is not None:
            raise self._error
        return _with_messages(self._head, self._messages)


def decode_request_element(root: Element) -> SendRequest:
    """A parsed `request` element to the model (the SOAP body's `request`, spec 2.5); its own
    name is not checked."""
    return _convert(_xml_structure(root, _REQUEST, "request"))


def _local_name(tag: object) -> str:
    # Comments and processing instructions have a function as their tag.
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _xml_structure(element: Element, shape: _Shape, field: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for child in element:
        _read_child(tree, child, shape, field)
    return tree


# XML Schema's nil (section 2.6.2 of part 1): an element so marked has no value, as JSON's null.
_XSI_NIL: Final = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _read_child(tree: dict[str, Any], child: Element, shape: _Shape, field: str) -> None:
    """Read `child` of the element `field` (of `shape`) into its `tree`. One marked
    `xsi:nil="true"` (JAXB's and .NET's way of writing a null) is left out, as JSON's null is."""
    name = _local_name(child.tag)
    if name not in shape or child.get(_XSI_NIL, "").strip() in ("true", "1"):
        return
    kind = shape[name]
    path = name if field == "request" else f"{field}.{name}"
    if isinstance(kind, tuple):
        items = tree.setdefault(name, [])
        items.append(_xml_structure(child, kind[0], f"{path}[{len(items)}]"))
        return
    if name in tree:
        raise RequestSyntaxError(path, "element given more than once")
    if kind is None:
        if len(child):
            # Read as an object, as JSON has one in its place: its message alone is refused.
            tree[name] = {}
            return
        text = child.text or ""
        tree[name] = text.strip() if name in _SCALAR_LEAVES else text
    else:
        tree[name] = _xml_structure(child, kind, path)


# ---------------------------------------------------------------------------------------------
# Web form and HTTP GET query (spec 2.3 "Web form", 2.4)

_KEY_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)(?:\[([0-9]+)\])?")
_INDEX_DIGITS: Final = len(str(MAX_INDEX))


def decode_form_batch(
    body: bytes | bytearray, encoding: str = "utf-8"
) -> tuple[SendRequest, MessageChunks]:
    """Decode an `application/x-www-form-urlencoded` send request (UTF-8, spec 2.3; its
    percent-encoded octets in `encoding`, the charset a client declared, as a form encoder
    writes them): the request without its messages, and its messages. The pairs are read one
    at a time and each message packed once its own have been placed (`_FormMessages`), so that
    the tree of the whole form is never held; nor is the body's text once every pair is
    placed."""
    return _with_packed(*_placed(_form_text(body), "body", encoding))


def _form_text(body: bytes | bytearray) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestSyntaxError("body", f"not UTF-8 at byte {exc.start}") from None


def decode_query(query: str) -> SendRequest:
    """Decode the query string of `GET /gw/rs/sendMessages` (spec 2.4): names are
    case-sensitive, `message[n].settings.parameter[m].key` style, brackets raw or %5B/%5D."""
    return whole_request(*_with_packed(*_placed(query, "query")))


def _placed(
    query: str, field: str, encoding: str = "utf-8"
) -> tuple[dict[str, Any], _FormMessages]:
    """Every pair of a form or query placed: the request's own fields, and its messages."""
    messages = _FormMessages()
    head: dict[str, Any] = {"message": messages}
    try:
        _place_all(head, _pairs(query, encoding))
    except UnicodeDecodeError as exc:
        raise RequestSyntaxError(
            field, f"percent-encoding is not {exc.encoding}: {exc.reason}"
        ) from None
    del head["message"]
    return head, messages


def _with_packed(
    head: dict[str, Any], messages: _FormMessages
) -> tuple[SendRequest, MessageChunks]:
    """The request of a form's placed pairs, its messages made dense and packed in chunks."""
    chunks = _TreeChunks()
    for index, message in messages.in_order():
        chunks.add(_with_lost_plus(_densify(message, _MESSAGE_SHAPE, f"message[{index}]")))
    return _with_messages(head, chunks)


def _with_lost_plus(tree: dict[str, Any]) -> dict[str, Any]:
    """A form's or query's message tree with the `+` a raw plus lost (`lost_plus`) put back on
    its numbers: the recipient and the originator (an INTERNATIONAL one is a number too). The
    form's structures are dicts and its leaves text (`_place`)."""
    if "recipient" in tree:
        tree["recipient"] = lost_plus(tree["recipient"])
    originator_settings = tree.get("settings", {}).get("originatorSettings", {})
    if "originator" in originator_settings:
        originator_settings["originator"] = lost_plus(originator_settings["originator"])
    return tree


_PAIR: Final = re.compile(r"[^&]+")


def _pairs(query: str, encoding: str) -> Iterator[tuple[str, str]]:
    """The name=value pairs of a query string one at a time, as `parse_qsl` gives them all at
    once (blank values kept, percent-encodings in `encoding`, strict); UnicodeDecodeError for
    a percent-encoding that is not in it."""
    for pair in _PAIR.finditer(query):
        name, _, value = pair.group().partition("=")
        yield (
            unquote_plus(name, encoding, errors="strict"),
            unquote_plus(value, encoding, errors="strict"),
        )


def _place_all(tree: dict[str, Any], pairs: Iterable[tuple[str, str]]) -> None:
    """Build the nested tree from dotted/indexed keys; lists are gathered as index maps, to be
    made dense (`_densify`). The first misplaced key is refused once every pair has been read:
    a percent-encoding that is not UTF-8, anywhere, is refused as that."""
    mistake: RequestSyntaxError | None = None
    for key, value in pairs:
        if mistake is None:
            try:
                _place(tree, _REQUEST, key, value)
            except RequestSyntaxError as exc:
                mistake = exc
    if mistake is not None:
        raise mistake


# How many times, on average, a form's group of messages may be unpacked again for a pair that
# comes after it was packed, before all are kept unpacked (`_FormMessages`).
_REOPENS_A_GROUP: Final = 8


class _FormMessages:
    """The index map of a form's messages (as `_place` fills it) that keeps them packed as
    msgpack, BATCH_CHUNK to a group, all but the group a pair was last placed in. Clients send
    a message's pairs together and the messages in order, so each group is packed once; a pair
    for a group already packed unpacks it again (a form sent field by field does so once a
    group and field). Past _REOPENS_A_GROUP times the groups, the pairs jump around, where
    packing again at every change of group would cost the square of the body: the groups are
    then all unpacked and stay so, and the request costs what an element tree of it would."""

    def __init__(self) -> None:
        self._packed: dict[int, bytes] = {}
        self._unpacked: dict[int, dict[int, dict[str, Any]]] | None = None  # out of order
        self._group: int | None = None
        self._open: dict[int, dict[str, Any]] = {}
        self._reopened = 0  # packed groups unpacked again
        self._count = 0  # messages
        self._last = -1  # the highest index

    def setdefault(self, index: int, default: dict[str, Any]) -> dict[str, Any]:
        """The tree of message `index` to place a pair in; `default` when it has none yet."""
        group = index // BATCH_CHUNK
        if group != self._group:
            if self._unpacked is None and group in self._packed:
                self._reopened += 1
                if self._reopened > _REOPENS_A_GROUP * (len(self._packed) + 1):
                    self._unpacked = {
                        packed: _packed_trees.decode(trees)
                        for packed, trees in self._packed.items()
                    }
                    self._packed.clear()
                    if self._group is not None:
                        self._unpacked[self._group] = self._open
            if self._unpacked is not None:
                self._open = self._unpacked.setdefault(group, {})
            else:
                self._pack_open()
                packed = self._packed.pop(group, None)
                self._open = {} if packed is None else _packed_trees.decode(packed)
            self._group = group
        message = self._open.get(index)
        if message is None:
            message = self._open[index] = default
            self._count += 1
            self._last = max(self._last, index)
        return message

    def in_order(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each message's index and tree, lowest index first, a group unpacked at a time and
        let go of (the group still open is read as it is); refused if the indexes do not count
        from 0 without gaps."""
        unpacked, packed = self._unpacked, self._packed
        open_group, open_trees = self._group, self._open
        self._group, self._open = None, {}
        if unpacked is None and open_group is not None:
            unpacked = {open_group: open_trees}
        unpacked = unpacked or {}
        if self._count != self._last + 1:  # a gap, which `_dense` names
            trees = itertools.chain(unpacked.values(), map(_packed_trees.decode, packed.values()))
            _dense(itertools.chain.from_iterable(trees), "message")
        for group in range(len(unpacked) + len(packed)):
            trees_of_group = unpacked.pop(group, None)
            if trees_of_group is None:
                trees_of_group = _packed_trees.decode(packed.pop(group))
            yield from sorted(trees_of_group.items())

    def _pack_open(self) -> None:
        if self._group is not None and self._unpacked is None:
            self._packed[self._group] = _pack.encode(self._open)


def _place(tree: dict[str, Any], shape: _Shape, key: str, value: str) -> None:
    node = tree
    node_shape = shape
    segments = key.split(".")
    for position, segment in enumerate(segments):
        match = _KEY_SEGMENT.fullmatch(segment)
        if match is None:
            if position == 0:
                return  # not one of ours: foreign keys are ignored
            raise RequestSyntaxError(key, f"malformed name segment {segment!r}")
        name, index_text = match.groups()
        if name not in node_shape:
            return
        kind = node_shape[name]
        last = position == len(segments) - 1
        if isinstance(kind, tuple):
            if index_text is None:
                raise RequestSyntaxError(key, f"{name} needs an index, as in {name}[0]")
            # Compared as text first: int() of thousands of digits is slow, and refused.
            if len(index_text.lstrip("0")) > _INDEX_DIGITS or int(index_text) > MAX_INDEX:
                shown = index_text if len(index_text) <= 12 else index_text[:12] + "..."
                raise RequestSyntaxError(key, f"index {shown} is above {MAX_INDEX}")
            index = int(index_text)
            if last:
                raise RequestSyntaxError(key, f"{name}[{index}] needs a field name after it")
            node = node.setdefault(name, {}).setdefault(index, {})
            node_shape = kind[0]
            continue
        if index_text is not None:
            raise RequestSyntaxError(key, f"{name} takes no index")
        if kind is None:
            if not last:
                raise RequestSyntaxError(key, f"{name} has no fields")
            if name in node:
                raise RequestSyntaxError(key, "given more than once")
            node[name] = value
            return
        if last:
            raise RequestSyntaxError(key, f"{name} is a structure, not a value")
        node = node.setdefault(name, {})
        node_shape = kind


def _densify(tree: dict[str, Any], shape: _Shape, field: str) -> dict[str, Any]:
    for name, kind in shape.items():
        if name not in tree or kind is None:
            continue
        path = f"{field}.{name}" if field else name
        if isinstance(kind, tuple):
            by_index: dict[int, dict[str, Any]] = tree[name]
            tree[name] = [
                _densify(by_index[index], kind[0], f"{path}[{index}]")
                for index in _dense(by_index, path)
            ]
        else:
            tree[name] = _densify(tree[name], kind, path)
    return tree


def _dense(by_index: Iterable[int], path: str) -> list[int]:
    """The indexes of the list `path`, in order; refused unless they count from 0 without gaps
    (a gap means a lost or mistyped field)."""
    indexes = sorted(by_index)
    for expected, index in enumerate(indexes):
        if index != expected:
            raise RequestSyntaxError(
                f"{path}[{expected}]", "missing: indexes must count from 0 without gaps"
            )
    return indexes


def lost_plus(number: str) -> str:
    """A number from a query string or form: a raw `+` decodes to a space, so " 4799999999" is
    a lost `+` (spec 2.4) and comes back as "+4799999999"; anything else is left as it is."""
    if number[:1] == " ":
        stripped = number.strip()
        if stripped.isdigit():
            return "+" + stripped
    return number


# ---------------------------------------------------------------------------------------------
# Responses (spec 2.2)


def encode_response(response: SendResponse, fmt: ResponseFormat) -> bytes:
    """JSON with all seven `messageStatus` keys in XSD order (null when unset), or XML with the
    `ns2:response` root in the Response namespace, unqualified children, null elements left out."""
    if fmt is ResponseFormat.JSON:
        return _json_encoder.encode(response)
    return f"{_XML_OPENING}{response_children_xml(response)}</ns2:response>".encode()


_XML_OPENING: Final = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<ns2:response xmlns:ns2="{RESPONSE_NAMESPACE}">'
)


def response_children_xml(response: SendResponse) -> str:
    """The unqualified children of the XML `response` element (spec 2.2), for the REST body
    and the SOAP one (spec 2.5) alike."""
    return _batch_reference_xml(response) + _statuses_xml(response.messageStatus)


def _batch_reference_xml(response: SendResponse) -> str:
    return f"<batchReference>{xml_text(response.batchReference)}</batchReference>"


def _statuses_xml(statuses: list[MessageStatus]) -> str:
    parts = []
    for status in statuses:
        parts.append("<messageStatus>")
        for name in _STATUS_FIELDS:
            value = getattr(status, name)
            if value is not None:
                parts.append(f"<{name}>{xml_text(str(value))}</{name}>")
        parts.append("</messageStatus>")
    return "".join(parts)


class ResponseWriter:
    """The answer to a send encoded a piece at a time: `piece` for each chunk of statuses (the
    first piece also opens the answer with its batch reference), then `end`. The pieces joined
    are the bytes `encode_response` gives for the whole answer."""

    def __init__(self, fmt: ResponseFormat) -> None:
        self._fmt = fmt
        self._started = False
        self._statuses = False  # whether a status was written (JSON separates them by commas)

    def piece(self, chunk: SendResponse) -> bytes:
        """The statuses of `chunk`, which carries the request's batch reference."""
        if self._fmt is ResponseFormat.JSON:
            statuses = _json_encoder.encode(chunk.messageStatus)[1:-1]
            if statuses and self._statuses:
                statuses = b"," + statuses
            self._statuses = self._statuses or bool(statuses)
            if self._started:
                return statuses
            self._started = True
            empty = SendResponse(batchReference=chunk.batchReference, messageStatus=[])
            return _json_encoder.encode(empty)[:-2] + statuses
        text = _statuses_xml(chunk.messageStatus)
        if not self._started:
            self._started = True
            text = _XML_OPENING + _batch_reference_xml(chunk) + text
        return text.encode()

    def end(self) -> bytes:
        """What closes the answer; a piece must have been written."""
        if self._fmt is ResponseFormat.JSON:
            return b"]}"
        return b"</ns2:response>"


_STATUS_FIELDS: Final = MessageStatus.__struct_fields__

# Characters XML 1.0 cannot carry at all, even escaped; echoed client input may hold them.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_XML_SPECIAL = re.compile("[&<>\r]")


def xml_text(text: str) -> str:
    """Text for an XML element: markup escaped, characters XML cannot carry replaced."""
    text = _NOT_XML_CHAR.sub("\ufffd", text)
    return _XML_SPECIAL.sub(_escape_match, text)


def _escape_match(match: re.Match[str]) -> str:
    return _XML_ESCAPES[match.group()]


def syntax_error_response(error: RequestSyntaxError) -> SendResponse:
    """The Puzzel body for an unparseable request: one entry, status 5, naming the field."""
    return SendResponse(
        batchReference="",
        messageStatus=[
            MessageStatus(
                statusCode=StatusCode.SYNTAX_ERROR,
                statusMessage=f"Syntax error: {error.field}: {error.reason}",
                clientReference=None,
                recipient=None,
                messageId=None,
                sessionId=None,
                sequenceIndex=1,
            )
        ],
    )


# ---------------------------------------------------------------------------------------------
# Accept negotiation (spec 2.3: XML unless JSON is asked for)

_XML_TYPES: Final = ("application/xml", "text/xml")


@functools.lru_cache(maxsize=256)  # clients repeat the same few Accept values
def negotiate(
    accept: str | None, *, default: ResponseFormat = ResponseFormat.XML
) -> ResponseFormat:
    """The format Accept prefers: higher quality, then the more specific range
    (`application/json, */*` asks for JSON), then the one listed first; the other format only
    when it is preferred over `default` (XML, as Puzzel's sends answer without Accept), and
    never one of quality 0."""
    if not accept:
        return default
    ranges = list(_media_ranges(accept))
    json_rank = _rank("application/json", ranges)
    xml_rank = max(_rank(media_type, ranges) for media_type in _XML_TYPES)
    if default is ResponseFormat.XML:
        other, rank, default_rank = ResponseFormat.JSON, json_rank, xml_rank
    else:
        other, rank, default_rank = ResponseFormat.XML, xml_rank, json_rank
    return other if rank[0] > 0 and rank > default_rank else default


@functools.lru_cache(maxsize=256)
def xml_media_type(accept: str | None, default: str) -> str:
    """The media type of an XML answer: whichever of `application/xml` and `text/xml` Accept
    prefers (a client that accepts only `text/xml` gets it), `default` when neither is."""
    ranges = list(_media_ranges(accept)) if accept else []
    ranks = {media_type: _rank(media_type, ranges) for media_type in _XML_TYPES}
    best = max(_XML_TYPES, key=ranks.__getitem__)
    other = _XML_TYPES[1 - _XML_TYPES.index(best)]
    return best if ranks[best][0] > 0 and ranks[best] > ranks[other] else default


def _media_ranges(accept: str) -> Iterable[tuple[str, float]]:
    for item in accept.split(","):
        media_range, *params = item.split(";")
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        media_range = media_range.strip().lower()
        if media_range:
            yield media_range, quality


def _rank(media_type: str, ranges: list[tuple[str, float]]) -> tuple[float, int, int]:
    """(quality, specificity, earlier-is-better) of the most specific range matching the type."""
    kind = media_type.partition("/")[0]
    best: tuple[int, float, int] = (-1, 0.0, 0)
    for position, (media_range, quality) in enumerate(ranges):
        if media_range == media_type:
            specificity = 2
        elif media_range == f"{kind}/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, quality, -position)
    specificity, quality, order = best
    return (quality, specificity, order) if specificity >= 0 else (0.0, -1, 0)
