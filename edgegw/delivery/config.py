"""Configuration of customer callbacks: per-service MO/DR endpoints and MO email, the SMTP relay
and the Management API's authentication policy. Types and checks only, no I/O.
Keys are documented in config.example.toml; spec sections 3.2-3.5, 4.2-4.3 and 5.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "CLIENT_SECRET_BASIC",
    "CLIENT_SECRET_POST",
    "CallbackEndpoint",
    "ManagementConfig",
    "MoEmailConfig",
    "OAuth2Config",
    "SmtpRelayConfig",
    "check_endpoint",
    "check_mo_email",
]

# RFC 7591 section 2's names of the two ways RFC 6749 2.3.1 gives a client with a secret.
CLIENT_SECRET_POST: Final = "client_secret_post"
CLIENT_SECRET_BASIC: Final = "client_secret_basic"
_CLIENT_AUTH_METHODS: Final = (CLIENT_SECRET_POST, CLIENT_SECRET_BASIC)


class OAuth2Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OAuth2 client credentials (spec 3.5, item 4): a token from `authorize_uri`, sent to the
    endpoint as `Authorization: Bearer`."""

    authorize_uri: str  # the token endpoint
    grant_type: str = "client_credentials"  # the only grant the spec names
    client_id: str
    client_secret: str
    # How the client authenticates to the token endpoint, named as in RFC 7591 section 2 and an
    # OpenID provider's discovery document: client_secret_post (id and secret in the form body,
    # the default: spec 3.5 lists them with the form's extras, and earlier edgegw sent them so)
    # or client_secret_basic (HTTP Basic, RFC 6749 2.3.1, which every server must take).
    token_endpoint_auth_method: str = CLIENT_SECRET_POST
    tenant_id: str = ""  # Azure AD
    resource: str = ""  # Azure AD
    audience: str = ""  # Auth0


class CallbackEndpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where one kind of callback (MO or DR) of a service goes, and how it is retried."""

    url: str  # GET: a template with [field] placeholders; POST: the URL the batch goes to
    method: Literal["GET", "POST"] = "POST"
    format: Literal["json", "xml"] = "json"  # POST body
    username: str = ""  # HTTP Basic, when set
    password: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    hmac_key: str = ""  # signs each request in X-Edgegw-Signature, when set
    timeout: float = 60.0
    batch_max: int = 1000  # about 300 KB of JSON DRs
    interval: float = 1.0
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    give_up_after: float = 259200.0
    verify: bool = True
    ca_file: str = ""
    oauth2: OAuth2Config | None = None  # bearer tokens by client credentials, when set


class MoEmailConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """MO by email (spec 3.4): templates with [field] placeholders, sent through [smtp_relay]."""

    to: str
    sender: str = msgspec.field(name="from", default="[originator]-[serviceid]@sms.invalid")
    subject: str = "SMS from [originator]"
    body: str = "[originator] sent to [sno]: [content]"
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    give_up_after: float = 259200.0


class SmtpRelayConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = ""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 25
    starttls: bool = False
    username: str = ""
    password: str = ""
    # smtplib's socket timeout: at 0 or below every email is a ValueError of smtplib's, not a
    # failed try of the outbox.
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0


class ManagementConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # The 3.0.1 Python client calls /management/... without credentials (spec 5.2). true lets
    # such calls in from 127.0.0.1/::1 only; false (the default) asks for HTTP Basic always.
    allow_unauthenticated_loopback: bool = False


_URL = re.compile(r"https?://[^\s/]+", re.IGNORECASE)


def check_endpoint(where: str, endpoint: CallbackEndpoint) -> list[str]:
    problems: list[str] = []
    if _URL.match(endpoint.url) is None:
        problems.append(f"{where}.url: must be an http:// or https:// URL")
    for key in ("timeout", "retry_initial"):
        if getattr(endpoint, key) <= 0:
            problems.append(f"{where}.{key}: must be positive")
    if endpoint.interval < 1.0:
        problems.append(f"{where}.interval: the spec allows at most one request per second")
    if endpoint.retry_max < endpoint.retry_initial:
        problems.append(f"{where}.retry_max: must be at least retry_initial")
    if endpoint.give_up_after <= 0:
        problems.append(f"{where}.give_up_after: must be positive")
    if endpoint.batch_max < 1:
        problems.append(f"{where}.batch_max: must be at least 1")
    if endpoint.password and not endpoint.username:
        problems.append(f"{where}.username: a password needs a username")
    if endpoint.oauth2 is not None:
        problems += _check_oauth2(f"{where}.oauth2", endpoint)
    return problems


def _check_oauth2(where: str, endpoint: CallbackEndpoint) -> list[str]:
    oauth2 = endpoint.oauth2
    assert oauth2 is not None
    problems: list[str] = []
    if _URL.match(oauth2.authorize_uri) is None:
        problems.append(f"{where}.authorize_uri: must be an http:// or https:// URL")
    if oauth2.grant_type != "client_credentials":
        problems.append(f"{where}.grant_type: only client_credentials is supported")
    if not oauth2.client_id:
        problems.append(f"{where}.client_id: must not be empty")
    if not oauth2.client_secret:
        problems.append(f"{where}.client_secret: must not be empty")
    if oauth2.token_endpoint_auth_method not in _CLIENT_AUTH_METHODS:
        problems.append(
            f"{where}.token_endpoint_auth_method: {oauth2.token_endpoint_auth_method!r} is"
            " neither client_secret_post (id and secret in the form body) nor"
            " client_secret_basic (HTTP Basic)"
        )
    # Spec 3.5: one way of authenticating to the customer by header, either fixed or OAuth2.
    if endpoint.username:
        problems.append(f"{where}: takes the place of username and password, set only one")
    if any(name.lower() == "authorization" for name in endpoint.headers):
        problems.append(f"{where}: sets Authorization itself, remove it from headers")
    return problems


def check_mo_email(where: str, email: MoEmailConfig, relay: SmtpRelayConfig) -> list[str]:
    problems: list[str] = []
    if "@" not in email.to:
        problems.append(f"{where}.to: must be an email address")
    if not relay.host:
        problems.append(f"{where}: MO by email needs smtp_relay.host")
    if email.retry_initial <= 0 or email.retry_max < email.retry_initial:
        problems.append(f"{where}.retry_initial: must be positive and at most retry_max")
    if email.give_up_after <= 0:
        problems.append(f"{where}.give_up_after: must be positive")
    return problems
