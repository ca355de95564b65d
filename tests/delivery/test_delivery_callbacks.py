"""MO and DR callbacks against a fake customer endpoint (edgegw's own h11 listener on 127.0.0.1
with a scripted app): exact GET query strings and POST bodies in JSON and XML, acknowledgement
only on 200, backoff in virtual time, restart during retries, isolation, HMAC and give-up."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio
import trio.testing

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.delivery.config import SmtpRelayConfig
from edgegw.delivery.outbox import OutboxItem, enqueue_mo, outbox_items
from edgegw.delivery.worker import Deliveries
from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.model import MessageRequest, SendRequest, Settings
from edgegw.pipeline.submit import Submitter
from edgegw.store import DrStatus, Store, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z = 10:00 in Oslo (CEST)


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
        if self.delay:
            await trio.sleep(self.delay)
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            self.acknowledged.append(request)
        self._changed.set()
        self._changed = trio.Event()
        return Response(status=status, body=b"OK" if status == 200 else b"nope")

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


class Rig:
    def __init__(self, store: Store, clock: Clock, services: Sequence[ServiceConfig]) -> None:
        self.store = store
        self.clock = clock
        self.submitter = Submitter(list(services), store, clock, lambda: None)

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

    async def fail(self, message_id: str, dr_status: int = DrStatus.UNKNOWN_RECIPIENT) -> None:
        await self.store.fail(
            message_id, error="no such subscriber", dr_status=dr_status, ext_status="49"
        )

    async def mo(
        self, message_id: str = "mo0000000001", service_id: int = 1, **kwargs: object
    ) -> int:
        fields: dict[str, Any] = {
            "message_id": message_id,
            "service_id": service_id,
            "sno": "1960",
            "originator": "+4799999999",
            "content": "KODE hei på deg",
            "command": "KODE",
            "received_at": START,
            "sc_timestamp": START - 2,
            "mcc": 242,
            "mnc": 1,
        }
        fields.update(kwargs)
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
    store = Store(path, clock=clock, offload=run_inline)
    await nursery.start(store.run)
    deliveries = Deliveries(store, clock, services, relay or SmtpRelayConfig())
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
    (item,) = await rig.items(message_id)
    assert item.state == "delivered" and item.attempts == 1 and item.last_status == 200
