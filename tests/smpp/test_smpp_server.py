"""The SMPP door over real sockets on 127.0.0.1: a real third-party ESME (smpplib, its blocking
client run in a worker thread) and raw PDUs, against an in-memory SmppBackend (dicts, Events)."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from support.smpp import bind_status, connect, submit_all

from edgegw.smpp import (
    Accepted,
    Account,
    AccountTable,
    Address,
    BindMode,
    CommandId,
    CommandStatus,
    MessageState,
    MobileOriginated,
    Outbound,
    QueryResult,
    Receipt,
    ReceiptRequest,
    SmppAccount,
    SmppConfig,
    Submission,
    SubmitRefused,
    serve_smpp,
)
from edgegw.smpp.pdu import (
    NEED_DATA,
    BindReceiver,
    BindTransceiver,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MultiDestination,
    Pdu,
    ReplaceSm,
    SmppDecoder,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    UnsuccessfulDelivery,
    encode,
)


class StoredMessage(msgspec.Struct, kw_only=True):
    service_id: int
    submission: Submission
    state: MessageState = MessageState.ENROUTE
    final_date: dt.datetime | None = None
    error_code: int = 0


class MemoryBackend:
    """A real, if volatile, SmppBackend: messages and the outbox live in dicts."""

    def __init__(self, accounts: list[SmppAccount]) -> None:
        self.accounts = AccountTable(accounts)
        self.messages: dict[str, StoredMessage] = {}
        self.submitted: list[tuple[Account, Submission]] = []
        self.outbox: dict[int, tuple[int, Outbound]] = {}
        self.delivered_ids: list[int] = []
        self.failures: list[tuple[int, int]] = []
        self.binds: list[tuple[str, BindMode]] = []
        self.refuse_with: CommandStatus | None = None
        self.crash_submits = False
        self.commit_gate: trio.Event | None = None
        self.in_commit = 0
        self.bursts: list[int] = []  # submissions in each submit_many call
        self._ids = itertools.count(1)
        self._outbox_ids = itertools.count(1)
        self._signals: dict[int, trio.Event] = {}
        self.changed = trio.Event()

    def touch(self) -> None:
        """Wake tests waiting for the backend's state to change."""
        self.changed.set()
        self.changed = trio.Event()

    async def authenticate(self, system_id: str, password: str, mode: BindMode) -> Account:
        account = await self.accounts.authenticate(system_id, password)
        self.binds.append((system_id, mode))
        return account

    async def submit_many(
        self, account: Account, submissions: Sequence[Submission]
    ) -> list[Accepted | SubmitRefused]:
        if self.crash_submits:
            raise RuntimeError("secret internal detail")
        if self.refuse_with is not None:
            return [SubmitRefused(self.refuse_with, "refused by the test")] * len(submissions)
        self.bursts.append(len(submissions))
        self.in_commit += len(submissions)
        self.touch()
        try:
            if self.commit_gate is not None:
                await self.commit_gate.wait()
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self.in_commit -= len(submissions)
        message_ids: list[Accepted | SubmitRefused] = []
        for submission in submissions:
            message_id = f"M{next(self._ids):06d}"
            self.messages[message_id] = StoredMessage(
                service_id=account.service_id, submission=submission
            )
            self.submitted.append((account, submission))
            message_ids.append(Accepted(message_id))
        self.touch()
        return message_ids

    async def query(self, account: Account, message_id: str) -> QueryResult | None:
        stored = self.messages.get(message_id)
        if stored is None or stored.service_id != account.service_id:
            return None
        return QueryResult(
            message_state=stored.state, final_date=stored.final_date, error_code=stored.error_code
        )

    async def cancel(self, account: Account, pdu: CancelSm) -> CommandStatus:
        stored = self.messages.get(pdu.message_id)
        if stored is None or stored.service_id != account.service_id:
            return CommandStatus.ESME_RCANCELFAIL
        if stored.state is not MessageState.ENROUTE:
            return CommandStatus.ESME_RCANCELFAIL
        stored.state = MessageState.DELETED
        return CommandStatus.ESME_ROK

    async def replace(self, account: Account, pdu: ReplaceSm) -> CommandStatus:
        stored = self.messages.get(pdu.message_id)
        if stored is None or stored.service_id != account.service_id:
            return CommandStatus.ESME_RINVMSGID
        if stored.state is not MessageState.ENROUTE:
            return CommandStatus.ESME_RREPLACEFAIL
        return CommandStatus.ESME_ROK

    async def pending(self, service_id: int, limit: int, exclude: frozenset[int]) -> list[Outbound]:
        await trio.lowlevel.checkpoint()
        items = [
            item
            for service, item in self.outbox.values()
            if service == service_id and item.id not in exclude
        ]
        return items[:limit]

    async def delivered(self, outbound_id: int) -> None:
        await trio.lowlevel.checkpoint()
        del self.outbox[outbound_id]
        self.delivered_ids.append(outbound_id)
        self.touch()

    async def failed(
        self, outbound_id: int, command_status: int, *, for_good: bool = False
    ) -> None:
        await trio.lowlevel.checkpoint()
        self.failures.append((outbound_id, command_status))
        if for_good:
            del self.outbox[outbound_id]
        self.touch()

    def outbound_signal(self, service_id: int) -> trio.Event:
        return self._signals.setdefault(service_id, trio.Event())

    def add_outbound(self, service_id: int, item: Receipt | MobileOriginated) -> int:
        outbound_id = next(self._outbox_ids)
        self.outbox[outbound_id] = (service_id, Outbound(id=outbound_id, item=item))
        signal = self._signals.pop(service_id, None)
        if signal is not None:
            signal.set()
        return outbound_id


ACCOUNTS = [
    SmppAccount(system_id="demo", password="demo", service=1000, max_binds=2),
    SmppAccount(system_id="other", password="secret", service=2000),
]


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend(ACCOUNTS)


def smpp_config(**overrides: object) -> SmppConfig:
    fields: dict[str, object] = {"port": 0, "accounts": ACCOUNTS}
    fields.update(overrides)
    return SmppConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def smpp_port(backend: MemoryBackend) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(serve_smpp, smpp_config(), backend)
        yield port
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# Clients


class RawEsme:
    """An ESME written with our own codec, for what smpplib will not send (pipelining, broken
    frames, cancel_sm) and for tests under the virtual clock."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = SmppDecoder()

    @classmethod
    async def connect(cls, port: int) -> RawEsme:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, pdu: Pdu) -> None:
        await self.stream.send_all(encode(pdu))

    async def receive(self) -> Pdu | None:
        """The next PDU, or None when the server closed the connection."""
        while True:
            pdu = self.decoder.next_pdu()
            if pdu is not NEED_DATA:
                assert isinstance(pdu, Pdu)
                return pdu
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.decoder.receive_data(data)

    async def bind(self, cls: type[Pdu] = BindTransceiver, **fields: object) -> Pdu:
        values: dict[str, Any] = {"sequence_number": 1, "system_id": "demo", "password": "demo"}
        values.update(fields)
        await self.send(cls(**values))
        response = await self.receive()
        assert response is not None
        return response


async def eventually(
    backend: MemoryBackend, condition: Callable[[], bool], seconds: float = 5.0
) -> None:
    with trio.fail_after(seconds):
        while not condition():
            await backend.changed.wait()


EsmeFactory = Callable[[], Awaitable[RawEsme]]


@pytest.fixture
async def esme(smpp_port: int) -> AsyncIterator[EsmeFactory]:
    """Opens raw ESME connections to the listener and closes them after the test."""
    opened: list[RawEsme] = []

    async def open_one() -> RawEsme:
        client = await RawEsme.connect(smpp_port)
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        await client.stream.aclose()


@pytest.fixture
def gsm_submit() -> dict[str, object]:
    return {
        "source_addr_ton": 5,
        "source_addr_npi": 0,
        "source_addr": "Edge",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "4790000001",
    }


# ---------------------------------------------------------------------------------------------
# Binding


@pytest.mark.parametrize("mode", ["bind_transmitter", "bind_receiver", "bind_transceiver"])
async def test_bind_in_each_mode_and_unbind(
    smpp_port: int, backend: MemoryBackend, mode: str
) -> None:
    def session() -> tuple[int, str, int, str]:
        client = connect(smpp_port)
        try:
            response = getattr(client, mode)(system_id="demo", password="demo")
            unbound = client.unbind()
            return response.status, response.system_id.decode(), unbound.status, unbound.command
        finally:
            client.disconnect()

    status, system_id, unbind_status, unbind_command = await trio.to_thread.run_sync(session)
    assert (status, system_id) == (0, "edgegw")
    assert (unbind_status, unbind_command) == (0, "unbind_resp")
    assert backend.binds == [("demo", BindMode(mode.removeprefix("bind_")))]


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        ("demo", "wrong", CommandStatus.ESME_RINVPASWD),
        # The same status as a wrong password: accounts cannot be enumerated.
        ("nobody", "demo", CommandStatus.ESME_RINVPASWD),
    ],
)
async def test_wrong_credentials_are_refused(
    smpp_port: int, system_id: str, password: str, status: CommandStatus
) -> None:
    refusal = await trio.to_thread.run_sync(bind_status, smpp_port, system_id, password)
    assert refusal == status


async def test_binds_per_account_are_limited(esme: EsmeFactory) -> None:
    first, second, third = [await esme() for _ in range(3)]
    assert (await first.bind()).command_status == CommandStatus.ESME_ROK
    assert (await second.bind(BindReceiver)).command_status == CommandStatus.ESME_ROK
    assert (await third.bind()).command_status == CommandStatus.ESME_RBINDFAIL
    await first.send(Unbind(sequence_number=2))
    assert isinstance(await first.receive(), UnbindResp)
    assert await first.receive() is None  # closed after unbind_resp
    # The slot the unbound session held is free again.
    assert (await third.bind()).command_status == CommandStatus.ESME_ROK


# ---------------------------------------------------------------------------------------------
# Submitting with smpplib


async def test_submit_gsm_text(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    text = "Hello @ world {€}!"
    submit = {
        **gsm_submit,
        "short_message": smpplib.gsm.gsm_encode(text),
        "data_coding": 0,
        "registered_delivery": 1,
    }
    results = await trio.to_thread.run_sync(submit_all, smpp_port, [submit])
    [(account, submission)] = backend.submitted
    assert results == [(0, "M000001")]
    assert account.service_id == 1000
    assert submission.text == text
    assert submission.source == Address(5, 0, "Edge")
    assert submission.destinations == (Address(1, 1, "4790000001"),)
    assert submission.receipt is ReceiptRequest.FINAL
    assert (submission.udh, submission.message_payload) == (b"", False)


async def test_submit_ucs2_text(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    text = "Привет, мир 😀"
    submit = {**gsm_submit, "short_message": text.encode("utf-16-be"), "data_coding": 8}
    results = await trio.to_thread.run_sync(submit_all, smpp_port, [submit])
    assert results[0][0] == CommandStatus.ESME_ROK
    assert backend.submitted[0][1].text == text
    assert backend.submitted[0][1].data_coding == 8


LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 5  # 225 characters: 2 parts


async def test_long_message_with_8_bit_udh(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    parts, coding, esm_class = smpplib.gsm.make_parts(LONG_TEXT)
    submits = [
        {**gsm_submit, "short_message": part, "data_coding": coding, "esm_class": esm_class}
        for part in parts
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port, submits)
    assert [status for status, _ in results] == [0, 0]
    submissions = [submission for _, submission in backend.submitted]
    reference = parts[0][3]
    assert [s.udh for s in submissions] == [
        bytes((5, 0, 3, reference, 2, 1)),
        bytes((5, 0, 3, reference, 2, 2)),
    ]
    assert "".join(s.text or "" for s in submissions) == LONG_TEXT


async def test_long_message_with_16_bit_udh(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    septets = smpplib.gsm.gsm_encode(LONG_TEXT)
    chunks = [septets[:152], septets[152:]]
    submits = [
        {
            **gsm_submit,
            "short_message": bytes((6, 8, 4, 0x12, 0x34, 2, seq)) + chunk,
            "esm_class": 0x43,  # UDHI plus store-and-forward mode, as some ESMEs always set
        }
        for seq, chunk in enumerate(chunks, start=1)
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port, submits)
    assert [status for status, _ in results] == [0, 0]
    submissions = [submission for _, submission in backend.submitted]
    assert [s.udh for s in submissions] == [
        bytes((6, 8, 4, 0x12, 0x34, 2, 1)),
        bytes((6, 8, 4, 0x12, 0x34, 2, 2)),
    ]
    assert "".join(s.text or "" for s in submissions) == LONG_TEXT


async def test_long_message_with_sar_tlvs(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    septets = smpplib.gsm.gsm_encode(LONG_TEXT)
    # The UDH built from sar_* has a 16-bit reference: 7 octets, so 152 septets per part.
    chunks = [septets[:152], septets[152:]]
    submits = [
        {
            **gsm_submit,
            "short_message": chunk,
            "sar_msg_ref_num": 0x0102,
            "sar_total_segments": 2,
            "sar_segment_seqnum": seq,
        }
        for seq, chunk in enumerate(chunks, start=1)
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port, submits)
    assert [status for status, _ in results] == [0, 0]
    submissions = [submission for _, submission in backend.submitted]
    assert [s.udh for s in submissions] == [
        bytes((6, 8, 4, 1, 2, 2, 1)),
        bytes((6, 8, 4, 1, 2, 2, 2)),
    ]
    assert "".join(s.text or "" for s in submissions) == LONG_TEXT


async def test_long_message_in_message_payload(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    submit = {
        **gsm_submit,
        "short_message": b"",
        "message_payload": smpplib.gsm.gsm_encode(LONG_TEXT),
    }
    results = await trio.to_thread.run_sync(submit_all, smpp_port, [submit])
    assert results[0][0] == CommandStatus.ESME_ROK
    submission = backend.submitted[0][1]
    assert submission.text == LONG_TEXT
    assert submission.message_payload
    assert submission.udh == b""


# ---------------------------------------------------------------------------------------------
# Errors keep or end the session as SMPP 3.4 section 2.8 asks


def submit_sm(seq: int, **fields: Any) -> SubmitSm:
    values: dict[str, Any] = {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": "4790000000",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "4790000001",
        "short_message": b"hello",
    }
    values.update(fields)
    return SubmitSm(sequence_number=seq, **values)


async def test_a_bad_field_gets_its_status_and_the_bind_stays(
    esme: EsmeFactory, backend: MemoryBackend
) -> None:
    client = await esme()
    await client.bind()
    await client.send(submit_sm(2, destination_addr="not a number"))
    refused = await client.receive()
    assert isinstance(refused, SubmitSmResp)
    assert (refused.sequence_number, refused.command_status) == (
        2,
        CommandStatus.ESME_RINVDSTADR,
    )
    await client.send(submit_sm(3, data_coding=0x05))
    refused = await client.receive()
    assert refused is not None
    assert refused.command_status == CommandStatus.ESME_RSUBMITFAIL
    await client.send(submit_sm(4, short_message=b"\x09abc", data_coding=4, esm_class=0x40))
    refused = await client.receive()
    assert refused is not None
    assert refused.command_status == CommandStatus.ESME_RINVESMCLASS
    await client.send(submit_sm(5))
    accepted = await client.receive()
    assert isinstance(accepted, SubmitSmResp)
    assert (accepted.command_status, accepted.message_id) == (0, "M000001")


async def test_a_field_the_core_refuses_keeps_the_bind(
    esme: EsmeFactory, backend: MemoryBackend
) -> None:
    backend.refuse_with = CommandStatus.ESME_RINVDSTADR
    client = await esme()
    await client.bind()
    await client.send(submit_sm(2))
    response = await client.receive()
    assert response is not None
    assert response.command_status == CommandStatus.ESME_RINVDSTADR
    await client.send(EnquireLink(sequence_number=3))
    assert isinstance(await client.receive(), EnquireLinkResp)


async def test_an_internal_failure_is_rsyserr_without_leaking(
    esme: EsmeFactory, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.crash_submits = True
    client = await esme()
    await client.bind()
    await client.send(submit_sm(2))
    response = await client.receive()
    assert response is not None
    assert response.command_status == CommandStatus.ESME_RSYSERR
    assert encode(response) == encode(SubmitSmResp(sequence_number=2, command_status=8))
    assert "secret internal detail" in caplog.text  # logged, not sent
    backend.crash_submits = False
    await client.send(submit_sm(3))
    response = await client.receive()
    assert response is not None
    assert response.command_status == CommandStatus.ESME_ROK


async def test_a_broken_header_gets_generic_nack_and_close(esme: EsmeFactory) -> None:
    client = await esme()
    await client.bind()
    await client.stream.send_all(bytes.fromhex("00000008 00000004 00000000 00000007"))
    nack = await client.receive()
    assert isinstance(nack, GenericNack)
    assert nack.command_status == CommandStatus.ESME_RINVCMDLEN
    assert await client.receive() is None


@pytest.mark.parametrize("end", ["broken header", "end of stream"])
async def test_submits_before_the_end_of_a_session_are_stored_and_answered(
    esme: EsmeFactory, backend: MemoryBackend, end: str
) -> None:
    """Three submit_sm in one write, then a broken header or the client's end of stream (it
    still reads): each submit is stored and answered before the session closes, even when
    the store takes its time."""
    client = await esme()
    await client.bind()
    backend.commit_gate = trio.Event()

    async def open_gate() -> None:
        await eventually(backend, lambda: backend.in_commit == 3)
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        assert backend.commit_gate is not None
        backend.commit_gate.set()

    submits = b"".join(encode(submit_sm(seq)) for seq in (2, 3, 4))
    if end == "broken header":
        await client.stream.send_all(submits + bytes.fromhex("00000008 00000015 00000000 00000005"))
    else:
        await client.stream.send_all(submits)
        assert isinstance(client.stream, trio.SocketStream)
        await client.stream.send_eof()
    answers = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_gate)
        while (answer := await client.receive()) is not None:
            answers.append(answer)
    responses = [a for a in answers if isinstance(a, SubmitSmResp)]
    assert sorted(r.sequence_number for r in responses) == [2, 3, 4]
    assert all(r.command_status == 0 and r.message_id for r in responses)
    assert len(backend.submitted) == 3
    if end == "broken header":
        assert isinstance(answers[-1], GenericNack)


async def test_an_oversized_command_length_closes_the_session(esme: EsmeFactory) -> None:
    client = await esme()
    await client.bind()
    await client.stream.send_all(bytes.fromhex("7fffffff 00000004 00000000 00000009"))
    nack = await client.receive()
    assert isinstance(nack, GenericNack)
    assert (nack.command_status, nack.sequence_number) == (CommandStatus.ESME_RINVCMDLEN, 9)
    assert await client.receive() is None


async def test_an_unknown_command_gets_generic_nack_and_the_session_goes_on(
    esme: EsmeFactory,
) -> None:
    client = await esme()
    await client.bind()
    await client.stream.send_all(bytes.fromhex("00000010 000000ff 00000000 00000005"))
    nack = await client.receive()
    assert isinstance(nack, GenericNack)
    assert (nack.command_status, nack.sequence_number) == (CommandStatus.ESME_RINVCMDID, 5)
    await client.send(EnquireLink(sequence_number=6))
    assert isinstance(await client.receive(), EnquireLinkResp)


@pytest.mark.parametrize(
    "frame",
    [
        "00000014 80000000 00000000 00000007 61626364",  # generic_nack with a body
        "00000014 80000015 00000000 00000007 61626364",  # enquire_link_resp with a body
        "00000013 80000005 00000000 00000007 616263",  # deliver_sm_resp, message_id no NUL
        "00000014 80000005 00000000 00000007 00616263",  # deliver_sm_resp, octets after it
        "00000010 80000099 00000000 00000007",  # an unknown response
    ],
)
async def test_a_garbled_response_is_never_answered(
    esme: EsmeFactory, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SMPP 3.4 4.3.1: generic_nack answers a request; a peer nacked for its nack might nack
    back, and the two would never stop. The session logs the PDU it dropped."""
    caplog.set_level(logging.INFO, logger="edgegw.smpp.server")
    client = await esme()
    await client.bind()
    await client.stream.send_all(bytes.fromhex(frame))
    await client.send(EnquireLink(sequence_number=8))
    answer = await client.receive()
    assert isinstance(answer, EnquireLinkResp)
    assert answer.sequence_number == 8
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert record.getMessage().startswith(f"SMPP PDU 0x{frame.split()[1]} (sequence 7) refused: ")
    assert record.funcName == "_read_loop"  # the line that read it, not a logging helper


async def test_pdus_illegal_in_the_bind_state_are_refused(esme: EsmeFactory) -> None:
    client = await esme()
    await client.send(submit_sm(1))
    response = await client.receive()
    assert response is not None
    assert response.command_status == CommandStatus.ESME_RINVBNDSTS
    assert (await client.bind(BindReceiver, sequence_number=2)).command_status == 0
    await client.send(submit_sm(3))
    response = await client.receive()
    assert response is not None
    assert response.command_status == CommandStatus.ESME_RINVBNDSTS
    assert (await client.bind()).command_status == CommandStatus.ESME_RALYBND
    await client.send(DataSm(sequence_number=4, destination_addr="4790000001"))
    response = await client.receive()
    assert isinstance(response, DataSmResp)
    assert response.command_status == CommandStatus.ESME_RINVCMDID


# ---------------------------------------------------------------------------------------------
# Pipelining and throttling


async def test_submits_are_pipelined_and_throttled(backend: MemoryBackend) -> None:
    backend.commit_gate = trio.Event()
    config = smpp_config(max_pending_submits=4)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        client = await RawEsme.connect(port)
        await client.bind()
        for seq in range(2, 8):
            await client.send(submit_sm(seq))
        throttled = [await client.receive() for _ in range(2)]
        assert [(p.sequence_number, p.command_status) for p in throttled if p] == [
            (6, CommandStatus.ESME_RTHROTTLED),
            (7, CommandStatus.ESME_RTHROTTLED),
        ]
        await eventually(backend, lambda: backend.in_commit == 4)
        backend.commit_gate.set()
        done = [await client.receive() for _ in range(4)]
        assert sorted(p.sequence_number for p in done if p) == [2, 3, 4, 5]
        assert all(p is not None and p.command_status == 0 for p in done)
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_the_submits_of_one_read_are_stored_together_and_answered_in_one_write(
    backend: MemoryBackend,
) -> None:
    backend.commit_gate = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, smpp_config(), backend)
        client = await RawEsme.connect(port)
        await client.bind()
        # One write of ten submit_sm (under 1 KB: one segment on loopback, so one read).
        await client.stream.send_all(b"".join(encode(submit_sm(seq)) for seq in range(2, 12)))
        await eventually(backend, lambda: backend.in_commit == 10)
        assert backend.bursts == [10]
        backend.commit_gate.set()
        data = await client.stream.receive_some(65536)  # every answer in one write
        client.decoder.receive_data(data)
        answers = [client.decoder.next_pdu() for _ in range(10)]
        assert client.decoder.next_pdu() is NEED_DATA
        assert all(isinstance(p, SubmitSmResp) and p.command_status == 0 for p in answers)
        assert sorted(p.sequence_number for p in answers if isinstance(p, Pdu)) == list(
            range(2, 12)
        )
        assert len({p.message_id for p in answers if isinstance(p, SubmitSmResp)}) == 10
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# query_sm and cancel_sm


async def test_query_sm_reports_the_state_of_own_messages(
    smpp_port: int, backend: MemoryBackend, gsm_submit: dict[str, object]
) -> None:
    def session() -> tuple[tuple[int, int, str], int]:
        client = connect(smpp_port)
        try:
            client.bind_transceiver(system_id="demo", password="demo")
            client.send_message(**gsm_submit, short_message=b"hi")
            message_id = client.read_pdu().message_id.decode()
            backend.messages[message_id].state = MessageState.DELIVERED
            backend.messages[message_id].final_date = dt.datetime(
                2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC
            )
            client.query_message(
                message_id=message_id, source_addr_ton=5, source_addr_npi=0, source_addr="Edge"
            )
            known = client.read_pdu()
            client.query_message(
                message_id="M999999", source_addr_ton=5, source_addr_npi=0, source_addr="Edge"
            )
            unknown = client.read_pdu()
            return (
                int(known.message_state),
                int(known.status),
                known.final_date.decode(),
            ), int(unknown.status)
        finally:
            client.disconnect()

    known, unknown_status = await trio.to_thread.run_sync(session)
    assert known == (MessageState.DELIVERED, 0, "260102030405000+")
    assert unknown_status == CommandStatus.ESME_RINVMSGID


async def test_cancel_sm_on_own_service_only(esme: EsmeFactory, backend: MemoryBackend) -> None:
    other = await esme()
    await other.bind(system_id="other", password="secret")
    await other.send(submit_sm(2))
    theirs = await other.receive()
    assert isinstance(theirs, SubmitSmResp)
    client = await esme()
    await client.bind()
    await client.send(submit_sm(2))
    mine = await client.receive()
    assert isinstance(mine, SubmitSmResp)
    for seq, message_id, status in [
        (3, theirs.message_id, CommandStatus.ESME_RCANCELFAIL),
        (4, mine.message_id, CommandStatus.ESME_ROK),
        (5, mine.message_id, CommandStatus.ESME_RCANCELFAIL),  # already cancelled
    ]:
        await client.send(CancelSm(sequence_number=seq, message_id=message_id))
        response = await client.receive()
        assert isinstance(response, CancelSmResp)
        assert (response.sequence_number, response.command_status) == (seq, status)
    assert backend.messages[mine.message_id].state is MessageState.DELETED
    assert backend.messages[theirs.message_id].state is MessageState.ENROUTE


# ---------------------------------------------------------------------------------------------
# Receipts and MO to ESMEs


RECEIPT = Receipt(
    message_id="M000042",
    recipient=Address(1, 1, "4790000001"),
    originator=Address(5, 0, "Edge"),
    submit_date=dt.datetime(2026, 11, 24, 21, 0, tzinfo=dt.UTC),
    done_date=dt.datetime(2026, 11, 24, 21, 1, tzinfo=dt.UTC),
    message_state=MessageState.DELIVERED,
    text="Hello there",
)


async def test_a_receipt_and_an_mo_arrive_as_deliver_sm(
    smpp_port: int, backend: MemoryBackend
) -> None:
    mo_text = "Svar fra mobilen: " + "ja " * 60  # 198 characters: two parts
    receipt_id = backend.add_outbound(1000, RECEIPT)
    mo_id = backend.add_outbound(
        1000,
        MobileOriginated(
            source=Address(1, 1, "4790000001"), destination=Address(0, 0, "2000"), text=mo_text
        ),
    )
    backend.add_outbound(2000, RECEIPT)  # another service's: never offered to demo

    def session() -> list[Any]:
        client = connect(smpp_port)
        received: list[Any] = []
        try:
            client.bind_receiver(system_id="demo", password="demo")
            for _ in range(3):
                pdu = client.read_pdu()
                received.append(pdu)
                answer = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
                answer.sequence = pdu.sequence
                client.send_pdu(answer)
            return received
        finally:
            client.disconnect()

    receipt, *parts = await trio.to_thread.run_sync(session)
    await eventually(backend, lambda: len(backend.delivered_ids) == 2)
    assert sorted(backend.delivered_ids) == [receipt_id, mo_id]
    assert receipt.command == "deliver_sm"
    assert int(receipt.esm_class) == 0x04
    assert receipt.short_message.decode() == (
        "id:M000042 sub:001 dlvrd:001 submit date:2611242100 done date:2611242101"
        " stat:DELIVRD err:000 text:Hello there"
    )
    assert receipt.receipted_message_id.decode() == "M000042"
    assert int(receipt.message_state) == MessageState.DELIVERED
    assert receipt.source_addr.decode() == "4790000001"
    assert receipt.destination_addr.decode() == "Edge"
    assert [int(p.esm_class) for p in parts] == [0x40, 0x40]
    udhs = [p.short_message[:6] for p in parts]
    assert [u[:5] for u in udhs] == [bytes((5, 0, 3, mo_id, 2))] * 2
    assert [u[5] for u in udhs] == [1, 2]
    assert b"".join(p.short_message[6:] for p in parts).decode("ascii") == mo_text
    assert [p.destination_addr.decode() for p in parts] == ["2000", "2000"]


async def test_an_unacknowledged_deliver_sm_arrives_after_the_next_bind(
    esme: EsmeFactory, backend: MemoryBackend
) -> None:
    receipt_id = backend.add_outbound(1000, RECEIPT)
    first = await esme()
    await first.bind(BindReceiver)
    unanswered = await first.receive()
    assert isinstance(unanswered, DeliverSm)
    await first.stream.aclose()  # gone without deliver_sm_resp
    assert receipt_id in backend.outbox
    second = await esme()
    await second.bind(BindTransceiver)
    again = await second.receive()
    assert isinstance(again, DeliverSm)
    assert again.short_message == unanswered.short_message
    await second.send(DeliverSmResp(sequence_number=again.sequence_number))
    await eventually(backend, lambda: backend.delivered_ids == [receipt_id])
    assert backend.outbox == {}


async def test_an_item_that_cannot_be_encoded_is_given_up_and_the_next_goes(
    esme: EsmeFactory, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A receipt whose handset address is longer than source_addr may be (21 octets) can never
    be a deliver_sm: it is given up for good (not offered every redeliver_interval with a
    traceback each time) and the item after it still arrives."""
    broken = msgspec.structs.replace(RECEIPT, recipient=Address(1, 1, "4" * 30))
    broken_id = backend.add_outbound(1000, broken)
    good_id = backend.add_outbound(1000, RECEIPT)
    client = await esme()
    await client.bind(BindReceiver)
    delivered = await client.receive()
    assert isinstance(delivered, DeliverSm)
    await client.send(DeliverSmResp(sequence_number=delivered.sequence_number))
    await eventually(backend, lambda: backend.delivered_ids == [good_id])
    assert backend.failures == [(broken_id, CommandStatus.ESME_RSYSERR)]
    assert broken_id not in backend.outbox  # settled for good
    (record,) = [r for r in caplog.records if "cannot be encoded" in r.getMessage()]
    assert record.getMessage().startswith(f"SMPP outbox item {broken_id} cannot be encoded")


async def test_a_refused_deliver_sm_is_reported_and_offered_again(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend
) -> None:
    config = smpp_config(redeliver_interval=60.0, enquire_link_interval=0, inactivity_timeout=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        receipt_id = backend.add_outbound(1000, RECEIPT)
        client = await RawEsme.connect(port)
        await client.bind(BindReceiver)
        first = await client.receive()
        assert isinstance(first, DeliverSm)
        refused_at = trio.current_time()
        await client.send(
            DeliverSmResp(
                sequence_number=first.sequence_number,
                command_status=CommandStatus.ESME_RX_T_APPN,
            )
        )
        second = await client.receive()
        assert isinstance(second, DeliverSm)
        assert trio.current_time() - refused_at == pytest.approx(60.0)
        assert backend.failures == [(receipt_id, CommandStatus.ESME_RX_T_APPN)]
        await client.send(DeliverSmResp(sequence_number=second.sequence_number))
        await eventually(backend, lambda: backend.delivered_ids == [receipt_id])
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("answer", ["none", "wrong sequence number", "refused a moment later"])
async def test_a_deliver_sm_is_offered_again_one_redeliver_interval_after_it_failed(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend, answer: str
) -> None:
    """Unanswered, it fails at the response timeout (10 s) and comes again 30 s later; refused,
    30 s after the refusal. Not a whole idle wait of the outbox later (up to twice that)."""
    config = smpp_config(
        response_timeout=10.0,
        redeliver_interval=30.0,
        enquire_link_interval=0,
        inactivity_timeout=0,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        backend.add_outbound(1000, RECEIPT)
        client = await RawEsme.connect(port)
        await client.bind(BindReceiver)
        first = await client.receive()
        assert isinstance(first, DeliverSm)
        failed_at = trio.current_time() + 10.0
        if answer == "wrong sequence number":
            await client.send(DeliverSmResp(sequence_number=first.sequence_number + 100))
        elif answer == "refused a moment later":
            await trio.sleep(1.0)
            failed_at = trio.current_time()
            await client.send(
                DeliverSmResp(
                    sequence_number=first.sequence_number,
                    command_status=CommandStatus.ESME_RX_T_APPN,
                )
            )
        second = await client.receive()
        assert isinstance(second, DeliverSm)
        assert trio.current_time() - failed_at == pytest.approx(30.0, abs=0.1)
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_long_mo_waits_until_the_window_has_room_for_all_its_parts(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend
) -> None:
    """`window` bounds the deliver_sm outstanding on a session (SMPP 3.4 section 2.6). Behind
    two receipts in a window of 3, an MO of three parts goes once both are answered, not as
    soon as one is, which would leave four outstanding."""
    config = smpp_config(window=3, enquire_link_interval=0, inactivity_timeout=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        backend.add_outbound(1000, RECEIPT)
        backend.add_outbound(1000, RECEIPT)
        mo = MobileOriginated(
            source=Address(1, 1, "4790000001"), destination=Address(0, 0, "2000"), text="x" * 400
        )
        mo_id = backend.add_outbound(1000, mo)
        client = await RawEsme.connect(port)
        await client.bind(BindReceiver)
        first, second = await client.receive(), await client.receive()
        assert isinstance(first, DeliverSm) and isinstance(second, DeliverSm)
        await client.send(DeliverSmResp(sequence_number=first.sequence_number))
        early = None
        with trio.move_on_after(1.0):  # well within the response timeout (10 s)
            early = await client.receive()
        assert early is None, "an MO part went with the second receipt still outstanding"
        await client.send(DeliverSmResp(sequence_number=second.sequence_number))
        for _ in range(3):
            part = await client.receive()
            assert isinstance(part, DeliverSm) and part.esm_class == 0x40
            await client.send(DeliverSmResp(sequence_number=part.sequence_number))
        await eventually(backend, lambda: mo_id in backend.delivered_ids)
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_an_mo_that_waited_for_the_window_gets_the_whole_response_timeout_once_sent(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend
) -> None:
    """The response timer of a deliver_sm (SMPP 3.4 section 7.2) runs from when it goes, not
    from when its MO began to wait for room in the window: an MO of two parts that waited 9 s
    behind a receipt in a window of 2, answered 2 s after it went, is delivered, not expired
    and offered again."""
    config = smpp_config(window=2, enquire_link_interval=0, inactivity_timeout=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        backend.add_outbound(1000, RECEIPT)
        mo = MobileOriginated(
            source=Address(1, 1, "4790000001"), destination=Address(0, 0, "2000"), text="x" * 200
        )
        mo_id = backend.add_outbound(1000, mo)
        client = await RawEsme.connect(port)
        await client.bind(BindReceiver)
        receipt = await client.receive()
        assert isinstance(receipt, DeliverSm)
        await trio.sleep(9.0)  # within the response timeout (10 s)
        await client.send(DeliverSmResp(sequence_number=receipt.sequence_number))
        sequences = []
        for _ in range(2):
            part = await client.receive()
            assert isinstance(part, DeliverSm) and part.esm_class == 0x40
            sequences.append(part.sequence_number)
        await trio.sleep(2.0)
        for sequence in sequences:
            await client.send(DeliverSmResp(sequence_number=sequence))
        await eventually(backend, lambda: mo_id in backend.delivered_ids)
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# Timers under the virtual clock


async def test_enquire_link_probes_an_idle_peer_and_drops_a_silent_one(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend
) -> None:
    config = smpp_config(enquire_link_interval=30.0, response_timeout=10.0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        client = await RawEsme.connect(port)
        start = trio.current_time()
        await client.bind()
        probe = await client.receive()
        assert isinstance(probe, EnquireLink)
        assert trio.current_time() - start == pytest.approx(30.0)
        await client.send(EnquireLinkResp(sequence_number=probe.sequence_number))
        probe = await client.receive()
        assert isinstance(probe, EnquireLink)
        assert trio.current_time() - start == pytest.approx(60.0)
        assert await client.receive() is None  # unanswered: dropped after the response timeout
        assert trio.current_time() - start == pytest.approx(70.0)
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_connection_that_never_binds_is_closed(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend
) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, smpp_config(bind_timeout=15.0), backend)
        client = await RawEsme.connect(port)
        start = trio.current_time()
        assert await client.receive() is None
        assert trio.current_time() - start == pytest.approx(15.0)
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_shutdown_unbinds_bound_peers(
    autojump_clock: trio.testing.MockClock, backend: MemoryBackend
) -> None:
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[int]) -> None:
            with server_scope:
                await serve_smpp(smpp_config(), backend, task_status=task_status)

        port = await nursery.start(run_server)
        client = await RawEsme.connect(port)
        await client.bind()
        server_scope.cancel()
        unbind = await client.receive()
        assert isinstance(unbind, Unbind)
        await client.send(UnbindResp(sequence_number=unbind.sequence_number))
        assert await client.receive() is None
        await client.stream.aclose()


# ---------------------------------------------------------------------------------------------
# TLS, connection limits, submit_multi, fuzzing a bound session


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 made by the openssl command line tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("neither the cryptography package nor openssl is available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_with_smpplib(
    backend: MemoryBackend, self_signed: tuple[Path, Path], gsm_submit: dict[str, object]
) -> None:
    cert, key = self_signed
    config = smpp_config(tls_cert_file=str(cert), tls_key_file=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # smpplib wraps the socket without a server name

    def session() -> tuple[int, int]:
        client = smpplib.client.Client(
            "127.0.0.1", port, timeout=5, ssl_context=context, allow_unknown_opt_params=True
        )
        client.connect()
        try:
            bound = client.bind_transceiver(system_id="demo", password="demo")
            client.send_message(**gsm_submit, short_message=b"over TLS")
            return int(bound.status), int(client.read_pdu().status)
        finally:
            client.disconnect()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, config, backend)
        assert await trio.to_thread.run_sync(session) == (0, 0)
        assert backend.submitted[0][1].text == "over TLS"
        # A plain-text client gets nothing it can read.
        plain = await RawEsme.connect(port)
        await plain.send(BindTransceiver(sequence_number=1, system_id="demo", password="demo"))
        with trio.move_on_after(2):
            assert await plain.receive() is None
        await plain.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_connections_past_the_limit_are_closed(backend: MemoryBackend) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, smpp_config(max_connections=1), backend)
        first = await RawEsme.connect(port)
        assert (await first.bind()).command_status == 0
        second = await RawEsme.connect(port)
        assert await second.receive() is None
        await second.stream.aclose()
        await first.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_submit_multi_lists_refused_destinations(
    esme: EsmeFactory, backend: MemoryBackend
) -> None:
    client = await esme()
    await client.bind()
    await client.send(
        SubmitMulti(
            sequence_number=2,
            dest_addresses=(
                MultiDestination(1, 1, 1, "4790000001"),
                MultiDestination(2, 0, 0, "friends"),
                MultiDestination(1, 1, 1, "4790000002"),
            ),
            short_message=b"hello all",
        )
    )
    response = await client.receive()
    assert isinstance(response, SubmitMultiResp)
    assert (response.command_status, response.message_id) == (0, "M000001")
    assert response.unsuccess_smes == (
        UnsuccessfulDelivery(0, 0, "friends", CommandStatus.ESME_RCNTSUBDL),
    )
    assert backend.submitted[0][1].destinations == (
        Address(1, 1, "4790000001"),
        Address(1, 1, "4790000002"),
    )


@given(st.lists(st.binary(min_size=0, max_size=60), min_size=1, max_size=5))
@settings(max_examples=60, deadline=None)
async def test_a_bound_session_survives_bad_pdus(bodies: list[bytes]) -> None:
    """Well-framed PDUs with arbitrary command ids and bodies never kill the session."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_smpp, smpp_config(), MemoryBackend(ACCOUNTS))
        client = await RawEsme.connect(port)
        assert (await client.bind()).command_status == 0
        for seq, body in enumerate(bodies, start=10):
            command_id = int.from_bytes(body[:4].ljust(4, b"\0"), "big") % 0x120
            if command_id in (CommandId.UNBIND, CommandId.OUTBIND):
                command_id = CommandId.QUERY_SM
            frame = (16 + len(body), command_id, 0, seq)
            await client.stream.send_all(b"".join(n.to_bytes(4, "big") for n in frame) + body)
        await client.send(EnquireLink(sequence_number=99))
        while True:
            answer = await client.receive()
            assert answer is not None, "the session died"
            if isinstance(answer, EnquireLinkResp) and answer.sequence_number == 99:
                break
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_an_outbox_item_goes_to_one_receiver_of_the_service(
    esme: EsmeFactory, backend: MemoryBackend
) -> None:
    first, second = await esme(), await esme()
    assert (await first.bind(BindReceiver)).command_status == 0
    assert (await second.bind(BindTransceiver)).command_status == 0
    receipt_id = backend.add_outbound(1000, RECEIPT)
    received: list[Pdu] = []

    async def listen(client: RawEsme) -> None:
        while (pdu := await client.receive()) is not None:
            assert isinstance(pdu, DeliverSm)
            received.append(pdu)
            await client.send(DeliverSmResp(sequence_number=pdu.sequence_number))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen, first)
        nursery.start_soon(listen, second)
        await eventually(backend, lambda: backend.delivered_ids == [receipt_id])
        # Give a duplicate every chance to arrive before looking.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        nursery.cancel_scope.cancel()
    assert len(received) == 1


async def test_a_generic_nack_to_a_deliver_sm_counts_as_a_refusal(
    esme: EsmeFactory, backend: MemoryBackend
) -> None:
    receipt_id = backend.add_outbound(1000, RECEIPT)
    client = await esme()
    await client.bind(BindReceiver)
    pdu = await client.receive()
    assert isinstance(pdu, DeliverSm)
    await client.send(
        GenericNack(
            sequence_number=pdu.sequence_number, command_status=CommandStatus.ESME_RINVCMDID
        )
    )
    await eventually(backend, lambda: bool(backend.failures))
    assert backend.failures == [(receipt_id, CommandStatus.ESME_RINVCMDID)]
    assert receipt_id in backend.outbox
