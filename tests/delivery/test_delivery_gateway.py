"""End to end on the running gateway (config.example.toml plus an MO endpoint): a phone sends
an SMS to the simulated modem and the customer's endpoint receives it as the spec's JSON MO,
the same MO that `GET /api/inbound` shows."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import trio
from support.gateway import Customer, example_config

from edgegw.delivery.config import CallbackEndpoint
from edgegw.gateway import Gateway


async def test_an_sms_to_the_modem_reaches_the_customer_as_an_mo(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    customer = Customer("mo")
    port = await customer.start(nursery)
    endpoint = msgspec.convert({"url": f"http://127.0.0.1:{port}/mo"}, CallbackEndpoint)
    config = example_config(tmp_path, mo=endpoint)
    gateway = Gateway(config)
    await nursery.start(gateway.run)
    await gateway.simulators["sim0"].deliver_mo("+4799999999", "Hei på deg")
    with trio.fail_after(20):
        await customer.arrived.wait()
    (mo,) = customer.received
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
    # The network is unknown to a modem: 0, a number, in the callback and in the API alike.
    assert (mo["mcc"], mo["mnc"]) == (0, 0)
    assert gateway.bound is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.bound.http_port}") as api:
        shown = (await api.get(f"/api/inbound/{mo['messageid']}", auth=("demo", "demo"))).json()
    assert {field: shown[field] for field in mo} == mo
    gateway.stop()


async def test_a_short_message_type_0_is_deleted_and_never_reaches_the_customer(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """TS 23.040 9.2.3.9: the contents of a "silent" SMS (TP-PID 0x40, which networks send to
    locate a phone) are discarded. A modem that stores it anyway has it deleted, and the
    customer gets only the SMS a person sent."""
    customer = Customer("mo")
    port = await customer.start(nursery)
    endpoint = msgspec.convert({"url": f"http://127.0.0.1:{port}/mo"}, CallbackEndpoint)
    gateway = Gateway(example_config(tmp_path, mo=endpoint))
    await nursery.start(gateway.run)
    simulator = gateway.simulators["sim0"]
    await simulator.deliver_mo("+4799999999", "", pid=0x40)
    await simulator.deliver_mo("+4799999999", "Hei")
    with trio.fail_after(20):
        await customer.arrived.wait()
        while simulator.engine.storages["SM"].used:  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert [mo["content"] for mo in customer.received] == ["Hei"]
    assert gateway.bound is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.bound.http_port}") as api:
        listed = (await api.get("/api/inbound", auth=("demo", "demo"))).json()
    assert [mo["content"] for mo in listed["inbound"]] == ["Hei"]
    gateway.stop()
