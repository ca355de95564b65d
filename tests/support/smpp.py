"""smpplib sessions the SMPP tests share: connecting, submitting a list, a refused bind; and a
backend that accepts every submit, and a raw bind on a socket of the test's own.

Blocking calls: tests run them in `trio.to_thread.run_sync`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import smpplib.client
import smpplib.exceptions
import trio

from edgegw.smpp import (
    Accepted,
    Account,
    AccountTable,
    BindMode,
    CommandStatus,
    Outbound,
    QueryResult,
    SmppAccount,
    Submission,
    SubmitRefused,
)
from edgegw.smpp.pdu import (
    NEED_DATA,
    BindTransceiver,
    BindTransmitter,
    CancelSm,
    Pdu,
    ReplaceSm,
    SmppDecoder,
    encode,
)


def connect(port: int) -> smpplib.client.Client:
    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.connect()
    return client


def submit_all(port: int, submits: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Bind as a transmitter, send each submit_sm and read its response: (status, message id)."""
    client = connect(port)
    try:
        client.bind_transmitter(system_id="demo", password="demo")
        results = []
        for fields in submits:
            client.send_message(**fields)
            response = client.read_pdu()
            assert response.command == "submit_sm_resp"
            message_id = response.message_id.decode() if response.message_id else ""
            results.append((int(response.status), message_id))
        client.unbind()
        return results
    finally:
        client.disconnect()


def bind_status(port: int, system_id: str, password: str, *, mode: str = "transmitter") -> int:
    """The command_status a bind gets (0 when it is accepted)."""
    client = connect(port)
    try:
        getattr(client, f"bind_{mode}")(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0


class AcceptingBackend:
    """Takes every submit of a good login; no messages to query, nothing in the outbox."""

    def __init__(self, accounts: list[SmppAccount]) -> None:
        self.accounts = AccountTable(accounts)
        self.ids = itertools.count(1)
        self.signal = trio.Event()

    async def authenticate(self, system_id: str, password: str, mode: BindMode) -> Account:
        return await self.accounts.authenticate(system_id, password)

    async def submit_many(
        self, account: Account, submissions: Sequence[Submission]
    ) -> list[Accepted | SubmitRefused]:
        await trio.lowlevel.checkpoint()
        return [Accepted(f"M{next(self.ids):06d}") for _ in submissions]

    async def query(self, account: Account, message_id: str) -> QueryResult | None:
        return None

    async def cancel(self, account: Account, pdu: CancelSm) -> CommandStatus:
        return CommandStatus.ESME_RCANCELFAIL

    async def replace(self, account: Account, pdu: ReplaceSm) -> CommandStatus:
        return CommandStatus.ESME_RINVMSGID

    async def pending(self, service_id: int, limit: int, exclude: frozenset[int]) -> list[Outbound]:
        await trio.lowlevel.checkpoint()
        return []

    async def delivered(self, outbound_id: int) -> None:
        raise AssertionError("nothing was offered")

    async def failed(
        self, outbound_id: int, command_status: int, *, for_good: bool = False
    ) -> None:
        raise AssertionError("nothing was offered")

    def outbound_signal(self, service_id: int) -> trio.Event:
        return self.signal


async def receive_pdu(stream: trio.abc.ReceiveStream, decoder: SmppDecoder) -> Pdu | None:
    """The next PDU on a raw connection, or None once the listener closed or reset it."""
    while True:
        pdu = decoder.next_pdu()
        if pdu is not NEED_DATA:
            assert isinstance(pdu, Pdu)
            return pdu
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return None
        if not data:
            return None
        decoder.receive_data(data)


async def raw_bind(
    stream: trio.abc.Stream,
    decoder: SmppDecoder | None = None,
    *,
    system_id: str = "demo",
    password: str = "demo",
    cls: type[BindTransceiver | BindTransmitter] = BindTransceiver,
) -> int | None:
    """Send a bind on a raw connection: its command_status, or None when the listener closed
    the connection instead of answering."""
    try:
        await stream.send_all(
            encode(cls(sequence_number=1, system_id=system_id, password=password))
        )
    except trio.BrokenResourceError:
        return None
    answer = await receive_pdu(stream, decoder or SmppDecoder())
    return None if answer is None else answer.command_status
