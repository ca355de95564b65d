"""The failed-login guard of the HTTP door: a thin trio wrapper around the `App` that asks the
shared `AuthThrottle` before a request with credentials goes in, waits the delays it returns
(only the request's own task sleeps), refuses a locked-out address with 429, and logs failures
once per window. The policy itself is `edgegw.throttle` (pure); this only consults it.
"""

from __future__ import annotations

import logging
import math
from typing import Final

from edgegw.http import soap_routes
from edgegw.http.app import SEND_PATH
from edgegw.http.inputs import basic_credentials
from edgegw.http.server import App, ErrorRenderer, Request, Response
from edgegw.logins import admit, login_failed
from edgegw.throttle import AuthThrottle

__all__ = ["DOOR", "guard_logins"]

log = logging.getLogger(__name__)

DOOR: Final = "http"


def _carries_credentials(request: Request) -> bool:
    """A send, a SOAP call or anything with an Authorization header. A SOAP door carries its
    credentials in a call's envelope (POST) only: its GETs are for the WSDL and schemas, which
    anyone may read, so an address locked out can still build the client that then reads
    why its calls are refused."""
    if request.path in soap_routes.DOOR_PATHS:
        return request.method == "POST"
    return "authorization" in request.headers or request.path == SEND_PATH


def guard_logins(app: App, throttle: AuthThrottle, errors: ErrorRenderer) -> App:
    """`app` behind the throttle. A failure is a response with `auth_failure` set, or a 401 to
    a request that sent an Authorization header (no header is no guess)."""

    async def guarded(request: Request) -> Response:
        if not _carries_credentials(request):
            return await app(request)
        refused_for = await admit(throttle, DOOR, request.client)
        if refused_for:
            response = errors(request, 429, "too many failed logins from this address")
            response.headers.append(("retry-after", str(math.ceil(refused_for))))
            return response
        response = await app(request)
        account = response.auth_failure
        if account is None and response.status == 401 and "authorization" in request.headers:
            credentials = basic_credentials(request.headers["authorization"])
            account = credentials[0] if credentials is not None else ""
        if account is None:
            return response
        await login_failed(throttle, DOOR, "HTTP", request.client, account, log)
        return response

    return guarded
