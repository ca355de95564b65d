"""The composition root: builds the store, modems, pipeline and listeners from a Config and
runs them in one nursery. Holds no protocol logic of its own.

Shutdown order: listeners drain first (their requests still reach a running store), then the
pipeline and the modems are cancelled, and the store's writer last.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable

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
from edgegw.http.receive import receive_routes
from edgegw.http.server import serve_http
from edgegw.http.soap_routes import soap_errors, soap_routes
from edgegw.model import InboundView, SendRequest, SendResponse
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.inbound import InboundReceiver, inbound_record, inbound_records, inbound_view
from edgegw.pipeline.keywords import InboundRouter, KeywordRule
from edgegw.pipeline.management import Management
from edgegw.pipeline.modems import ModemsView, forward_events, modems_view, recent_sends
from edgegw.pipeline.pacing import DAY, Pacer, PacingRule
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.smpp_backend import GatewaySmppBackend
from edgegw.pipeline.smtp_backend import GatewaySmtpBackend
from edgegw.pipeline.submit import MessageChunks, Submitter
from edgegw.smpp.server import serve_smpp
from edgegw.smtp.server import serve_smtp
from edgegw.store import AnswerSeal, Store, Topic
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
        )
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
        # pipeline stops, then the writer.
        with tempfile.TemporaryDirectory(prefix="edgegw-modems-") as links:
            self._links = links
            async with trio.open_nursery() as base:
                await base.start(self.store.run)
                async with trio.open_nursery() as core:
                    # Before anything can finish a message or store an MO: the endpoints decide what
                    # gets enqueued for the customer.
                    await core.start(self.deliveries.run)
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
                    self.store.subscribe(Topic.QUEUE, self.dispatcher.wake)
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
                        )
                        self.store.subscribe(Topic.SMPP, self.smpp.wake)
                        await core.start(self.smpp.run)
                    for modem in self.modems.values():
                        core.start_soon(
                            forward_events, modem, self.inbound, self.reports, self.dispatcher.wake
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
                        app = make_app(
                            self,
                            auth_failure_problem=http.auth_failure_problem,
                            routes=[
                                management,
                                receive_routes(self),
                                soap_routes(self.submit, batches, self.authenticate),
                            ],
                        )
                        app = guard_logins(
                            idempotent_sends(app, self.store, self.clock),
                            self.throttle,
                            error_response,
                        )
                        http_port = await listeners.start(
                            functools.partial(
                                serve_http,
                                app,
                                http.host,
                                http.port,
                                http.limits,
                                errors=soap_errors(error_response),
                            )
                        )
                        smpp_port = None
                        if self.config.smpp is not None and self.smpp is not None:
                            smpp_port = await listeners.start(
                                functools.partial(
                                    serve_smpp,
                                    self.config.smpp,
                                    self.smpp,
                                    clock=self.clock,
                                    throttle=self.throttle,
                                )
                            )
                        smtp_port = None
                        if self.config.smtp is not None:
                            smtp_port = await listeners.start(
                                serve_smtp, self.config.smtp, self._smtp_backend()
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

    def _smtp_backend(self) -> GatewaySmtpBackend:
        assert self.config.smtp is not None
        assert self.submitter is not None and self.dispatcher is not None
        return GatewaySmtpBackend(
            self.config.services,
            self.submitter,
            self.store,
            self.dispatcher.wake,
            self.authenticate,
            domain=self.config.smtp.domain,
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
        assert self.submitter is not None
        return await self.submitter.submit(request, seal)

    async def submit_stream(
        self,
        request: SendRequest,
        messages: MessageChunks,
        emit: Callable[[SendResponse], Awaitable[None]],
    ) -> None:
        assert self.submitter is not None
        await self.submitter.submit_stream(request, messages, emit)

    def authenticate(self, username: str, password: str) -> int | None:
        password_and_id = self._credentials.get(username)
        if password_and_id is None:
            return None
        expected, service_id = password_and_id
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return service_id

    def ready(self) -> bool:
        return self._ready

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
        return await modems_view(self.store, self.modems, self.pacer, self.clock.now())


def _inbound_router(config: Config) -> InboundRouter:
    rules = [
        KeywordRule(keyword=keyword, service_id=service.id, modems=tuple(service.modems))
        for service in config.services
        for keyword in service.keywords
    ]
    return InboundRouter({modem.name: modem.service for modem in config.modems}, rules)
