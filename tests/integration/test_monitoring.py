"""What an operator and Prometheus see of a running gateway (issue 9, items 3 and 5): /health
stays liveness with a `ready` field, /ready lists the modems that cannot send and why, and
/metrics is parsed with prometheus-client's own parser after real traffic (REST and SMPP)."""

from __future__ import annotations

import contextlib
import functools
import logging
import smtplib
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import smpplib.client
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.gateway import Customer, example_config
from support.smpp import connect
from support.sockets import open_from
from support.store import START, new_message, start_store

from drivers.at import AtOptions
from drivers.events import ModemState
from drivers.modem import Health
from edgegw.clock import Clock
from edgegw.config import Config, ModemConfig, MonitoringConfig
from edgegw.delivery.config import CallbackEndpoint
from edgegw.gateway import Gateway
from edgegw.metrics import StoreFigures, read_store_figures
from edgegw.model import MessageRequest, SendRequest
from edgegw.pipeline.readiness import readiness
from edgegw.store import DrStatus, transactions

AUTH = ("demo", "demo")
GHOST = "/dev/edgegw-no-such-modem"


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels), parsed by prometheus-client."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def wait_ready(client: httpx.AsyncClient) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            answer = await client.get("/health")
            body: dict[str, Any] = answer.json()
            if body["ready"]:
                return body
            await trio.sleep(0.02)


async def wait_sent(client: httpx.AsyncClient, message_id: str) -> None:
    with trio.fail_after(20):
        while True:
            answer = await client.get(f"/api/messages/{message_id}", auth=AUTH)
            if answer.json()["state"] in ("sent", "delivered"):
                return
            await trio.sleep(0.02)


async def send(client: httpx.AsyncClient, text: str) -> str:
    answer = await client.post(
        "/gw/rs/sendMessages",
        json={
            "serviceId": 1000,
            "username": "demo",
            "password": "demo",
            "message": [{"recipient": "+4741000000", "content": text}],
        },
        headers={"Accept": "application/json"},
    )
    message_id: str = answer.json()["messageStatus"][0]["messageId"]
    return message_id


# -- readiness ---------------------------------------------------------------------------------


def test_readiness_names_each_modem_that_cannot_send() -> None:
    health = {
        "a": Health(state=ModemState.READY, detail="signal -73 dBm"),
        "b": Health(state=ModemState.FAILED, detail="/dev/ttyUSB1: no such device"),
        "c": Health(state=ModemState.READY),
        "d": Health(state=ModemState.QUARANTINED, last_error="+CMS ERROR: 500"),
    }
    verdict = readiness(
        [(1, []), (2, ["b", "c"]), (3, ["b", "d"])], health, {"c": "2025-08-05T09:00:00Z"}
    )
    assert not verdict.ready
    assert [(s.service, s.ready, s.sendingModems) for s in verdict.services] == [
        (1, True, ["a"]),
        (2, False, []),
        (3, False, []),
    ]
    assert {p.modem: p.reason for p in verdict.notReady} == {
        "b": "failed: /dev/ttyUSB1: no such device",
        "c": "capped until 2025-08-05T09:00:00Z",
        "d": "quarantined: +CMS ERROR: 500",
    }
    assert readiness([(1, ["a"])], health, {}).ready


async def test_health_and_ready_while_one_service_has_no_modem(
    config: Config, nursery: trio.Nursery
) -> None:
    ghost = ModemConfig(name="ghost", driver="at", at=AtOptions(port=GHOST))
    other = msgspec.structs.replace(
        config.services[0], id=2000, name="other", username="other", modems=["ghost"]
    )
    gateway = Gateway(
        msgspec.structs.replace(
            config, modems=[*config.modems, ghost], services=[config.services[0], other]
        )
    )
    await nursery.start(gateway.run)
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        with trio.fail_after(20):
            while True:
                if gateway.modems["sim0"].health().state is ModemState.READY:
                    break
                await trio.sleep(0.02)
        health = await client.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "ready": False})
        ready = await client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["services"] == [
            {"service": 1000, "ready": True, "sendingModems": ["sim0"]},
            {"service": 2000, "ready": False, "sendingModems": []},
        ]
        (problem,) = body["notReady"]
        assert problem["modem"] == "ghost"
        assert problem["reason"].startswith(
            f"failed: cannot open the port: {GHOST}: no such device"
        )
        assert (await client.post("/ready")).status_code == 405
    gateway.stop()


async def test_ready_is_200_when_every_service_can_send(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        assert await wait_ready(client) == {"status": "ok", "ready": True}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["notReady"] == []


# -- metrics -----------------------------------------------------------------------------------


def bind_and_submit(port: int) -> smpplib.client.Client:
    client = connect(port)
    client.bind_transceiver(system_id="demo", password="demo")
    client.send_message(
        source_addr_ton=5,
        source_addr="EdgeGW",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="+4741000001",
        short_message=b"over smpp",
    )
    assert client.read_pdu().command == "submit_sm_resp"
    return client


SOAP_SEND = """<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:s="http://chimera.intele.com/gw/wsdl/SMSGateway-v1.0"
    xmlns:r="http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02">
  <e:Body><s:sendMessages><r:request>
    <serviceId>1000</serviceId><username>demo</username><password>demo</password>
    <message><recipient>+4741000002</recipient><content>over soap</content></message>
  </r:request></s:sendMessages></e:Body>
</e:Envelope>"""


def mail_two_recipients(port: int | None) -> None:
    assert port is not None
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail(
            "alarm@example.com",
            ["+4741000003-1000@sms.localhost", "4741000004-1000@sms.localhost"],
            b"Subject: x\r\n\r\nover smtp\r\n",
        )
        # One wrong AUTH (offered on loopback), counted with the other doors' failed logins.
        smtp.user, smtp.password = "demo", "guess"
        with contextlib.suppress(smtplib.SMTPAuthenticationError):
            smtp.auth("PLAIN", smtp.auth_plain)


async def test_a_scrape_after_traffic_through_every_door(gateway: Gateway) -> None:
    assert gateway.bound is not None and gateway.bound.smpp_port is not None
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        await wait_ready(client)
        first, second = await send(client, "one"), await send(client, "two")
        await wait_sent(client, first)
        await wait_sent(client, second)
        esme = await trio.to_thread.run_sync(bind_and_submit, gateway.bound.smpp_port)
        soap = await client.post("/gw/ws/SMSGatewayV10", content=SOAP_SEND)
        assert soap.status_code == 200
        await trio.to_thread.run_sync(mail_two_recipients, gateway.bound.smtp_port)
        wrong = await client.get("/api/messages", auth=("demo", "guess"))
        assert wrong.status_code == 401
        try:
            await gateway.metrics.poll()
            scrape = await client.get("/metrics")
        finally:
            await trio.to_thread.run_sync(esme.disconnect)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(scrape.text)
    assert found[("edgegw_messages_accepted_total", (("door", "http"), ("service", "1000")))] == 2
    assert found[("edgegw_messages_accepted_total", (("door", "smpp"), ("service", "1000")))] == 1
    assert found[("edgegw_messages_accepted_total", (("door", "soap"), ("service", "1000")))] == 1
    assert found[("edgegw_messages_accepted_total", (("door", "smtp"), ("service", "1000")))] == 2
    assert found[("edgegw_auth_failures_total", (("door", "http"),))] == 1
    assert found[("edgegw_auth_failures_total", (("door", "smtp"),))] == 1
    assert found[("edgegw_modem_up", (("modem", "sim0"),))] == 1
    assert found[("edgegw_modem_signal_dbm", (("modem", "sim0"),))] == -73
    assert found[("edgegw_modem_sent_total", (("modem", "sim0"),))] >= 2
    assert found[("edgegw_smpp_sessions", (("service", "1000"),))] == 1
    assert ("edgegw_queue_messages", (("service", "1000"),)) in found
    # Every request so far went through the app: health polls, sends, lookups.
    assert found[("edgegw_http_request_duration_seconds_count", ())] >= 4


async def test_each_door_s_counters_are_scraped_before_their_first_event(
    gateway: Gateway,
) -> None:
    """A counter with no series until its first event hides that event from increase()."""
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        found = samples((await client.get("/metrics")).text)
    for name in ("auth_failures", "auth_refusals", "connections_refused"):
        counted = {
            labels: value
            for (metric, labels), value in found.items()
            if metric == f"edgegw_{name}_total"
        }
        assert counted == {(("door", door),): 0 for door in ("http", "smpp", "smtp")}, name


async def test_each_service_s_final_outcomes_are_scraped_before_the_first(
    gateway: Gateway,
) -> None:
    """An alert on increase(...{state="failed"}) missed the first failure after a start: its
    series began at 1, which increase() takes for where the counter started."""
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        found = samples((await client.get("/metrics")).text)
    counted = {
        labels: value
        for (metric, labels), value in found.items()
        if metric == "edgegw_messages_final_total"
    }
    states = ("cancelled", "delivered", "expired", "failed", "sent")
    assert counted == {(("service", "1000"), ("state", state)): 0 for state in states}


async def test_each_service_s_accepted_messages_are_scraped_before_the_first(
    gateway: Gateway,
) -> None:
    """A dashboard's increase() showed no message accepted after a start until the second."""
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        found = samples((await client.get("/metrics")).text)
    counted = {
        labels: value
        for (metric, labels), value in found.items()
        if metric == "edgegw_messages_accepted_total"
    }
    doors = ("http", "smpp", "smtp", "soap", "status")
    assert counted == {(("door", door), ("service", "1000")): 0 for door in doors}


async def test_each_service_s_callback_backlog_is_scraped_before_the_first(
    config: Config, nursery: trio.Nursery
) -> None:
    """An alert on `edgegw_callback_backlog > 100` had no series to watch until a first
    callback waited: each callback a service may queue is there at 0 from the start, and no
    other (a service without callbacks has none)."""
    nobody = {"url": "http://127.0.0.1:9/never-called"}  # nothing is queued for it
    demo = msgspec.structs.replace(
        config.services[0],
        mo=msgspec.convert(nobody, CallbackEndpoint),
        dr=msgspec.convert(nobody, CallbackEndpoint),
        mo_smpp=True,
    )
    quiet = msgspec.structs.replace(
        config.services[0], id=1001, name="quiet", username="quiet", smtp=None
    )
    gateway = Gateway(msgspec.structs.replace(config, services=[demo, quiet]))
    await nursery.start(gateway.run)
    found = samples(gateway.metrics.scrape().decode())
    gateway.stop()
    backlog = {
        labels: value
        for (name, labels), value in found.items()
        if name == "edgegw_callback_backlog"
    }
    kinds = ("dr", "mo", "smpp_mo", "smpp_receipt")
    assert backlog == {(("kind", kind), ("service", "1000")): 0 for kind in kinds}


async def test_connections_refused_at_each_door_are_counted(
    config: Config, nursery: trio.Nursery
) -> None:
    assert config.smpp is not None and config.smtp is not None
    one_each = Config(
        **{
            **msgspec.structs.asdict(config),
            "http": msgspec.structs.replace(
                config.http,
                limits=msgspec.structs.replace(config.http.limits, max_connections_per_address=1),
            ),
            "smpp": msgspec.structs.replace(config.smpp, max_connections_per_address=1),
            "smtp": msgspec.structs.replace(config.smtp, max_connections_per_address=1),
        }
    )
    gateway = Gateway(one_each)
    bound = await nursery.start(gateway.run)
    ports = {"http": bound.http_port, "smpp": bound.smpp_port, "smtp": bound.smtp_port}
    # 127.0.0.2 holds its one connection at each door; its second is refused, twice at SMTP.
    held = {door: await open_from(port, "127.0.0.2") for door, port in ports.items()}
    for door, times in (("http", 1), ("smpp", 1), ("smtp", 2)):
        for _ in range(times):
            over = await open_from(ports[door], "127.0.0.2")
            with trio.fail_after(5):
                while await over.receive_some(4096):
                    pass  # the refusal (503, 421, or nothing), then the close
            await over.aclose()
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        scrape = await client.get("/metrics")  # from 127.0.0.1, which has its own share
    found = samples(scrape.text)
    assert found[("edgegw_connections_refused_total", (("door", "http"),))] == 1
    assert found[("edgegw_connections_refused_total", (("door", "smpp"),))] == 1
    assert found[("edgegw_connections_refused_total", (("door", "smtp"),))] == 2
    for stream in held.values():
        await stream.aclose()
    gateway.stop()


async def test_metrics_can_require_credentials(config: Config, nursery: trio.Nursery) -> None:
    monitoring = MonitoringConfig(metrics_auth=True, admin_username="ops", admin_password="s3cret")
    gateway = Gateway(msgspec.structs.replace(config, monitoring=monitoring))
    await nursery.start(gateway.run)
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
        assert (await client.get("/metrics", auth=("ops", "wrong"))).status_code == 401
        for credentials in (AUTH, ("ops", "s3cret")):
            answer = await client.get("/metrics", auth=credentials)
            assert answer.status_code == 200
            assert "edgegw_modem_up" in answer.text
    gateway.stop()


async def test_a_step_of_the_system_clock_is_scraped_and_logged(
    config: Config, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    step = [0.0]
    gateway = Gateway(config, clock=Clock(step=lambda: step[0]))
    await nursery.start(gateway.run)
    step[0] = 3 * 3600.0  # NTP steps the clock 3 hours forward, the gateway runs on
    await gateway.metrics.poll()
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        scrape = await client.get("/metrics")
    assert round(samples(scrape.text)[("edgegw_clock_step_seconds", ())]) == 3 * 3600
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("system clock is +10800 s off the gateway's time" in text for text in warnings)
    await gateway.metrics.poll()
    assert len([r for r in caplog.records if "system clock is" in r.getMessage()]) == 1
    gateway.stop()


async def test_final_outcomes_are_counted_from_the_store(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store = await start_store(tmp_path / "edgegw.db", nursery)
    figures = StoreFigures()
    await store.insert_messages([new_message("m-old", service_id=7)])
    await store.fail("m-old", error="before we started", dr_status=DrStatus.UNSPECIFIED)
    await store.read(lambda conn: read_store_figures(conn, figures))
    assert figures.final == {}  # outcomes from before the process started are not counted
    await store.insert_messages([new_message(f"m{i}", service_id=7) for i in range(3)])
    await store.fail("m0", error="no", dr_status=DrStatus.UNSPECIFIED)
    await store.fail("m1", error="no", dr_status=DrStatus.UNSPECIFIED)
    await store.read(lambda conn: read_store_figures(conn, figures))
    assert figures.final == {(7, "failed"): 2}
    assert figures.queued == {7: 1}
    await store.read(lambda conn: read_store_figures(conn, figures))
    assert figures.final == {(7, "failed"): 2}  # counted once


async def test_a_message_closed_without_its_status_report_is_a_final_outcome(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """It stays `sent`, with DR 362 to the customer: final, so counted as `sent`."""
    store = await start_store(tmp_path / "edgegw.db", nursery)
    figures = StoreFigures()
    await store.read(lambda conn: read_store_figures(conn, figures))
    await store.insert_messages([new_message("m0", service_id=7)])
    await store.claim([("m0", "sim0")])
    await store.mark_sent("m0")
    await store.read(lambda conn: read_store_figures(conn, figures))
    assert figures.final == {}  # `sent` alone is not final
    closed = await store.write(
        functools.partial(
            transactions.close_overdue, fx=store.effects, before=START + 86400, now=START + 60
        )
    )
    assert closed == ["m0"]
    await store.read(lambda conn: read_store_figures(conn, figures))
    assert figures.final == {(7, "sent"): 1}


async def test_two_delivered_one_failed_are_counted_once_each_beside_their_drs(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A DR's fate is a line in its message's history: it is no second final outcome."""
    customer = Customer("dr")
    endpoint = {"url": f"http://127.0.0.1:{await customer.start(nursery)}/dr"}
    config = example_config(
        tmp_path, delivery_reports=True, dr=msgspec.convert(endpoint, CallbackEndpoint)
    )
    gateway = Gateway(config)
    await nursery.start(gateway.run)
    outcomes = {"+4741000001": 0x00, "+4741000002": 0x00, "+4741000003": 0x41}
    for recipient, status in outcomes.items():
        gateway.simulators["sim0"].network.set_outcome(recipient, status, delay=0.1)
    response = await gateway.submit(
        SendRequest(
            serviceId=1000,
            username="demo",
            password="demo",
            message=[MessageRequest(recipient=r, content="Hi") for r in outcomes],
        )
    )
    ids = [status.messageId for status in response.messageStatus if status.messageId]
    assert len(ids) == 3, response
    with trio.fail_after(20):
        for message_id in ids:
            while not any(  # noqa: ASYNC110
                detail.startswith("DR delivered to the customer")
                for *_, detail in await gateway.store.events(message_id)
            ):
                await trio.sleep(0.02)
    await gateway.metrics.poll()
    found = samples(gateway.metrics.scrape().decode())
    final = {
        dict(labels)["state"]: value
        for (name, labels), value in found.items()
        if name == "edgegw_messages_final_total"
    }
    assert final == {"cancelled": 0, "delivered": 2, "expired": 0, "failed": 1, "sent": 0}
    gateway.stop()
