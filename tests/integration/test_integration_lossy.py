"""The gateway on a cheap stick with a bad cable: the simulated modem on a real pseudo-terminal
loses a fifth of its final result codes, adds noise, sends URCs twice and hands its output over
in fragments. A three-part MO still reaches GET /api/inbound once and leaves the SIM, a message
goes out once, and no acknowledgement logs an error. Real time, with short AT timeouts."""

from __future__ import annotations

import httpx
import msgspec
import pytest
import trio

from edgegw.config import Config
from edgegw.gateway import Gateway

AUTH = ("demo", "demo")
LOSSY = {"drop_final": 0.2, "noise": 0.1, "duplicate_urc": 0.5, "fragment": True, "seed": 3}


@pytest.fixture
def lossy_config(config: Config) -> Config:
    (modem,) = config.modems
    modem = msgspec.structs.replace(
        modem,
        simulator=msgspec.structs.replace(modem.simulator, report_delay=0.2, **LOSSY),
        at=msgspec.structs.replace(
            modem.at, query_timeout=0.5, final_grace=0.1, sync_timeout=0.5, sweep_interval=2.0
        ),
    )
    return msgspec.structs.replace(config, modems=[modem])


async def test_a_lossy_link_costs_time_not_messages(
    lossy_config: Config, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = Gateway(lossy_config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None
    simulator = gateway.simulators["sim0"]
    text = "Hei 😀 fra Tromsø! " * 9  # UCS-2 in three parts
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.bound.http_port}") as client:
        await simulator.deliver_mo("+4798888888", text, interval=0.2)
        body = {
            "serviceId": 1000,
            "username": "demo",
            "password": "demo",
            "message": [{"recipient": "+4741000009", "content": "over a bad cable"}],
        }
        answer = await client.post(
            "/gw/rs/sendMessages", json=body, headers={"Accept": "application/json"}
        )
        (status,) = answer.json()["messageStatus"]
        with trio.fail_after(30):
            while True:
                inbound = (await client.get("/api/inbound", auth=AUTH)).json()["inbound"]
                view = (await client.get(f"/api/messages/{status['messageId']}", auth=AUTH)).json()
                settled = view["state"] in ("delivered", "failed")
                if inbound and inbound[0]["complete"] and settled:
                    break
                await trio.sleep(0.1)
            while simulator.engine.storages["SM"].used:  # noqa: ASYNC110
                await trio.sleep(0.1)
    (mo,) = inbound
    assert (mo["content"], mo["partsReceived"]) == (text, 3)
    assert view["state"] == "delivered"
    assert [sms.text for sms in simulator.network.sent] == ["over a bad cable"]
    health = gateway.modems["sim0"].health()
    assert health.resyncs > 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    gateway.stop()
