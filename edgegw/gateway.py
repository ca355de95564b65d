"""The composition root: builds the store, modems, pipeline and listeners from a Config and
runs them in one nursery. Holds no protocol logic of its own.

Shutdown order: listeners drain first (their requests still reach a running store), then the
pipeline and the modems are cancelled, and the store's writer last.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import hmac
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterator

import msgspec
import trio

from drivers.at import AtModem
from drivers.modem import Modem
from drivers.simulator import Simulator, serve_pty
from edgegw.clock import Clock
from edgegw.config import Config, ModemConfig
from edgegw.delivery.fanout import final_outcomes
from edgegw.delivery.smpp_outbox import register_mo_services
from edgegw.delivery.worker import Deliveries
from edgegw.http.app import error_response, make_app
from edgegw.http.guard import guard_logins
from edgegw.http.idempotency import idempotent_sends
from edgegw.http.management import management_routes
from edgegw.http.monitoring import monitoring_routes
from edgegw.http.puzzel import MessageChunks
from edgegw.http.receive import receive_routes
from edgegw.http.server import serve_http
from edgegw.http.soap_routes import soap_errors, soap_routes
from edgegw.http.status import StatusView, status_routes
from edgegw.loglimit import LogLimiter
from edgegw.metrics import CONTENT_TYPE, Metrics
from edgegw.model import InboundView, SendRequest, SendResponse, StatusCode
from edgegw.networks import Networks
from edgegw.passwords import PasswordChecker, stand_in_for
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.inbound import (
    InboundReceiver,
    inbound_records,
    inbound_view,
    service_inbound_view,
)
from edgegw.pipeline.keywords import InboundRouter, KeywordRule
from edgegw.pipeline.management import Management
from edgegw.pipeline.modems import (
    ModemsView,
    forward_events,
    iso_seconds,
    modems_view,
    recent_sends,
)
from edgegw.pipeline.overview import read_recent
from edgegw.pipeline.pacing import DAY, Pacer, PacingRule
from edgegw.pipeline.readiness import Readiness, readiness
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.smpp_backend import GatewaySmppBackend
from edgegw.pipeline.smtp_backend import GatewaySmtpBackend
from edgegw.pipeline.storagereads import StorageReads
from edgegw.pipeline.submit import DirectMessage, Rejected, Submitter
from edgegw.retention import Pruner
from edgegw.smpp.server import serve_smpp
from edgegw.smtp.server import serve_smtp
from edgegw.startup import StartupError, instance_lock
from edgegw.store import (
    AnswerSeal,
    Store,
    StoreDamaged,
    StoreError,
    StoreTooNew,
    StoreUnwritable,
    Topic,
)
from edgegw.throttle import AuthThrottle

log = logging.getLogger(__name__)


class Bound(msgspec.Struct, kw_only=True):
    """What a started gateway reports: its bound ports and its modems' serial paths."""

    http_port: int
    modem_ports: dict[str, str]
    smpp_port: int | None = None  # None without an [smpp] section
    smtp_port: int | None = None  # None without an [smtp] section


class Gateway:
    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.store = Store(config.gateway.store, clock=self.clock, final_outcomes=final_outcomes)
        self.deliveries = Deliveries(self.store, self.clock, config.services, config.smtp_relay)
        # Commits wake what waits on them; the waiters' polls are only a safety net.
        self.store.subscribe(Topic.CALLBACKS, self.deliveries.wake)
        self.modems: dict[str, Modem] = {}
        self.simulators: dict[str, Simulator] = {}
        self.dispatcher: Dispatcher | None = None
        self.submitter: Submitter | None = None
        self.smpp: GatewaySmppBackend | None = None
        self.bound: Bound | None = None
        # Failed logins of every door; its counters are for the metrics page.
        self.throttle = AuthThrottle(config.security.auth)
        self._stop = trio.Event()
        self._links = ""  # folder of the simulated modems' by-id style links, set by run()
        self._ready = False
        self._credentials = {s.username: (s.password, s.id) for s in config.services}
        # One checker for every door, so its limiter bounds the scrypt threads of them all.
        self._passwords = PasswordChecker()
        self._unknown_user = stand_in_for(s.password for s in config.services)
        self._service_names = {service.id: service.name for service in config.services}
        self.pacer = Pacer(
            {
                modem.name: PacingRule(
                    min_interval=modem.min_interval,
                    jitter=modem.jitter,
                    hourly_cap=modem.hourly_cap,
                    daily_cap=modem.daily_cap,
                )
                for modem in config.modems
            }
        )
        # The modems that read their SIM since the start: what waited there is committed.
        self.storage_reads = StorageReads()
        self.inbound = InboundReceiver(
            self.store,
            self.clock,
            _inbound_router(config),
            reassembly_timeout=config.inbound.reassembly_timeout,
            numbers={modem.name: modem.number for modem in config.modems},
            reads=self.storage_reads,
        )
        self.smpp_binds: collections.Counter[str] = collections.Counter()
        # The services that take their MO by SMPP (`mo_smpp`).
        self.smpp_mo_services = [service.id for service in config.services if service.mo_smpp]
        self.connections_refused: collections.Counter[str] = collections.Counter()
        self.metrics = Metrics(
            self.store,
            self.clock,
            services=[service.id for service in config.services],
            modems=self.modems,
            workers=self.deliveries.workers,
            smpp_binds=self.smpp_binds,
            smpp_services={
                account.system_id: account.service
                for account in (config.smpp.accounts if config.smpp else [])
            },
            smpp_mo_services=self.smpp_mo_services,
            auth_failures=self.throttle.failures_total,
            auth_refusals=self.throttle.refusals_total,
            connections_refused=self.connections_refused,
            doors=[
                door
                for door, served in (("http", True), ("smpp", config.smpp), ("smtp", config.smtp))
                if served
            ],
        )
        self.pruner = Pruner(self.store, self.clock, keep_final_days=config.store.keep_final_days)
        self.reports = ReportCorrelator(
            self.store,
            self.clock,
            window=config.reports.window,
            grace=config.reports.grace,
            rematch=config.reports.rematch,
            reads=self.storage_reads,
        )

    def stop(self) -> None:
        """Begin a graceful shutdown; `run` returns once it is done."""
        self._stop.set()

    async def _stop_on_damage(self) -> None:
        """A damaged store stops the gateway, whichever task met the damage and whatever it
        did with the error: nothing the store holds can be trusted until a backup is back."""
        raise await self.store.damaged()

    async def run(self, *, task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED) -> None:
        # The store outlives everything that writes to it: the listeners drain first, then the
        # pipeline stops, then the writer. Nothing touches the store or a modem before this
        # process holds the store's instance lock.
        with (
            instance_lock(self.config.gateway.store),
            tempfile.TemporaryDirectory(prefix="edgegw-modems-") as links,
        ):
            self._links = links
            async with trio.open_nursery() as base:
                try:
                    await base.start(self.store.run)
                except (StoreTooNew, StoreDamaged, StoreUnwritable) as exc:
                    raise StartupError(str(exc)) from exc
                except StoreError as exc:
                    raise StartupError(
                        f"{exc} (check the file, its folder and their owner, or restore a backup)"
                    ) from exc
                base.start_soon(self._stop_on_damage)
                async with trio.open_nursery() as core:
                    # Before anything can finish a message or store an MO (a modem's first sweep,
                    # the inbound sweeper): the endpoints and the services that take MO by SMPP
                    # decide what gets enqueued for the customer.
                    await core.start(self.deliveries.run)
                    await self.store.write(
                        functools.partial(register_mo_services, service_ids=self.smpp_mo_services)
                    )
                    await core.start(self.metrics.run)
                    await core.start(self.pruner.run)
                    now = self.clock.now()
                    names = [modem.name for modem in self.config.modems]
                    for name, times in (await recent_sends(self.store, now - DAY, names)).items():
                        self.pacer.load(name, times, now)
                    await core.start(self.inbound.run)
                    await core.start(self.reports.run)
                    modem_ports = {}
                    for modem_config in self.config.modems:
                        modem_ports[modem_config.name] = await self._start_modem(core, modem_config)
                    self.dispatcher = Dispatcher(
                        self.store,
                        self.modems,
                        self.config.services,
                        self.config.dispatch,
                        self.clock,
                        policy=self.config.gateway.in_flight_after_crash,
                        pacer=self.pacer,
                        prefixes={modem.name: modem.prefixes for modem in self.config.modems},
                    )
                    self.store.subscribe(Topic.QUEUE, self.dispatcher.wake)
                    await core.start(self.dispatcher.run)
                    self.submitter = Submitter(
                        self.config.services, self.store, self.clock, passwords=self._passwords
                    )
                    if self.config.smpp is not None:
                        self.smpp = GatewaySmppBackend(
                            self.store,
                            self.clock,
                            self.submitter,
                            self.config.smpp.accounts,
                            on_accepted=functools.partial(self.metrics.count_accepted, "smpp"),
                            passwords=self._passwords,
                        )
                        self.store.subscribe(Topic.SMPP, self.smpp.wake)
                        await core.start(self.smpp.run)
                    for modem in self.modems.values():
                        core.start_soon(
                            forward_events,
                            modem,
                            self.inbound,
                            self.reports,
                            self.dispatcher.wake,
                            self.storage_reads,
                            self.clock,
                        )
                    async with trio.open_nursery() as listeners:
                        http = self.config.http
                        batches = Management(self.store, self.clock)
                        management = management_routes(
                            batches,
                            self.authenticate,
                            {service.id for service in self.config.services},
                            allow_unauthenticated_loopback=(
                                self.config.management.allow_unauthenticated_loopback
                            ),
                        )
                        monitoring = monitoring_routes(
                            self, metrics_auth=self.config.monitoring.metrics_auth
                        )
                        app = make_app(
                            self,
                            auth_failure_problem=http.auth_failure_problem,
                            routes=[
                                monitoring,
                                status_routes(self),
                                management,
                                receive_routes(self),
                                soap_routes(
                                    functools.partial(self.submit_through, "soap"),
                                    batches,
                                    self.authenticate,
                                ),
                            ],
                        )
                        # The listener's refusals and the guard's 429 alike: a SOAP call
                        # gets a SOAP Fault, which is what its client can read.
                        errors = soap_errors(error_response)
                        app = self.metrics.timed(
                            guard_logins(
                                idempotent_sends(app, self.store, self.clock),
                                self.throttle,
                                errors,
                            )
                        )
                        with _listen_failure("HTTP", http.host, http.port, "[http] port"):
                            http_port = await listeners.start(
                                functools.partial(
                                    serve_http,
                                    app,
                                    http.host,
                                    http.port,
                                    http.limits,
                                    errors=errors,
                                    trusted_proxies=Networks(http.trusted_proxies),
                                    refused=self.connections_refused,
                                )
                            )
                        smpp_port = None
                        smpp = self.config.smpp
                        if smpp is not None and self.smpp is not None:
                            with _listen_failure("SMPP", smpp.host, smpp.port, "[smpp] port"):
                                smpp_port = await listeners.start(
                                    functools.partial(
                                        serve_smpp,
                                        smpp,
                                        self.smpp,
                                        clock=self.clock,
                                        throttle=self.throttle,
                                        binds=self.smpp_binds,
                                        refused=self.connections_refused,
                                    )
                                )
                        smtp_port = None
                        smtp = self.config.smtp
                        if smtp is not None:
                            smtp_log = LogLimiter()
                            with _listen_failure("SMTP", smtp.host, smtp.port, "[smtp] port"):
                                smtp_port = await listeners.start(
                                    functools.partial(
                                        serve_smtp,
                                        smtp,
                                        self._smtp_backend(smtp_log),
                                        throttle=self.throttle,
                                        refused=self.connections_refused,
                                        limiter=smtp_log,
                                    )
                                )
                        self._ready = True
                        log.info("gateway ready: http on %s:%d", http.host, http_port)
                        self.bound = Bound(
                            http_port=http_port,
                            modem_ports=modem_ports,
                            smpp_port=smpp_port,
                            smtp_port=smtp_port,
                        )
                        task_status.started(self.bound)
                        await self._stop.wait()
                        self._ready = False
                        log.info("gateway stopping")
                        listeners.cancel_scope.cancel()
                    core.cancel_scope.cancel()
                base.cancel_scope.cancel()
        if self.bound is not None:
            log.info("gateway stopped")

    def _smtp_backend(self, limiter: LogLimiter) -> GatewaySmtpBackend:
        assert self.config.smtp is not None
        assert self.submitter is not None
        return GatewaySmtpBackend(
            self.config.services,
            self.submitter,
            self.store,
            self.authenticate,
            domain=self.config.smtp.domain,
            on_accepted=functools.partial(self.metrics.count_accepted, "smtp"),
            limiter=limiter,
        )

    async def _start_modem(self, nursery: trio.Nursery, modem_config: ModemConfig) -> str:
        options = modem_config.at
        if modem_config.driver == "simulated":
            simulated = modem_config.simulator
            if simulated.link_dir is None:
                # Drive the simulator through a /dev/serial/by-id style link, as udev gives a
                # USB stick, so the driver finds it again when it vanishes and comes back
                # under another pty.
                simulated = msgspec.structs.replace(simulated, link_dir=self._links)
            simulator = Simulator(simulated)
            self.simulators[modem_config.name] = simulator
            await nursery.start(serve_pty, simulator)
            assert simulated.link_dir is not None
            link = os.path.join(simulated.link_dir, simulator.link_name)
            options = msgspec.structs.replace(options, port=link)
        modem = AtModem(modem_config.name, options)
        self.modems[modem_config.name] = modem
        nursery.start_soon(modem.run)
        return options.port

    # The HTTP Backend protocol (edgegw.http.app.Backend).

    async def submit(self, request: SendRequest, seal: AnswerSeal | None = None) -> SendResponse:
        return await self.submit_through("http", request, seal)

    async def submit_through(
        self, door: str, request: SendRequest, seal: AnswerSeal | None = None
    ) -> SendResponse:
        """A Puzzel send request that came through `door` (REST and GET: http; soap), counted
        by door for the metrics."""
        assert self.submitter is not None
        response = await self.submitter.submit(request, seal)
        self._count_accepted(door, request, response)
        return response

    async def submit_stream(
        self,
        request: SendRequest,
        messages: MessageChunks,
        emit: Callable[[SendResponse], Awaitable[None]],
        refused: StatusCode | None,
    ) -> None:
        assert self.submitter is not None

        async def counted(chunk: SendResponse) -> None:
            self._count_accepted("http", request, chunk)
            await emit(chunk)

        await self.submitter.submit_stream(request, messages, counted, refused)

    async def refusal(self, request: SendRequest) -> StatusCode | None:
        assert self.submitter is not None
        return await self.submitter.refusal(request)

    def _count_accepted(self, door: str, request: SendRequest, response: SendResponse) -> None:
        if request.serviceId is not None:
            ok = StatusCode.OK  # read once: an Enum member off its class is Python code
            accepted = sum(s.statusCode == ok for s in response.messageStatus)
            self.metrics.count_accepted(door, request.serviceId, accepted)

    async def authenticate(self, username: str, password: str) -> int | None:
        password_and_id = self._credentials.get(username)
        if password_and_id is None:
            # As slow as a wrong password, so the answer does not tell the user is unknown.
            await self._passwords.verify(None, password, stand_in=self._unknown_user)
            return None
        expected, service_id = password_and_id
        if not await self._passwords.verify(expected, password):
            return None
        return service_id

    def ready(self) -> bool:
        return self._ready

    # Monitoring (edgegw.http.monitoring.MonitoringBackend).

    def readiness(self) -> Readiness:
        now = self.clock.now()
        capped = {}
        for name in self.modems:
            until = self.pacer.capped_until(name, now)
            if until is not None:
                capped[name] = iso_seconds(until)
        unwritable = self.store.unwritable
        return readiness(
            [(service.id, service.modems) for service in self.config.services],
            {name: modem.health() for name, modem in self.modems.items()},
            capped,
            store=None if unwritable is None else f"cannot take writes ({unwritable.cause})",
        )

    # The status page (edgegw.http.status.StatusBackend).

    async def status_view(self) -> StatusView:
        modems = await self.modems_view()
        recent = await self.store.read(read_recent)
        figures = self.metrics.figures  # queues and backlogs as of the last poll (<= 5 s)
        services = [
            {
                "id": service.id,
                "name": service.name,
                "queued": figures.queued.get(service.id, 0),
                "backlog": {
                    kind: count
                    for (service_id, kind), count in figures.backlog.items()
                    if service_id == service.id
                },
            }
            for service in self.config.services
        ]
        return StatusView(
            modems=modems,
            services=services,
            messages=recent.messages,
            inbound=recent.inbound,
            simulated=list(self.simulators),
            ready=self.readiness().ready,
        )

    async def send_test(self, service_id: int | None, recipient: str, text: str) -> str:
        """Queue a test SMS for an operator already authenticated (no service password)."""
        assert self.submitter is not None
        if service_id is None:
            service_id = self.config.services[0].id
        if service_id not in self._service_names:
            raise ValueError(f"no service {service_id}")
        direct = DirectMessage(service_id=service_id, recipient=recipient, content=text)
        try:
            message = self.submitter.prepare(direct)
        except Rejected as exc:
            raise ValueError(exc.message) from None
        await self.store.insert_messages([message])
        self.metrics.count_accepted("status", service_id, 1)
        return message.id

    async def simulate_mo(self, modem: str | None, originator: str, text: str) -> None:
        """A phone sends `text` from `originator` to a simulated modem (if None, the first of
        the config's, which `simulators` holds in its order)."""
        if not self.simulators:
            raise ValueError(
                'this gateway has no simulated modem (a [[modems]] with driver = "simulated")'
            )
        name = modem if modem is not None else next(iter(self.simulators))
        simulator = self.simulators.get(name)
        if simulator is None:
            raise ValueError(
                f"{name} is not a simulated modem of this gateway (its simulated modems: "
                f"{', '.join(self.simulators)})"
            )
        try:
            with trio.fail_after(10):  # a vanished simulated modem must not hold the request
                await simulator.deliver_mo(originator, text)
        except trio.TooSlowError:
            raise ValueError(f"simulated modem {name} did not take the SMS within 10 s") from None

    def metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.scrape(), CONTENT_TYPE

    async def operator(self, username: str, password: str) -> bool:
        # The admin first: otherwise every poll of the status page would pay the dummy scrypt
        # that authenticate spends on a name that is no service's.
        admin = self.config.monitoring
        if (
            admin.admin_username
            and hmac.compare_digest(admin.admin_username.encode(), username.encode())
            and await self._passwords.verify(admin.admin_password, password)
        ):
            return True
        return await self.authenticate(username, password) is not None

    # The receive side's HTTP backend (edgegw.http.receive.ReceiveBackend).

    async def inbound_list(
        self, service_id: int, since: float | None, limit: int
    ) -> list[InboundView]:
        records = await inbound_records(self.store, service_id=service_id, since=since, limit=limit)
        return [inbound_view(record, self._service_names) for record in records]

    async def inbound_view(self, service_id: int, message_id: str) -> InboundView | None:
        return await service_inbound_view(self.store, service_id, message_id, self._service_names)

    async def modems_view(self) -> ModemsView:
        return await modems_view(self.store, self.modems, self.pacer, self.clock.now())


@contextlib.contextmanager
def _listen_failure(door: str, host: str, port: int, key: str) -> Iterator[None]:
    """A listener that cannot start becomes one StartupError line naming the address or the
    certificate, and what to change."""
    try:
        yield
    except ssl.SSLError as exc:
        raise StartupError(
            f"{door} TLS certificate or key is not usable: {exc.reason or exc}; check "
            "tls_cert_file and tls_key_file (PEM, the key matching the certificate)"
        ) from exc
    except OSError as exc:
        if exc.filename is not None:
            raise StartupError(
                f"{door} TLS file {exc.filename}: {exc.strerror}; check tls_cert_file and "
                "tls_key_file"
            ) from exc
        if exc.errno == errno.EADDRINUSE:
            fix = f"stop the program using it or change {key}"
        elif exc.errno == errno.EACCES:
            fix = f"ports below 1024 need privileges; change {key}"
        else:
            fix = f"check the host and {key}"
        raise StartupError(
            f"{door} cannot listen on {host}:{port}: {exc.strerror or exc}; {fix}"
        ) from exc
    except ValueError as exc:
        raise StartupError(f"{door}: {exc}") from exc


def _inbound_router(config: Config) -> InboundRouter:
    rules = [
        KeywordRule(keyword=keyword, service_id=service.id, modems=tuple(service.modems))
        for service in config.services
        for keyword in service.keywords
    ]
    return InboundRouter({modem.name: modem.service for modem in config.modems}, rules)
