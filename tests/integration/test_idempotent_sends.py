"""Sends with an Idempotency-Key through the running gateway (issue 10, item 8): a retry gets
the first answer and creates nothing; the key with another request, a malformed key and a
concurrent retry are refused; the answers are kept 24 hours; the answer commits with its
messages, so one that cannot be remembered leaves no message behind. A SOAP send (zeep, as
a stock client) is answered once the same way, and refused with faults its client reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio
import zeep
import zeep.exceptions
from support.gateway import alter_store, count_messages, example_config

from edgegw.clock import Clock
from edgegw.gateway import Gateway
from edgegw.pipeline.submit import STORE_CHUNK
from edgegw.store import Store, StoredResponse, response_rememberer, stored_response

SEND = "/gw/rs/sendMessages"
BODY = {
    "serviceId": 1000,
    "username": "demo",
    "password": "demo",
    "message": [{"recipient": "+4741000000", "content": "Hello once"}],
}
JSON = {"Accept": "application/json"}


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


async def stored_messages(client: httpx.AsyncClient) -> int:
    answer = await client.get("/api/messages", auth=("demo", "demo"))
    assert answer.status_code == 200
    return len(answer.json()["messages"])


async def test_a_retry_gets_the_first_answer_and_creates_nothing(gateway: Gateway) -> None:
    headers = {**JSON, "Idempotency-Key": "order-4711"}
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        first = await client.post(SEND, json=BODY, headers=headers)
        retry = await client.post(SEND, json=BODY, headers=headers)
        assert first.status_code == retry.status_code == 200
        assert retry.content == first.content
        assert retry.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert await stored_messages(client) == 1
        # Without the header every send is new.
        assert (await client.post(SEND, json=BODY, headers=JSON)).status_code == 200
        assert await stored_messages(client) == 2


async def test_the_same_key_with_another_send_is_422(gateway: Gateway) -> None:
    headers = {**JSON, "Idempotency-Key": "k-1"}
    other = {**BODY, "message": [{"recipient": "+4741000001", "content": "Other"}]}
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        assert (await client.post(SEND, json=BODY, headers=headers)).status_code == 200
        reused = await client.post(SEND, json=other, headers=headers)
        assert reused.status_code == 422
        assert "another send" in reused.json()["detail"]
        assert await stored_messages(client) == 1


async def test_a_422_has_one_title_whichever_route_answers(gateway: Gateway) -> None:
    """RFC 9457: a problem of type about:blank is titled with its status's phrase. The key's
    422 said "Unprocessable Entity", the status page's "Unprocessable Content", and the status
    line either, by the Python that ran it."""
    headers = {**JSON, "Idempotency-Key": "k-title"}
    other = {**BODY, "message": [{"recipient": "+4741000001", "content": "Other"}]}
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        assert (await client.post(SEND, json=BODY, headers=headers)).status_code == 200
        reused = await client.post(SEND, json=other, headers=headers)
        page = await client.post(
            "/status/send", auth=("demo", "demo"), data={"to": "hello", "text": "x"}
        )
    for answer in (reused, page):
        assert answer.status_code == 422
        assert answer.reason_phrase == answer.json()["title"] == "Unprocessable Content"


async def test_a_malformed_key_is_400_and_a_refused_send_is_not_remembered(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        for key in ("", "with space", "x" * 256):
            answer = await client.post(SEND, json=BODY, headers={"Idempotency-Key": key})
            assert answer.status_code == 400
        wrong = {**BODY, "password": "wrong"}
        headers = {**JSON, "Idempotency-Key": "k-2"}
        first = await client.post(SEND, json=wrong, headers=headers)
        assert first.json()["messageStatus"][0]["statusCode"] == 2
        again = await client.post(SEND, json=wrong, headers=headers)
        assert "idempotent-replayed" not in again.headers


async def test_a_concurrent_retry_is_409(gateway: Gateway) -> None:
    headers = {**JSON, "Idempotency-Key": "k-3"}
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url(gateway)) as client:

        async def send() -> None:
            statuses.append((await client.post(SEND, json=BODY, headers=headers)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(send)
        assert statuses.count(200) >= 1
        assert set(statuses) <= {200, 409}
        assert await stored_messages(client) == 1


async def test_answers_are_kept_24_hours(tmp_path: Path, nursery: trio.Nursery) -> None:
    store = Store(f"{tmp_path}/idempotency.db", clock=Clock())
    await nursery.start(store.run)
    answer = StoredResponse(
        fingerprint=b"f", status=200, content_type="application/json", body=b"{}", created_at=1000.0
    )
    await store.write(response_rememberer("k", answer, forget_before=0.0))
    assert await stored_response(store, "k", since=1000.0) == answer
    assert await stored_response(store, "k", since=1000.1) is None  # older than the window
    # A later send under the same key, once the old answer is past, replaces it.
    newer = StoredResponse(
        fingerprint=b"g", status=200, content_type="text/xml", body=b"<x/>", created_at=90000.0
    )
    await store.write(response_rememberer("k", newer, forget_before=90000.0 - 86400.0))
    assert await stored_response(store, "k", since=0.0) == newer


async def test_the_answer_commits_with_its_messages_or_neither_does(gateway: Gateway) -> None:
    # More messages than one write job of an unkeyed batch takes, so every chunk is covered.
    many = {
        **BODY,
        "message": [
            {"recipient": f"+47410{index:05d}", "content": "Hi"}
            for index in range(STORE_CHUNK + 500)
        ],
    }
    headers = {**JSON, "Idempotency-Key": "batch-9"}
    # The answer's row cannot be written (as if the gateway died before it): the messages
    # written in the same job are rolled back with it, and the client is told so.
    alter_store(
        gateway,
        "CREATE TRIGGER refuse_answers BEFORE INSERT ON idempotent_responses"
        " BEGIN SELECT RAISE(ABORT, 'no room for the answer'); END",
    )
    async with httpx.AsyncClient(base_url=url(gateway), timeout=30) as client:
        failed = await client.post(SEND, json=many, headers=headers)
        assert failed.status_code == 200
        codes = {status["statusCode"] for status in failed.json()["messageStatus"]}
        assert codes == {6}
        assert count_messages(gateway) == 0
        alter_store(gateway, "DROP TRIGGER refuse_answers")
        # Nothing was remembered, so the retry is a first attempt; its own retry a replay.
        first = await client.post(SEND, json=many, headers=headers)
        assert {status["statusCode"] for status in first.json()["messageStatus"]} == {1}
        assert count_messages(gateway) == STORE_CHUNK + 500
        replay = await client.post(SEND, json=many, headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content
        assert count_messages(gateway) == STORE_CHUNK + 500


def with_reference(*references: str) -> dict[str, object]:
    return {
        **BODY,
        "message": [
            {"recipient": "+4741000000", "content": "Hi", "clientReference": reference}
            for reference in references
        ],
    }


async def test_a_service_can_keep_client_references_unique_for_an_hour(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = Gateway(example_config(tmp_path, unique_client_reference=True))
    bound = await nursery.start(gateway.run)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:

        async def codes(body: dict[str, object]) -> list[tuple[int, str]]:
            answer = await client.post(SEND, json=body, headers=JSON)
            return [(s["statusCode"], s["statusMessage"]) for s in answer.json()["messageStatus"]]

        taken = (25, "Not unique: clientReference")
        assert await codes(with_reference("otp-1")) == [(1, "Message enqueued for sending")]
        assert await codes(with_reference("otp-1")) == [taken]
        assert await codes(with_reference("otp-2", "otp-2")) == [
            (1, "Message enqueued for sending"),
            taken,
        ]
        assert await stored_messages(client) == 2
    gateway.stop()


async def test_concurrent_sends_of_one_new_client_reference_accept_it_once(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = Gateway(example_config(tmp_path, unique_client_reference=True))
    bound = await nursery.start(gateway.run)
    codes: list[int] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:

        async def send(n: int) -> None:
            answer = await client.post(SEND, json=with_reference(f"otp-{n % 4}"), headers=JSON)
            codes.extend(s["statusCode"] for s in answer.json()["messageStatus"])

        async with trio.open_nursery() as senders:
            for n in range(24):
                senders.start_soon(send, n)
        assert await stored_messages(client) == 4
    assert sorted(codes) == [1] * 4 + [25] * 20
    gateway.stop()


async def test_concurrent_streamed_batches_take_each_new_reference_once(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = Gateway(example_config(tmp_path, unique_client_reference=True))
    bound = await nursery.start(gateway.run)
    references = [f"ref-{n}" for n in range(1500)]  # past 1000: streamed a chunk at a time
    codes: list[int] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:

        async def send(order: list[str]) -> None:
            answer = await client.post(SEND, json=with_reference(*order), headers=JSON)
            codes.extend(s["statusCode"] for s in answer.json()["messageStatus"])

        async with trio.open_nursery() as senders:
            senders.start_soon(send, references)
            senders.start_soon(send, references[::-1])
    assert sorted(codes) == [1] * 1500 + [25] * 1500
    gateway.stop()


async def test_client_references_repeat_freely_by_default(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        for _ in range(2):
            answer = await client.post(SEND, json=with_reference("otp-1"), headers=JSON)
            assert answer.json()["messageStatus"][0]["statusCode"] == 1


SOAP_SEND = "/gw/ws/SMSGatewayV10"
SOAP_REQUEST: dict[str, Any] = {
    "serviceId": 1000,
    "username": "demo",
    "password": "demo",
    "message": [{"recipient": "+4741000000", "content": "Hello once over SOAP"}],
}


async def test_a_soap_retry_gets_the_first_answer_and_creates_nothing(gateway: Gateway) -> None:
    base = url(gateway)

    def session() -> list[Any]:
        build: Any = zeep.Client
        soap = build(f"{base}{SOAP_SEND}?wsdl")
        answers: list[Any] = []
        with soap.settings(extra_http_headers={"Idempotency-Key": "soap-4711"}):
            for _ in range(2):
                answers.append(soap.service.sendMessages(request=SOAP_REQUEST))
            other = {**SOAP_REQUEST, "message": [{"recipient": "+4741000001", "content": "x"}]}
            try:
                soap.service.sendMessages(request=other)
            except zeep.exceptions.Fault as fault:
                answers.append(fault)
        return answers

    first, retry, reused = await trio.to_thread.run_sync(session)
    assert [s.statusCode for s in first.messageStatus] == [1]
    assert retry.batchReference == first.batchReference
    assert retry.messageStatus[0].messageId == first.messageStatus[0].messageId
    assert isinstance(reused, zeep.exceptions.Fault)
    assert (reused.code, reused.message) == (
        "soap:Client",
        "Idempotency-Key already used for another send",
    )
    async with httpx.AsyncClient(base_url=base) as client:
        assert await stored_messages(client) == 1


async def test_a_soap_answer_commits_with_its_messages_and_is_replayed_whole(
    gateway: Gateway,
) -> None:
    """Through the same seal as REST: an answer that cannot be remembered takes its messages
    with it; one that is, is replayed byte for byte, marked as a replay."""
    envelope = (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
        '<s:sendMessages xmlns:s="http://chimera.intele.com/gw/wsdl/SMSGateway-v1.0">'
        '<r:request xmlns:r="http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02">'
        "<serviceId>1000</serviceId><username>demo</username><password>demo</password>"
        "<message><recipient>+4741000000</recipient><content>Hi</content></message>"
        "</r:request></s:sendMessages></e:Body></e:Envelope>"
    )
    headers = {"content-type": "text/xml; charset=utf-8", "idempotency-key": "soap-9"}
    alter_store(
        gateway,
        "CREATE TRIGGER refuse_answers BEFORE INSERT ON idempotent_responses"
        " BEGIN SELECT RAISE(ABORT, 'no room for the answer'); END",
    )
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        failed = await client.post(SOAP_SEND, content=envelope, headers=headers)
        assert failed.status_code == 200
        assert b"<statusCode>6</statusCode>" in failed.content
        assert count_messages(gateway) == 0
        alter_store(gateway, "DROP TRIGGER refuse_answers")
        first = await client.post(SOAP_SEND, content=envelope, headers=headers)
        assert b"<statusCode>1</statusCode>" in first.content
        replay = await client.post(SOAP_SEND, content=envelope, headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["content-type"] == "text/xml; charset=utf-8"
        assert replay.content == first.content
    assert count_messages(gateway) == 1
