"""A service with `unique_batch_reference` refuses a batchReference one of its messages of the
last hour carries, with status 25 for each message of the request (spec 6.1, 7.7), through
every door that carries a batchReference: REST JSON, XML and form (whole and streamed), GET and
SOAP (zeep). A request sent again after its answer was lost enqueues its messages once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
import zeep
from support.gateway import alter_store, count_messages, example_config

from edgegw.config import Config
from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"
JSON = {"Accept": "application/json"}
CREDENTIALS = {"serviceId": 1000, "username": "demo", "password": "demo"}
TAKEN = (25, "Not unique: batchReference")
ENQUEUED = (1, "Message enqueued for sending")


def json_batch(reference: str, count: int = 2) -> dict[str, Any]:
    return {
        **CREDENTIALS,
        "batchReference": reference,
        "message": [
            {"recipient": f"+47410000{n % 100:02d}", "content": f"Hi {n}"} for n in range(count)
        ],
    }


def xml_batch(reference: str) -> str:
    return (
        '<req:request xmlns:req="http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02">'
        "<serviceId>1000</serviceId><username>demo</username><password>demo</password>"
        f"<batchReference>{reference}</batchReference>"
        "<message><recipient>+4741000000</recipient><content>Hi</content></message>"
        "<message><recipient>+47 41 00 00 01</recipient><content>Hi</content></message>"
        "</req:request>"
    )


def form_batch(reference: str) -> dict[str, str]:
    return {
        "serviceId": "1000",
        "username": "demo",
        "password": "demo",
        "batchReference": reference,
        "message[0].recipient": "+4741000000",
        "message[0].content": "Hi",
        "message[1].recipient": "+47 41 00 00 01",
        "message[1].content": "Hi",
    }


def codes(answer: httpx.Response) -> list[tuple[int, str]]:
    assert answer.status_code == 200
    statuses = answer.json()["messageStatus"]
    return [(status["statusCode"], status["statusMessage"]) for status in statuses]


async def running(tmp_path: Path, nursery: trio.Nursery, **changes: Any) -> Gateway:
    gateway = Gateway(example_config(tmp_path, **changes))
    await nursery.start(gateway.run)
    return gateway


@pytest.fixture
def config(config: Config) -> Config:
    """The example's, its service keeping batchReference unique (for the `gateway` fixture)."""
    service = msgspec.structs.replace(config.services[0], unique_batch_reference=True)
    return msgspec.structs.replace(config, services=[service])


def base(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


async def test_a_repeated_batch_reference_gets_25_on_every_rest_door(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=base(gateway), headers=JSON) as client:

        async def json_door(reference: str) -> httpx.Response:
            return await client.post(SEND, json=json_batch(reference))

        async def xml_door(reference: str) -> httpx.Response:
            xml = {"Content-Type": "application/xml"}
            return await client.post(SEND, content=xml_batch(reference), headers=xml)

        async def form_door(reference: str) -> httpx.Response:
            return await client.post(SEND, data=form_batch(reference))

        async def get_door(reference: str) -> httpx.Response:
            return await client.get(SEND, params=form_batch(reference))

        sends = {"json": json_door, "xml": xml_door, "form": form_door, "get": get_door}
        for door, send in sends.items():
            assert codes(await send(f"campaign-{door}")) == [ENQUEUED] * 2, door
            again = await send(f"campaign-{door}")
            assert codes(again) == [TAKEN] * 2, door
            assert again.json()["batchReference"] == f"campaign-{door}"
            # The recipients answered as on any other refusal of a single message: normalised.
            recipients = [status["recipient"] for status in again.json()["messageStatus"]]
            assert recipients == ["+4741000000", "+4741000001"], door
        # A reference taken through one door is taken for the others: one service, one list.
        assert codes(await sends["xml"]("campaign-json")) == [TAKEN] * 2
    assert count_messages(gateway) == 8


async def test_a_send_retried_after_its_answer_was_lost_enqueues_one_batch(
    gateway: Gateway,
) -> None:
    """The spec's reason for the check (7.7): a client whose connection broke before the
    answer cannot tell whether its batch was taken, and sends it again."""
    body = json_batch("order-4711", count=3)
    async with httpx.AsyncClient(base_url=base(gateway), headers=JSON) as client:
        answers = [await client.post(SEND, json=body) for _ in range(2)]
        assert codes(answers[0]) == [ENQUEUED] * 3
        assert codes(answers[1]) == [TAKEN] * 3
        assert all(status["messageId"] is None for status in answers[1].json()["messageStatus"])
        listed = await client.get(
            "/api/messages", params={"batch": "order-4711"}, auth=("demo", "demo")
        )
        assert len(listed.json()["messages"]) == 3


async def test_concurrent_sends_of_one_new_batch_reference_take_it_once(gateway: Gateway) -> None:
    outcomes: list[tuple[int, str]] = []
    async with httpx.AsyncClient(base_url=base(gateway), headers=JSON) as client:

        async def send(count: int) -> None:
            outcomes.extend(codes(await client.post(SEND, json=json_batch("burst", count))))

        async with trio.open_nursery() as senders:
            for count in (2, 1500, 2, 1500):  # past 1000: streamed a chunk at a time
                senders.start_soon(send, count)
    accepted = [code for code in outcomes if code == ENQUEUED]
    assert len(accepted) in (2, 1500)  # one request's messages, all of them
    assert len(outcomes) == 3004
    assert {code for code in outcomes if code != ENQUEUED} == {TAKEN}
    assert count_messages(gateway) == len(accepted)


async def test_a_streamed_batch_is_checked_once_and_refused_whole_when_repeated(
    gateway: Gateway,
) -> None:
    """The second chunk of a streamed batch does not find the first one's messages a repeat."""
    async with httpx.AsyncClient(base_url=base(gateway), headers=JSON) as client:
        first = await client.post(SEND, json=json_batch("big", 1500))
        assert first.headers.get("transfer-encoding") == "chunked"
        assert codes(first) == [ENQUEUED] * 1500
        assert codes(await client.post(SEND, json=json_batch("big", 1500))) == [TAKEN] * 1500
    assert count_messages(gateway) == 1500


async def test_a_soap_send_with_a_repeated_batch_reference_gets_25(gateway: Gateway) -> None:
    address = f"{base(gateway)}/gw/ws/SMSGatewayV10?wsdl"
    request = {
        **CREDENTIALS,
        "batchReference": "soap-7",
        "message": [{"recipient": "+4741000000", "content": "Hi over SOAP"}],
    }

    def session() -> list[Any]:
        build: Any = zeep.Client
        soap = build(address)
        return [soap.service.sendMessages(request=request) for _ in range(2)]

    first, again = await trio.to_thread.run_sync(session)
    assert [(s.statusCode, s.statusMessage) for s in first.messageStatus] == [ENQUEUED]
    assert [(s.statusCode, s.statusMessage) for s in again.messageStatus] == [TAKEN]
    assert count_messages(gateway) == 1


async def test_a_batch_reference_is_free_again_after_an_hour(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=base(gateway), headers=JSON) as client:
        assert codes(await client.post(SEND, json=json_batch("daily"))) == [ENQUEUED] * 2
        alter_store(gateway, "UPDATE messages SET created_at = created_at - 3599")
        assert codes(await client.post(SEND, json=json_batch("daily"))) == [TAKEN] * 2
        alter_store(gateway, "UPDATE messages SET created_at = created_at - 2")
        assert codes(await client.post(SEND, json=json_batch("daily"))) == [ENQUEUED] * 2


async def test_batch_references_repeat_freely_unless_the_service_keeps_them_unique(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Off by default, and not implied by `unique_client_reference`: a client may send one
    batch in several requests. A reference the gateway generates is never a repeat."""
    gateway = await running(tmp_path, nursery, unique_client_reference=True)
    async with httpx.AsyncClient(base_url=base(gateway), headers=JSON) as client:
        for _ in range(2):
            assert codes(await client.post(SEND, json=json_batch("campaign"))) == [ENQUEUED] * 2
    gateway.stop()
    other = await running(tmp_path / "unique", nursery, unique_batch_reference=True)
    async with httpx.AsyncClient(base_url=base(other), headers=JSON) as client:
        body = {**CREDENTIALS, "message": [{"recipient": "+4741000000", "content": "Hi"}]}
        for _ in range(2):
            assert codes(await client.post(SEND, json=body)) == [ENQUEUED]
    other.stop()
