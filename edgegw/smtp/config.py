"""The SMTP listener's configuration (`[smtp]`) and each service's email settings
(`[services.smtp]`). Typed data and checks only, no I/O. Spec section 2.6; keys are documented
in config.example.toml.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from edgegw.networks import network_problems
from edgegw.smtp.protocol import SmtpLimits

__all__ = ["ServiceSmtp", "SmtpConfig", "check_smtp"]


class ServiceSmtp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Email to SMS for one service; a service without it takes no email."""

    # Client addresses or networks ("127.0.0.1", "10.0.0.0/8") that may send without AUTH.
    allow: list[str] = msgspec.field(default_factory=list)
    # Put the subject and a line break before the body (the subject is ignored otherwise).
    prepend_subject: bool = False
    # Cut a trailing signature: the last line that is exactly "-- " and everything after it.
    strip_signature: bool = False


class SmtpConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The email-to-SMS listener."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 2525
    # The mail domain of recipient addresses, <number>-<service id>@<domain>.
    domain: Annotated[str, msgspec.Meta(min_length=1)] = "sms.localhost"
    # Largest message (announced as SIZE); larger is refused with 552.
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576
    # Recipients of one mail; more get 452.
    max_recipients: Annotated[int, msgspec.Meta(ge=1)] = 100
    # Longest line of a message, CRLF included (RFC 5321 says 1000).
    max_line_bytes: Annotated[int, msgspec.Meta(ge=80)] = 1000
    # Connections at once; one more gets 421 and is closed.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 64
    # Connections from one client address at once; 0 means a quarter of max_connections. One
    # more gets 421 like a full listener, so one address cannot shut the others out.
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=0)] = 0
    # true: loopback clients are not held to that share.
    exempt_loopback: bool = False
    # Seconds a client may take for one command (RFC 5321 4.5.3.2 suggests 5 minutes).
    idle_timeout: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    # Seconds a client may take to send a whole message after DATA.
    data_timeout: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    # PEM certificate chain and key: with both set, STARTTLS is offered.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # true: MAIL needs AUTH first. AUTH (PLAIN, LOGIN, the service's username and password) is
    # offered only under TLS or to a client on the loopback address.
    require_auth: bool = False

    def limits(self) -> SmtpLimits:
        return SmtpLimits(
            max_message_bytes=self.max_message_bytes,
            max_recipients=self.max_recipients,
            max_line_bytes=self.max_line_bytes,
        )


def check_smtp(
    smtp: SmtpConfig | None, services: Sequence[tuple[int, ServiceSmtp | None]]
) -> list[str]:
    """Problems of `[smtp]` and of each `services[i].smtp` (given as (index, setting))."""
    problems: list[str] = []
    if smtp is not None and bool(smtp.tls_cert_file) != bool(smtp.tls_key_file):
        problems.append("smtp.tls_cert_file: STARTTLS needs both tls_cert_file and tls_key_file")
    for index, setting in services:
        if setting is None:
            continue
        where = f"services[{index}].smtp"
        if smtp is None:
            problems.append(f"{where}: needs an [smtp] listener")
        problems += network_problems(f"{where}.allow", setting.allow)
    return problems
