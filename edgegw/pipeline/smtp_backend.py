"""The gateway core behind the SMTP door: who may mail which service, and a received mail made
into one durable message per recipient through the same `Submitter` as every other door.

A mail is acknowledged (250) only after all its messages committed, and refused (554) whole
when any recipient's message cannot be sent, so nothing is half accepted. Mail to the postmaster
(RFC 5321 4.5.1) is taken from any client and logged, as there is no mailbox to keep it in.
Spec section 2.6.
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import trio

from edgegw.config import ServiceConfig
from edgegw.loglimit import LogLimiter, log_limited
from edgegw.networks import Networks
from edgegw.offload import decoded
from edgegw.pipeline.submit import DirectMessage, Rejected, Submitter, check_recipient
from edgegw.smtp.mail import (
    MailContent,
    MailError,
    is_postmaster,
    mail_content,
    mail_subject,
    parse_recipient,
)
from edgegw.smtp.protocol import Reply
from edgegw.store import NewMessage, Store, StoreUnwritable

__all__ = ["GatewaySmtpBackend"]

log = logging.getLogger(__name__)

_IDS_PER_LINE: Final = 20  # keeps each line of the 250 reply well under 512 octets
_SUBJECT_LOGGED: Final = 200  # characters of a postmaster mail's subject in its log line


class GatewaySmtpBackend:
    """`edgegw.smtp.server.SmtpBackend` over the submit pipeline and the store."""

    def __init__(
        self,
        services: Iterable[ServiceConfig],
        submitter: Submitter,
        store: Store,
        authenticate: Callable[[str, str], Awaitable[int | None]],
        *,
        domain: str,
        on_accepted: Callable[[int, int], None] | None = None,
        limiter: LogLimiter | None = None,
    ) -> None:
        self._services = {service.id: service for service in services}
        self._allowed = {
            service.id: Networks(service.smtp.allow)
            for service in self._services.values()
            if service.smtp is not None
        }
        self._submitter = submitter
        self._store = store
        # Told (service id, messages) after each committed mail; the gateway counts them.
        self._on_accepted = on_accepted
        self._authenticate = authenticate
        self._domain = domain
        # Mail to the postmaster is logged at most once a minute per client address (the
        # listener's limiter, which writes the count of those left out).
        self._limiter = limiter or LogLimiter()

    async def authenticate(self, username: str, password: str) -> int | None:
        return await self._authenticate(username, password)

    def recipient(self, address: str, client: str, authenticated: int | None) -> Reply:
        """The RCPT decision: a well-formed address of a service that takes email, from an
        allowed client address or a session authenticated as that service; the postmaster's
        from any client (RFC 5321 4.5.1)."""
        if is_postmaster(address, self._domain):
            return Reply(250, "2.1.5 postmaster OK")
        try:
            number, service_id = parse_recipient(address, self._domain)
            check_recipient(number)
        except MailError as exc:
            return Reply(550, f"5.1.3 {exc.reason}")
        except Rejected as exc:
            return Reply(550, f"5.1.3 {exc.message}")
        allowed = self._allowed.get(service_id)
        if service_id not in self._services or allowed is None:
            return Reply(550, f"5.1.1 service {service_id} takes no email here")
        if authenticated != service_id and client not in allowed:
            return Reply(550, f"5.7.1 {client} may not send for service {service_id}")
        return Reply(250, "2.1.5 recipient OK")

    async def deliver(
        self, sender: str, recipients: Sequence[str], content: bytes, client: str
    ) -> Reply:
        """The end-of-DATA decision: 250 with the message ids once committed, 554 with the
        reason when a message cannot be sent, 452 when the store's disk is full, 451 when the
        store failed otherwise (nothing accepted either way). A mail taken for the postmaster
        is logged with its sender, client address, subject and size."""
        texts: dict[tuple[bool, bool], MailContent] = {}
        messages: list[NewMessage] = []
        # One SMS per number and service, as MTAs drop duplicate recipients: a mail listing a
        # number twice (in To and Cc, with and without its +) must not reach the phone twice.
        taken: set[tuple[str, int]] = set()
        to_postmaster = False
        try:
            for address in recipients:
                if is_postmaster(address, self._domain):
                    to_postmaster = True
                    continue
                number, service_id = parse_recipient(address, self._domain)
                if (number, service_id) in taken:
                    continue
                taken.add((number, service_id))
                setting = self._services[service_id].smtp
                assert setting is not None  # checked at RCPT
                options = (setting.prepend_subject, setting.strip_signature)
                if options not in texts:
                    # Read before the mail is accepted, from any allowed sender: a big one
                    # in a worker thread, or its parts would hold up every door and modem.
                    read = functools.partial(
                        mail_content, prepend_subject=options[0], strip_signature=options[1]
                    )
                    texts[options] = await decoded(read, content)
                text = texts[options]
                direct = DirectMessage(
                    service_id=service_id,
                    recipient=number,
                    content=text.text,
                    new_session=text.new_session,
                )
                messages.append(self._submitter.prepare(direct))
        except MailError as exc:
            return Reply(554, f"5.6.0 {exc.reason}")
        except Rejected as exc:
            return Reply(554, f"5.6.0 {address}: {exc.message}")
        try:
            if messages:
                await self._store.insert_messages(messages)
        except Exception as exc:
            log.exception("smtp: storing a mail for %d recipients failed", len(messages))
            if isinstance(exc, StoreUnwritable):
                # RFC 5321 section 4.2.2 "insufficient system storage", RFC 3463 X.3.1 "mail
                # system full": a transient failure its MTA retries, saying what it is.
                return Reply(452, "4.3.1 insufficient system storage, try again later")
            return Reply(451, "4.3.0 the message could not be stored, try again later")
        if to_postmaster:
            subject = await decoded(mail_subject, content)
            log_limited(
                log,
                self._limiter,
                logging.WARNING,
                "postmaster",
                client,
                trio.current_time(),
                "SMTP mail to the postmaster from %r (client %s, subject %r, %d bytes) is only"
                " logged: the gateway keeps no mailbox",
                sender,
                client,
                subject[:_SUBJECT_LOGGED],
                len(content),
            )
            if not messages:
                return Reply(250, "2.0.0 logged for the postmaster")
        if self._on_accepted is not None:
            for service_id, count in collections.Counter(m.service_id for m in messages).items():
                self._on_accepted(service_id, count)
        ids = [message.id for message in messages]
        lines = [
            " ".join(ids[start : start + _IDS_PER_LINE])
            for start in range(0, len(ids), _IDS_PER_LINE)
        ]
        return Reply(250, "2.0.0 queued as " + "\n".join(lines))
