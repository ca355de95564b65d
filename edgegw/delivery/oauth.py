"""OAuth2 client credentials towards a customer endpoint (spec 3.5, item 4): the request to the
token endpoint, the token or the error read from its answer, and when a token is due for
renewal. Pure: no I/O and no clock (`now` is a parameter). RFC 6749 sections 2.3.1, 4.4, 5.1
and 5.2.
"""

from __future__ import annotations

import base64
import math
import re
import urllib.parse
from typing import Final

import msgspec

from edgegw.delivery.config import CLIENT_SECRET_BASIC, OAuth2Config

__all__ = [
    "BearerToken",
    "OAuth2Error",
    "read_token_error",
    "read_token_response",
    "token_request_form",
    "token_request_headers",
]

# A token is renewed this long before it expires (or at half its life, if that is shorter), so
# that one taken from the cache does not run out on its way to the customer.
RENEW_BEFORE: Final = 60.0
# Characters of a token endpoint's error kept for the log: its description is the server's
# prose, Azure AD's some 400 characters with the useful part first.
ERROR_TEXT_LIMIT: Final = 300
# RFC 6749 5.2 allows printable ASCII only; Azure AD puts line breaks in its descriptions. Each
# run of anything else becomes one space, so that the reason stays one line of plain text.
_NOT_ERROR_TEXT: Final = re.compile(r"[^\x20-\x7e]+")


class OAuth2Error(Exception):
    """The token endpoint's answer holds no usable bearer token."""


class BearerToken(msgspec.Struct, frozen=True, kw_only=True):
    value: str
    renew_at: float | None  # None: no expires_in given, kept until the customer refuses it

    def fresh(self, now: float) -> bool:
        return self.renew_at is None or now < self.renew_at


class _TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None


class _ErrorResponse(msgspec.Struct, kw_only=True):
    error: str
    error_description: str | None = None


def token_request_form(config: OAuth2Config) -> dict[str, str]:
    """The client-credentials grant's form, with the client's id and secret unless they go by
    HTTP Basic, and the providers' extras (`tenant_id`, `resource`, `audience`) when set."""
    form = {"grant_type": config.grant_type}
    # RFC 6749 2.3.1: a client uses one way of authenticating a request, not both.
    if config.token_endpoint_auth_method != CLIENT_SECRET_BASIC:
        form |= {"client_id": config.client_id, "client_secret": config.client_secret}
    for name in ("tenant_id", "resource", "audience"):
        value: str = getattr(config, name)
        if value:
            form[name] = value
    return form


def token_request_headers(config: OAuth2Config) -> dict[str, str]:
    """The token request's headers: JSON asked for, and HTTP Basic with client_secret_basic."""
    headers = {"accept": "application/json"}
    if config.token_endpoint_auth_method == CLIENT_SECRET_BASIC:
        # RFC 6749 2.3.1: id and secret are form-urlencoded (appendix B) before they are
        # joined by ":", so a ":" in the id or a non-ASCII secret reach the server unchanged;
        # plain HTTP Basic (RFC 7617) would split at that ":" or leave the charset unknown.
        pair = ":".join(
            urllib.parse.quote_plus(value, safe="")
            for value in (config.client_id, config.client_secret)
        )
        headers["authorization"] = "Basic " + base64.b64encode(pair.encode("ascii")).decode()
    return headers


def read_token_response(body: bytes, now: float) -> BearerToken:
    """The bearer token of a token endpoint's 200 answer, or OAuth2Error."""
    try:
        # Not strict: Azure AD's v1 endpoint (the one taking `resource`) sends expires_in as
        # a string of digits.
        answer = msgspec.json.decode(body, type=_TokenResponse, strict=False)
    except msgspec.DecodeError as exc:
        raise OAuth2Error(f"token response unreadable: {exc}") from None
    except RecursionError:
        # JSON nested some thousand levels deep, a few kB of the answer's 64 KiB.
        raise OAuth2Error("token response unreadable: nested too deeply") from None
    if not answer.access_token:
        raise OAuth2Error("token response has an empty access_token")
    if answer.token_type.lower() != "bearer":
        raise OAuth2Error(f"token_type {answer.token_type!r} is not Bearer")
    if answer.expires_in is None:
        return BearerToken(value=answer.access_token, renew_at=None)
    # Not strict lets "NaN" and "Infinity" through: a token renewed at NaN or -inf is never
    # fresh (one token request for every callback), one renewed at inf never renewed.
    if not math.isfinite(answer.expires_in):
        raise OAuth2Error("token response has an expires_in that is not a number of seconds")
    lifetime = max(answer.expires_in, 0.0)
    renew_at = now + max(lifetime - RENEW_BEFORE, lifetime / 2)
    return BearerToken(value=answer.access_token, renew_at=renew_at)


def read_token_error(body: bytes) -> str | None:
    """What a token endpoint's error answer (RFC 6749 5.2) says went wrong, `error` and then
    `error_description` in brackets; None when the body is no such answer."""
    try:
        answer = msgspec.json.decode(body, type=_ErrorResponse)
    except (msgspec.DecodeError, RecursionError):
        return None
    reason = answer.error
    if answer.error_description:
        reason += f" ({answer.error_description})"
    return _NOT_ERROR_TEXT.sub(" ", reason).strip()[:ERROR_TEXT_LIMIT] or None
