"""HTTP routes an operator and a monitoring system use: `GET /health` (liveness, with the
readiness verdict as a field), `GET /ready` (200 only when every service has a modem that can
send, else 503 listing the modems that cannot and why) and `GET /metrics` (Prometheus text,
without credentials unless configured). Routing and encoding only; the backend knows the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import msgspec

from edgegw.http.inputs import basic_credentials
from edgegw.http.problems import MethodNotAllowed, allow_method, problem_for, problem_response
from edgegw.http.server import Request, Response
from edgegw.pipeline.readiness import Readiness

__all__ = ["HEALTH_PATH", "METRICS_PATH", "READY_PATH", "MonitoringBackend", "monitoring_routes"]

HEALTH_PATH: Final = "/health"
READY_PATH: Final = "/ready"
METRICS_PATH: Final = "/metrics"

_JSON: Final = "application/json"

Route = Callable[[Request], Awaitable[Response | None]]


class MonitoringBackend(Protocol):
    # Liveness: started and not stopping.
    def ready(self) -> bool: ...

    # Whether each service has a modem that can send now, and which modems cannot.
    def readiness(self) -> Readiness: ...

    # The Prometheus exposition of every metric, and its content type.
    def metrics_text(self) -> tuple[bytes, str]: ...

    # True for the credentials of any service or of the admin account.
    async def operator(self, username: str, password: str) -> bool: ...


class _Health(msgspec.Struct):
    status: str
    ready: bool


def monitoring_routes(backend: MonitoringBackend, *, metrics_auth: bool = False) -> Route:
    """The routes, for `make_app(..., routes=[...])`. A request they do not serve gets None.
    With `metrics_auth`, /metrics asks for a service's or the admin's HTTP Basic credentials."""

    async def route(request: Request) -> Response | None:
        path = request.path
        if path not in (HEALTH_PATH, READY_PATH, METRICS_PATH):
            return None
        try:
            allow_method(request.method, "GET, HEAD")
        except MethodNotAllowed as refused:
            return problem_for(refused)
        if path == METRICS_PATH:
            if metrics_auth and not await _operator(request):
                return problem_response(401, "HTTP Basic credentials needed")
            body, content_type = backend.metrics_text()
            return Response(status=200, headers=[("content-type", content_type)], body=body)
        if path == READY_PATH:
            verdict = backend.readiness()
            ready = verdict.ready and backend.ready()
            return _json(200 if ready else 503, msgspec.json.encode(verdict))
        live = backend.ready()
        health = _Health(
            status="ok" if live else "unavailable", ready=live and backend.readiness().ready
        )
        return _json(200 if live else 503, msgspec.json.encode(health))

    async def _operator(request: Request) -> bool:
        credentials = basic_credentials(request.headers.get("authorization"))
        return credentials is not None and await backend.operator(*credentials)

    return route


def _json(status: int, body: bytes) -> Response:
    return Response(status=status, headers=[("content-type", _JSON)], body=body)
