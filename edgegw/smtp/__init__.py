"""The SMTP door of edgegw (email to SMS, spec section 2.6): the dialogue as a pure state
machine, the mail's text and recipient address, the configuration and the trio listener."""

from edgegw.smtp.config import ServiceSmtp, SmtpConfig, check_smtp
from edgegw.smtp.mail import (
    MAX_CHARACTERS,
    MAX_MIME_CONTAINERS,
    MailContent,
    MailError,
    ascii_domain,
    is_postmaster,
    mail_content,
    mail_subject,
    parse_recipient,
)
from edgegw.smtp.protocol import (
    NEED_DATA,
    AuthRequested,
    ConnectionClosed,
    MessageReceived,
    Phase,
    RecipientRequested,
    Reply,
    SmtpLimits,
    SmtpSession,
    StartTlsRequested,
)

__all__ = [
    "MAX_CHARACTERS",
    "MAX_MIME_CONTAINERS",
    "NEED_DATA",
    "AuthRequested",
    "ConnectionClosed",
    "MailContent",
    "MailError",
    "MessageReceived",
    "Phase",
    "RecipientRequested",
    "Reply",
    "ServiceSmtp",
    "SmtpConfig",
    "SmtpLimits",
    "SmtpSession",
    "StartTlsRequested",
    "ascii_domain",
    "check_smtp",
    "is_postmaster",
    "mail_content",
    "mail_subject",
    "parse_recipient",
]
