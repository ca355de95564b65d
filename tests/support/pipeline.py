"""Driving the real pipeline as a client would: one message submitted through the Submitter
and its stored record read back. Asserts only that each was answered (spec 4.1 sendMessages)."""

from __future__ import annotations

from edgegw.model import MessageRequest, SendRequest, Settings
from edgegw.pipeline.submit import Submitter
from edgegw.store import MessageRecord, Store


async def submit_one(submitter: Submitter, recipient: str, content: str) -> str:
    """Submits one message to service 1 as user/secret and returns its message id."""
    response = await submitter.submit(
        SendRequest(
            serviceId=1,
            username="user",
            password="secret",
            message=[MessageRequest(recipient=recipient, content=content, settings=Settings())],
        )
    )
    message_id = response.messageStatus[0].messageId
    assert message_id is not None, response.messageStatus[0].statusMessage
    return message_id


async def stored_record(store: Store, message_id: str) -> MessageRecord:
    record = await store.message(message_id)
    assert record is not None
    return record
