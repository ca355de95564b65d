"""The HTTP routes of edgegw: the Puzzel send endpoint (REST POST and GET) and message lookup,
over the `Backend` protocol (health and metrics are edgegw.http.monitoring's). It never touches
the store or modems itself; the backend does. Implements spec sections 2.3, 2.4 and 6.4.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import trio

from edgegw.http.inputs import media_type_and_charset, percent_charset, to_utf8, utf8_pieces
from edgegw.http.problems import problem_response
from edgegw.http.puzzel import (
    MessageChunks,
    RequestSyntaxError,
    ResponseFormat,
    ResponseWriter,
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
from edgegw.http.server import App, BodyWriter, Request, Response, plain_error
from edgegw.http.soap import FAULT_NAMESPACE
from edgegw.model import LOGIN_FAILURES, MessageStatus, SendRequest, SendResponse, StatusCode
from edgegw.offload import decoded
from edgegw.store import AnswerSeal, Write

__all__ = ["Backend", "Submit", "answered", "error_response", "make_app"]

log = logging.getLogger(__name__)


class Backend(Protocol):
    """What the HTTP routes need from the core; the pipeline implements it."""

    # Auth, validation, durable enqueue; returns per-message statuses (edgegw.model). `seal`
    # is given the answer before the messages are written and adds its rows to that write.
    async def submit(
        self, request: SendRequest, seal: AnswerSeal | None = None
    ) -> SendResponse: ...

    # A big request answered as its chunks commit: `emit` gets each chunk's statuses, in
    # order; `refused`, what `refusal` said of it (edgegw.pipeline.submit.Submitter).
    async def submit_stream(
        self,
        request: SendRequest,
        messages: MessageChunks,
        emit: Callable[[SendResponse], Awaitable[None]],
        refused: StatusCode | None,
    ) -> None: ...

    # The status every message of a request gets for its serviceId and credentials alone, or
    # None when its messages are checked one by one.
    async def refusal(self, request: SendRequest) -> StatusCode | None: ...


# Auth, validation and durable enqueue of a send (`Backend.submit`), for every door.
Submit = Callable[[SendRequest, AnswerSeal | None], Awaitable[SendResponse]]

SEND_PATH: Final = "/gw/rs/sendMessages"

_JSON: Final = "application/json"
_XML: Final = "application/xml"
_TEXT_XML: Final = "text/xml"

_FORM: Final = "application/x-www-form-urlencoded"
_BODY_TYPES: Final = frozenset({_JSON, _XML, _TEXT_XML, _FORM})
# Bodies read as UTF-8 text; the XML parser reads the document's own declaration unless the
# Content-Type declares a charset (RFC 7303 section 3.2).
_TEXT_BODIES: Final = frozenset({_JSON, _FORM})


# A batch of more messages than this is answered as its chunks commit; one that fits a single
# write job of the submitter (its STORE_CHUNK) is answered whole, as fast as before.
STREAMED_MORE_THAN: Final = 1000
# No JSON body of more messages is shorter (`{},` each); a shorter one (every single send) is
# not looked at twice.
_SMALLEST_STREAMED_BODY: Final = 3 * STREAMED_MORE_THAN


def make_app(
    backend: Backend,
    *,
    auth_failure_problem: bool = False,
    routes: Sequence[Callable[[Request], Awaitable[Response | None]]] = (),
) -> App:
    """The routes over `backend`. With `auth_failure_problem`, a send where every message failed
    authentication answers 401 problem+json, as the 3.0.1 client's OpenAPI describes, instead of
    the documented 200 with status 2 per message (spec 2.3, "switchable"). `routes` are tried
    first, in order; one that returns None leaves the request to the next (the Management API,
    edgegw.http.management)."""

    async def app(request: Request) -> Response:
        for route in routes:
            routed = await route(request)
            if routed is not None:
                return routed
        path = request.path
        if path == SEND_PATH:
            if request.method == "POST":
                return await _send_post(request)
            if request.method == "GET":
                return await _send_get(request)
            return _method_not_allowed(request, "GET, POST")
        return _not_found(request)

    async def _send_post(request: Request) -> Response:
        fmt = negotiate(request.headers.get("accept"))
        media_type, charset = media_type_and_charset(request.headers.get("content-type", ""))
        if media_type not in _BODY_TYPES:
            error = RequestSyntaxError(
                "Content-Type",
                f"{media_type or 'none'} is not one of {', '.join(sorted(_BODY_TYPES))}",
            )
            return _puzzel(syntax_error_response(error), fmt, status=415, xml=_xml_type(request))
        try:
            batch = await _request_in(request.body, media_type, charset)
        except RequestSyntaxError as exc:
            return _puzzel(
                syntax_error_response(exc), fmt, status=exc.http_status, xml=_xml_type(request)
            )
        if isinstance(batch, SendRequest):
            return await _submit(request, batch, fmt)
        head, messages = batch
        if len(messages) > STREAMED_MORE_THAN:
            streamed = await _streamed(request, head, messages, fmt)
            if streamed is not None:
                return streamed
        # Its messages decoded as the body is (`decoded`): off the event loop for a big one.
        whole = await decoded(lambda _: whole_request(head, messages), request.body)
        return await _submit(request, whole, fmt)

    async def _streamed(
        request: Request, head: SendRequest, messages: MessageChunks, fmt: ResponseFormat
    ) -> Response | None:
        """A batch of more than STREAMED_MORE_THAN messages answered as its chunks commit: its
        messages are decoded a chunk at a time and its statuses written as each chunk is
        stored, so that the request never costs much more memory than its body. One refused
        as a whole (its serviceId or credentials) is answered a chunk at a time as well, even
        with an Idempotency-Key (nothing refused is remembered), so that a client that cannot
        log in costs no more. None for an accepted one whose answer is remembered: it is
        answered whole, in the write job of its messages."""
        refusal = await backend.refusal(head)
        if refusal is None and request.commit_with is not None:
            return None

        def streamed() -> Response:
            async def stream(write: BodyWriter) -> None:
                writer = ResponseWriter(fmt)

                async def emit(chunk: SendResponse) -> None:
                    await write(writer.piece(chunk))

                try:
                    await backend.submit_stream(head, messages, emit, refusal)
                except* (trio.BrokenResourceError, trio.ClosedResourceError):
                    # The client left mid-answer (out of the submitter's nursery, so
                    # grouped): the listener closes quietly, as for any client gone. What
                    # committed stays.
                    raise trio.BrokenResourceError("the client left during the answer") from None
                await write(writer.end())

            content_type = _JSON if fmt is ResponseFormat.JSON else _xml_type(request)
            return Response(status=200, headers=[("content-type", content_type)], stream=stream)

        return _with_login(streamed, refusal, head.username)

    async def _send_get(request: Request) -> Response:
        fmt = negotiate(request.headers.get("accept"))
        try:
            send_request = decode_query(request.query)
        except RequestSyntaxError as exc:
            error = syntax_error_response(exc)
            return _puzzel(error, fmt, status=exc.http_status, xml=_xml_type(request))
        return await _submit(request, send_request, fmt)

    async def _submit(request: Request, send_request: SendRequest, fmt: ResponseFormat) -> Response:
        xml = _xml_type(request)
        try:
            return await answered(
                request,
                backend.submit,
                send_request,
                lambda response: _answer(send_request, response, fmt, xml),
            )
        except Exception:
            log.exception("submit failed for service %s", send_request.serviceId)
            return _puzzel(_internal_error(send_request), fmt, status=500, xml=xml)

    def _answer(
        send_request: SendRequest, response: SendResponse, fmt: ResponseFormat, xml: str
    ) -> Response:
        return _with_login(
            lambda: _puzzel(response, fmt, xml=xml),
            response.login_refusal(),
            send_request.username,
        )

    def _with_login(
        answer: Callable[[], Response], refusal: StatusCode | None, username: str | None
    ) -> Response:
        """The answer to a send whose messages were all refused with `refusal` for its login
        or its serviceId, if they were: a 401 problem instead for refused credentials when
        `auth_failure_problem` is set, and marked as a failed login of `username` for the
        throttle when it is one (LOGIN_FAILURES)."""
        if refusal is StatusCode.ACCESS_ERROR and auth_failure_problem:
            response = _denied()
        else:
            response = answer()
        if refusal in LOGIN_FAILURES:
            response.auth_failure = username or ""
        return response

    return app


async def answered(
    request: Request,
    submit: Submit,
    send_request: SendRequest,
    answer: Callable[[SendResponse], Response],
) -> Response:
    """`send_request` submitted, and the Response `answer` makes of its statuses. When a wrapper
    has rows to commit with what the request writes (`Request.commit_with`: an Idempotency-Key's
    answer), the answer is made once, before the messages are written, and those rows go into
    the same write job, so that what is committed is what the client gets."""
    commit_with = request.commit_with
    sealed: Response | None = None

    def seal(response: SendResponse) -> Write | None:
        nonlocal sealed
        assert commit_with is not None
        sealed = answer(response)
        return commit_with(sealed)

    response = await submit(send_request, None if commit_with is None else seal)
    return sealed if sealed is not None else answer(response)


async def _request_in(
    body: bytes | bytearray, media_type: str, charset: str | None
) -> SendRequest | tuple[SendRequest, MessageChunks]:
    """The send request of a body: JSON whole unless it is a big batch, XML and forms as the
    request without its messages and its messages' chunks; read in a worker thread when the
    body is longer than DECODED_IN_A_THREAD (a big JSON batch a few chunks a step instead)."""
    if media_type in _TEXT_BODIES:
        body = to_utf8(body, charset)
    if media_type == _JSON:
        batch = await _split_json(body) if len(body) > _SMALLEST_STREAMED_BODY else None
        # A body with unknown fields or nulls is read token by token for a name given twice,
        # Python for every member: as a form's pairs, in a worker thread when it is big.
        return await decoded(decode_json, body) if batch is None else batch
    if media_type == _FORM:
        # The body is UTF-8 by now; its percent-encoded octets are still in the declared charset.
        encoding = percent_charset(charset)
        return await decoded(lambda raw: decode_form_batch(raw, encoding), body)
    if charset is None:
        return await decoded(decode_xml_batch, body)
    return await decoded(lambda raw: decode_xml_batch(utf8_pieces(raw, charset)), body)


async def _split_json(body: bytes | bytearray) -> tuple[SendRequest, MessageChunks] | None:
    """A JSON batch of more than STREAMED_MORE_THAN messages split into its chunks, a few
    chunks a step of the loop (decode_json_batch); None for anything else."""
    splitting = decode_json_batch(body, more_than=STREAMED_MORE_THAN)
    while True:
        try:
            next(splitting)
        except StopIteration as split:
            batch: tuple[SendRequest, MessageChunks] | None = split.value
            return batch
        await trio.lowlevel.checkpoint()


def _denied() -> Response:
    """A send refused for its credentials, as the 3.0.1 client's OpenAPI describes it."""
    return problem_response(401, "the service credentials were not accepted")


def _xml_type(request: Request) -> str:
    """The media type of a send's XML answer: the one of application/xml and text/xml that the
    client's Accept prefers; where it prefers neither, text/xml to a GET (spec 2.4), else
    application/xml (2.3)."""
    default = _TEXT_XML if request.method == "GET" else _XML
    return xml_media_type(request.headers.get("accept"), default)


def _puzzel(
    response: SendResponse, fmt: ResponseFormat, *, xml: str, status: int = 200
) -> Response:
    content_type = _JSON if fmt is ResponseFormat.JSON else xml
    return Response(
        status=status,
        headers=[("content-type", content_type)],
        body=encode_response(response, fmt),
    )


def _internal_error(send_request: SendRequest) -> SendResponse:
    return SendResponse(
        batchReference=send_request.batchReference or "",
        messageStatus=[
            MessageStatus(
                statusCode=StatusCode.INTERNAL_ERROR,
                statusMessage="Internal error",
                clientReference=message.clientReference,
                recipient=message.recipient,
                messageId=None,
                sessionId=None,
                sequenceIndex=index,
            )
            for index, message in enumerate(send_request.message, start=1)
        ],
    )


def _fault(request: Request, status: int, reason: str) -> Response:
    """An error outside the send model, as problem+json or as the Puzzel XML fault (appendix C),
    whichever the client's Accept prefers."""
    if negotiate(request.headers.get("accept")) is ResponseFormat.JSON:
        return problem_response(status, f"{request.method} {request.path}: {reason}")
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<ns2:fault xmlns:ns2="{FAULT_NAMESPACE}"><code>{status}</code>'
        f"<reason>{reason}</reason></ns2:fault>"
    ).encode()
    content_type = xml_media_type(request.headers.get("accept"), _XML)
    return Response(status=status, headers=[("content-type", content_type)], body=body)


def error_response(request: Request | None, status: int, reason: str) -> Response:
    """The listener's refusals (413, 431, 408, malformed requests) in the client's format: a
    send request gets the Puzzel body with one status 5 entry, anything else the fault."""
    if request is None:
        return plain_error(request, status, reason)
    if request.path == SEND_PATH:
        error = RequestSyntaxError("request", reason)
        fmt = negotiate(request.headers.get("accept"))
        return _puzzel(syntax_error_response(error), fmt, status=status, xml=_xml_type(request))
    return _fault(request, status, reason)


def _not_found(request: Request) -> Response:
    return _fault(request, 404, "Not Found")


def _method_not_allowed(request: Request, allow: str) -> Response:
    response = _fault(request, 405, "Method Not Allowed")
    response.headers.append(("allow", allow))
    return response
