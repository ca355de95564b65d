"""The SMPP door over real sockets on 127.0.0.1: a real third-party ESME (smpplib, its blocking
client run in a worker thread) and raw PDUs, against an in-memory SmppBackend (dicts, Events)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import trio

from edgegw.smpp import (
    Account,
    AccountTable,
    BindMode,
    CommandStatus,
    MessageState,
    MobileOriginated,
    Outbound,
    QueryResult,
    Receipt,
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
    Pdu,
    SmppDecoder,
    Unbind,
    UnbindResp,
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
        self._ids = itertools.count(1)
        self._outbox_ids = itertools.count(1)
        self._signals: dict[int, trio.Event] = {}
        self.changed = trio.Event()

    def touch(self) -> None:
        """Wake tests waiting for the backend's state to change."""
        self.changed.set()
        self.changed = trio.Event()

    async def authenticate(self, system_id: str, password: str, mode: BindMode) -> Account:
        account = self.accounts.authenticate(system_id, password)
        self.binds.append((system_id, mode))
        return account

    async def submit(self, account: Account, submission: Submission) -> str:
        if self.crash_submits:
            raise RuntimeError("secret internal detail")
        if self.refuse_with is not None:
            raise SubmitRefused(self.refuse_with, "refused by the test")
        self.in_commit += 1
        self.touch()
        try:
            if self.commit_gate is not None:
                await self.commit_gate.wait()
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self.in_commit -= 1
        message_id = f"M{next(self._ids):06d}"
        self.messages[message_id] = StoredMessage(
            service_id=account.service_id, submission=submission
        )
        self.submitted.append((account, submission))
        self.touch()
        return message_id

    async def query(self, account: Account, message_id: str) -> QueryResult | None:
        stored = self.messages.get(message_id)
        if stored is None or stored.service_id != account.service_id:
            return None
        return QueryResult(
            message_state=stored.state, final_date=stored.final_date, error_code=stored.error_code
        )

    async def cancel(self, account: Account, message_id: str) -> bool:
        stored = self.messages.get(message_id)
        if stored is None or stored.service_id != account.service_id:
            return False
        if stored.state is not MessageState.ENROUTE:
            return False
        stored.state = MessageState.DELETED
        return True

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

    async def failed(self, outbound_id: int, command_status: int) -> None:
        await trio.lowlevel.checkpoint()
        self.failures.append((outbound_id, command_status))
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


def connect(port: int) -> smpplib.client.Client:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    return client


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
        values: dict[str, Any] = {"system_id": "demo", "password": "demo"}
        values.update(fields)
        await self.send(cls(sequence_number=1, **values))
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
        ("nobody", "demo", CommandStatus.ESME_RINVSYSID),
    ],
)
async def test_wrong_credentials_are_refused(
    smpp_port: int, system_id: str, password: str, status: CommandStatus
) -> None:
    def session() -> int:
        client = connect(smpp_port)
        try:
            client.bind_transmitter(system_id=system_id, password=password)
        except smpplib.exceptions.PDUError as exc:
            return int(exc.args[1])
        finally:
            client.disconnect()
        return 0

    assert await trio.to_thread.run_sync(session) == status


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
