"""End to end over real parts: HTTP on a 127.0.0.1 socket, the SQLite store, the AT driver on the
serial transport, and the simulated modem behind a real pseudo-terminal."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from edgegw.clock import Clock
from edgegw.config import Config
from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


def request(recipient: str, content: str, **extra: Any) -> dict[str, Any]:
    return {
        "serviceId": 1000,
        "username": "demo",
        "password": "demo",
        "message": [{"recipient": recipient, "content": content, **extra}],
    }


async def wait_for_state(client: httpx.AsyncClient, message_id: str, state: str) -> dict[str, Any]:
    with trio.fail_after(15):
        while True:
            answer = await client.get(f"/api/messages/{message_id}", auth=("demo", "demo"))
            assert answer.status_code == 200, answer.text
            view: dict[str, Any] = answer.json()
            if view["state"] == state:
                return view
            await trio.sleep(0.02)


async def test_submit_is_sent_through_the_simulated_modem(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        health = await client.get("/health")
        assert health.status_code == 200

        answer = await client.post(
            SEND,
            json=request("+47 41 00 00 01", "Hei på deg, {edgegw}", clientReference="ref-1"),
            headers={"Accept": "application/json"},
        )
        assert answer.status_code == 200
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == 1, status
        assert status["recipient"] == "+4741000001"
        assert status["clientReference"] == "ref-1"
        message_id = status["messageId"]

        view = await wait_for_state(client, message_id, "sent")

    simulator = gateway.simulators["sim0"]
    (sms,) = simulator.network.sent
    assert sms.recipient == "+4741000001"
    assert sms.text == "Hei på deg, {edgegw}"
    assert view["modem"] == "sim0"
    (part,) = view["parts"]
    assert part["state"] == "sent"
    assert part["reference"] == sms.message_reference
    assert view["sentAt"] is not None


async def test_long_unicode_message_goes_out_in_parts_through_one_modem(
    gateway: Gateway,
) -> None:
    text = "Привет 👋 " * 20  # UCS-2, 180 UTF-16 units: three concatenated parts
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND,
            json=request(
                "+4741000002",
                text,
                settings={"autoDetectEncoding": True},
            ),
            headers={"Accept": "application/json"},
        )
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == 1, status
        view = await wait_for_state(client, status["messageId"], "sent")

    sent = gateway.simulators["sim0"].network.sent
    assert len(sent) == 3
    assert "".join(sms.text for sms in sent) == text
    concat = [sms.concat for sms in sent]
    assert None not in concat
    assert len({info[0] for info in concat if info}) == 1, "one concatenation reference"
    assert [info[1:] for info in concat if info] == [(3, 1), (3, 2), (3, 3)]
    assert [part["state"] for part in view["parts"]] == ["sent", "sent", "sent"]


async def test_wrong_password_is_refused_and_nothing_is_sent(gateway: Gateway) -> None:
    body = request("+4741000003", "nope")
    body["password"] = "wrong"
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, json=body, headers={"Accept": "application/json"})
    (status,) = answer.json()["messageStatus"]
    assert status["statusCode"] == 2
    assert status["messageId"] is None
    await trio.sleep(0.2)
    assert gateway.simulators["sim0"].network.sent == []


async def test_a_box_whose_clock_reads_1970_at_the_start_takes_and_sends_messages(
    config: Config, nursery: trio.Nursery
) -> None:
    """A board without a saved clock boots at 1970 (an RTC reset to 2000 likewise), and the
    gateway may start before NTP sets the clock."""
    gateway = Gateway(config, clock=Clock(start_epoch=86_400.0))
    await nursery.start(gateway.run)
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND, json=request("+4741000001", "Hei"), headers={"Accept": "application/json"}
        )
        assert answer.status_code == 200
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == 1, status
        view = await wait_for_state(client, status["messageId"], "sent")
    assert view["createdAt"] >= "2020-01-01"
    assert gateway.clock.wall() < 2 * 86_400  # what the system's clock reads, for signatures
    gateway.stop()
