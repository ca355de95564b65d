"""The composition root: builds the store, modems, pipeline and listeners from a Config and
runs them in one nursery. Holds no protocol logic of its own.

Shutdown order: listeners drain first (their requests still reach a running store), then the
pipeline and the modems are cancelled, and the store's writer last.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import errno
import functools
import hmac
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator

import msgspec
import trio

from drivers.at import AtModem
from drivers.events import HealthChanged, InboundSms, StatusReportReceived
from drivers.modem import Modem
from drivers.simulator import Simulator, serve_pty
from edgegw.clock import Clock
from edgegw.config import Config, ModemConfig
from edgegw.delivery.smpp_outbox import register_mo_services
from edgegw.delivery.worker import Deliveries
from edgegw.http.app import error_response, make_app
from edgegw.http.management import management_routes
from edgegw.http.monitoring import monitoring_routes
from edgegw.http.receive import receive_routes
from edgegw.http.server import serve_http
from edgegw.http.status import StatusView, status_routes
from edgegw.metrics import CONTENT_TYPE, Metrics
from edgegw.model import InboundView, MessageView, SendRequest, SendResponse, StatusCode
from edgegw.passwords import PasswordChecker
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.inbound import InboundReceiver, inbound_record, inbound_records, inbound_view
from edgegw.pipeline.keywords import InboundRouter, KeywordRule
from edgegw.pipeline.management import Management
from edgegw.pipeline.modems import ModemsView, ModemView, queues, recent_sends
from edgegw.pipeline.overview import read_recent
from edgegw.pipeline.pacing import DAY, Pacer, PacingRule
from edgegw.pipeline.readiness import Readiness, readiness
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.smpp_backend import GatewaySmppBackend
from edgegw.pipeline.submit import DirectMessage, Rejected, Submitter
from edgegw.retention import Pruner
from edgegw.smpp.server import serve_smpp
from edgegw.startup import StartupError, instance_lock
from edgegw.store import Store, StoreError

log = logging.getLogger(__name__)


class Bound(msgspec.Struct, kw_only=True):
    """What a started gateway reports: its bound ports and its modems' serial paths."""

    http_port: int
    modem_ports: dict[str, str]
    smpp_port: int | None = None  # None without an [smpp] section


class Gateway:
    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.store = Store(config.gateway.store, clock=self.clock)
        self.deliveries = Deliveries(self.store, self.clock, config.services, config.smtp_relay)
        self.modems: dict[str, Modem] = {}
        self.simulators: dict[str, Simulator] = {}
        self.dispatcher: Dispatcher | None = None
        self.submitter: Submitter | None = None
        self.smpp: GatewaySmppBackend | None = None
        self.bound: Bound | None = None
        self._stop = trio.Event()
        self._links = ""  # folder of the simulated modems' by-id style links, set by run()
        self._ready = False
        self._credentials = {s.username: (s.password, s.id) for s in config.services}
        self._passwords = PasswordChecker()
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
        self.inbound = InboundReceiver(
            self.store,
            self.clock,
            _inbound_router(config),
            reassembly_timeout=config.inbound.reassembly_timeout,
            numbers={modem.name: modem.number for modem in config.modems},
            on_message=self._on_message,
        )
        self.smpp_binds: collections.Counter[str] = collections.Counter()
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
        )
        self.pruner = Pruner(self.store, self.clock, keep_final_days=config.store.keep_final_days)
        self.reports = ReportCorrelator(
            self.store,
            self.clock,
            window=config.reports.window,
            grace=config.reports.grace,
            rematch=config.reports.rematch,
        )

    def stop(self) -> None:
        """Begin a graceful shutdown; `run` returns once it is done."""
        self._stop.set()

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
                except StoreError as exc:
                    raise StartupError(
                        f"{exc} (check the file, its folder and their owner, or restore a backup)"
                    ) from exc
                async with trio.open_nursery() as core:
                    # Before anything can finish a message or store an MO: the endpoints decide what
                    # gets enqueued for the customer.
                    await core.start(self.deliveries.run)
                    await core.start(self.metrics.run)
                    await core.start(self.pruner.run)
                    now = self.clock.now()
                    for name, times in (await recent_sends(self.store, now - DAY)).items():
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
                    await core.start(self.dispatcher.run)
                    self.submitter = Submitter(
                        self.config.services, self.store, self.clock, wake=self.dispatcher.wake
                    )
                    if self.config.smpp is not None:
                        mo_smpp = [
                            service.id for service in self.config.services if service.mo_smpp
                        ]
                        await self.store.write(
                            functools.partial(register_mo_services, service_ids=mo_smpp)
                        )
                        self.smpp = GatewaySmppBackend(
                            self.store,
                            self.clock,
                            self.submitter,
                            self.config.smpp.accounts,
                            self.dispatcher.wake,
                            on_accepted=functools.partial(self.metrics.count_accepted, "smpp"),
                        )
                        await core.start(self.smpp.run)
                    for modem in self.modems.values():
                        core.start_soon(self._forward_events, modem)
                    async with trio.open_nursery() as listeners:
                        http = self.config.http
                        management = management_routes(
                            Management(self.store, self.clock, wake=self.deliveries.wake),
                            self.authenticate,
                            {service.id for service in self.config.services},
                            allow_unauthenticated_loopback=(
                                self.config.management.allow_unauthenticated_loopback
                            ),
                        )
                        monitoring = monitoring_routes(
                            self, metrics_auth=self.config.monitoring.metrics_auth
                        )
                        app = self.metrics.timed(
                            make_app(
                                self,
                                auth_failure_problem=http.auth_failure_problem,
                                routes=[
                                    monitoring,
                                    status_routes(self),
                                    management,
                                    receive_routes(self),
                                ],
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
                                    errors=error_response,
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
                                        binds=self.smpp_binds,
                                    )
                                )
                        self._ready = True
                        log.info("gateway ready: http on %s:%d", http.host, http_port)
                        self.bound = Bound(
                            http_port=http_port, modem_ports=modem_ports, smpp_port=smpp_port
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

    def _on_message(self) -> None:
        """An MO committed: its callbacks and its SMPP deliver_sm may be waiting."""
        self.deliveries.wake()
        if self.smpp is not None:
            self.smpp.wake()

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

    async def _forward_events(self, modem: Modem) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        async for event in modem.events:
            if isinstance(event, HealthChanged):
                log.info("modem %s: %s %s", event.modem, event.state, event.detail)
                dispatcher.wake()
            else:
                await self._store_and_acknowledge(modem, event)

    async def _store_and_acknowledge(
        self, modem: Modem, event: InboundSms | StatusReportReceived
    ) -> None:
        """Commit the event, then let the modem delete it from the SIM. If the store fails the
        SMS stays on the SIM, and the driver's next sweep of stored messages brings it again."""
        try:
            if isinstance(event, InboundSms):
                await self.inbound.receive(event)
            else:
                await self.reports.receive(event)
        except Exception:
            log.exception("modem %s: could not store a received %s", modem.name, type(event))
            return
        try:
            await modem.acknowledge(event)
        except Exception:
            # Stored already; a re-read of the same PDU is a no-op, so nothing is lost.
            log.exception("modem %s: could not delete a stored message", modem.name)

    # The HTTP Backend protocol (edgegw.http.app.Backend).

    async def submit(self, request: SendRequest) -> SendResponse:
        assert self.submitter is not None
        response = await self.submitter.submit(request)
        if request.serviceId is not None:
            accepted = sum(s.statusCode == StatusCode.OK for s in response.messageStatus)
            self.metrics.count_accepted("http", request.serviceId, accepted)
        return response

    def authenticate(self, username: str, password: str) -> int | None:
        password_and_id = self._credentials.get(username)
        if password_and_id is None:
            return None
        expected, service_id = password_and_id
        if not self._passwords.verify(expected, password):
            return None
        return service_id

    async def message_view(self, service_id: int, message_id: str) -> MessageView | None:
        return await self.store.message_view(service_id, message_id)

    def ready(self) -> bool:
        return self._ready

    # Monitoring (edgegw.http.monitoring.MonitoringBackend).

    def readiness(self) -> Readiness:
        now = self.clock.now()
        capped = {}
        for name in self.modems:
            until = self.pacer.capped_until(name, now)
            if until is not None:
                capped[name] = _iso(until)
        return readiness(
            [(service.id, service.modems) for service in self.config.services],
            {name: modem.health() for name, modem in self.modems.items()},
            capped,
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
            simulated=sorted(self.simulators),
            ready=self.readiness().ready,
        )

    async def send_test(self, service_id: int | None, recipient: str, text: str) -> str:
        """Queue a test SMS for an operator already authenticated (no service password)."""
        assert self.submitter is not None and self.dispatcher is not None
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
        self.dispatcher.wake()
        self.metrics.count_accepted("status", service_id, 1)
        return message.id

    async def simulate_mo(self, modem: str | None, originator: str, text: str) -> None:
        """A phone sends `text` from `originator` to a simulated modem (the first if None)."""
        name = modem if modem is not None else next(iter(sorted(self.simulators)), None)
        simulator = None if name is None else self.simulators.get(name)
        if simulator is None:
            raise ValueError(f"{name or 'no modem'} is not a simulated modem of this gateway")
        try:
            with trio.fail_after(10):  # a vanished simulated modem must not hold the request
                await simulator.deliver_mo(originator, text)
        except trio.TooSlowError:
            raise ValueError(f"simulated modem {name} did not take the SMS within 10 s") from None

    def metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.scrape(), CONTENT_TYPE

    def operator(self, username: str, password: str) -> bool:
        if self.authenticate(username, password) is not None:
            return True
        admin = self.config.monitoring
        return bool(admin.admin_username) and (
            hmac.compare_digest(admin.admin_username.encode(), username.encode())
            & self._passwords.verify(admin.admin_password, password)
        )

    # The receive side's HTTP backend (edgegw.http.receive.ReceiveBackend).

    async def inbound_list(
        self, service_id: int, since: float | None, limit: int
    ) -> list[InboundView]:
        records = await inbound_records(self.store, service_id=service_id, since=since, limit=limit)
        return [inbound_view(record, self._service_names) for record in records]

    async def inbound_view(self, service_id: int, message_id: str) -> InboundView | None:
        record = await inbound_record(self.store, message_id)
        if record is None or record.service_id != service_id:
            return None
        return inbound_view(record, self._service_names)

    async def modems_view(self) -> ModemsView:
        per_modem, unbound = await queues(self.store)
        now = self.clock.now()
        views = []
        for name, modem in self.modems.items():
            in_hour, in_day = self.pacer.counts(name, now)
            capped_until = self.pacer.capped_until(name, now)
            queue = per_modem.get(name)
            views.append(
                ModemView(
                    name=name,
                    health=modem.health(),
                    queued=0 if queue is None else queue.queued,
                    sending=0 if queue is None else queue.sending,
                    sentLastHour=in_hour,
                    sentLastDay=in_day,
                    cappedUntil=None if capped_until is None else _iso(capped_until),
                )
            )
        return ModemsView(modems=views, queued=unbound)


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


def _iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
