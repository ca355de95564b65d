"""Errors of the JSON routes as RFC 9457 problem details, and the query-time parser they share.

Builds responses and parses text; no I/O. Serves the routes under /api/ and the Management API
(spec section 5.2: `application/problem+json` with type, title, status, detail, instance).
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Final

import msgspec

from edgegw.http.server import Response, reason_phrase

__all__ = [
    "PROBLEM_JSON",
    "REALM",
    "HttpError",
    "MethodNotAllowed",
    "Problem",
    "Unavailable",
    "allow_method",
    "parse_moment",
    "problem_for",
    "problem_response",
]

PROBLEM_JSON: Final = "application/problem+json"
# The HTTP Basic realm every route that asks for a service's credentials names.
REALM: Final = "edgegw"
# A time and its UTC offset whose `+` a query string decoded to a space, as an unencoded
# "10:00:00+02:00" arrives: "10:00:00 02:00".
_LOST_OFFSET_PLUS: Final = re.compile(r"(\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?) (\d\d(?::?\d\d)?)\Z")


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details. The type is always "about:blank", whose title is the status's
    phrase (section 4.2.1): one title per status, whichever route answers."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class HttpError(Exception):
    """A request a route refuses: answered with its status as problem details."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class MethodNotAllowed(HttpError):
    """A 405, which names the methods the resource takes (RFC 9110 section 15.5.6)."""

    def __init__(self, method: str, allow: str) -> None:
        super().__init__(405, f"{method} is not one of {allow}")
        self.allow = allow


class Unavailable(HttpError):
    """A 503: nothing was done, and the same request may work `retry_after` seconds later
    (RFC 9110 sections 15.6.4 and 10.2.3)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(503, detail)
        self.retry_after = retry_after


def allow_method(method: str, allow: str) -> None:
    """MethodNotAllowed unless `method` is one of `allow` ("GET, HEAD, DELETE")."""
    if method not in allow.split(", "):
        raise MethodNotAllowed(method, allow)


def problem_for(error: HttpError, *, instance: str | None = None) -> Response:
    """The problem+json answer to `error`, with the Allow header a 405 must carry and the
    Retry-After of a 503."""
    response = problem_response(error.status, error.detail, instance=instance)
    if isinstance(error, MethodNotAllowed):
        response.headers.append(("allow", error.allow))
    if isinstance(error, Unavailable):
        response.headers.append(("retry-after", str(error.retry_after)))
    return response


def problem_response(status: int, detail: str, *, instance: str | None = None) -> Response:
    """The problem+json answer; a 401 also names the Basic realm, as RFC 7235 asks."""
    problem = Problem(
        type="about:blank",
        title=reason_phrase(status),
        status=status,
        detail=detail,
        instance=instance,
    )
    response = Response(
        status=status,
        headers=[("content-type", PROBLEM_JSON)],
        body=msgspec.json.encode(problem),
    )
    if status == 401:
        response.headers.append(("www-authenticate", f'Basic realm="{REALM}"'))
    return response


def parse_moment(name: str, text: str) -> float:
    """A query time: Unix seconds, or ISO 8601 (`Z` allowed; without an offset it is UTC). The
    `+` of an offset that the query string turned into a space comes back, as a recipient's
    does (edgegw.http.puzzel.lost_plus)."""
    if not text.isascii():
        # float() and fromisoformat() read digits of every script; a client means ASCII.
        raise HttpError(400, f"{name} must be ISO 8601 or Unix seconds")
    try:
        epoch = float(text)
    except ValueError:
        epoch = None
    if epoch is not None:
        if not math.isfinite(epoch):
            raise HttpError(400, f"{name} {text!r} is not a time")
        return epoch
    try:
        iso = _LOST_OFFSET_PLUS.sub(r"\1+\2", text, count=1)
        moment = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, f"{name} must be ISO 8601 or Unix seconds, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
