"""MO and DR callbacks against a fake customer endpoint (edgegw's own h11 listener on 127.0.0.1
with a scripted app): exact GET query strings and POST bodies in JSON and XML, acknowledgement
only on 200, backoff in virtual time, restart during retries, isolation, HMAC and give-up."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import hmac
import itertools
import json
import logging
import sqlite3
import tracemalloc
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.delivery.config import SmtpRelayConfig
from edgegw.delivery.fanout import final_outcomes
from edgegw.delivery.outbox import OutboxItem, enqueue_mo, outbox_items
from edgegw.delivery.worker import Deliveries
from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.model import MessageRequest, Parameter, SendRequest, Settings
from edgegw.pipeline.submit import Submitter
from edgegw.store import DrStatus, Store, Topic, run_inline, transactions

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z = 10:00 in Oslo (CEST)
HOUR = 3600.0


@dataclass
class Customer:
    """Records every request; answers with the next scripted status, 200 once the script ends."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # trio time of each request
    script: list[int] = field(default_factory=list)
    acknowledged: list[Request] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering
    _changed: trio.Event = field(default_factory=trio.Event)

    async def app(self, request: Request) -> Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        self._signal()
        if self.delay:
            await trio.sleep(self.delay)
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            self.acknowledged.append(request)
            self._signal()
        return Response(status=status, body=b"OK" if status == 200 else b"nope")

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_requests(self, count: int, *, acknowledged: bool = False) -> None:
        """Until `count` requests (acknowledged ones, with `acknowledged`) came in."""
        seen = self.acknowledged if acknowledged else self.requests
        while len(seen) < count:
            await self._changed.wait()

    def url(self, path: str = "/cb") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def start_customer(nursery: trio.Nursery, **kwargs: object) -> Customer:
    customer = Customer(**kwargs)  # type: ignore[arg-type]
    customer.port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    return customer


def service(service_id: int = 1, **overrides: object) -> ServiceConfig:
    fields: dict[str, object] = {
        "id": service_id,
        "name": f"service-{service_id}",
        "username": f"user{service_id}",
        "password": f"secret{service_id}",
        "delivery_reports": True,
    }
    fields.update(overrides)
    return msgspec.convert(fields, ServiceConfig)


def mo_fields(**overrides: object) -> dict[str, Any]:
    """The arguments of `enqueue_mo` for an MO to service 1, with `overrides`."""
    fields: dict[str, Any] = {
        "message_id": "mo0000000001",
        "service_id": 1,
        "sno": "1960",
        "originator": "+4799999999",
        "content": "KODE hei på deg",
        "command": "KODE",
        "received_at": START,
        "sc_timestamp": START - 2,
    }
    fields.update(overrides)
    # The keyword routing's strippedcontent: the content after the keyword and its blank.
    fields.setdefault("stripped_content", fields["content"].removeprefix("KODE "))
    return fields


class Rig:
    def __init__(self, store: Store, clock: Clock, services: Sequence[ServiceConfig]) -> None:
        self.store = store
        self.clock = clock
        self.submitter = Submitter(list(services), store, clock)

    async def send(
        self, service_id: int = 1, client_reference: str | None = "ref-1", **settings: object
    ) -> str:
        response = await self.submitter.submit(
            SendRequest(
                serviceId=service_id,
                username=f"user{service_id}",
                password=f"secret{service_id}",
                batchReference="batch-1",
                message=[
                    MessageRequest(
                        recipient="+4741000000",
                        content="Hello",
                        clientReference=client_reference,
                        settings=Settings(**settings),  # type: ignore[arg-type]
                    )
                ],
            )
        )
        status = response.messageStatus[0]
        assert status.messageId is not None, status.statusMessage
        return status.messageId

    async def fail(self, message_id: str, dr_status: DrStatus = DrStatus.UNKNOWN_RECIPIENT) -> None:
        await self.store.fail(
            message_id, error="no such subscriber", dr_status=dr_status, ext_status="49"
        )

    async def fail_together(self, message_ids: Sequence[str]) -> None:
        """Fail the messages in one commit: the delivery worker, woken by it at once, finds
        all their DRs waiting (one by one, it would send the first alone)."""

        def fail_all(conn: sqlite3.Connection) -> None:
            for message_id in message_ids:
                transactions.fail(
                    conn,
                    self.store.effects,
                    message_id,
                    error="no such subscriber",
                    dr_status=DrStatus.UNKNOWN_RECIPIENT,
                    ext_status="49",
                    part_index=None,
                    counts_as_attempt=True,
                    now=self.clock.now(),
                )

        await self.store.write(fail_all)

    async def mo(
        self, message_id: str = "mo0000000001", service_id: int = 1, **kwargs: object
    ) -> int:
        fields = mo_fields(message_id=message_id, service_id=service_id, **kwargs)
        return await self.store.write(functools.partial(enqueue_mo, **fields))

    async def items(self, message_id: str | None = None) -> list[OutboxItem]:
        return await self.store.read(functools.partial(outbox_items, message_id=message_id))


async def start_rig(
    nursery: trio.Nursery,
    path: Path,
    services: Sequence[ServiceConfig],
    *,
    relay: SmtpRelayConfig | None = None,
    start: float = START,
    clock: Clock | None = None,
) -> tuple[Rig, Deliveries]:
    clock = clock or Clock(start_epoch=start)
    # SQL inline on the event loop: the autojump clock would count thread time as idle.
    store = Store(path, clock=clock, offload=run_inline, final_outcomes=final_outcomes)
    await nursery.start(store.run)
    deliveries = Deliveries(store, clock, services, relay or SmtpRelayConfig())
    store.subscribe(Topic.CALLBACKS, deliveries.wake)
    await nursery.start(deliveries.run)
    return Rig(store, clock, services), deliveries


DR_JSON_KEYS = [
    "messageid",
    "customerbatchreference",
    "customermessagereference",
    "serviceid",
    "servicename",
    "mcc",
    "mnc",
    "type",
    "statuscode",
    "statusdescription",
    "extstatuscode",
    "extstatusdescription",
]


async def test_dr_post_json_has_the_spec_keys_order_and_types(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    services = [service(1, dr={"url": customer.url("/dr"), "method": "POST"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    message_id = await rig.send()
    await rig.fail(message_id)
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (request,) = customer.requests
    assert request.method == "POST" and request.path == "/dr"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert list(body) == ["dr"]
    (dr,) = body["dr"]
    assert list(dr) == DR_JSON_KEYS
    assert dr == {
        "messageid": message_id,
        "customerbatchreference": "batch-1",
        "customermessagereference": "ref-1",
        "serviceid": 1,
        "servicename": "service-1",
        "mcc": 0,
        "mnc": 0,
        "type": 6,
        "statuscode": 351,
        "statusdescription": "Unknown recipient.",
        "extstatuscode": "49",
        "extstatusdescription": "Failed",
    }
    item = await settle(rig, message_id, "delivered")
    assert item.attempts == 1 and item.last_status == 200


async def settle(rig: Rig, message_id: str | None, state: str, seconds: float = 5.0) -> OutboxItem:
    """The first outbox item (of `message_id`) once it is in `state`, waiting up to `seconds`."""
    for _ in range(int(seconds * 10)):
        items = await rig.items(message_id)
        if items and items[0].state == state:
            return items[0]
        await trio.sleep(0.1)
    raise AssertionError(f"outbox item never reached {state}: {await rig.items(message_id)}")


async def first_try(rig: Rig, message_id: str) -> OutboxItem:
    """The message's outbox item once its first try is recorded."""
    with trio.fail_after(10):
        while not (item := (await rig.items(message_id))[0]).attempts:  # noqa: ASYNC110
            await trio.sleep(0.1)
    return item


SPEC_MO_TEMPLATE = (
    "/incomingaction?messageid=[messageid]&sno=[sno]&commandtype=[commandtype]&command=[command]"
    "&content=[content]&timestamp=[timestamp]&sctimestamp=[sctimestamp]&serviceid=[serviceid]"
    "&originator=[originator]&mcc=[mcc]&mnc=[mnc]&sessionid=[sessionId]&type=[type]"
    "&servicename=[servicename]"
)
SPEC_DR_TEMPLATE = (
    "/reportaction?messageid=[messageid]&statuscode=[statuscode]"
    "&statusdescription=[statusdescription]&extstatuscode=[extstatuscode]"
    "&extstatusdescription=[extstatusdescription]"
    "&customerMessageReference=[customermessagereference]"
    "&customerBatchReference=[customerbatchreference]&serviceid=[serviceid]"
    "&servicename=[servicename]&mcc=[mcc]&mnc=[mnc]&type=[type]"
)


async def test_mo_get_fills_the_spec_template_case_insensitively_and_url_encoded(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    template = customer.url(SPEC_MO_TEMPLATE + "&who=[DI_FIRSTNAME]&x=[nosuchfield]")
    services = [service(123, name="Test", mo={"url": template, "method": "GET"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    assert await rig.mo("7a02c0000f00", service_id=123) == 1
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (request,) = customer.requests
    assert request.method == "GET" and request.path == "/incomingaction"
    assert request.query == (
        "messageid=7a02c0000f00&sno=1960&commandtype=&command=KODE"
        "&content=KODE%20hei%20p%C3%A5%20deg&timestamp=20250805%2010%3A00%3A00"
        "&sctimestamp=20250805%2009%3A59%3A58&serviceid=123&originator=%2B4799999999"
        "&mcc=0&mnc=0&sessionid=&type=1&servicename=Test&who=&x="
    )
    assert request.body == b""
    item = await settle(rig, "7a02c0000f00", "delivered")
    assert item.attempts == 1


async def test_mo_post_json_is_the_spec_example_shape(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    services = [service(123, name="Test", mo={"url": customer.url("/mo")})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    await rig.mo("7a02c0000f00", service_id=123, content="KODE hei")
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (request,) = customer.requests
    assert request.headers["content-type"] == "application/json"
    assert request.body == (
        b'{"mo":[{"messageid":"7a02c0000f00","serviceid":123,"servicename":"Test","sno":"1960",'
        b'"originator":"+4799999999","mcc":0,"mnc":0,"content":"KODE hei","command":"KODE",'
        b'"strippedcontent":"hei","type":1,"timestamp":"20250805 10:00:00",'
        b'"sctimestamp":"20250805 09:59:58","sessionid":""}]}'
    )


async def test_mo_post_xml_is_the_spec_example_shape(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    services = [service(123, name="Test", mo={"url": customer.url("/mo"), "format": "xml"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    await rig.mo("7a02c0000f00", service_id=123, content="KODE hei & <ha>")
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (request,) = customer.requests
    assert request.headers["content-type"] == "application/xml; charset=UTF-8"
    assert request.body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<mo><message><messageid>7a02c0000f00</messageid><serviceid>123</serviceid>"
        b"<servicename>Test</servicename><sno>1960</sno><originator>+4799999999</originator>"
        b"<mcc>0</mcc><mnc>0</mnc><content>KODE hei &amp; &lt;ha&gt;</content>"
        b"<command>KODE</command><strippedcontent>hei &amp; &lt;ha&gt;</strippedcontent>"
        b"<type>1</type><timestamp>20250805 10:00:00</timestamp>"
        b"<sctimestamp>20250805 09:59:58</sctimestamp><sessionid/></message></mo>"
    )


async def test_dr_get_fills_the_spec_template(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    template = customer.url(SPEC_DR_TEMPLATE + "&from=[Originator]")
    services = [service(123, name="Test", originator="Acme", dr={"url": template, "method": "GET"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    message_id = await rig.send(service_id=123, client_reference="MyRef123")
    await rig.store.fail(message_id, error="gone", dr_status=DrStatus.DELIVERED, ext_status="0")
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (request,) = customer.requests
    assert request.path == "/reportaction"
    assert request.query == (
        f"messageid={message_id}&statuscode=0"
        "&statusdescription=OK.%20Message%20processed%20successfully.&extstatuscode=0"
        "&extstatusdescription=Failed&customerMessageReference=MyRef123"
        "&customerBatchReference=batch-1&serviceid=123&servicename=Test&mcc=0&mnc=0&type=6"
        "&from=Acme"
    )


async def test_dr_post_xml_is_the_spec_example_shape(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    services = [service(123, name="Test", dr={"url": customer.url("/dr"), "format": "xml"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    message_id = await rig.send(service_id=123, client_reference=None)
    await rig.fail(message_id)
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    assert customer.requests[0].body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<dr><message><messageid>" + message_id.encode() + b"</messageid>"
        b"<customerbatchreference>batch-1</customerbatchreference>"
        b"<customermessagereference/><serviceid>123</serviceid><servicename>Test</servicename>"
        b"<mcc>0</mcc><mnc>0</mnc><type>6</type><statuscode>351</statuscode>"
        b"<statusdescription>Unknown recipient.</statusdescription>"
        b"<extstatuscode>49</extstatuscode><extstatusdescription>Failed</extstatusdescription>"
        b"</message></dr>"
    )


async def test_post_batches_up_to_batch_max_at_most_one_request_per_interval(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    dr = {"url": customer.url("/dr"), "batch_max": 2, "interval": 1.5}
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    ids = [await rig.send() for _ in range(5)]
    await rig.fail_together(ids)
    with trio.fail_after(30):
        await customer.wait_requests(3, acknowledged=True)
    batches = [[dr["messageid"] for dr in json.loads(r.body)["dr"]] for r in customer.requests]
    assert batches == [ids[0:2], ids[2:4], ids[4:5]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(customer.times)]
    assert all(gap >= 1.5 for gap in gaps), gaps


async def test_post_of_one_item_a_request_keeps_the_pace_too(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    dr = {"url": customer.url("/dr"), "batch_max": 1}
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    for _ in range(3):
        await rig.fail(await rig.send())
    with trio.fail_after(30):
        await customer.wait_requests(3, acknowledged=True)
    assert [len(json.loads(r.body)["dr"]) for r in customer.requests] == [1, 1, 1]
    gaps = [later - earlier for earlier, later in itertools.pairwise(customer.times)]
    assert all(gap >= 1.0 for gap in gaps), gaps


async def test_only_200_acknowledges_and_retries_back_off_exponentially(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery, script=[500, 204, 500])
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr={"url": customer.url()})])
    message_id = await rig.send()
    await rig.fail(message_id)
    with trio.fail_after(3600):
        await customer.wait_requests(4)
    first = customer.times[0]
    assert [round(t - first) for t in customer.times] == [0, 60, 180, 420]
    item = await settle(rig, message_id, "delivered")
    assert (item.attempts, item.last_status) == (4, 200)
    assert len(customer.acknowledged) == 1


async def test_500_three_times_then_200_with_a_restart_in_between_acknowledges_once(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery, script=[500, 500, 500])
    services = [service(1, dr={"url": customer.url(), "batch_max": 10})]
    path = tmp_path / "db"
    async with trio.open_nursery() as first_run:
        rig, _ = await start_rig(first_run, path, services)
        ids = [await rig.send() for _ in range(3)]
        await rig.fail_together(ids)
        with trio.fail_after(3600):
            await customer.wait_requests(2)
        await trio.sleep(1)  # the failure is committed
        first_run.cancel_scope.cancel()
    # A new store and workers on the same file, as after a restart, 100 s into the backoff.
    await trio.sleep(100)
    rig, _ = await start_rig(nursery, path, services, clock=rig.clock)
    with trio.fail_after(3600):
        await customer.wait_requests(1, acknowledged=True)
    await trio.sleep(3600)  # nothing more arrives
    assert len(customer.requests) == 4
    (acknowledged,) = customer.acknowledged
    assert sorted(dr["messageid"] for dr in json.loads(acknowledged.body)["dr"]) == sorted(ids)
    items = await rig.items()
    assert [(item.state, item.attempts) for item in items] == [("delivered", 4)] * 3
    first = customer.times[0]
    assert [round(t - first) for t in customer.times] == [0, 60, 180, 420]


async def test_callbacks_due_under_a_clock_set_back_since_are_not_held_for_the_step(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery, script=[500])
    services = [service(1, dr={"url": customer.url("/dr")}, mo={"url": customer.url("/mo")})]
    path = tmp_path / "db"
    ahead = START + HOUR  # the box's clock an hour ahead
    async with trio.open_nursery() as first_run:
        rig, _ = await start_rig(first_run, path, services, start=ahead)
        message_id = await rig.send()
        await rig.fail(message_id)
        await first_try(rig, message_id)
        first_run.cancel_scope.cancel()
    # Stopped before the MO it stored went out: its item is due at the time the clock read.
    async with trio.open_nursery() as stopped:
        store = Store(path, clock=Clock(ahead), offload=run_inline)
        await stopped.start(store.run)
        await store.write(functools.partial(enqueue_mo, **mo_fields(received_at=ahead)))
        stopped.cancel_scope.cancel()
    restarted = trio.current_time()
    await start_rig(nursery, path, services, start=START)  # the clock set right
    with trio.fail_after(2 * HOUR):
        await customer.wait_requests(2, acknowledged=True)
    assert sorted(request.path for request in customer.acknowledged) == ["/dr", "/mo"]
    # The MO at once, the DR one backoff step (60 s) after the start, not an hour later.
    assert max(customer.times) - restarted <= 60


async def test_a_dead_endpoint_does_not_delay_another_service(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hanging = await start_customer(nursery, delay=10_000)
    healthy = await start_customer(nursery)
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        refused_port = unused.getsockname()[1]
    services = [
        service(1, dr={"url": hanging.url(), "timeout": 60}),
        service(2, dr={"url": f"http://127.0.0.1:{refused_port}/dr"}),
        service(3, dr={"url": healthy.url(), "method": "GET"}),
    ]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    slow, dead = await rig.send(1), await rig.send(2)
    await rig.fail(slow)
    await rig.fail(dead)
    with trio.fail_after(5):
        await hanging.wait_requests(1)
    started = trio.current_time()
    fine = await rig.send(3)
    await rig.fail(fine)
    with trio.fail_after(5):
        await healthy.wait_requests(1, acknowledged=True)
    assert trio.current_time() - started < 2
    await trio.sleep(61)
    slow_item = (await rig.items(slow))[0]
    assert slow_item.state == "pending" and slow_item.last_error == "no answer within 60 s"
    dead_item = (await rig.items(dead))[0]
    assert dead_item.state == "pending" and dead_item.last_error is not None
    assert dead_item.last_error.startswith("ConnectError")


async def test_credentials_fixed_headers_and_hmac_signature(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    common = {
        "username": "cust",
        "password": "pa:ss",
        "headers": {"X-API-Key": "3141592654"},
        "hmac_key": "k3y",
    }
    services = [
        service(1, dr={"url": customer.url("/dr"), **common}),
        service(2, dr={"url": customer.url("/dr?id=[messageid]"), "method": "GET", **common}),
    ]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    for service_id in (1, 2):
        await rig.fail(await rig.send(service_id))
    with trio.fail_after(10):
        await customer.wait_requests(2, acknowledged=True)
    for request in customer.requests:
        assert request.headers["authorization"] == "Basic " + base64.b64encode(
            b"cust:pa:ss"
        ).decode("ascii")
        assert request.headers["x-api-key"] == "3141592654"
        signed = (
            request.body
            if request.method == "POST"
            else (f"{request.path}?{request.query}".encode())
        )
        fields = signature_fields(request)
        assert abs(int(fields["t"]) - rig.clock.now()) < 5
        expected = hmac.new(b"k3y", fields["t"].encode() + b"." + signed, hashlib.sha256)
        assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    assert sorted(r.method for r in customer.requests) == ["GET", "POST"]


def signature_fields(request: Request) -> dict[str, str]:
    """The `t` and `v1` of the request's X-Edgegw-Signature."""
    return dict(part.split("=", 1) for part in request.headers["x-edgegw-signature"].split(","))


async def test_the_signature_is_dated_by_the_system_clock_after_it_stepped_while_running(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    step = [0.0]
    clock = Clock(START, step=lambda: step[0])
    services = [service(1, dr={"url": customer.url("/dr"), "hmac_key": "k3y"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services, clock=clock)
    clock.now()  # read once the gateway runs, as its first submit or DR would
    step[0] = 3 * HOUR  # NTP steps the system's clock 3 hours forward, the gateway runs on
    await rig.fail(await rig.send())
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (request,) = customer.requests
    # The customer's clock agrees with the system's, which a verifier allows 300 s off.
    assert abs(int(signature_fields(request)["t"]) - (clock.now() + 3 * HOUR)) < 5


async def test_an_item_is_abandoned_after_give_up_after_and_the_message_history_says_so(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery, script=[503] * 10)
    dr = {"url": customer.url(), "give_up_after": 100, "retry_initial": 60}
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    message_id = await rig.send()
    await rig.fail(message_id)
    item = await settle(rig, message_id, "abandoned", seconds=3600)
    assert len(customer.requests) == 3  # at 0, 60 and 180 s; 180 s is past 100 s
    assert item.last_status == 503
    assert item.last_error == "abandoned after 3 attempts: HTTP 503"
    view = await rig.store.message_view(1, message_id)
    assert view is not None
    assert view.events[-1].detail == "DR to the customer abandoned after 3 attempts: HTTP 503"
    await trio.sleep(3600)
    assert len(customer.requests) == 3


async def test_no_dr_without_delivery_reports_or_with_skip_customer_report_delivery(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    services = [
        service(1, dr={"url": customer.url()}),
        service(2, dr={"url": customer.url()}, delivery_reports=False),
        service(3),
    ]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    skipped = await rig.send(
        1, parameter=[Parameter(key="skip_customer_report_delivery", value="true")]
    )
    reported = await rig.send(1)
    for message_id in (skipped, reported, await rig.send(2), await rig.send(3)):
        await rig.fail(message_id)
    await trio.sleep(10)
    assert [item.message_id for item in await rig.items()] == [reported]
    assert len(customer.acknowledged) == 1


async def test_expired_and_delivered_messages_report_their_codes(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr={"url": customer.url()})])
    expiring = await rig.send(validity=0)  # 5 minutes (spec 7.4)
    await trio.sleep(600)
    expired = await rig.store.expire_due()
    assert expired == [expiring]
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    (dr,) = json.loads(customer.requests[0].body)["dr"]
    assert (dr["statuscode"], dr["extstatusdescription"]) == (361, "Expired")


async def test_a_sent_message_closed_without_a_report_gets_its_dr_once(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = await start_customer(nursery)
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr={"url": customer.url()})])
    message_id = await rig.send()
    await rig.store.claim([(message_id, "m1")])
    await rig.store.mark_sent(message_id)  # `sent` alone is no final outcome: no DR yet
    await trio.sleep(5)
    assert await rig.items(message_id) == []
    close = functools.partial(
        transactions.close_overdue,
        fx=rig.store.effects,
        before=rig.clock.now() + 365 * 86400,  # past any validity
        now=rig.clock.now(),
    )
    assert await rig.store.write(close) == [message_id]
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    await trio.sleep(5)
    (dr,) = json.loads(customer.requests[0].body)["dr"]
    assert (dr["statuscode"], dr["extstatusdescription"]) == (362, "No report")
    assert len(customer.requests) == 1


@dataclass
class OAuthCustomer:
    """A customer behind OAuth2 client credentials (spec 3.5, item 4): `/token` hands out
    tok-1, tok-2, ... for an hour each; `/dr` takes only the newest token, and refuses it once
    with 401 when `revoke` is set, as a server that revoked it would."""

    port: int = 0
    token_forms: list[dict[str, list[str]]] = field(default_factory=list)
    token_headers: list[dict[str, str]] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)  # every token request, failed too
    callbacks: list[tuple[float, str | None, int]] = field(default_factory=list)
    revoke: bool = False
    refuse: bool = False  # every token refused, as an endpoint that trusts another issuer
    token_failures: int = 0  # token requests answered 500 before the first token
    _arrived: trio.Event = field(default_factory=trio.Event)

    async def app(self, request: Request) -> Response:
        if request.path == "/token" and self.token_failures:
            self.token_failures -= 1
            self.token_times.append(trio.current_time())
            return Response(status=500)
        if request.path == "/token":
            self.token_times.append(trio.current_time())
            self.token_forms.append(urllib.parse.parse_qs(bytes(request.body).decode()))
            self.token_headers.append(request.headers)
            token = {
                "access_token": f"tok-{len(self.token_forms)}",
                "token_type": "Bearer",
                "expires_in": 3600,
            }
            return Response(
                status=200,
                headers=[("content-type", "application/json")],
                body=json.dumps(token).encode(),
            )
        authorization = request.headers.get("authorization")
        status = 200 if authorization == f"Bearer tok-{len(self.token_forms)}" else 401
        if self.refuse:
            status = 401
        if status == 200 and self.revoke:
            self.revoke, status = False, 401
        self.callbacks.append((trio.current_time(), authorization, status))
        self._arrived.set()
        self._arrived = trio.Event()
        return Response(status=status)

    async def wait_callbacks(self, count: int) -> None:
        while len(self.callbacks) < count:
            await self._arrived.wait()


async def test_oauth2_client_credentials_fetch_reuse_renew_and_refetch_after_401(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = OAuthCustomer()
    customer.port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    oauth2 = {
        "authorize_uri": f"http://127.0.0.1:{customer.port}/token",
        "client_id": "edge",
        "client_secret": "s3cret",
        "tenant_id": "contoso",
        "resource": "api://dr",
        "audience": "https://dr.example",
    }
    dr = {
        "url": f"http://127.0.0.1:{customer.port}/dr",
        "headers": {"X-API-Key": "for-the-endpoint-only"},
        "oauth2": oauth2,
    }
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])

    await rig.fail(await rig.send())
    with trio.fail_after(10):
        await customer.wait_callbacks(1)
    await trio.sleep(5)
    await rig.fail(await rig.send())  # within the token's hour: the same token
    with trio.fail_after(10):
        await customer.wait_callbacks(2)
    assert [(auth, status) for _, auth, status in customer.callbacks] == [
        ("Bearer tok-1", 200),
        ("Bearer tok-1", 200),
    ]
    (form,) = customer.token_forms
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["edge"],
        "client_secret": ["s3cret"],
        "tenant_id": ["contoso"],
        "resource": ["api://dr"],
        "audience": ["https://dr.example"],
    }
    assert "x-api-key" not in customer.token_headers[0]

    await trio.sleep(3600)  # the hour is over: a new token before the next DR
    await rig.fail(await rig.send())
    with trio.fail_after(10):
        await customer.wait_callbacks(3)
    assert customer.callbacks[2][1:] == ("Bearer tok-2", 200)

    customer.revoke = True  # the cached token refused with 401: a new one, the DR again at once
    last = await rig.send()
    await rig.fail(last)
    with trio.fail_after(10):
        await customer.wait_callbacks(5)
    (revoked, again) = customer.callbacks[3:]
    assert [(auth, status) for _, auth, status in (revoked, again)] == [
        ("Bearer tok-2", 401),
        ("Bearer tok-3", 200),
    ]
    assert again[0] - revoked[0] < 1  # not a retry interval (60 s) later
    assert len(customer.token_forms) == 3
    await settle(rig, last, "delivered")
    items = await rig.items()
    assert [item.state for item in items] == ["delivered"] * 4


async def test_a_fresh_token_refused_with_401_is_not_sent_again_at_once(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = OAuthCustomer(refuse=True)
    customer.port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    oauth2 = {
        "authorize_uri": f"http://127.0.0.1:{customer.port}/token",
        "client_id": "edge",
        "client_secret": "s3cret",
    }
    dr = {"url": f"http://127.0.0.1:{customer.port}/dr", "oauth2": oauth2}
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    await rig.fail(await rig.send())
    with trio.fail_after(10):
        await customer.wait_callbacks(1)
    await trio.sleep(30)
    # One token, one refusal: the next try waits for the retry interval.
    assert (len(customer.token_forms), len(customer.callbacks)) == (1, 1)
    with trio.fail_after(120):
        await customer.wait_callbacks(2)
    assert [auth for _, auth, _ in customer.callbacks] == ["Bearer tok-1", "Bearer tok-2"]


async def test_each_get_callback_is_recorded_as_soon_as_it_is_answered(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    answered: list[str] = []
    hanging = trio.Event()

    async def app(request: Request) -> Response:
        message_id = urllib.parse.parse_qs(request.query)["id"][0]
        if len(answered) == 2:
            hanging.set()
            await trio.sleep_forever()  # the third DR's answer never comes
        answered.append(message_id)
        return Response(status=200)

    port = await nursery.start(serve_http, app, "127.0.0.1", 0, HttpLimits())
    dr = {"url": f"http://127.0.0.1:{port}/dr?id=[messageid]", "method": "GET", "timeout": 60}
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    await rig.fail_together([await rig.send(client_reference=f"r{n}") for n in range(3)])
    with trio.fail_after(10):
        await hanging.wait()
    # While the third waits, the two the customer took are delivered in the store: a gateway
    # stopped now does not send them again.
    states = {item.message_id: item.state for item in await rig.items()}
    assert [states[message_id] for message_id in answered] == ["delivered", "delivered"]
    assert sorted(states.values()) == ["delivered", "delivered", "pending"]


async def test_client_secret_basic_sends_the_form_urlencoded_id_and_secret_by_http_basic(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = OAuthCustomer()
    customer.port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    # A ":" in the id and a "+" or non-ASCII in the secret survive only form-urlencoded.
    client_id, client_secret = "edge:gw", "s3 cr+t/\u00e6"
    dr = {
        "url": f"http://127.0.0.1:{customer.port}/dr",
        "oauth2": {
            "authorize_uri": f"http://127.0.0.1:{customer.port}/token",
            "client_id": client_id,
            "client_secret": client_secret,
            "token_endpoint_auth_method": "client_secret_basic",
            "audience": "https://dr.example",
        },
    }
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    message_id = await rig.send()
    await rig.fail(message_id)
    with trio.fail_after(10):
        await customer.wait_callbacks(1)
    assert customer.callbacks[0][1:] == ("Bearer tok-1", 200)
    (form,) = customer.token_forms
    assert form == {"grant_type": ["client_credentials"], "audience": ["https://dr.example"]}
    # Read as RFC 6749 2.3.1 has the server read it.
    scheme, _, credentials = customer.token_headers[0]["authorization"].partition(" ")
    user, _, password = base64.b64decode(credentials).decode("ascii").partition(":")
    assert scheme == "Basic"
    assert (urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)) == (
        client_id,
        client_secret,
    )
    await settle(rig, message_id, "delivered")


async def test_a_failing_token_endpoint_fails_the_try_and_the_retry_fetches_a_token(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    customer = OAuthCustomer(token_failures=1)
    customer.port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    dr = {
        "url": f"http://127.0.0.1:{customer.port}/dr",
        "retry_initial": 30,
        "oauth2": {
            "authorize_uri": f"http://127.0.0.1:{customer.port}/token",
            "client_id": "edge",
            "client_secret": "s",
        },
    }
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr=dr)])
    message_id = await rig.send()
    await rig.fail(message_id)
    item = await first_try(rig, message_id)
    assert item.last_error == "OAuth2: token endpoint answered HTTP 500"
    with trio.fail_after(3600):
        await customer.wait_callbacks(1)
    failed_at, fetched_at = customer.token_times
    assert 24 <= fetched_at - failed_at <= 30  # the endpoint's backoff, less its jitter
    assert customer.callbacks[0][1:] == ("Bearer tok-1", 200)
    assert (await settle(rig, message_id, "delivered")).attempts == 2


@dataclass
class RawEndpoint:
    """An HTTP endpoint written by hand, to answer as no well-behaved server would: `head` is
    written at once, then `chunk` every `every` seconds until the client hangs up. Counts the
    octets it got out."""

    head: bytes
    chunk: bytes = b""
    every: float = 0.0
    port: int = 0
    written: int = 0
    hung_up: trio.Event = field(default_factory=trio.Event)
    heads: list[bytes] = field(default_factory=list)  # of the requests, lower-cased

    async def serve(self, stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some()
        self.heads.append(request.partition(b"\r\n\r\n")[0].lower())
        try:
            await stream.send_all(self.head)
            while self.chunk:
                await stream.send_all(self.chunk)
                self.written += len(self.chunk)
                await trio.sleep(self.every)
        except trio.BrokenResourceError:
            self.hung_up.set()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dr"


async def start_raw(nursery: trio.Nursery, endpoint: RawEndpoint) -> RawEndpoint:
    serve = functools.partial(trio.serve_tcp, endpoint.serve, 0, host="127.0.0.1")
    (listener,) = await nursery.start(serve)
    endpoint.port = listener.socket.getsockname()[1]
    return endpoint


async def test_an_answer_trickled_past_the_timeout_fails_the_try_at_the_timeout(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # One header octet every 30 s: each read well inside the timeout, the status never whole.
    endpoint = await start_raw(
        nursery, RawEndpoint(head=b"HTTP/1.1 200 OK\r\n", chunk=b"x", every=30.0)
    )
    rig, _ = await start_rig(
        nursery, tmp_path / "db", [service(1, dr={"url": endpoint.url(), "timeout": 60})]
    )
    message_id = await rig.send()
    await rig.fail(message_id)
    await trio.sleep(61)
    (item,) = await rig.items(message_id)
    assert (item.state, item.attempts) == ("pending", 1)
    assert item.last_error == "no answer within 60 s"
    with trio.fail_after(90):  # its next octets find the connection closed
        await endpoint.hung_up.wait()


async def test_a_200_with_an_endless_body_is_received_and_its_connection_dropped(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    endpoint = await start_raw(
        nursery,
        RawEndpoint(
            head=b"HTTP/1.1 200 OK\r\ncontent-length: 100000000000\r\n\r\n",
            chunk=b"." * 16384,
            every=0.001,
        ),
    )
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr={"url": endpoint.url()})])
    message_id = await rig.send()
    await rig.fail(message_id)
    with trio.fail_after(5):
        await endpoint.hung_up.wait()
    item = await settle(rig, message_id, "delivered")
    assert (item.attempts, item.last_status) == (1, 200)
    # Read no further than the limit (and what the kernel's buffers held meanwhile).
    assert endpoint.written < 16 * 1024 * 1024


async def first_token_try(
    nursery: trio.Nursery, path: Path, status: bytes, answer: Mapping[str, object]
) -> OutboxItem:
    """A DR's outbox item once its first try met a token endpoint answering `status` with the
    JSON `answer` (the DR's own endpoint is never reached)."""
    body = json.dumps(answer).encode()
    issuer = await start_raw(
        nursery,
        RawEndpoint(
            head=b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (status, len(body), body)
        ),
    )
    dr = {
        "url": "http://127.0.0.1:9/dr",
        "oauth2": {"authorize_uri": issuer.url(), "client_id": "edge", "client_secret": "s"},
    }
    rig, _ = await start_rig(nursery, path, [service(1, dr=dr)])
    message_id = await rig.send()
    await rig.fail(message_id)
    return await first_try(rig, message_id)


async def test_a_token_answer_past_the_limit_fails_the_try(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    token = {"access_token": "t" * 70_000, "token_type": "Bearer", "expires_in": 3600}
    item = await first_token_try(nursery, tmp_path / "db", b"200 OK", token)
    assert item.last_error == "OAuth2: the token endpoint's answer is longer than 65536 octets"


async def test_a_token_endpoint_error_is_logged_with_its_error_and_description(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # RFC 6749 5.2, as Azure AD answers a wrong secret: line breaks in the description.
    error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1",
    }
    caplog.set_level(logging.INFO, logger="edgegw.delivery")
    item = await first_token_try(nursery, tmp_path / "db", b"400 Bad Request", error)
    reason = (
        "OAuth2: token endpoint answered HTTP 400: invalid_client"
        " (AADSTS7000215: Invalid client secret provided. Trace ID: 1)"
    )
    assert item.last_error == reason
    assert f"service 1 dr: {reason}; next try in" in caplog.text


async def test_no_log_line_names_a_callback_url_s_password_or_an_mo_s_text(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A GET template carries the MO's text and numbers, its URL may carry user:password: the
    journal gets neither, whatever library sent the request."""
    customer = await start_customer(nursery)
    template = f"http://cust:s3cret@127.0.0.1:{customer.port}/mo?from=[originator]&t=[content]"
    services = [service(1, mo={"url": template, "method": "GET"})]
    rig, _ = await start_rig(nursery, tmp_path / "db", services)
    caplog.set_level(logging.INFO)
    await rig.mo(content="KODE hemmelig")
    with trio.fail_after(10):
        await customer.wait_requests(1, acknowledged=True)
    assert customer.requests[0].headers["authorization"] == "Basic " + base64.b64encode(
        b"cust:s3cret"
    ).decode("ascii")
    await settle(rig, "mo0000000001", "delivered")
    for record in caplog.records:
        line = record.getMessage()
        assert "s3cret" not in line and "hemmelig" not in line and "4799999999" not in line


def gzipped_twice(octets: int) -> bytes:
    return gzip.compress(gzip.compress(bytes(octets)))


async def test_a_compressed_answer_is_never_inflated(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A few hundred octets of nested gzip inflate to tens of megabytes: the callback's
    status counts, its body is neither asked for compressed nor inflated."""
    bomb = gzipped_twice(64 * 1024 * 1024)
    endpoint = await start_raw(
        nursery,
        RawEndpoint(
            head=b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip, gzip\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(bomb), bomb)
        ),
    )
    rig, _ = await start_rig(nursery, tmp_path / "db", [service(1, dr={"url": endpoint.url()})])
    message_id = await rig.send()
    tracemalloc.start()
    try:
        await rig.fail(message_id)
        item = await settle(rig, message_id, "delivered")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (item.attempts, item.last_status) == (1, 200)
    assert peak < 16 * 1024 * 1024
    (head,) = endpoint.heads
    assert b"\r\naccept-encoding: identity" in head


async def test_a_compressed_token_is_refused_and_a_stalled_200_counts(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    token = gzip.compress(b'{"access_token": "t", "token_type": "Bearer", "expires_in": 3600}')
    issuer = await start_raw(
        nursery,
        RawEndpoint(
            head=b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (len(token), token)
        ),
    )
    # The customer's 200 came; its body then stalls past the timeout: received all the same.
    stalled = await start_raw(
        nursery,
        RawEndpoint(head=b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", chunk=b"x", every=30.0),
    )
    oauth2 = {"authorize_uri": issuer.url(), "client_id": "edge", "client_secret": "s"}
    rig, _ = await start_rig(
        nursery,
        tmp_path / "db",
        [
            service(1, dr={"url": "http://127.0.0.1:9/dr", "oauth2": oauth2}),
            service(2, dr={"url": stalled.url(), "timeout": 60}),
        ],
    )
    refused, received = await rig.send(1), await rig.send(2)
    await rig.fail(refused)
    await rig.fail(received)
    item = await first_try(rig, refused)
    assert item.last_error == (
        "OAuth2: the token endpoint's answer is compressed (gzip) though none was asked for"
    )
    item = await settle(rig, received, "delivered", seconds=70)
    assert (item.attempts, item.last_status) == (1, 200)
