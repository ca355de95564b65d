"""HTTP routes of the Management API (spec section 5.1 and 5.2, both path styles) and of our
message additions under /api/messages (list with filters and keyset pages, one message with its
parts and history, cancel). Routing, auth and
encoding only: never touches the store itself; `edgegw.pipeline.management` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Final
from urllib.parse import parse_qs, unquote

import msgspec

from edgegw.http.inputs import ascii_count, basic_credentials
from edgegw.http.problems import HttpError, Unavailable, allow_method, parse_moment, problem_for
from edgegw.http.puzzel import ResponseFormat, lost_plus, negotiate, xml_text
from edgegw.http.server import Request, Response
from edgegw.model import MessageState
from edgegw.networks import is_loopback, is_loopback_host
from edgegw.pipeline.management import (
    MAX_PAGE,
    BadCursor,
    Management,
    MessageBatch,
    MessageFilter,
    StoppedMessage,
)
from edgegw.pipeline.submit import Rejected, international_number
from edgegw.store import UNWRITABLE_RETRY, StoreUnwritable

__all__ = ["Route", "batch_xml", "management_routes", "stop_xml"]

Route = Callable[[Request], Awaitable[Response | None]]

MGMT_PREFIX: Final = "/mgmt/rs/service/"
CLIENT_PREFIX: Final = "/management/"
MESSAGES_PATH: Final = "/api/messages"

_JSON: Final = "application/json"
_TEXT_XML: Final = "text/xml"
_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'


class _BatchList(msgspec.Struct, kw_only=True):
    messageBatch: list[MessageBatch]


class _BatchStatus(msgspec.Struct, kw_only=True):
    messageBatch: MessageBatch


class _StopResponse(msgspec.Struct, kw_only=True):
    serviceId: int
    clientBatchReference: str
    stoppedMessages: list[StoppedMessage]


class _Cancelled(msgspec.Struct, kw_only=True):
    messageId: str
    state: MessageState


def management_routes(
    management: Management,
    authenticate: Callable[[str, str], Awaitable[int | None]],
    service_ids: Collection[int],
    *,
    allow_unauthenticated_loopback: bool = False,
) -> Route:
    """The routes, for `make_app(..., routes=[...])`. A request they do not serve gets None.

    Both path styles need the service's HTTP Basic credentials. With
    `allow_unauthenticated_loopback`, a `/management/...` call without any credentials is
    accepted from a loopback address whose `Host` is a loopback name or address (not a page
    that rebound its own name to 127.0.0.1), for the 3.0.1 client that sends none (spec 5.2).
    """

    async def route(request: Request) -> Response | None:
        path = request.path
        try:
            if path.startswith(MGMT_PREFIX):
                return await _batch_api(request, path[len(MGMT_PREFIX) :], client_style=False)
            if path.startswith(CLIENT_PREFIX):
                return await _batch_api(request, path[len(CLIENT_PREFIX) :], client_style=True)
            if path in (MESSAGES_PATH, MESSAGES_PATH + "/"):
                allow_method(request.method, "GET, HEAD")
                return await _list_messages(request)
            if path.startswith(MESSAGES_PATH + "/"):
                message_id = unquote(path[len(MESSAGES_PATH) + 1 :])
                if "/" in message_id:
                    raise HttpError(404, f"no such resource {path!r}")
                allow_method(request.method, "GET, HEAD, DELETE")
                if request.method == "DELETE":
                    return await _cancel(request, message_id)
                return await _message(request, message_id)
        except HttpError as exc:
            return _problem(request, exc)
        except StoreUnwritable:
            # A full disk (the store logs it): the same call, once the disk has room, does
            # what this one could not (a batch's messages stopped before it filled stay so).
            unavailable = Unavailable(
                "the store cannot take writes now (its disk is full); try again later",
                retry_after=int(UNWRITABLE_RETRY),
            )
            return _problem(request, unavailable)
        return None

    async def _batch_api(request: Request, rest: str, *, client_style: bool) -> Response:
        # rest is "{serviceId}/batch", "{serviceId}/batch/" or "{serviceId}/batch/{ref}"
        service_part, _, tail = rest.partition("/")
        head, _, reference = tail.partition("/")
        service_id = ascii_count(service_part)
        if head != "batch" or service_id is None:
            raise HttpError(404, f"no such resource {request.path!r}")
        await _authorize(request, service_id, client_style=client_style)
        # Spec 5.1: JSON, or XML (text/xml) when Accept prefers it.
        accept = request.headers.get("accept")
        as_xml = (
            not client_style
            and negotiate(accept, default=ResponseFormat.JSON) is ResponseFormat.XML
        )
        # Percent-decode after routing: the client sends "/" inside a reference as %2F.
        reference = unquote(reference)
        if not reference:
            allow_method(request.method, "GET, HEAD")
            batches = await management.batches(service_id)
            if as_xml:
                return _xml("getBatchListResponse", "".join(batch_xml(b) for b in batches))
            return _json(_BatchList(messageBatch=batches))
        if request.method in ("GET", "HEAD"):
            batch = await management.batch(service_id, reference)
            if batch is None:
                raise _unknown_batch(reference)
            if as_xml:
                return _xml("getBatchStatusResponse", batch_xml(batch))
            return _json(_BatchStatus(messageBatch=batch))
        allow_method(request.method, "GET, HEAD, DELETE")
        stopped = await management.stop_batch(service_id, reference)
        if stopped is None:
            raise _unknown_batch(reference)
        if as_xml:
            return _xml("stopBatchResponse", stop_xml(service_id, reference, stopped))
        return _json(
            _StopResponse(
                serviceId=service_id, clientBatchReference=reference, stoppedMessages=stopped
            )
        )

    async def _authorize(request: Request, service_id: int, *, client_style: bool) -> None:
        header = request.headers.get("authorization")
        if (
            header is None
            and client_style
            and allow_unauthenticated_loopback
            and request.client is not None
            and not request.client_unnamed
            and is_loopback(request.client)
            and is_loopback_host(request.headers.get("host", ""))
            and service_id in service_ids
        ):
            return
        if await _service(request) != service_id:
            raise _unauthorized()

    async def _service(request: Request) -> int | None:
        credentials = basic_credentials(request.headers.get("authorization"))
        return None if credentials is None else await authenticate(*credentials)

    async def _list_messages(request: Request) -> Response:
        service_id = await _service(request)
        if service_id is None:
            raise _unauthorized()
        query = _message_filter(request.query)
        try:
            page = await management.messages(service_id, query)
        except BadCursor as exc:
            raise HttpError(400, str(exc)) from None
        return _json(page)

    async def _message(request: Request, message_id: str) -> Response:
        service_id = await _service(request)
        if service_id is None:
            raise _unauthorized()
        view = await management.message(service_id, message_id)
        if view is None:
            raise HttpError(404, f"no message {message_id!r} for this service")
        return _json(view)

    async def _cancel(request: Request, message_id: str) -> Response:
        service_id = await _service(request)
        if service_id is None:
            raise _unauthorized()
        outcome = await management.cancel(service_id, message_id)
        if not outcome.found:
            raise HttpError(404, f"no message {message_id!r} for this service")
        if not outcome.cancelled:
            state = outcome.state.value if outcome.state is not None else "unknown"
            raise HttpError(
                409, f"message {message_id!r} is {state} and can no longer be cancelled"
            )
        return _json(_Cancelled(messageId=message_id, state=MessageState.CANCELLED))

    return route


def _message_filter(query: str) -> MessageFilter:
    values = {key: items[-1] for key, items in parse_qs(query, keep_blank_values=True).items()}
    known = {"state", "recipient", "batch", "since", "until", "limit", "cursor"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise HttpError(400, f"unknown query parameter {unknown[0]!r}")
    state = None
    if values.get("state"):
        try:
            state = MessageState(values["state"].lower())
        except ValueError:
            choices = ", ".join(member.value for member in MessageState)
            raise HttpError(400, f"state must be one of {choices}") from None
    limit = 100
    if values.get("limit"):
        count = ascii_count(values["limit"])
        if count is None or not 1 <= count <= MAX_PAGE:
            raise HttpError(400, f"limit must be from 1 to {MAX_PAGE}")
        limit = count
    return MessageFilter(
        state=state,
        recipient=_recipient(values["recipient"]) if values.get("recipient") else None,
        batch=values.get("batch") or None,
        since=_moment("since", values.get("since")),
        until=_moment("until", values.get("until")),
        limit=limit,
        cursor=values.get("cursor") or None,
    )


def _recipient(text: str) -> str:
    """The number as sendMessages stores it: a `+` the query string turned into a space comes
    back, spaces and a `00` prefix are normalised; what is not an international number is 400,
    since no message could be sent to it. Sending's other rules (a Norwegian number must be a
    mobile one) are not applied: messages stored before a rule came in stay found."""
    try:
        return international_number(lost_plus(text))
    except Rejected as exc:
        raise HttpError(400, exc.message.removeprefix("Syntax error: ")) from None


def _moment(name: str, text: str | None) -> float | None:
    return parse_moment(name, text) if text else None


def _unknown_batch(reference: str) -> HttpError:
    return HttpError(404, f"no batch {reference!r} for this service")


def _unauthorized() -> HttpError:
    return HttpError(401, "HTTP Basic credentials of this service are needed")


def _json(value: msgspec.Struct) -> Response:
    return Response(status=200, headers=[("content-type", _JSON)], body=msgspec.json.encode(value))


def _xml(root: str, inner: str) -> Response:
    body = f"{_XML_DECLARATION}<{root}>{inner}</{root}>".encode()
    return Response(status=200, headers=[("content-type", _TEXT_XML)], body=body)


def batch_xml(batch: MessageBatch) -> str:
    """One `messageBatch` (REST XML and SOAP alike)."""
    return (
        "<messageBatch>"
        f"<clientBatchReference>{xml_text(batch.clientBatchReference)}</clientBatchReference>"
        f"<totalSize>{batch.totalSize}</totalSize><onHold>{batch.onHold}</onHold>"
        "</messageBatch>"
    )


def stop_xml(service_id: int, reference: str, stopped: list[StoppedMessage]) -> str:
    """The children of `stopBatchResponse` (REST XML and SOAP alike)."""
    return (
        f"<serviceId>{service_id}</serviceId>"
        f"<clientBatchReference>{xml_text(reference)}</clientBatchReference>"
        + "".join(_stopped_xml(message) for message in stopped)
    )


def _stopped_xml(message: StoppedMessage) -> str:
    reference = message.clientMessageReference
    inner = f"<messageId>{xml_text(message.messageId)}</messageId>"
    if reference is not None:
        inner += f"<clientMessageReference>{xml_text(reference)}</clientMessageReference>"
    return f"<stoppedMessages>{inner}</stoppedMessages>"


def _problem(request: Request, error: HttpError) -> Response:
    return problem_for(error, instance=request.path)
