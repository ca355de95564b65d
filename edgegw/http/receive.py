"""HTTP routes of the receive side: `GET /api/inbound` and `GET /api/inbound/{id}` (a service's
inbound messages, spec 3.1 fields) and `GET /api/modems` (health of every modem). Routing, auth
and encoding only: never touches the store or a modem itself; the backend does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol
from urllib.parse import parse_qs, unquote

import msgspec

from edgegw.http.inputs import ascii_count, basic_credentials
from edgegw.http.problems import HttpError, allow_method, parse_moment, problem_for
from edgegw.http.server import Request, Response
from edgegw.model import InboundView
from edgegw.pipeline.inbound import MAX_LIST
from edgegw.pipeline.modems import ModemsView

__all__ = ["INBOUND_PATH", "MODEMS_PATH", "ReceiveBackend", "receive_routes"]

INBOUND_PATH: Final = "/api/inbound"
MODEMS_PATH: Final = "/api/modems"
DEFAULT_LIMIT: Final = 100

_JSON: Final = "application/json"

Route = Callable[[Request], Awaitable[Response | None]]


class ReceiveBackend(Protocol):
    """What these routes need from the core; the gateway implements it."""

    # Service id for HTTP Basic credentials, or None.
    async def authenticate(self, username: str, password: str) -> int | None: ...

    # The service's inbound received after `since` (epoch), newest first, at most `limit`.
    async def inbound_list(
        self, service_id: int, since: float | None, limit: int
    ) -> list[InboundView]: ...

    # None when unknown or another service's.
    async def inbound_view(self, service_id: int, message_id: str) -> InboundView | None: ...

    async def modems_view(self) -> ModemsView: ...


class _InboundList(msgspec.Struct, kw_only=True):
    inbound: list[InboundView]


def receive_routes(backend: ReceiveBackend) -> Route:
    """The routes, for `make_app(..., routes=[...])`. A request they do not serve gets None."""

    async def route(request: Request) -> Response | None:
        path = request.path
        try:
            if path in (INBOUND_PATH, INBOUND_PATH + "/"):
                service_id = await _authorized(request)
                since, limit = _list_query(request.query)
                views = await backend.inbound_list(service_id, since, limit)
                return _json(_InboundList(inbound=views))
            if path.startswith(INBOUND_PATH + "/"):
                message_id = unquote(path[len(INBOUND_PATH) + 1 :])
                if "/" in message_id:
                    raise HttpError(404, f"no such resource {path!r}")
                service_id = await _authorized(request)
                view = await backend.inbound_view(service_id, message_id)
                if view is None:
                    raise HttpError(404, f"no inbound message {message_id!r} for this service")
                return _json(view)
            if path == MODEMS_PATH:
                await _authorized(request)
                return _json(await backend.modems_view())
        except HttpError as exc:
            return problem_for(exc)
        return None

    async def _authorized(request: Request) -> int:
        allow_method(request.method, "GET, HEAD")
        credentials = basic_credentials(request.headers.get("authorization"))
        service_id = None if credentials is None else await backend.authenticate(*credentials)
        if service_id is None:
            raise HttpError(401, "HTTP Basic credentials of a service needed")
        return service_id

    return route


def _list_query(query: str) -> tuple[float | None, int]:
    values = {key: items[-1] for key, items in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(values) - {"since", "limit"})
    if unknown:
        raise HttpError(400, f"unknown query parameter {unknown[0]!r}")
    since = parse_moment("since", values["since"]) if "since" in values else None
    limit = DEFAULT_LIMIT
    if "limit" in values:
        count = ascii_count(values["limit"])
        if count is None or not 1 <= count <= MAX_LIST:
            raise HttpError(400, f"limit must be from 1 to {MAX_LIST}")
        limit = count
    return since, limit


def _json(value: msgspec.Struct) -> Response:
    return Response(status=200, headers=[("content-type", _JSON)], body=msgspec.json.encode(value))
