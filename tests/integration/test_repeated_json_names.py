"""A JSON send whose object gives a name twice is refused as the XML, form and GET doors refuse a
field given twice: HTTP 400, one status 5 entry naming the field, nothing stored (I-JSON, RFC
7493 section 2.3). msgspec alone would keep the last value and send to it. Bodies that only
look suspicious to the quick count (nulls, unknown fields, colons and escapes in the text) are
still taken."""

from __future__ import annotations

import httpx
import pytest
from support.gateway import count_messages

from edgegw.gateway import Gateway

SEND = "/gw/rs/sendMessages"
JSON = {"Accept": "application/json", "Content-Type": "application/json"}
HEAD = '"serviceId": 1000, "username": "demo", "password": "demo"'
GOOD = '{"recipient": "+4741000000", "content": "Hi"}'
TWO_RECIPIENTS = '{"recipient": "+4741000001", "content": "x", "recipient": "+4741000002"}'


def url(gateway: Gateway) -> str:
    assert gateway.bound is not None
    return f"http://127.0.0.1:{gateway.bound.http_port}"


def with_message(message: str) -> str:
    return f'{{{HEAD}, "message": [{GOOD}, {message}]}}'


def with_settings(settings: str) -> str:
    return with_message(f'{{"recipient": "+4741000001", "content": "Hi", "settings": {settings}}}')


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_message(TWO_RECIPIENTS), "message[1].recipient"),
        (f'{{{HEAD}, "serviceId": 1000, "message": [{GOOD}]}}', "serviceId"),
        (f'{{{HEAD}, "message": [{GOOD}], "message": [{GOOD}]}}', "message"),
        (with_settings('{"priority": 3, "priority": 1}'), "message[1].settings.priority"),
        (
            with_settings('{"originatorSettings": {"originator": "A", "originator": "B"}}'),
            "message[1].settings.originatorSettings.originator",
        ),
        (
            with_settings('{"gasSettings": {"serviceCode": "02001", "serviceCode": "02002"}}'),
            "message[1].settings.gasSettings.serviceCode",
        ),
        (
            with_settings('{"sendWindow": {"startDate": "2030-01-01", "startDate": "2030-01-02"}}'),
            "message[1].settings.sendWindow.startDate",
        ),
        (
            with_settings('{"parameter": [{"key": "flash", "value": "true", "value": "false"}]}'),
            "message[1].settings.parameter[0].value",
        ),
        # The legacy Go client's parameter map, which takes the tolerant path.
        (
            with_settings('{"parameter": {"dcs": "F5", "dcs": "00"}}'),
            "message[1].settings.parameter.dcs",
        ),
        # Written another way, still the same name; null is a value given too.
        (
            with_message('{"recipient": null, "content": "x", "recip\\u0069ent": "+4741000001"}'),
            "message[1].recipient",
        ),
        (with_message('{"recipient": "+4741000001", "x": {"y": 1, "y": 2}}'), "message[1].x.y"),
    ],
)
async def test_a_name_given_twice_is_refused_whole_as_xml_refuses_an_element(
    gateway: Gateway, body: str, field: str
) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, content=body.encode(), headers=JSON)
        assert answer.status_code == 400
        (status,) = answer.json()["messageStatus"]
        assert status["statusCode"] == 5
        assert status["statusMessage"] == f"Syntax error: {field}: given more than once"
    assert count_messages(gateway) == 0


async def test_xml_and_json_answer_a_repeated_recipient_alike(gateway: Gateway) -> None:
    xml = (
        "<request><serviceId>1000</serviceId><username>demo</username><password>demo</password>"
        "<message><recipient>+4741000001</recipient><content>x</content>"
        "<recipient>+4741000002</recipient></message></request>"
    )
    json = with_message(TWO_RECIPIENTS)
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        by_xml = await client.post(
            SEND, content=xml, headers={**JSON, "Content-Type": "application/xml"}
        )
        by_json = await client.post(SEND, content=json, headers=JSON)
    assert by_xml.status_code == by_json.status_code == 400
    assert by_xml.json()["messageStatus"][0]["statusCode"] == 5
    assert by_json.json()["messageStatus"][0]["statusCode"] == 5


async def test_a_streamed_batch_with_a_name_given_twice_is_refused_before_anything_is_stored(
    gateway: Gateway,
) -> None:
    messages = [f'{{"recipient": "+47410{n:05d}", "content": "Hi"}}' for n in range(1500)]
    messages[1234] = '{"recipient": "+4741001234", "content": "Hi", "content": "Ho"}'
    body = f'{{{HEAD}, "message": [{", ".join(messages)}]}}'
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, content=body.encode(), headers=JSON)
        assert answer.status_code == 400
        (status,) = answer.json()["messageStatus"]
        refusal = "Syntax error: message[1234].content: given more than once"
        assert status["statusMessage"] == refusal
        # The same batch without the repeat is streamed and taken whole.
        messages[1234] = '{"recipient": "+4741001234", "content": "Hi"}'
        body = f'{{{HEAD}, "message": [{", ".join(messages)}]}}'
        taken = await client.post(SEND, content=body.encode(), headers=JSON)
        assert taken.headers["transfer-encoding"] == "chunked"
        assert {status["statusCode"] for status in taken.json()["messageStatus"]} == {1}
    assert count_messages(gateway) == 1500


@pytest.mark.parametrize(
    "message",
    [
        '{"recipient": "+4741000001", "content": "Hi", "clientReference": null, "settings": null}',
        '{"recipient": "+4741000001", "content": "Kl. 10:30: \\"møte\\": rom 2", "extra": "a:b"}',
        '{"recipient": "+4741000001", "content": "10\\u003a30", "settings": {"parameter": []}}',
        '{"recipient"\n :\t"+4741000001", "content" : "Hi", "vendor": {"recipient": "x"}}',
    ],
    ids=["nulls", "colons-and-unknown-fields", "escaped-colon", "white-space-and-nesting"],
)
async def test_bodies_that_repeat_no_name_are_taken(gateway: Gateway, message: str) -> None:
    async with httpx.AsyncClient(base_url=url(gateway)) as client:
        answer = await client.post(SEND, content=with_message(message).encode(), headers=JSON)
        assert answer.status_code == 200
        assert [s["statusCode"] for s in answer.json()["messageStatus"]] == [1, 1]
