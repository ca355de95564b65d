"""The gateway's Prometheus metrics, in a registry of its own (prometheus-client writes the text
exposition format). Counters of events the gateway sees are counted where they happen; what
the store knows (queues, backlogs, final outcomes) is read every `poll_interval` seconds on a
read connection, so a scrape only formats numbers already in memory. Never writes the store.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence

import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from drivers.events import ModemState
from drivers.modem import Modem
from edgegw.clock import Clock
from edgegw.delivery import smpp_outbox
from edgegw.delivery.worker import DeliveryWorker
from edgegw.http.server import App, Request, Response
from edgegw.model import TERMINAL_STATES, MessageState
from edgegw.store import Store

__all__ = ["CONTENT_TYPE", "Metrics", "StoreFigures", "read_store_figures", "smpp_backlog_kind"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# No `_created` series beside each counter: a process start time per label set that nobody
# graphs, which would double the lines (and the cost) of a scrape.
disable_created_metrics()  # type: ignore[no-untyped-call]
POLL_SECONDS = 5.0
# Seconds of a step of the system's clock worth a warning: NTP slews smaller offsets.
CLOCK_STEP_NOTICE = 1.0
# Request durations from a cached health check (~0.1 ms) to a batch that waits for its commit.
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The states a final outcome leaves a message in: a terminal one, or `sent` closed with DR 362.
_OUTCOMES = (*sorted(state.value for state in TERMINAL_STATES), MessageState.SENT.value)


def smpp_backlog_kind(kind: str) -> str:
    """The `kind` label of the backlog of an SMPP outbox kind: `smpp_receipt`, `smpp_mo`."""
    return f"smpp_{kind}"


class StoreFigures:
    """What the store held at the last poll."""

    def __init__(self) -> None:
        self.queued: dict[int, int] = {}  # service -> queued messages
        self.backlog: dict[tuple[int, str], int] = {}  # (service, kind) -> pending callbacks
        self.final: collections.Counter[tuple[int, str]] = collections.Counter()
        self.last_event = -1  # the newest message_events rowid counted into `final`


def read_store_figures(conn: sqlite3.Connection, figures: StoreFigures) -> None:
    """Refresh `figures` from the store; the first call only finds where counting starts, so
    `final` counts outcomes reached while this process runs (a Prometheus counter).

    An outcome is the event written with the message's `done_at`, in a terminal state or
    `sent` (closed without its status report, DR 362): a final message's history goes on in its
    own state (its DR delivered to the customer, or abandoned), and those lines are no second
    outcome. Of several lines of that state at that instant the first counts."""
    newest = conn.execute("SELECT coalesce(max(rowid), 0) FROM message_events").fetchone()[0]
    if figures.last_event >= 0 and newest > figures.last_event:
        for service_id, state, count in conn.execute(
            "SELECT m.service_id, e.state, count(*) FROM message_events e"
            " JOIN messages m ON m.id = e.message_id"
            " WHERE e.rowid > ? AND e.rowid <= ? AND e.part IS NULL"
            " AND e.at = m.done_at AND e.state = m.state"
            " AND NOT EXISTS (SELECT 1 FROM message_events f WHERE f.message_id = e.message_id"
            " AND f.at = e.at AND f.state = e.state AND f.part IS NULL AND f.rowid < e.rowid)"
            " GROUP BY m.service_id, e.state",
            (figures.last_event, newest),
        ):
            figures.final[(service_id, state)] += count
    figures.last_event = newest
    figures.queued = dict(
        conn.execute(
            "SELECT service_id, count(*) FROM messages WHERE state = 'queued' GROUP BY service_id"
        ).fetchall()
    )
    backlog = {
        (service_id, kind): count
        for service_id, kind, count in conn.execute(
            "SELECT service_id, endpoint, count(*) FROM outbox WHERE state = 'pending'"
            " GROUP BY service_id, endpoint"
        )
    }
    for service_id, kind, count in conn.execute(
        "SELECT service_id, kind, count(*) FROM smpp_outbox WHERE state = 'pending'"
        " GROUP BY service_id, kind"
    ):
        backlog[(service_id, smpp_backlog_kind(kind))] = count
    figures.backlog = backlog


class Metrics:
    """Every metric of one gateway. `run` polls the store; `scrape` answers `/metrics`."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        services: Sequence[int],
        modems: Mapping[str, Modem],
        workers: Iterable[DeliveryWorker] = (),
        smpp_binds: Mapping[str, int] | None = None,
        smpp_services: Mapping[str, int] | None = None,
        smpp_mo_services: Iterable[int] = (),
        auth_failures: Mapping[str, int] | None = None,
        auth_refusals: Mapping[str, int] | None = None,
        connections_refused: Mapping[str, int] | None = None,
        doors: Iterable[str] = (),
        poll_interval: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.services = list(services)
        self.modems = modems
        self.workers = list(workers)
        # The live counter the SMPP listener keeps (an empty one is falsy: no `or` here).
        self.smpp_binds: Mapping[str, int] = {} if smpp_binds is None else smpp_binds
        self.smpp_services: Mapping[str, int] = {} if smpp_services is None else smpp_services
        # The callbacks each service may queue, scraped from 0 so that an alert on the backlog
        # has its series from the start: its delivery workers' endpoints, the receipts to its
        # SMPP accounts' ESMEs, and its MO by SMPP (`mo_smpp`). The config's, so bounded.
        self.callbacks = sorted(
            {(worker.service_id, worker.endpoint.value) for worker in self.workers}
            | {
                (service_id, smpp_backlog_kind(smpp_outbox.RECEIPT))
                for service_id in self.smpp_services.values()
            }
            | {(service_id, smpp_backlog_kind(smpp_outbox.MO)) for service_id in smpp_mo_services}
        )
        # The failed-login throttle's live counters per door (edgegw.throttle).
        self.auth_failures: Mapping[str, int] = {} if auth_failures is None else auth_failures
        self.auth_refusals: Mapping[str, int] = {} if auth_refusals is None else auth_refusals
        # The listeners' live counter of connections refused at accept, per door.
        self.connections_refused: Mapping[str, int] = (
            {} if connections_refused is None else connections_refused
        )
        # The doors served (http, smpp, smtp): their counters above are scraped as 0 before
        # their first event, so that increase() and rate() see that first one.
        self.doors = frozenset(doors)
        self.poll_interval = poll_interval
        self.figures = StoreFigures()
        self._clock_step = 0.0  # the step of the system's clock last warned of
        self.registry = CollectorRegistry(auto_describe=False)
        self.accepted = Counter(
            "edgegw_messages_accepted",
            "Messages accepted (stored and acknowledged) by service and door"
            " (http, soap, smtp, smpp, status).",
            ["service", "door"],
            registry=self.registry,
        )
        # Every service's doors from 0, so that increase() sees its first message too. SOAP
        # and the status page's form come with the HTTP door.
        doors = self.doors | {"soap", "status"} if "http" in self.doors else self.doors
        for service_id in self.services:
            for door in sorted(doors):
                self.accepted.labels(str(service_id), door)
        self.http_duration = Histogram(
            "edgegw_http_request_duration_seconds",
            "Time from a complete HTTP request to its response, by the app.",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Snapshot(self))

    def count_accepted(self, door: str, service_id: int, count: int) -> None:
        if count:
            self.accepted.labels(str(service_id), door).inc(count)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.poll()
        task_status.started()
        while True:
            await trio.sleep(self.poll_interval)
            await self.poll()

    async def poll(self) -> None:
        figures = self.figures
        await self.store.read(lambda conn: read_store_figures(conn, figures))
        step = self.clock.wall() - self.clock.now()
        if abs(step - self._clock_step) >= CLOCK_STEP_NOTICE:
            self._clock_step = step
            log.warning(
                "the system clock is %+.0f s off the gateway's time, which keeps to the clock's"
                " reading at the start (2020-01-01 at the earliest) until the gateway starts"
                " again: its timestamps, send windows and schedules are off by as much",
                step,
            )

    def scrape(self) -> bytes:
        return generate_latest(self.registry)

    def timed(self, app: App) -> App:
        """`app` with each request's duration observed: one histogram call per request."""
        observe = self.http_duration.observe

        async def timed_app(request: Request) -> Response:
            started = time.perf_counter()
            try:
                return await app(request)
            finally:
                observe(time.perf_counter() - started)

        return timed_app


class _Snapshot(Collector):
    """The metrics read at scrape time from the modems, the workers and the last poll."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self.metrics
        figures = metrics.figures
        final = CounterMetricFamily(
            "edgegw_messages_final",
            "Messages that reached a final outcome while this process ran, by service and state"
            " (sent: closed without a status report).",
            labels=["service", "state"],
        )
        # Every service's outcomes from 0, so that increase() sees the first failure too.
        reached = {(service_id, state): 0 for service_id in metrics.services for state in _OUTCOMES}
        reached.update(figures.final)
        for (service_id, state), count in sorted(reached.items()):
            final.add_metric([str(service_id), state], count)
        queue = GaugeMetricFamily(
            "edgegw_queue_messages", "Messages queued for sending, by service.", labels=["service"]
        )
        for service_id in metrics.services:
            queue.add_metric([str(service_id)], figures.queued.get(service_id, 0))
        backlog = GaugeMetricFamily(
            "edgegw_callback_backlog",
            "Callbacks (MO, DR, e-mail, SMPP deliver_sm) waiting for the customer.",
            labels=["service", "kind"],
        )
        pending = dict.fromkeys(metrics.callbacks, 0)
        pending.update(figures.backlog)
        for (service_id, kind), count in sorted(pending.items()):
            backlog.add_metric([str(service_id), kind], count)
        clock = GaugeMetricFamily(
            "edgegw_clock_step_seconds",
            "How far the system clock is off the gateway's time: its steps since the gateway"
            " started (NTP, an admin, a resume from suspend), less how far it read before"
            " 2020-01-01 then; the gateway keeps to its start's time until it starts again.",
            value=metrics.clock.wall() - metrics.clock.now(),
        )
        writable = GaugeMetricFamily(
            "edgegw_store_writable",
            "1 while the store takes writes; 0 from a commit its disk refused (full, or an I/O"
            " error) until one goes through.",
            value=0 if metrics.store.unwritable is not None else 1,
        )
        yield from (final, queue, backlog, clock, writable)
        yield from _modem_families(metrics.modems)
        callbacks = CounterMetricFamily(
            "edgegw_callbacks",
            "Callback items delivered and failed tries, by kind (mo, dr, mo_email).",
            labels=["kind", "outcome"],
        )
        outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        for worker in metrics.workers:
            outcomes[(worker.endpoint.value, "delivered")] += worker.delivered
            outcomes[(worker.endpoint.value, "failed")] += worker.failures
        for (kind, outcome), count in sorted(outcomes.items()):
            callbacks.add_metric([kind, outcome], count)
        yield callbacks
        sessions = GaugeMetricFamily(
            "edgegw_smpp_sessions", "Bound SMPP sessions, by service.", labels=["service"]
        )
        per_service: collections.Counter[int] = collections.Counter()
        for system_id, binds in metrics.smpp_binds.items():
            account_service = metrics.smpp_services.get(system_id)
            if account_service is not None:
                per_service[account_service] += binds
        for service_id in sorted(set(metrics.smpp_services.values())):
            sessions.add_metric([str(service_id)], per_service[service_id])
        yield sessions
        for name, text, counts in (
            ("edgegw_auth_failures", "Failed logins, by door.", metrics.auth_failures),
            (
                "edgegw_auth_refusals",
                "Logins refused unchecked from a locked-out address, by door.",
                metrics.auth_refusals,
            ),
            (
                "edgegw_connections_refused",
                "Connections refused when accepted (the listener full, or the client address"
                " at its share), by door.",
                metrics.connections_refused,
            ),
        ):
            family = CounterMetricFamily(name, text, labels=["door"])
            for door in sorted(metrics.doors | counts.keys()):
                family.add_metric([door], counts.get(door, 0))
            yield family


def _modem_families(modems: Mapping[str, Modem]) -> Iterable[Metric]:
    up = GaugeMetricFamily("edgegw_modem_up", "1 when the modem can send.", labels=["modem"])
    signal = GaugeMetricFamily(
        "edgegw_modem_signal_dbm", "Signal strength as last read (+CSQ).", labels=["modem"]
    )
    sent = CounterMetricFamily(
        "edgegw_modem_sent", "Parts the modem sent since the driver started.", labels=["modem"]
    )
    for name, modem in modems.items():
        health = modem.health()
        up.add_metric([name], 1.0 if health.state is ModemState.READY else 0.0)
        if health.signal_dbm is not None:
            signal.add_metric([name], health.signal_dbm)
        sent.add_metric([name], health.sent)
    return (up, signal, sent)
