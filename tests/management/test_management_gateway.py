"""The running gateway, built from config.example.toml with a DR endpoint added: a batch
scheduled two days ahead is stopped through the Management API and its DR reaches the customer,
so the composition root wires the outbox, the delivery workers and the routes together."""

from __future__ import annotations

import datetime
from pathlib import Path

import httpx
import msgspec
import trio
from support.gateway import Customer, example_config

from edgegw.delivery.config import CallbackEndpoint
from edgegw.gateway import Gateway


async def test_stop_a_scheduled_batch_on_the_running_gateway(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    customer = Customer("dr")
    customer_port = await customer.start(nursery)
    config = example_config(
        tmp_path,
        delivery_reports=True,
        dr=msgspec.convert({"url": f"http://127.0.0.1:{customer_port}/dr"}, type=CallbackEndpoint),
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)
    in_two_days = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    base = f"http://127.0.0.1:{bound.http_port}"
    async with httpx.AsyncClient(base_url=base, auth=("demo", "demo")) as client:
        sent = await client.post(
            "/gw/rs/sendMessages",
            headers={"accept": "application/json"},
            json={
                "serviceId": 1000,
                "username": "demo",
                "password": "demo",
                "batchReference": "tomorrow",
                "message": [
                    {
                        "recipient": "+4741000000",
                        "content": "later",
                        "clientReference": "r1",
                        "settings": {
                            "sendWindow": {"startDate": in_two_days, "startTime": "09:00:00"}
                        },
                    }
                ],
            },
        )
        (status,) = sent.json()["messageStatus"]
        listed = await client.get("/mgmt/rs/service/1000/batch/")
        assert listed.json() == {
            "messageBatch": [{"clientBatchReference": "tomorrow", "totalSize": 1, "onHold": 0}]
        }
        async with httpx.AsyncClient(base_url=base) as anonymous:
            assert (await anonymous.get("/management/1000/batch")).status_code == 401
        stopped = await client.delete("/management/1000/batch/tomorrow")
        assert stopped.json()["stoppedMessages"] == [
            {"messageId": status["messageId"], "clientMessageReference": "r1"}
        ]
        with trio.fail_after(10):
            await customer.arrived.wait()
        (dr,) = customer.received
        assert (dr["messageid"], dr["statuscode"], dr["customerbatchreference"]) == (
            status["messageId"],
            371,
            "tomorrow",
        )
        view = (await client.get(f"/api/messages/{status['messageId']}")).json()
        assert view["state"] == "cancelled"
    gateway.stop()
