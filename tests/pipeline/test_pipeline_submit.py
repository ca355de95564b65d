"""Submit: a status per message for every rule of spec sections 2.1, 6.1 and 7, one durable
write per request."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.gsm import ParsingType, validity_period_minutes
from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.http.puzzel import BATCH_CHUNK, MessageChunks
from edgegw.model import (
    GasSettings,
    MessageRequest,
    MessageState,
    OriginatorSettings,
    Parameter,
    SendRequest,
    SendResponse,
    SendWindow,
    Settings,
    UnreadableMessage,
)
from edgegw.pipeline.submit import STORE_CHUNK, STREAM_CHUNK, SUBMIT_CHUNK, Submitter
from edgegw.store import Store, Topic

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z = 10:00 in Oslo (CEST)


def service(service_id: int = 1, **overrides: object) -> ServiceConfig:
    fields: dict[str, object] = {
        "id": service_id,
        "name": f"service-{service_id}",
        "username": f"user{service_id}",
        "password": f"secret{service_id}",
        "originator": "Edge",
    }
    fields.update(overrides)
    return ServiceConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def make_service() -> Callable[..., ServiceConfig]:
    return service


@pytest.fixture
def clock() -> Clock:
    return Clock(start_epoch=START)


@pytest.fixture
async def store(tmp_path: Path, clock: Clock, nursery: trio.Nursery) -> Store:
    running = Store(tmp_path / "edgegw.db", clock=clock)
    await nursery.start(running.run)
    return running


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def submitter(
    store: Store, clock: Clock, wakes: Wakes, make_service: Callable[..., ServiceConfig]
) -> Submitter:
    services = [
        make_service(1),
        make_service(2, parsing_type=ParsingType.SAFE_REMOVE_NON_GSM, priority=3, validity=0),
    ]
    store.subscribe(Topic.QUEUE, wakes)
    return Submitter(services, store, clock)


def request(*messages: MessageRequest, service_id: int = 1, **fields: object) -> SendRequest:
    values: dict[str, object] = {
        "serviceId": service_id,
        "username": f"user{service_id}",
        "password": f"secret{service_id}",
        "message": list(messages),
    }
    values.update(fields)
    return SendRequest(**values)  # type: ignore[arg-type]


def msg(
    content: str | None = "Hello", recipient: str | None = "+4741000000", **settings: object
) -> MessageRequest:
    parameters = settings.pop("parameters", {})
    assert isinstance(parameters, dict)
    settings_struct = Settings(
        parameter=[Parameter(key=key, value=value) for key, value in parameters.items()],
        **settings,  # type: ignore[arg-type]
    )
    return MessageRequest(recipient=recipient, content=content, settings=settings_struct)


async def one(
    submitter: Submitter, message: MessageRequest, service_id: int = 1
) -> tuple[int, str]:
    response = await submitter.submit(request(message, service_id=service_id))
    status = response.messageStatus[0]
    return status.statusCode, status.statusMessage


async def test_accepted_message_is_queued_and_answered(
    submitter: Submitter, store: Store, wakes: Wakes
) -> None:
    response = await submitter.submit(
        request(
            MessageRequest(recipient="+47 41 00 00 00", content="Hello", clientReference="r1"),
            batchReference="my-batch",
        )
    )
    assert response.batchReference == "my-batch"
    (status,) = response.messageStatus
    assert status.statusCode == 1
    assert status.statusMessage == "Message enqueued for sending"
    assert status.recipient == "+4741000000"
    assert status.clientReference == "r1"
    assert status.sessionId is None
    assert status.sequenceIndex == 1
    assert status.messageId is not None and len(status.messageId) == 12
    view = await store.message_view(1, status.messageId)
    assert view is not None
    assert (view.state, view.recipient, view.originator, view.batchReference) == (
        MessageState.QUEUED,
        "+4741000000",
        "Edge",
        "my-batch",
    )
    assert wakes.count == 1


async def test_batch_reference_is_generated_when_absent(submitter: Submitter) -> None:
    response = await submitter.submit(request(msg()))
    assert uuid.UUID(response.batchReference).version == 4


async def test_unknown_service_answers_illegal_service_for_every_message(
    submitter: Submitter, wakes: Wakes
) -> None:
    response = await submitter.submit(request(msg(), msg(), service_id=99))
    assert [(s.statusCode, s.statusMessage, s.sequenceIndex) for s in response.messageStatus] == [
        (4, "Illegal service", 1),
        (4, "Illegal service", 2),
    ]
    assert wakes.count == 0


async def test_a_missing_service_id_is_a_syntax_error_for_every_message(
    submitter: Submitter, wakes: Wakes
) -> None:
    response = await submitter.submit(request(msg(), msg(), serviceId=None))
    assert [(s.statusCode, s.statusMessage, s.sequenceIndex) for s in response.messageStatus] == [
        (5, "Syntax error: serviceId is required", 1),
        (5, "Syntax error: serviceId is required", 2),
    ]
    assert wakes.count == 0


async def test_a_hostile_value_is_not_echoed_whole(submitter: Submitter) -> None:
    recipient = "+" + "9" * 5000
    originator = "A" * 5000
    response = await submitter.submit(
        request(
            msg(recipient=recipient),
            msg(
                originatorSettings=OriginatorSettings(
                    originator=originator, originatorType="ALPHANUMERIC"
                )
            ),
        )
    )
    first, second = (status.statusMessage for status in response.messageStatus)
    assert first == (
        f"Syntax error: recipient {recipient[:32]!r}... is not an international number"
        " (+ and 8 to 15 digits)"
    )
    assert second.startswith(f"Syntax error: originatorSettings.originator {originator[:32]!r}...")
    assert len(first) < 120 and len(second) < 160


async def test_an_unreadable_message_is_refused_alone(submitter: Submitter, store: Store) -> None:
    odd = UnreadableMessage(
        recipient=None,
        clientReference="r2",
        field="recipient",
        reason="expected text, got an integer",
    )
    response = await submitter.submit(request(msg(), odd, msg()))
    statuses = [
        (s.statusCode, s.statusMessage, s.clientReference, s.sequenceIndex)
        for s in response.messageStatus
    ]
    assert statuses == [
        (1, "Message enqueued for sending", None, 1),
        (5, "Syntax error: recipient: expected text, got an integer", "r2", 2),
        (1, "Message enqueued for sending", None, 3),
    ]
    for status in response.messageStatus[::2]:
        assert status.messageId is not None
        assert await store.message(status.messageId) is not None


@pytest.mark.parametrize(
    ("username", "password"), [("user1", "wrong"), ("someone", "secret1"), (None, None)]
)
async def test_wrong_credentials_answer_access_denied(
    submitter: Submitter, username: str | None, password: str | None
) -> None:
    response = await submitter.submit(request(msg(), msg(), username=username, password=password))
    assert [(s.statusCode, s.statusMessage, s.messageId) for s in response.messageStatus] == [
        (2, "Access denied", None),
        (2, "Access denied", None),
    ]


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("+47 41 00 00 00", "+4741000000"),
        ("004741000000", "+4741000000"),
        ("+4912345678", "+4912345678"),
    ],
)
async def test_recipients_are_normalised(submitter: Submitter, given: str, normalised: str) -> None:
    response = await submitter.submit(request(msg(recipient=given)))
    assert (response.messageStatus[0].statusCode, response.messageStatus[0].recipient) == (
        1,
        normalised,
    )


async def test_a_message_refused_for_another_field_answers_its_recipient_normalised(
    submitter: Submitter,
) -> None:
    response = await submitter.submit(
        request(msg(content=None, recipient="004741000000"), msg(recipient="+47 41 00 00 01"))
    )
    assert [(s.statusCode, s.recipient) for s in response.messageStatus] == [
        (5, "+4741000000"),
        (1, "+4741000001"),
    ]


async def test_a_message_refused_as_not_unique_answers_its_recipient_normalised(
    store: Store, clock: Clock, make_service: Callable[..., ServiceConfig]
) -> None:
    submitter = Submitter([make_service(1, unique_client_reference=True)], store, clock)
    again = MessageRequest(recipient="0047 41 00 00 00", content="Hi", clientReference="otp-1")
    response = await submitter.submit(request(again, again))
    assert [(s.statusCode, s.recipient) for s in response.messageStatus] == [
        (1, "+4741000000"),
        (25, "+4741000000"),
    ]


async def test_a_batch_reference_streamed_in_is_taken_before_any_of_its_messages_is_stored(
    store: Store, clock: Clock, make_service: Callable[..., ServiceConfig]
) -> None:
    """Spec 7.7 with `unique_batch_reference`: a streamed batch whose first chunks are all
    refused (a landline each) has stored nothing yet when a copy of it comes in; the copy gets
    25 all the same, or both would enqueue their messages under one reference."""
    submitter = Submitter([make_service(1, unique_batch_reference=True)], store, clock)
    landlines = [msg(recipient="+4722000000")] * (STREAM_CHUNK * 3)
    streamed = landlines + [msg()] * STREAM_CHUNK
    copies: list[SendResponse] = []
    answered: list[int] = []

    async def emit(piece: SendResponse) -> None:
        answered.extend(status.statusCode for status in piece.messageStatus)
        if not copies:  # the first piece: the batch is being streamed
            copies.append(await submitter.submit(request(msg(), batchReference="order-1")))

    head = request(batchReference="order-1")
    chunks = MessageChunks(
        len(streamed), lambda number: streamed[number * BATCH_CHUNK : (number + 1) * BATCH_CHUNK]
    )
    await submitter.submit_stream(head, chunks, emit, None)
    assert answered == [5] * len(landlines) + [1] * STREAM_CHUNK
    assert [status.statusCode for status in copies[0].messageStatus] == [25]
    stored = await store.read(
        lambda conn: conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    )
    assert stored == STREAM_CHUNK


@pytest.mark.parametrize("recipient", ["+004741000000", "00 004741000000", "+041000000"])
async def test_a_country_code_starting_with_0_is_a_syntax_error(
    submitter: Submitter, recipient: str
) -> None:
    code, text = await one(submitter, msg(recipient=recipient))
    assert code == 5
    assert text == (
        f"Syntax error: recipient {recipient!r} is not an international number"
        " (+ and a country code, which never starts with 0)"
    )


@pytest.mark.parametrize("recipient", ["4741000000", "+4741", "+47410000001234567", "+47abc00000"])
async def test_bad_recipients_are_syntax_errors(submitter: Submitter, recipient: str) -> None:
    code, text = await one(submitter, msg(recipient=recipient))
    assert code == 5
    assert text.startswith(f"Syntax error: recipient {recipient!r} is not an international number")


@pytest.mark.parametrize(
    "recipient",
    ["+4741234567", "+4791234567", "+4758123456", "+4759123456", "+47580012345678"],
)
async def test_norwegian_mobile_numbers_are_taken(submitter: Submitter, recipient: str) -> None:
    # The last: a 12-digit machine-to-machine number of the 58 series.
    assert (await one(submitter, msg(recipient=recipient)))[0] == 1


@pytest.mark.parametrize(
    "recipient",
    ["+4722123456", "+4757123456", "+4781234567", "+474123456", "+47412345678", "+4758001234567"],
)
async def test_other_norwegian_numbers_are_syntax_errors(
    submitter: Submitter, recipient: str
) -> None:
    # Spec 2.1: in Norway +47 and 8 digits starting 4, 9, 58 or 59; landlines are refused.
    code, text = await one(submitter, msg(recipient=recipient))
    assert code == 5
    assert text == (
        f"Syntax error: recipient {recipient!r} is not a Norwegian mobile number"
        " (+47 and 8 digits starting 4, 9, 58 or 59, or 12 starting 58 or 59)"
    )


async def test_missing_recipient_and_content_are_syntax_errors(submitter: Submitter) -> None:
    assert await one(submitter, msg(recipient=None)) == (5, "Syntax error: recipient is required")
    assert await one(submitter, msg(content=None)) == (5, "Syntax error: content is required")
    assert await one(submitter, msg(content="")) == (5, "Syntax error: content is required")


async def test_premium_and_sessions_are_illegal_actions(submitter: Submitter) -> None:
    priced = MessageRequest(recipient="+4741000000", content="Hi", price=200)
    code, text = await one(submitter, priced)
    assert (code, text) == (
        3,
        "Illegal action: price 200: premium messages are not possible, a modem cannot charge"
        " the recipient",
    )
    gas = msg(gasSettings=GasSettings(serviceCode="02001"))
    assert (await one(submitter, gas))[1].startswith("Illegal action: gasSettings")
    assert (await one(submitter, msg(age=18)))[1].startswith("Illegal action: age")
    strex = msg(parameters={"strex_merchant_sell_option": "pin"})
    assert (await one(submitter, strex))[1].startswith(
        "Illegal action: parameter strex_merchant_sell_option"
    )
    session_text = (
        "Illegal action: sessions need short-number sub-addressing, which a modem does not have"
    )
    assert await one(submitter, msg(newSession=True)) == (3, session_text)
    assert await one(submitter, msg(sessionId="01bxmt7f8b8h3zkwe2vg")) == (3, session_text)
    # Free messages and explicit "no" are fine.
    free = MessageRequest(recipient="+4741000000", content="Hi", price=0)
    assert (await one(submitter, free))[0] == 1
    assert (await one(submitter, msg(newSession=False, age=0)))[0] == 1


async def test_priority_and_validity_ranges(submitter: Submitter, store: Store) -> None:
    assert await one(submitter, msg(priority=4)) == (
        5,
        "Syntax error: priority 4 must be 1, 2 or 3",
    )
    assert await one(submitter, msg(validity=174)) == (
        5,
        "Syntax error: validity 174 must be from 0 to 173",
    )
    response = await submitter.submit(request(msg(priority=3, validity=0)))
    message_id = response.messageStatus[0].messageId
    assert message_id is not None
    record = await store.message(message_id)
    assert record is not None
    assert record.priority == 3
    assert record.expires_at == pytest.approx(START + 300)


async def test_service_defaults_apply_when_settings_are_absent(
    submitter: Submitter, store: Store
) -> None:
    response = await submitter.submit(
        request(MessageRequest(recipient="+4741000000", content="Привет"), service_id=2)
    )
    # Service 2 removes non-GSM characters by default; nothing is left of this text.
    assert response.messageStatus[0].statusCode == 5
    response = await submitter.submit(
        request(MessageRequest(recipient="+4741000000", content="Hi Привет"), service_id=2)
    )
    message_id = response.messageStatus[0].messageId
    assert message_id is not None
    record = await store.message(message_id)
    assert record is not None
    assert record.priority == 3
    assert record.expires_at == pytest.approx(START + 300)


@pytest.mark.parametrize(
    ("code", "minutes"),
    [(0, 5), (143, 720), (144, 750), (167, 1440), (168, 2880), (173, 10080)],
)
def test_validity_codes_follow_the_tp_vp_table(code: int, minutes: int) -> None:
    assert validity_period_minutes(code) == minutes


@pytest.mark.parametrize(
    ("kind", "originator", "expected"),
    [
        ("Alphanumeric", "Puzzel Test", (1, "")),
        ("ALPHANUMERIC", "Way too long name", (5, "originatorSettings.originator")),
        ("alphanumeric", "bad*char", (5, "originatorSettings.originator")),
        ("International", "+4799999999", (1, "")),
        ("INTERNATIONAL", "99999999", (5, "originatorSettings.originator")),
        ("network", "1960", (1, "")),
        ("NETWORK", "19a0", (5, "originatorSettings.originator")),
        ("SHORTCODE", "1960", (5, "originatorSettings.originatorType 'SHORTCODE' must be one of")),
        ("ALPHANUMERIC", None, (5, "originatorSettings.originator is required")),
        (None, "Edge", (5, "originatorSettings.originatorType is required")),
    ],
)
async def test_originator_rules(
    submitter: Submitter, kind: str | None, originator: str | None, expected: tuple[int, str]
) -> None:
    settings = OriginatorSettings(originator=originator, originatorType=kind)
    code, text = await one(submitter, msg(originatorSettings=settings))
    assert code == expected[0]
    if code == 5:
        assert text.startswith("Syntax error: " + expected[1])


async def test_non_gsm_character_names_the_character_and_position(submitter: Submitter) -> None:
    assert await one(submitter, msg(content="Hei Ж")) == (
        5,
        "Syntax error: content: character 'Ж' at position 4 is not in the GSM 03.38 alphabet",
    )


async def test_too_long_message_is_a_syntax_error(submitter: Submitter, store: Store) -> None:
    assert await one(submitter, msg(content="a" * 919)) == (
        5,
        "Syntax error: content: the message needs 7 SMS parts, at most 6 are allowed",
    )
    response = await submitter.submit(request(msg(content="a" * 918)))
    message_id = response.messageStatus[0].messageId
    assert message_id is not None
    view = await store.message_view(1, message_id)
    assert view is not None and len(view.parts) == 6


async def test_encoding_precedence(submitter: Submitter, store: Store) -> None:
    async def alphabet_of(message: MessageRequest) -> tuple[str, str] | int:
        response = await submitter.submit(request(message))
        status = response.messageStatus[0]
        if status.messageId is None:
            return status.statusCode
        content, alphabet = await store.read(
            lambda conn: conn.execute(
                "SELECT content, alphabet FROM messages WHERE id = ?", (status.messageId,)
            ).fetchone()
        )
        return content, alphabet

    text = "Hei Ж"
    assert await alphabet_of(msg(content=text)) == 5  # service default NONE
    assert await alphabet_of(msg(content=text, safeRemoveNonGsmCharacters=True)) == (
        "Hei ",
        "GSM7",
    )
    assert await alphabet_of(msg(content=text, autoDetectEncoding=True)) == (text, "UCS2")
    # autoDetectEncoding beats the deprecated safeRemoveNonGsmCharacters...
    both = msg(content=text, autoDetectEncoding=True, safeRemoveNonGsmCharacters=True)
    assert await alphabet_of(both) == (text, "UCS2")
    # ...parsing-type beats autoDetectEncoding...
    typed = msg(content=text, autoDetectEncoding=True, parameters={"parsing-type": "NONE"})
    assert await alphabet_of(typed) == 5
    # ...and dcs beats everything: 8-bit data, the content is hex.
    binary = msg(content="0102ff", autoDetectEncoding=True, parameters={"dcs": "F5"})
    assert await alphabet_of(binary) == ("0102FF", "DATA8")


@pytest.mark.parametrize(
    ("parameters", "text"),
    [
        ({"dcs": "G5"}, "Syntax error: parameter dcs 'G5' must be two hex digits"),
        ({"dcs": "105"}, "Syntax error: parameter dcs '105' must be two hex digits"),
        (
            {"dcs": "0C"},
            "Syntax error: content: TP-DCS 0C is a reserved coding (TS 23.038 section 4)",
        ),
        (
            {"dcs": "F8"},
            "Syntax error: content: TP-DCS F8 is a reserved coding (TS 23.038 section 4)",
        ),
        ({"udh": "0B05Z"}, "Syntax error: parameter udh '0B05Z' must be hex octets"),
        ({"pid": "64"}, "Syntax error: parameter pid '64' must be from 65 to 71"),
        ({"pid": "x"}, "Syntax error: parameter pid 'x' must be from 65 to 71"),
        (
            {"pid": "0000000065"},
            "Syntax error: parameter pid '0000000065' must be from 65 to 71",
        ),
        (
            {"parsing-type": "MAGIC"},
            "Syntax error: parameter parsing-type 'MAGIC' must be one of NONE,"
            " SAFE_REMOVE_NON_GSM, SAFE_REMOVE_NON_GSM_WITH_REPLACE, AUTO_DETECT",
        ),
    ],
)
async def test_bad_parameters_are_syntax_errors(
    submitter: Submitter, parameters: dict[str, str], text: str
) -> None:
    assert await one(submitter, msg(parameters=parameters)) == (5, text)


async def test_pid_flash_and_unknown_parameters(submitter: Submitter, store: Store) -> None:
    message = msg(
        parameters={
            "pid": "65",
            "flash": "TRUE",
            "businessModel": "MEDIA",
            "business_model": "MEDIA",
            "made-up": "ignored",
            "skip_customer_report_delivery": "true",
        }
    )
    response = await submitter.submit(request(message))
    message_id = response.messageStatus[0].messageId
    assert message_id is not None
    pid, flash, dcs = await store.read(
        lambda conn: conn.execute(
            "SELECT pid, flash, dcs FROM messages JOIN parts ON message_id = id WHERE id = ?",
            (message_id,),
        ).fetchone()
    )
    assert (pid, flash, dcs) == (65, 1, 0x10)  # class 0 for flash


@pytest.mark.parametrize("written", ["065", "000000065"])
async def test_pid_is_an_int_of_up_to_9_digits(
    submitter: Submitter, store: Store, written: str
) -> None:
    """Spec 2.1: `pid` is an int 65-71, which a leading zero does not change; its digits are
    bounded as every integer's of a request is (README, Security)."""
    response = await submitter.submit(request(msg(parameters={"pid": written})))
    message_id = response.messageStatus[0].messageId
    assert message_id is not None, response
    (pid,) = await store.read(
        lambda conn: conn.execute("SELECT pid FROM messages WHERE id = ?", (message_id,)).fetchone()
    )
    assert pid == 65


async def test_send_window_errors_name_the_field(submitter: Submitter) -> None:
    window = SendWindow(startDate="2025-13-01", startTime="10:00:00")
    assert await one(submitter, msg(sendWindow=window)) == (
        5,
        "Syntax error: sendWindow.startDate: '2025-13-01' is not a valid date",
    )
    missing = SendWindow(startTime="10:00:00")
    assert await one(submitter, msg(sendWindow=missing)) == (
        5,
        "Syntax error: sendWindow.startDate: is required",
    )


@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        (
            {"startDate": "2025-08-06", "stopDate": "2025-08-05"},
            "Syntax error: sendWindow.stopDate: is before startDate",
        ),
        (
            {"startDate": "2025-08-05", "startTime": "10:00:00", "stopTime": "09:00:00"},
            "Syntax error: sendWindow.stopTime: the window closes before it opens",
        ),
    ],
)
async def test_a_send_window_that_closes_before_it_opens_is_a_syntax_error(
    submitter: Submitter, fields: dict[str, str], answer: str
) -> None:
    # As the README says: nothing could ever be sent in it, so the message is refused at once
    # rather than taken and expired.
    assert await one(submitter, msg(sendWindow=SendWindow(**fields))) == (5, answer)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startTime", "10:00:00+01:99"),
        ("startTime", "10:00:00+14:30"),
        ("startTime", "10:00:00-15:00"),
        ("startDate", "2025-08-05+24:00"),
    ],
)
async def test_a_send_window_zone_offset_beyond_14_hours_is_a_syntax_error(
    submitter: Submitter, field: str, value: str
) -> None:
    fields = {"startDate": "2025-08-05", "startTime": "10:00:00", field: value}
    code, text = await one(submitter, msg(sendWindow=SendWindow(**fields)))
    assert code == 5
    assert text.startswith(f"Syntax error: sendWindow.{field}: {value!r}")


async def test_a_send_window_open_to_the_last_date_there_is_is_taken(
    submitter: Submitter, store: Store
) -> None:
    window = SendWindow(startDate="2025-08-05", stopDate="9999-12-31")
    response = await submitter.submit(request(msg(sendWindow=window, validity=0)))
    status = response.messageStatus[0]
    assert (status.statusCode, status.statusMessage) == (1, "Message enqueued for sending")
    assert status.messageId is not None
    record = await store.message(status.messageId)
    assert record is not None
    assert record.expires_at == pytest.approx(START + 300)


async def test_mixed_batch_keeps_order_and_stores_only_accepted_in_one_write(
    submitter: Submitter, store: Store, wakes: Wakes
) -> None:
    jobs, commits = store.jobs, store.commits
    response = await submitter.submit(
        request(msg(), msg(recipient="123"), msg(content="Hei Ж"), msg(content="Second"))
    )
    assert store.jobs - jobs == 1  # one write for the whole request
    assert store.commits - commits == 1
    statuses = response.messageStatus
    assert [s.sequenceIndex for s in statuses] == [1, 2, 3, 4]
    assert [s.statusCode for s in statuses] == [1, 5, 5, 1]
    assert [s.messageId is None for s in statuses] == [False, True, True, False]
    count = await store.read(lambda conn: conn.execute("SELECT count(*) FROM messages").fetchone())
    assert count == (2,)
    assert wakes.count == 1


async def test_a_big_batch_is_taken_in_chunks_yielding_to_the_loop_between_them(
    submitter: Submitter, store: Store, wakes: Wakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 3 * STORE_CHUNK + 1
    validated = 0
    accept = submitter._accept

    def counting_accept(*args: Any) -> Any:
        nonlocal validated
        validated += 1
        return accept(*args)

    monkeypatch.setattr(submitter, "_accept", counting_accept)
    seen: list[int] = []  # messages validated so far, at the end of every task step

    class Steps(trio.abc.Instrument):
        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            seen.append(validated)

    bad = {i for i in range(total) if i % 100 == 7}
    messages = [
        msg(content=None if i in bad else "Hello", recipient=f"+4741{i:06d}") for i in range(total)
    ]
    jobs = store.jobs
    instrument = Steps()
    trio.lowlevel.add_instrument(instrument)
    try:
        response = await submitter.submit(request(*messages))
    finally:
        trio.lowlevel.remove_instrument(instrument)

    steps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert max(steps) == SUBMIT_CHUNK  # never more than a chunk without giving up the loop
    assert any(0 < count < total for count in seen)
    statuses = response.messageStatus
    assert [s.sequenceIndex for s in statuses] == list(range(1, total + 1))
    assert [s.statusCode for s in statuses] == [5 if i in bad else 1 for i in range(total)]
    # A write job each time at least STORE_CHUNK messages are accepted (looked at after every
    # SUBMIT_CHUNK validated), and one for the rest: 2970 accepted messages make three.
    assert store.jobs - jobs == 3
    assert wakes.count == 3
    accepted = {s.messageId for s in statuses if s.messageId is not None}
    stored = await store.read(
        lambda conn: {row[0] for row in conn.execute("SELECT id FROM messages")}
    )
    assert stored == accepted
    assert len(accepted) == total - len(bad)


async def test_a_store_failure_answers_internal_error(
    tmp_path: Path, clock: Clock, make_service: Callable[..., ServiceConfig]
) -> None:
    stopped = Store(tmp_path / "never-started.db", clock=clock)
    submitter = Submitter([make_service(1)], stopped, clock)
    response = await submitter.submit(request(msg(), msg(recipient="bad")))
    assert [(s.statusCode, s.statusMessage, s.messageId) for s in response.messageStatus] == [
        (6, "Internal error", None),
        (
            5,
            "Syntax error: recipient 'bad' is not an international number (+ and 8 to 15 digits)",
            None,
        ),
    ]


async def test_answers_come_after_the_commit(submitter: Submitter, store: Store) -> None:
    responses: list[SendResponse] = []

    async def client() -> None:
        responses.append(await submitter.submit(request(msg())))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(client)
    outsider = sqlite3.connect(store.path)
    stored = {row[0] for row in outsider.execute("SELECT id FROM messages")}
    outsider.close()
    assert {r.messageStatus[0].messageId for r in responses} == stored
    assert len(stored) == 40
