"""Delivery workers: one trio task per (service, endpoint) moves outbox items to the customer by
HTTP GET, batched HTTP POST (JSON or XML) or email, and records each outcome in the store.
Never marks an item delivered without the customer's HTTP 200 (or the relay's acceptance), and
never lets one endpoint wait on another. Spec sections 3.2-3.5 and 4.2-4.3.
"""

from __future__ import annotations

import datetime
import email.policy
import email.utils
import functools
import logging
import math
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Final

import httpx
import msgspec
import trio

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.delivery.config import CallbackEndpoint, MoEmailConfig, SmtpRelayConfig
from edgegw.delivery.oauth import (
    BearerToken,
    OAuth2Error,
    read_token_error,
    read_token_response,
    token_request_form,
    token_request_headers,
)
from edgegw.delivery.outbox import (
    Endpoint,
    OutboxItem,
    backoff_delay,
    bound_waits,
    due_items,
    next_due,
    record_delivered,
    record_failure,
    register_endpoints,
)
from edgegw.delivery.payload import (
    SIGNATURE_HEADER,
    CallbackKind,
    encode_json_batch,
    encode_xml_batch,
    placeholders,
    render_template,
    sign,
)
from edgegw.store import Store, StoreClosed

__all__ = [
    "Attempt",
    "Deliveries",
    "DeliveryWorker",
    "EmailSender",
    "HttpSender",
    "RetryPolicy",
    "http_client",
    "token_client",
]

log = logging.getLogger(__name__)
# httpx logs every request at INFO with its whole URL: a callback URL's user:password, and the
# text and numbers a GET template fills in, would reach the journal. A failed try is logged
# here, without the URL.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Items a GET or email worker takes per round (one store read, one commit for their outcomes).
ROUND_ITEMS: Final = 100
# Longest a worker sleeps before looking at the outbox again, a safety net: the store wakes the
# workers after every commit that queued an MO or a DR (Topic.CALLBACKS).
POLL_SECONDS: Final = 1.0
RESTART_SECONDS: Final = 5.0  # a worker that failed unexpectedly starts again after this
USER_AGENT: Final = "edgegw"

_CONTENT_TYPES: Final = {"json": "application/json", "xml": "application/xml; charset=UTF-8"}
# Octets of an answer's body read at most: a callback's body means nothing (spec 3.5 reads the
# status, which counts once it came), a token's is a few kilobytes. A longer body is dropped
# with its connection.
ANSWER_BODY_LIMIT: Final = 64 * 1024


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    initial: float
    maximum: float
    give_up_after: float


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """What one try of some items came to: `error` is None when the customer took them."""

    status: int | None
    error: str | None


class HttpSender:
    """Sends items to one HTTP endpoint: GET one at a time, or POST up to `batch_max`."""

    def __init__(
        self,
        kind: CallbackKind,
        config: CallbackEndpoint,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.kind = kind
        self.config = config
        # POST sends up to batch_max items a request, one request per interval (spec 3.3);
        # GET sends one request an item, one after the other.
        self.batched = config.method == "POST"
        self.batch = config.batch_max if self.batched else 1
        self.interval = config.interval if self.batched else 0.0
        self.retry = RetryPolicy(
            initial=config.retry_initial,
            maximum=config.retry_max,
            give_up_after=config.give_up_after,
        )
        self._clock = clock
        self._client = client or http_client(config)
        # The token endpoint gets neither the customer's fixed headers nor its credentials.
        self._token_client = token_client(config) if config.oauth2 is not None else None
        self._token: BearerToken | None = None

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        finally:
            if self._token_client is not None:
                await self._token_client.aclose()

    async def send(self, items: Sequence[OutboxItem]) -> Attempt:
        if self.config.oauth2 is None:
            return await self._deliver(items, {})
        cached = self._token is not None and self._token.fresh(self._clock.now())
        attempt = await self._deliver_with_token(items)
        if attempt.status == 401 and cached:
            # The endpoint refused a token from the cache (revoked, or expired early): one new
            # token and the same request again, rather than a whole retry interval later. A
            # token fresh from the token endpoint that is refused is the endpoint's answer.
            attempt = await self._deliver_with_token(items)
        return attempt

    async def _deliver_with_token(self, items: Sequence[OutboxItem]) -> Attempt:
        token = await self._bearer_token()
        if isinstance(token, Attempt):
            return token
        attempt = await self._deliver(items, {"authorization": f"Bearer {token.value}"})
        if attempt.status == 401:
            self._token = None
        return attempt

    async def _deliver(self, items: Sequence[OutboxItem], headers: dict[str, str]) -> Attempt:
        config = self.config
        if config.method == "GET":
            (item,) = items
            url = httpx.URL(render_template(config.url, placeholders(item.report())))
            self._sign(headers, url.raw_path)
            return await self._request("GET", url, headers)
        reports = [item.report() for item in items]
        encode = encode_json_batch if config.format == "json" else encode_xml_batch
        body = encode(self.kind, reports)
        headers["content-type"] = _CONTENT_TYPES[config.format]
        self._sign(headers, body)
        return await self._request("POST", httpx.URL(config.url), headers, body)

    async def _bearer_token(self) -> BearerToken | Attempt:
        """The cached token while it is fresh, else a new one from the token endpoint (spec
        3.5, OAuth2 client credentials); an Attempt that failed when none could be had."""
        now = self._clock.now()
        if self._token is not None and self._token.fresh(now):
            return self._token
        oauth2 = self.config.oauth2
        assert oauth2 is not None and self._token_client is not None
        answer = await _exchange(
            self._token_client,
            self.config.timeout,
            "POST",
            httpx.URL(oauth2.authorize_uri),
            token_request_headers(oauth2),
            token_request_form(oauth2),
        )
        if isinstance(answer, str):
            return Attempt(status=None, error=f"OAuth2: {answer}")
        status, body = answer
        if status != 200:
            error = f"OAuth2: token endpoint answered HTTP {status}"
            reason = read_token_error(body) if isinstance(body, bytes) else None
            return Attempt(status=None, error=error if reason is None else f"{error}: {reason}")
        if isinstance(body, str):
            return Attempt(status=None, error=f"OAuth2: the token endpoint's answer {body}")
        try:
            self._token = read_token_response(body, self._clock.now())
        except OAuth2Error as exc:
            return Attempt(status=None, error=f"OAuth2: {exc}")
        return self._token

    def _sign(self, headers: dict[str, str], signed: bytes) -> None:
        if self.config.hmac_key:
            # The customer checks the timestamp against its own clock: the system's, also
            # after NTP stepped it while the gateway ran.
            now = int(self._clock.wall())
            headers[SIGNATURE_HEADER] = sign(self.config.hmac_key.encode(), now, signed)

    async def _request(
        self, method: str, url: httpx.URL, headers: dict[str, str], body: bytes | None = None
    ) -> Attempt:
        answer = await _exchange(self._client, self.config.timeout, method, url, headers, body)
        if isinstance(answer, str):
            return Attempt(status=None, error=answer)
        status, _ = answer
        # Only 200 counts as received (spec 3.5), not any 2xx.
        if status != 200:
            return Attempt(status=status, error=f"HTTP {status}")
        return Attempt(status=200, error=None)


async def _exchange(
    client: httpx.AsyncClient,
    within: float,
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    body: bytes | dict[str, str] | None,
) -> tuple[int, bytes | str] | str:
    """One request: its answer's status and body, or in place of the body why it was dropped
    (longer than ANSWER_BODY_LIMIT, compressed, or not over in time); or why no status came
    `within` seconds.

    `within` bounds the whole exchange, not only each read (httpx's own timeout), so an
    endpoint that trickles its answer cannot hold the worker. The body is counted as it came
    over the wire, never inflated (the clients ask for `identity`): a few octets of nested gzip
    inflate to gigabytes. Reading it to its end lets the connection serve the next request;
    one dropped early closes it."""
    content, data = (None, body) if isinstance(body, dict) else (body, None)
    status: int | None = None
    read = bytearray()
    dropped = f"did not end within {within:g} s"
    with trio.move_on_after(within):
        try:
            async with client.stream(
                method, url, headers=headers, content=content, data=data
            ) as response:
                status = response.status_code
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                # Stopped by a cancellation, which ends httpx's nested generators, not by a
                # `break`, which would leave them for the garbage collector to close.
                with trio.CancelScope() as too_long:
                    async for chunk in response.aiter_raw():
                        read += chunk
                        if len(read) > ANSWER_BODY_LIMIT:
                            too_long.cancel()
                if too_long.cancel_called:
                    return status, f"is longer than {ANSWER_BODY_LIMIT} octets"
                if encoding != "identity":
                    return status, f"is compressed ({encoding[:20]}) though none was asked for"
                return status, bytes(read)
        except httpx.TimeoutException:
            pass  # httpx's own read timeout ran out: as when our deadline does, below
        except httpx.HTTPError as exc:
            if status is None:
                return f"{type(exc).__name__}: {exc}"
            dropped = f"broke off ({type(exc).__name__})"
    if status is None:
        return f"no answer within {within:g} s"
    return status, dropped


def http_client(config: CallbackEndpoint) -> httpx.AsyncClient:
    """A client with the endpoint's timeout, TLS trust, credentials and fixed headers."""
    auth = httpx.BasicAuth(config.username, config.password) if config.username else None
    verify: ssl.SSLContext | bool = config.verify
    if config.verify and config.ca_file:
        verify = ssl.create_default_context(cafile=config.ca_file)
    return httpx.AsyncClient(
        timeout=config.timeout,
        verify=verify,
        auth=auth,
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity", **config.headers},
        follow_redirects=False,
    )


def token_client(config: CallbackEndpoint) -> httpx.AsyncClient:
    """A client for the endpoint's OAuth2 token endpoint: its timeout, and the system's trust
    and the endpoint's `ca_file` both (the identity provider is often public when the
    endpoint's CA is the customer's own)."""
    verify: ssl.SSLContext | bool = config.verify
    if config.verify and config.ca_file:
        verify = ssl.create_default_context()
        verify.load_verify_locations(cafile=config.ca_file)
    return httpx.AsyncClient(
        timeout=config.timeout,
        verify=verify,
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
        follow_redirects=False,
    )


class EmailSender:
    """Sends MOs as email through the SMTP relay (spec 3.4); smtplib runs in a worker thread."""

    batched = False
    batch = 1
    interval = 0.0

    def __init__(self, config: MoEmailConfig, relay: SmtpRelayConfig) -> None:
        self.config = config
        self.relay = relay
        self.retry = RetryPolicy(
            initial=config.retry_initial,
            maximum=config.retry_max,
            give_up_after=config.give_up_after,
        )

    async def aclose(self) -> None:
        return None

    def message(self, item: OutboxItem) -> EmailMessage:
        values = placeholders(item.report())
        fill = functools.partial(_fill, values=values)
        message = EmailMessage(policy=_SEVEN_BIT)
        message["From"] = _fill(self.config.sender, _address_values(values))
        message["To"] = self.config.to
        message["Subject"] = _header_text(fill(self.config.subject))
        message["Message-ID"] = f"<{item.message_id}.mo@edgegw>"
        # RFC 5322 section 3.6 requires a Date; a relay adds none for a remote client, and spam
        # filters count its absence. When the MO was queued, so every retry carries the same.
        queued = datetime.datetime.fromtimestamp(item.created_at, datetime.UTC)
        message["Date"] = email.utils.format_datetime(queued)
        message.set_content(fill(self.config.body))
        return message

    async def send(self, items: Sequence[OutboxItem]) -> Attempt:
        (item,) = items
        message = self.message(item)
        try:
            await trio.to_thread.run_sync(self._submit, message, abandon_on_cancel=True)
        except smtplib.SMTPResponseException as exc:
            return Attempt(status=exc.smtp_code, error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}")
        except (smtplib.SMTPException, OSError) as exc:
            return Attempt(status=None, error=f"{type(exc).__name__}: {exc}")
        return Attempt(status=250, error=None)

    def _submit(self, message: EmailMessage) -> None:
        relay = self.relay
        with smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout) as smtp:
            if relay.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if relay.username:
                smtp.login(relay.username, relay.password)
            smtp.send_message(message)


# A text beyond ASCII goes quoted-printable or base64, never as 8-bit octets: smtplib sends
# those without BODY=8BITMIME, which RFC 6152 section 3 asks for, and to a relay that does not
# offer 8BITMIME at all. Lines end in CRLF inside base64 too, MIME's canonical text (RFC 2046
# section 4.1.1).
_SEVEN_BIT: Final = email.policy.SMTP.clone(cte_type="7bit")


# Control characters and every other character str.splitlines() breaks a line at (NEL U+0085,
# LINE and PARAGRAPH SEPARATOR): an SMS may carry them in its text and in an alphanumeric sender
# (GSM 03.38 has LF and CR, UCS-2 all of them), and the email package refuses a header with one.
_HEADER_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


# What a value may keep in the `from` template: the characters of a phone number, a service id
# or a plain name. Anything else becomes "_".
_NOT_ADDRESS_TEXT: Final = re.compile(r"[^A-Za-z0-9+._-]")


def _address_values(values: dict[str, str]) -> dict[str, str]:
    """The placeholder values for the `from` template: an alphanumeric sender is the SMS
    sender's choice, and one named "<ceo@corp.no>" made "[originator]-[serviceid]@..." the
    address ceo@corp.no, the email's From and its envelope sender at the relay."""
    return {name: _NOT_ADDRESS_TEXT.sub("_", value) for name, value in values.items()}


def _header_text(text: str) -> str:
    """A filled template made fit for one header line: each run of control characters and
    line separators one space. The sender of an SMS chooses them; left in, they made every
    try of the email fail (the email package refuses a header with a line break), so one SMS
    from "Bank<LF>X" stopped the service's MO email for good."""
    return _HEADER_CONTROLS.sub(" ", text)


def _fill(template: str, values: dict[str, str]) -> str:
    """A template with raw (not URL-encoded) values, for email headers and bodies."""
    return render_template(template, values, encode=False)


class DeliveryWorker:
    """Delivers the outbox items of one (service, endpoint) until cancelled.

    Each round reads what is due, tries it and commits the outcomes. After a failure the
    endpoint rests until the failed item's next try, so a dead endpoint is probed once per
    backoff step instead of once per queued item; other endpoints have their own workers.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        service_id: int,
        endpoint: Endpoint,
        sender: HttpSender | EmailSender,
    ) -> None:
        self.store = store
        self.clock = clock
        self.service_id = service_id
        self.endpoint = endpoint
        self.sender = sender
        self.delivered = 0  # items the customer acknowledged
        self.failures = 0  # failed tries
        self._wake = trio.Event()
        self._not_before = -math.inf  # epoch before which the endpoint gets no request

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        retry = self.sender.retry
        await self.store.write(
            functools.partial(
                bound_waits,
                service_id=self.service_id,
                endpoint=self.endpoint,
                now=self.clock.now(),
                retry_initial=retry.initial,
                retry_max=retry.maximum,
            )
        )
        while True:
            await self._round()

    async def _round(self) -> None:
        now = self.clock.now()
        if now < self._not_before:
            await self.clock.sleep_until(self._not_before)
            return
        limit = self.sender.batch if self.sender.batched else ROUND_ITEMS
        items = await self.store.read(
            functools.partial(
                due_items, service_id=self.service_id, endpoint=self.endpoint, now=now, limit=limit
            )
        )
        if not items:
            await self._idle(now)
            return
        if self.sender.batched:
            started = now
            await self._try(items)
            self._not_before = max(self._not_before, started + self.sender.interval)
            return
        # GET: one request an item, each recorded as soon as it is answered, so that a stop or
        # a surprise later in the round sends no item the customer took again.
        for item in items:
            attempt = await self.sender.send([item])
            if attempt.error is not None:
                await self._record_failure([item], attempt)
                return
            await self._record([item], attempt)

    async def _try(self, items: Sequence[OutboxItem]) -> None:
        attempt = await self.sender.send(items)
        if attempt.error is None:
            await self._record(items, attempt)
        else:
            await self._record_failure(items, attempt)

    async def _record(self, items: Sequence[OutboxItem], attempt: Attempt) -> None:
        if not items:
            return
        record = functools.partial(
            record_delivered, items=items, now=self.clock.now(), status=attempt.status
        )
        # The customer has them: waited out through a full disk, or a restart of this worker
        # would send them again every RESTART_SECONDS while it lasts.
        await self.store.write_with_room(record)
        self.delivered += len(items)

    async def _record_failure(self, items: Sequence[OutboxItem], attempt: Attempt) -> None:
        retry = self.sender.retry
        now = self.clock.now()
        error = attempt.error or "failed"
        record = functools.partial(
            record_failure,
            items=items,
            now=now,
            error=error,
            status=attempt.status,
            retry_initial=retry.initial,
            retry_max=retry.maximum,
            give_up_after=retry.give_up_after,
        )
        # Waited out through a full disk too, so that the endpoint keeps its backoff.
        abandoned = await self.store.write_with_room(record)
        self.failures += 1
        for item in abandoned:
            log.warning(
                "service %d %s: gave up on %s after %d attempts: %s",
                self.service_id,
                self.endpoint,
                item.message_id,
                item.attempts + 1,
                error,
            )
        attempts = min(item.attempts for item in items) + 1
        self._not_before = now + backoff_delay(attempts, retry.initial, retry.maximum)
        log.info(
            "service %d %s: %s; next try in %.0f s",
            self.service_id,
            self.endpoint,
            error,
            self._not_before - now,
        )

    async def _idle(self, now: float) -> None:
        upcoming = await self.store.read(
            functools.partial(next_due, service_id=self.service_id, endpoint=self.endpoint)
        )
        wake_at = now + POLL_SECONDS if upcoming is None else min(upcoming, now + POLL_SECONDS)
        with trio.move_on_at(self.clock.trio_deadline(wake_at)):
            await self._wake.wait()
        self._wake = trio.Event()


class Deliveries:
    """Every delivery worker of the configured services, each under its own error boundary."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        services: Sequence[ServiceConfig],
        relay: SmtpRelayConfig,
    ) -> None:
        self.store = store
        self.workers: list[DeliveryWorker] = []
        self._names: list[tuple[int, Endpoint, str]] = []
        for service in services:
            for endpoint, config in ((Endpoint.MO, service.mo), (Endpoint.DR, service.dr)):
                if config is None:
                    continue
                sender: HttpSender | EmailSender = HttpSender(endpoint.kind, config, clock)
                self.workers.append(DeliveryWorker(store, clock, service.id, endpoint, sender))
                self._names.append((service.id, endpoint, service.name))
            if service.mo_email is not None:
                sender = EmailSender(service.mo_email, relay)
                self.workers.append(
                    DeliveryWorker(store, clock, service.id, Endpoint.MO_EMAIL, sender)
                )
                self._names.append((service.id, Endpoint.MO_EMAIL, service.name))

    def wake(self) -> None:
        for worker in self.workers:
            worker.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Record the endpoints in the store (so MOs and DRs are enqueued for them), then run
        every worker until cancelled."""
        await self.store.write(functools.partial(register_endpoints, endpoints=self._names))
        try:
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(self._guarded, worker)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                for worker in self.workers:
                    await worker.sender.aclose()

    async def _guarded(self, worker: DeliveryWorker) -> None:
        while True:
            try:
                await worker.run()
            except StoreClosed:
                return  # the gateway is stopping
            except Exception:
                log.exception(
                    "delivery worker of service %d %s failed; restarting in %g s",
                    worker.service_id,
                    worker.endpoint,
                    RESTART_SECONDS,
                )
            await trio.sleep(RESTART_SECONDS)
