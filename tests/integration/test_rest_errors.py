"""Every documented error of POST /gw/rs/sendMessages through the whole running gateway, and the
gateway still serving afterwards (spec sections 2.3 and 6.1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"
JSON = {"Accept": "application/json"}


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


def body(**overrides: Any) -> dict[str, Any]:
    message = {"recipient": "+4741000000", "content": "Hello"}
    message.update(overrides.pop("message", {}))
    return {
        "serviceId": 1000,
        "username": "demo",
        "password": "demo",
        "message": [message],
        **overrides,
    }


@pytest.mark.parametrize(
    ("request_body", "code", "words"),
    [
        (body(password="wrong"), 2, "Access denied"),
        (body(serviceId=4242), 4, "Illegal service"),
        (body(message={"recipient": None}), 5, "recipient"),
        (body(message={"recipient": 4741000000}), 5, "recipient: expected text, got an integer"),
        (body(serviceId=None), 5, "serviceId is required"),
        (body(message={"recipient": "+47abc"}), 5, "recipient"),
        (body(message={"recipient": "+4722000000"}), 5, "not a Norwegian mobile number"),
        (body(message={"recipient": "+47 41 00 00 0"}), 5, "not a Norwegian mobile number"),
        (body(message={"content": "Привет"}), 5, "GSM 03.38"),
        (body(message={"content": "x" * 919}), 5, "content"),
        (body(message={"price": 200}), 3, "Illegal action"),
        (body(message={"price": -100}), 5, "Syntax error: price -100 must not be negative"),
        (body(message={"settings": {"age": 18}}), 3, "Illegal action: age"),
        (body(message={"settings": {"age": 17}}), 5, "Syntax error: age 17 must be 0, 16 or 18"),
        (
            body(message={"settings": {"gasSettings": {"serviceCode": "02001"}}}),
            3,
            "Illegal action",
        ),
    ],
)
async def test_each_refusal_has_its_status_and_the_gateway_goes_on(
    gateway: Gateway, request_body: dict[str, Any], code: int, words: str
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, json=request_body, headers=JSON)
        assert answer.status_code == 200
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == code
        assert words in status["statusMessage"]
        assert status["messageId"] is None

        good = await client.post(SEND, json=body(), headers=JSON)
        assert good.json()["messageStatus"][0]["statusCode"] == 1


XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<request><serviceId>1000</serviceId><username>demo</username><password>demo</password>
<message><recipient>+4741000000</recipient><content>&lol2;</content></message></request>"""

XML_EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<request><serviceId>1000</serviceId><username>demo</username><password>demo</password>
<message><recipient>+4741000000</recipient><content>&secret;</content></message></request>"""


async def test_an_unknown_service_counts_as_a_failed_login(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        for refused in (body(serviceId=4242), body(password="wrong")):
            answer = await client.post(SEND, json=refused, headers=JSON)
            assert answer.json()["messageStatus"][0]["statusCode"] in (2, 4)
        accepted = await client.post(SEND, json=body(), headers=JSON)
        assert accepted.json()["messageStatus"][0]["statusCode"] == 1
    assert gateway.throttle.failures_total == {"http": 2}


async def test_a_message_of_the_wrong_types_is_refused_and_the_others_sent(
    gateway: Gateway,
) -> None:
    request_body = body()
    good = request_body["message"][0]
    request_body["message"] = [good, {"recipient": "+4741000001", "content": 7}, good]
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, json=request_body, headers=JSON)
        assert answer.status_code == 200
        statuses = answer.json()["messageStatus"]
        assert [(s["statusCode"], s["sequenceIndex"]) for s in statuses] == [(1, 1), (5, 2), (1, 3)]
        assert (
            statuses[1]["statusMessage"] == "Syntax error: content: expected text, got an integer"
        )
        assert statuses[1]["recipient"] == "+4741000001"
        for status in statuses[::2]:
            looked_up = await client.get(
                f"/api/messages/{status['messageId']}", auth=("demo", "demo")
            )
            assert looked_up.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("application/json", b'{"serviceId": 1000, "message": [{'),
        ("application/xml", b"<request><serviceId>1000</serviceId>"),
        ("application/xml", XML_BOMB),
        ("application/xml", XML_EXTERNAL),
    ],
    ids=["broken-json", "broken-xml", "entity-expansion", "external-entity"],
)
async def test_malformed_bodies_get_400_with_status_5(
    gateway: Gateway, content_type: str, payload: bytes
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND, content=payload, headers={"Content-Type": content_type, **JSON}
        )
        assert answer.status_code == 400
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == 5
        assert "root:" not in answer.text  # nothing of /etc/passwd leaks

        good = await client.post(SEND, json=body(), headers=JSON)
        assert good.json()["messageStatus"][0]["statusCode"] == 1


async def test_a_get_batch_over_the_head_limit_gets_431_as_text_xml_as_every_get_answer(
    gateway: Gateway,
) -> None:
    limit = gateway.config.http.limits.max_header_bytes
    query = "serviceId=1000&username=demo&password=demo&message[0].content=" + "x" * limit
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.get(f"{SEND}?{query}")
        assert answer.status_code == 431
        assert answer.headers["content-type"] == "text/xml"
        assert b"<statusCode>5</statusCode>" in answer.content
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        good = await client.get(f"{SEND}?{query[:200]}&message[0].recipient=%2B4741000000")
        assert good.headers["content-type"] == "text/xml"
        assert b"<statusCode>1</statusCode>" in good.content


async def test_a_body_over_the_limit_gets_413_and_others_are_served(gateway: Gateway) -> None:
    limit = gateway.config.http.limits.max_body_bytes
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(
            SEND,
            content=b"x" * (limit + 1),
            headers={"Content-Type": "application/json", **JSON},
        )
        assert answer.status_code == 413
        (status,) = answer.json()["messageStatus"]  # in the format the client asked for
        assert status["statusCode"] == 5
        assert f"over {limit} bytes" in status["statusMessage"]
        answer = await client.post(
            SEND, content=b"x" * (limit + 1), headers={"Content-Type": "application/xml"}
        )
        assert answer.status_code == 413
        assert answer.headers["content-type"].startswith("application/xml")
        assert b"<statusCode>5</statusCode>" in answer.content
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        good = await client.post(SEND, json=body(), headers=JSON)
        assert good.json()["messageStatus"][0]["statusCode"] == 1
