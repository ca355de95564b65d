"""The receive side end to end: the simulated modem on a real pseudo-terminal, the AT driver, the
store and HTTP on 127.0.0.1. MO round trips (also a three-part UCS-2 one) into GET /api/inbound,
status reports from the simulated network matched to their messages, GET /api/modems, and the
`edgegw modems` command against a running gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from edgegw.config import Config
from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"
AUTH = ("demo", "demo")


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


async def inbound(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """The service's inbound list once it holds `count` messages."""
    with trio.fail_after(20):
        while True:
            answer = await client.get("/api/inbound", auth=AUTH)
            assert answer.status_code == 200, answer.text
            messages: list[dict[str, Any]] = answer.json()["inbound"]
            if len(messages) >= count:
                return messages
            await trio.sleep(0.05)


async def send(client: httpx.AsyncClient, recipient: str, content: str) -> str:
    body = {
        "serviceId": 1000,
        "username": "demo",
        "password": "demo",
        "message": [{"recipient": recipient, "content": content}],
    }
    answer = await client.post(SEND, json=body, headers={"Accept": "application/json"})
    (status,) = answer.json()["messageStatus"]
    assert status["statusCode"] == 1, status
    message_id: str = status["messageId"]
    return message_id


async def wait_state(client: httpx.AsyncClient, message_id: str, state: str) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            answer = await client.get(f"/api/messages/{message_id}", auth=AUTH)
            view: dict[str, Any] = answer.json()
            if view["state"] == state:
                return view
            await trio.sleep(0.05)


async def test_mo_round_trip_single_and_three_part_ucs2(gateway: Gateway) -> None:
    simulator = gateway.simulators["sim0"]
    long_text = "Hei 😀 fra Tromsø! " * 9  # UCS-2 in three parts
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        await simulator.deliver_mo("+4799999999", "INFO opening hours")
        await simulator.deliver_mo("+4798888888", long_text)
        newest, oldest = await inbound(client, 2)
        assert (oldest["originator"], oldest["content"]) == ("+4799999999", "INFO opening hours")
        assert (oldest["serviceid"], oldest["sno"], oldest["type"]) == (1000, "sim0", 1)
        assert (newest["originator"], newest["content"]) == ("+4798888888", long_text)
        assert (newest["complete"], newest["partsExpected"], newest["partsReceived"]) == (
            True,
            3,
            3,
        )
        one = await client.get(f"/api/inbound/{newest['messageid']}", auth=AUTH)
        assert one.status_code == 200 and one.json() == newest
        # The SIM is emptied only after the store has the parts.
        with trio.fail_after(10):
            while gateway.inbound.received < 4 or simulator.engine.storages["SM"].used:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert gateway.inbound.duplicates == 0


async def test_inbound_api_needs_the_service_credentials_and_checks_its_query(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        assert (await client.get("/api/inbound")).status_code == 401
        assert (await client.get("/api/inbound", auth=("demo", "wrong"))).status_code == 401
        assert (await client.get("/api/inbound?limit=0", auth=AUTH)).status_code == 400
        assert (await client.get("/api/inbound?limit=1001", auth=AUTH)).status_code == 400
        assert (await client.get("/api/inbound?since=yesterday", auth=AUTH)).status_code == 400
        assert (await client.get("/api/inbound?color=red", auth=AUTH)).status_code == 400
        assert (await client.get("/api/inbound/nothere", auth=AUTH)).status_code == 404
        assert (await client.post("/api/inbound", auth=AUTH)).status_code == 405
        empty = await client.get("/api/inbound?since=2025-01-01T00:00:00Z&limit=5", auth=AUTH)
        assert empty.status_code == 200 and empty.json() == {"inbound": []}


async def test_status_reports_from_the_network_settle_the_messages(gateway: Gateway) -> None:
    simulator = gateway.simulators["sim0"]
    simulator.network.set_outcome("+4741000002", 0x00, delay=0.2)
    simulator.network.set_outcome("+4741000003", 0x49, delay=0.2)  # SM does not exist
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        delivered_id = await send(client, "+4741000002", "x" * 200)  # two parts
        failed_id = await send(client, "+4741000003", "hello")
        delivered = await wait_state(client, delivered_id, "delivered")
        await wait_state(client, failed_id, "failed")
    assert [part["state"] for part in delivered["parts"]] == ["delivered", "delivered"]
    record = await gateway.store.message(failed_id)
    assert record is not None
    assert (record.dr_status, record.ext_status) == (351, "49")
    assert gateway.reports.unmatched == 0


async def test_modems_api_shows_health_and_queues(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        assert (await client.get("/api/modems")).status_code == 401
        await send(client, "+4741000004", "count me")
        with trio.fail_after(20):
            while True:
                answer = await client.get("/api/modems", auth=AUTH)
                assert answer.status_code == 200
                (modem,) = answer.json()["modems"]
                if modem["sentLastHour"] == 1:
                    break
                await trio.sleep(0.05)
    assert modem["name"] == "sim0"
    assert modem["health"]["state"] == "ready"
    assert modem["health"]["sent"] >= 1
    assert (modem["sentLastDay"], modem["cappedUntil"]) == (1, None)
    assert answer.json()["queued"] == 0


@pytest.fixture
def capped_config(config: Config) -> Config:
    (modem,) = config.modems
    return msgspec.structs.replace(
        config, modems=[msgspec.structs.replace(modem, hourly_cap=1, number="+4790000000")]
    )


async def test_the_modems_command_prints_the_table(
    capped_config: Config, tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = Gateway(capped_config)
    bound = await nursery.start(gateway.run)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(
        f'[http]\nport = {bound.http_port}\n\n[[services]]\nid = 1000\nname = "demo"\n'
        'username = "demo"\npassword = "demo"\n\n[[modems]]\nname = "sim0"\n'
        'driver = "simulated"\n'
    )
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        await send(client, "+4741000005", "one")
        second = await send(client, "+4741000006", "two")
        with trio.fail_after(20):
            while True:
                modems = (await client.get("/api/modems", auth=AUTH)).json()["modems"]
                if modems[0]["cappedUntil"] is not None:
                    break
                await trio.sleep(0.05)
        assert (await client.get(f"/api/messages/{second}", auth=AUTH)).json()["state"] in (
            "queued",
            "sending",
        )
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "edgegw", "modems", "--config", str(config_file)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    )
    gateway.stop()
    assert result.returncode == 0, result.stderr
    header, row, footer = result.stdout.splitlines()
    assert header.split()[:3] == ["MODEM", "STATE", "SIM"]
    assert row.split()[:2] == ["sim0", "ready"]
    assert " 1/1 " in row and "capped until" in row
    assert footer.startswith("queued for any modem:")


async def test_300_messages_through_one_modem_every_report_matches(gateway: Gateway) -> None:
    simulator = gateway.simulators["sim0"]
    outcomes = {"+4741000020": (0x00, "delivered"), "+4741000021": (0x41, "failed")}
    for recipient, (status, _) in outcomes.items():
        simulator.network.set_outcome(recipient, status, delay=0.3)
    recipients = ["+4741000020", "+4741000020", "+4741000021"] * 100
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        ids = [await send(client, recipient, f"n{n}") for n, recipient in enumerate(recipients)]
        views = [
            await wait_state(client, message_id, outcomes[recipient][1])
            for message_id, recipient in zip(ids, recipients, strict=True)
        ]
    references = [view["parts"][0]["reference"] for view in views]
    assert len(set(references)) == 256  # the TP-MR wrapped: 300 sends, 256 values
    assert gateway.reports.matched == 300 and gateway.reports.unmatched == 0


async def test_an_sms_made_to_arrive_goes_to_the_config_s_first_simulated_modem(
    config: Config, nursery: trio.Nursery
) -> None:
    # Named so that the config's order is not the names' order; each its own IMEI, which names
    # its /dev/serial/by-id style link.
    example = config.modems[0]
    modems = [
        msgspec.structs.replace(
            example,
            name=name,
            simulator=msgspec.structs.replace(example.simulator, imei=imei),
        )
        for name, imei in (("sim1", "356938035643801"), ("sim0", "356938035643800"))
    ]
    gateway = Gateway(msgspec.structs.replace(config, modems=modems))
    await nursery.start(gateway.run)
    assert (await gateway.status_view()).simulated == ["sim1", "sim0"]  # the page's choice
    await gateway.simulate_mo(None, "+4799999999", "to the first")
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        arrived = await inbound(client, 1)
    assert [item["modem"] for item in arrived] == ["sim1"]
    gateway.stop()
