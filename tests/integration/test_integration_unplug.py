"""A simulated USB stick pulled out of the running gateway and plugged back in under another
pty: what was accepted meanwhile is sent afterwards, with no restart of the gateway."""

from __future__ import annotations

import httpx
import trio

from edgegw.gateway import Gateway


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


async def test_modem_unplugged_and_replugged_under_a_new_path(gateway: Gateway) -> None:
    simulator = gateway.simulators["sim0"]
    modem = gateway.modems["sim0"]
    first_path = simulator.port_path
    async with trio.open_nursery() as nursery:
        nursery.start_soon(simulator.vanish, 1.0)
        with trio.fail_after(10):
            assert await simulator.wait_port_change() is None  # the stick is out
        async with httpx.AsyncClient(base_url=url(gateway)) as client:
            answer = await client.post(
                "/gw/rs/sendMessages",
                json={
                    "serviceId": 1000,
                    "username": "demo",
                    "password": "demo",
                    "message": [{"recipient": "+4741000077", "content": "while unplugged"}],
                },
                headers={"Accept": "application/json"},
            )
            (status,) = answer.json()["messageStatus"]
            assert status["statusCode"] == 1
            with trio.fail_after(30):
                sent = await simulator.network.wait_sent(1)
    assert [sms.text for sms in sent] == ["while unplugged"]
    assert simulator.port_path != first_path
    assert modem.health().recoveries >= 1
