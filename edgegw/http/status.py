"""The operator's status page: `/` redirects to `/status`, a page (package data, no external
assets) that polls `/status/data` every 2 s, and two forms: a test SMS (`/status/send`) and,
with a simulated modem, an SMS arriving from a chosen number (`/status/simulate-mo`). HTTP
Basic with any service's or the admin account's credentials. Routing and encoding only.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlsplit

import msgspec

from edgegw.http.inputs import basic_credentials, media_type_and_charset
from edgegw.http.problems import HttpError, allow_method, problem_for, problem_response
from edgegw.http.server import Request, Response

__all__ = ["STATUS_PATH", "StatusBackend", "StatusView", "status_routes"]

STATUS_PATH: Final = "/status"
ASSETS_PREFIX: Final = "/status/assets/"

Route = Callable[[Request], Awaitable[Response | None]]

_ASSET_TYPES: Final = {
    "status.html": "text/html; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
}
_MAX_TEXT: Final = 1000  # characters of a test SMS or simulated MO
# Every status answer: the page runs only edgegw's own script and style, talks only to edgegw,
# is never framed by another page (clickjacking of its forms), is never sniffed as another
# type, and sends no Referer with its address to anyone.
_PAGE_HEADERS: Final = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)


class StatusView(msgspec.Struct, kw_only=True):
    """Everything the page shows, in one JSON document."""

    modems: Any  # edgegw.pipeline.modems.ModemsView
    services: list[dict[str, Any]]  # id, name, queued, backlog {kind: count}
    messages: Any  # edgegw.pipeline.overview.MessageLine list
    inbound: Any  # edgegw.pipeline.overview.InboundLine list
    simulated: list[str]  # modems that can make an SMS arrive
    ready: bool


class StatusBackend(Protocol):
    async def operator(self, username: str, password: str) -> bool: ...

    async def status_view(self) -> StatusView: ...

    # The new message's id; ValueError with the reason when it is refused.
    async def send_test(self, service_id: int | None, recipient: str, text: str) -> str: ...

    # ValueError when `modem` is not a simulated modem of this gateway.
    async def simulate_mo(self, modem: str | None, originator: str, text: str) -> None: ...


def _assets() -> dict[str, bytes]:
    folder = importlib.resources.files("edgegw.http") / "static"
    return {name: (folder / name).read_bytes() for name in _ASSET_TYPES}


def status_routes(backend: StatusBackend) -> Route:
    """The routes, for `make_app(..., routes=[...])`. A request they do not serve gets None."""
    assets = _assets()  # read once: the page is small and never changes while we run

    async def route(request: Request) -> Response | None:
        response = await _routed(request)
        if response is not None:
            response.headers.extend(_PAGE_HEADERS)
            if not request.path.startswith(ASSETS_PREFIX):
                # The page's data, forms' answers and refusals hold phone numbers and texts.
                response.headers.append(("cache-control", "no-store"))
        return response

    async def _routed(request: Request) -> Response | None:
        path = request.path
        if path == "/":
            return Response(status=302, headers=[("location", STATUS_PATH)])
        if path != STATUS_PATH and not path.startswith(STATUS_PATH + "/"):
            return None
        try:
            if path.startswith(ASSETS_PREFIX):
                name = path[len(ASSETS_PREFIX) :]
                if name not in assets or name == "status.html":
                    raise HttpError(404, f"no asset {name!r}")
                allow_method(request.method, "GET, HEAD")
                return _asset(assets, name)
            await _authorized(request)
            if path in (STATUS_PATH, STATUS_PATH + "/"):
                allow_method(request.method, "GET, HEAD")
                return _asset(assets, "status.html")
            if path == STATUS_PATH + "/data":
                allow_method(request.method, "GET, HEAD")
                return _json(200, msgspec.json.encode(await backend.status_view()))
            if path == STATUS_PATH + "/send":
                allow_method(request.method, "POST")
                _same_origin(request)
                fields = _fields(request)
                service = fields.get("service") or None
                if service is not None and not service.isdigit():
                    raise HttpError(400, "service must be a service id")
                message_id = await backend.send_test(
                    None if service is None else int(service),
                    _field(fields, "to"),
                    _field(fields, "text"),
                )
                return _json(200, json.dumps({"messageId": message_id}).encode())
            if path == STATUS_PATH + "/simulate-mo":
                allow_method(request.method, "POST")
                _same_origin(request)
                fields = _fields(request)
                await backend.simulate_mo(
                    fields.get("modem") or None, _field(fields, "from"), _field(fields, "text")
                )
                return _json(200, b'{"delivered":true}')
            raise HttpError(404, f"no such resource {path!r}")
        except HttpError as exc:
            return problem_for(exc)
        except ValueError as exc:
            return problem_response(422, str(exc))

    async def _authorized(request: Request) -> None:
        credentials = basic_credentials(request.headers.get("authorization"))
        if credentials is None or not await backend.operator(*credentials):
            raise HttpError(401, "a service's or the admin's credentials")

    return route


def _same_origin(request: Request) -> None:
    """Refuse a form post another site's page made the browser send. The browser adds the
    operator's cached Basic credentials to it, so without this any page the operator opens
    could send SMS from the company's numbers (cross-site request forgery). A browser says
    whose page sent a request in `Sec-Fetch-Site`, which no page can set; one too old for it
    (or on plain HTTP) names the page's origin in `Origin`, whose host and port must then be
    the host our page was loaded from (the `Host`, or a trusted proxy's `X-Forwarded-Host`). A
    client that sends neither (curl, a script) is no browser and has no cached credentials to
    abuse."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site != "same-origin":
            raise HttpError(403, f"a form of another site ({fetch_site}) is refused")
        return
    origin = request.headers.get("origin")
    if origin is None:
        return
    try:
        origin_host = urlsplit(origin).netloc if origin != "null" else ""
    except ValueError:
        origin_host = ""
    if not origin_host or origin_host.lower() != request.host().lower():
        raise HttpError(403, "a form of another origin is refused")


def _fields(request: Request) -> dict[str, str]:
    """A form (urlencoded) or a JSON object of strings."""
    content_type, _ = media_type_and_charset(request.headers.get("content-type", ""))
    try:
        if content_type == "application/json":
            decoded = json.loads(request.body)
            if not isinstance(decoded, dict):
                raise ValueError("not an object")
            return {str(key): str(value) for key, value in decoded.items()}
        return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"a form or a JSON object expected: {exc}") from None


def _field(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise HttpError(400, f"{name} is missing")
    if len(value) > _MAX_TEXT:
        raise HttpError(400, f"{name} is longer than {_MAX_TEXT} characters")
    return value


def _asset(assets: dict[str, bytes], name: str) -> Response:
    headers = [("content-type", _ASSET_TYPES[name])]
    if name != "status.html":
        headers.append(("cache-control", "no-cache"))
    return Response(status=200, headers=headers, body=assets[name])


def _json(status: int, body: bytes) -> Response:
    return Response(status=status, headers=[("content-type", "application/json")], body=body)
