"""End to end on the running gateway (config.example.toml plus an MO endpoint): a phone sends
an SMS to the simulated modem and the customer's endpoint receives it as the spec's JSON MO."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import trio

from edgegw.config import load_config
from edgegw.delivery.config import CallbackEndpoint
from edgegw.gateway import Gateway
from edgegw.http.server import HttpLimits, Request, Response, serve_http

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_an_sms_to_the_modem_reaches_the_customer_as_an_mo(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    received: list[dict[str, object]] = []
    arrived = trio.Event()

    async def customer(request: Request) -> Response:
        received.extend(json.loads(request.body)["mo"])
        arrived.set()
        return Response(status=200)

    port = await nursery.start(serve_http, customer, "127.0.0.1", 0, HttpLimits())
    example = load_config(ROOT / "config.example.toml")
    endpoint = msgspec.convert({"url": f"http://127.0.0.1:{port}/mo"}, CallbackEndpoint)
    config = msgspec.structs.replace(
        example,
        gateway=msgspec.structs.replace(example.gateway, store=str(tmp_path / "edgegw.db")),
        http=msgspec.structs.replace(example.http, port=0),
        smpp=None,
        services=[msgspec.structs.replace(example.services[0], mo=endpoint)],
    )
    gateway = Gateway(config)
    await nursery.start(gateway.run)
    await gateway.simulators["sim0"].deliver_mo("+4799999999", "Hei på deg")
    with trio.fail_after(20):
        await arrived.wait()
    (mo,) = received
    assert list(mo) == [
        "messageid",
        "serviceid",
        "servicename",
        "sno",
        "originator",
        "mcc",
        "mnc",
        "content",
        "command",
        "strippedcontent",
        "type",
        "timestamp",
        "sctimestamp",
        "sessionid",
    ]
    assert (mo["serviceid"], mo["servicename"], mo["originator"], mo["content"], mo["type"]) == (
        1000,
        "demo",
        "+4799999999",
        "Hei på deg",
        1,
    )
    assert isinstance(mo["messageid"], str) and len(mo["messageid"]) == 12
    gateway.stop()
