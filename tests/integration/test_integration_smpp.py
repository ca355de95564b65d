"""The SMPP door of a running gateway, driven by a real third-party ESME (smpplib, blocking, in a
worker thread): binds, GSM and UCS-2 submits and long messages all three ways reaching the
simulated modem, receipts after its status reports, MO as deliver_sm, receipts kept across a
restart, query_sm and cancel_sm (the latter with our own codec: smpplib has no cancel_sm)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import smpplib.client
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp
import trio
from support.db import read_only
from support.inbound import SCTS
from support.smpp import bind_status, connect, submit_all

from drivers.gsm import EncodedPart, build_deliver, decode_gsm, encode_message
from drivers.simulator import SentSms
from edgegw.config import Config
from edgegw.gateway import Gateway
from edgegw.model import MessageState
from edgegw.smpp.constants import CommandStatus
from edgegw.smpp.constants import MessageState as SmppState
from edgegw.smpp.pdu import (
    NEED_DATA,
    BindTransceiver,
    CancelSm,
    CancelSmResp,
    MultiDestination,
    Pdu,
    ReplaceSm,
    ReplaceSmResp,
    SmppDecoder,
    SubmitMulti,
    SubmitMultiResp,
)
from edgegw.smpp.pdu import encode as encode_pdu

LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 5  # 225 characters: 2 parts
SOURCE = {"source_addr_ton": 5, "source_addr_npi": 0, "source_addr": "EdgeGW"}


def smpp_port(gateway: Gateway) -> int:
    assert gateway.bound is not None and gateway.bound.smpp_port is not None
    return gateway.bound.smpp_port


def to(number: str) -> dict[str, Any]:
    return {**SOURCE, "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": number}


def receive(port: int, count: int, submits: Sequence[dict[str, Any]] = ()) -> list[Any]:
    """Bind as a transceiver, send `submits`, then acknowledge and return `count` deliver_sm."""
    client = connect(port)
    received: list[Any] = []
    try:
        client.bind_transceiver(system_id="demo", password="demo")
        for fields in submits:
            client.send_message(**fields)
        while len(received) < count:
            pdu = client.read_pdu()
            if pdu.command != "deliver_sm":
                continue
            received.append(pdu)
            answer = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
            answer.sequence = pdu.sequence
            client.send_pdu(answer)
        client.unbind()
        return received
    finally:
        client.disconnect()


async def sent_to(gateway: Gateway, recipient: str, parts: int) -> list[SentSms]:
    """The SMS the simulated network took for `recipient`, once there are `parts` of them."""
    network = gateway.simulators["sim0"].network
    with trio.fail_after(20):
        while True:
            sent = [sms for sms in network.sent if sms.recipient == recipient]
            if len(sent) >= parts:
                return sent
            await trio.sleep(0.02)


@pytest.mark.parametrize("mode", ["transmitter", "receiver", "transceiver"])
async def test_bind_in_each_mode_with_the_demo_account(gateway: Gateway, mode: str) -> None:
    def session() -> int:
        client = connect(smpp_port(gateway))
        try:
            response = getattr(client, f"bind_{mode}")(system_id="demo", password="demo")
            client.unbind()
            return int(response.status)
        finally:
            client.disconnect()

    assert await trio.to_thread.run_sync(session) == CommandStatus.ESME_ROK


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        ("demo", "wrong", CommandStatus.ESME_RINVPASWD),
        # The same status as a wrong password: accounts cannot be enumerated.
        ("nobody", "demo", CommandStatus.ESME_RINVPASWD),
    ],
)
async def test_wrong_credentials_are_refused(
    gateway: Gateway, system_id: str, password: str, status: int
) -> None:
    port = smpp_port(gateway)
    refusal = await trio.to_thread.run_sync(
        functools.partial(bind_status, port, system_id, password, mode="transceiver")
    )
    assert refusal == status


async def test_gsm_and_ucs2_text_reach_the_modem(gateway: Gateway) -> None:
    gsm, ucs2 = "Hello @ world {€}!", "Привет, мир 😀"
    submits = [
        {**to("4741000001"), "short_message": smpplib.gsm.gsm_encode(gsm), "data_coding": 0},
        {**to("4741000002"), "short_message": ucs2.encode("utf-16-be"), "data_coding": 8},
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port(gateway), submits)
    assert [status for status, _ in results] == [0, 0]
    (gsm_sms,) = await sent_to(gateway, "+4741000001", 1)
    (ucs2_sms,) = await sent_to(gateway, "+4741000002", 1)
    assert (gsm_sms.text, gsm_sms.dcs) == (gsm, 0x00)
    assert (ucs2_sms.text, ucs2_sms.dcs) == (ucs2, 0x08)
    for _, message_id in results:
        record = await gateway.store.message(message_id)
        assert record is not None and record.modem == "sim0"


async def test_long_messages_all_three_ways_reach_the_modem(gateway: Gateway) -> None:
    udh_parts, coding, esm_class = smpplib.gsm.make_parts(LONG_TEXT)
    septets = smpplib.gsm.gsm_encode(LONG_TEXT)
    submits = [
        {**to("4741000011"), "short_message": part, "data_coding": coding, "esm_class": esm_class}
        for part in udh_parts
    ]
    submits += [
        {
            **to("4741000012"),
            "short_message": chunk,
            "sar_msg_ref_num": 0x0102,
            "sar_total_segments": 2,
            "sar_segment_seqnum": seq,
        }
        for seq, chunk in enumerate([septets[:152], septets[152:]], start=1)
    ]
    submits.append({**to("4741000013"), "short_message": b"", "message_payload": septets})
    results = await trio.to_thread.run_sync(submit_all, smpp_port(gateway), submits)
    assert [status for status, _ in results] == [0] * 5

    # Client-side parts are two messages, which may leave in either order (a retried send goes
    # after the other): the handset puts them together by their UDH.
    by_udh = sorted(await sent_to(gateway, "+4741000011", 2), key=lambda sms: sms.udh)
    reference = udh_parts[0][3]
    assert [sms.concat for sms in by_udh] == [(reference, 2, 1), (reference, 2, 2)]
    by_sar = sorted(await sent_to(gateway, "+4741000012", 2), key=lambda sms: sms.udh)
    assert [sms.udh for sms in by_sar] == [bytes((6, 8, 4, 1, 2, 2, seq)) for seq in (1, 2)]
    by_payload = await sent_to(gateway, "+4741000013", 2)
    assert [sms.concat[1:] if sms.concat else None for sms in by_payload] == [(2, 1), (2, 2)]
    for sent in (by_udh, by_sar, by_payload):
        assert "".join(sms.text for sms in sent) == LONG_TEXT
    # Client-side parts are one stored message each; message_payload is one of two parts.
    assert len({message_id for _, message_id in results}) == 5


async def test_receipts_follow_the_status_reports(gateway: Gateway) -> None:
    network = gateway.simulators["sim0"].network
    network.set_outcome("+4741000021", 0x00, delay=0.2)
    network.set_outcome("+4741000022", 0x49, delay=0.2)  # SM does not exist: permanent failure
    submits = [
        {**to("4741000021"), "short_message": b"Receipt, please", "registered_delivery": 1},
        {**to("4741000022"), "short_message": b"This one fails", "registered_delivery": 2},
        # Failure-only: this one is delivered, so no receipt ever comes for it.
        {**to("4741000021"), "short_message": b"Quiet", "registered_delivery": 2},
    ]
    receipts = await trio.to_thread.run_sync(receive, smpp_port(gateway), 2, submits)
    by_id = {pdu.receipted_message_id.decode(): pdu for pdu in receipts}
    assert len(by_id) == 2
    texts = {key: pdu.short_message.decode() for key, pdu in by_id.items()}
    for message_id, pdu in by_id.items():
        assert int(pdu.esm_class) == 0x04
        record = await gateway.store.message(message_id)
        assert record is not None
        if record.state is MessageState.DELIVERED:
            assert int(pdu.message_state) == SmppState.DELIVERED
            assert " stat:DELIVRD err:000 text:Receipt, please" in texts[message_id]
            assert pdu.source_addr.decode() == "4741000021"
        else:
            assert record.state is MessageState.FAILED
            assert int(pdu.message_state) == SmppState.UNDELIVERABLE
            assert " stat:UNDELIV err:351 text:This one fails" in texts[message_id]
        assert texts[message_id].startswith(f"id:{message_id} sub:001 ")
        assert pdu.destination_addr.decode() == "EdgeGW"


async def test_a_receipt_returns_the_user_message_reference_of_its_submit_sm(
    gateway: Gateway,
) -> None:
    """SMPP 3.4 4.6.1: the deliver_sm of a receipt carries the user_message_reference
    (5.3.2.17) of the original message; a submit_sm without one gets a receipt without it."""
    network = gateway.simulators["sim0"].network
    for recipient in ("+4741000091", "+4741000092"):
        network.set_outcome(recipient, 0x00, delay=0.1)
    submits = [
        {
            **to("4741000091"),
            "short_message": b"With a reference",
            "registered_delivery": 1,
            "user_message_reference": 0xBEEF,
        },
        {**to("4741000092"), "short_message": b"Without", "registered_delivery": 1},
    ]
    receipts = await trio.to_thread.run_sync(receive, smpp_port(gateway), 2, submits)
    by_recipient = {pdu.source_addr.decode(): pdu for pdu in receipts}
    assert by_recipient["4741000091"].user_message_reference == 0xBEEF
    assert by_recipient["4741000092"].user_message_reference is None
    assert all(int(pdu.esm_class) == 0x04 for pdu in receipts)


@pytest.fixture
def mo_config(config: Config) -> Config:
    services = [msgspec.structs.replace(service, mo_smpp=True) for service in config.services]
    return msgspec.structs.replace(config, services=services)


@pytest.fixture
async def mo_gateway(mo_config: Config, nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    gateway = Gateway(mo_config)
    await nursery.start(gateway.run)
    yield gateway
    gateway.stop()


async def test_an_mo_arrives_as_deliver_sm(mo_gateway: Gateway) -> None:
    await mo_gateway.simulators["sim0"].deliver_mo("+4741000000", "hello")
    (mo,) = await trio.to_thread.run_sync(receive, smpp_port(mo_gateway), 1)
    assert int(mo.esm_class) == 0
    assert decode_gsm(mo.short_message) == "hello"
    assert (int(mo.source_addr_ton), mo.source_addr.decode()) == (1, "4741000000")


async def test_an_eight_bit_mo_arrives_as_its_octets(mo_gateway: Gateway) -> None:
    """An MO of 8-bit data (TP-DCS 0x04) reaches the ESME as its octets with data_coding 4
    (SMPP 3.4 5.2.19), not as the text of the hex that GET /api/inbound shows it as."""
    octets = bytes.fromhex("cafe0042ff")
    deliver = build_deliver(
        "+4741000000", EncodedPart(dcs=0x04, udh=b"", payload=octets), timestamp=SCTS
    )
    await mo_gateway.simulators["sim0"].deliver_mo_pdu(deliver)
    (mo,) = await trio.to_thread.run_sync(receive, smpp_port(mo_gateway), 1)
    assert (int(mo.esm_class), int(mo.data_coding), mo.short_message) == (0, 4, octets)


async def run_until(config: Config, body: Callable[[Gateway], Awaitable[None]]) -> None:
    """Run a gateway on `config` for as long as `body` takes, then stop it and wait."""
    gateway = Gateway(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await body(gateway)
        gateway.stop()


async def test_an_undelivered_receipt_arrives_after_a_restart(config: Config) -> None:
    message_ids: list[str] = []

    async def before(gateway: Gateway) -> None:
        gateway.simulators["sim0"].network.set_outcome("+4741000031", 0x00, delay=0.1)
        submit = {**to("4741000031"), "short_message": b"Before", "registered_delivery": 1}
        [(status, message_id)] = await trio.to_thread.run_sync(
            submit_all, smpp_port(gateway), [submit]
        )
        assert status == 0
        message_ids.append(message_id)
        with trio.fail_after(20):
            while True:
                record = await gateway.store.message(message_id)
                if record is not None and record.state is MessageState.DELIVERED:
                    break
                await trio.sleep(0.05)

    async def after(gateway: Gateway) -> None:
        (receipt,) = await trio.to_thread.run_sync(receive, smpp_port(gateway), 1)
        assert receipt.receipted_message_id.decode() == message_ids[0]
        assert b"stat:DELIVRD" in receipt.short_message

    await run_until(config, before)  # no receiver was bound: the receipt waits in the store
    await run_until(config, after)


async def test_an_mo_stored_incomplete_at_start_up_goes_by_smpp_as_the_config_now_says(
    config: Config, mo_config: Config
) -> None:
    """A part kept waiting for the rest of its message while the gateway was down: the sweep
    at the next start stores it incomplete, and a service set to mo_smpp meanwhile gets it as
    a deliver_sm, as it gets every MO stored after that start."""
    first = encode_message(LONG_TEXT, reference=9).parts[0]
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)

    async def before(gateway: Gateway) -> None:
        await gateway.simulators["sim0"].deliver_mo_pdu(
            build_deliver("+4741000000", first, timestamp=stamp)
        )
        with trio.fail_after(20):
            while gateway.inbound.received < 1:  # noqa: ASYNC110
                await trio.sleep(0.05)

    async def after(gateway: Gateway) -> None:
        (mo,) = await trio.to_thread.run_sync(receive, smpp_port(gateway), 1)
        assert decode_gsm(mo.short_message) == LONG_TEXT[:153]

    await run_until(config, before)  # mo_smpp off: the part waits for its second part
    inbound = msgspec.structs.replace(mo_config.inbound, reassembly_timeout=0.001)
    await run_until(msgspec.structs.replace(mo_config, inbound=inbound), after)


class RawEsme:
    """A transceiver on our own codec, for cancel_sm (which smpplib cannot send)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = SmppDecoder()
        self.sequence = 0

    async def request(self, kind: type[Pdu], **fields: Any) -> Pdu:
        self.sequence += 1
        await self.stream.send_all(encode_pdu(kind(sequence_number=self.sequence, **fields)))
        while True:
            answer = self.decoder.next_pdu()
            if answer is not NEED_DATA:
                assert isinstance(answer, Pdu)
                return answer
            data = await self.stream.receive_some(65536)
            assert data, "the gateway closed the session"
            self.decoder.receive_data(data)


@contextlib.asynccontextmanager
async def bound_esme(port: int) -> AsyncIterator[RawEsme]:
    """A RawEsme bound as a transceiver with the demo account."""
    esme = RawEsme(await trio.open_tcp_stream("127.0.0.1", port))
    async with esme.stream:
        bound = await esme.request(BindTransceiver, system_id="demo", password="demo")
        assert bound.command_status == 0
        yield esme


async def test_query_sm_and_cancel_sm_of_a_scheduled_message(gateway: Gateway) -> None:
    port = smpp_port(gateway)
    submit = {
        **to("4741000041"),
        "short_message": b"Tomorrow",
        "schedule_delivery_time": "000001000000000R",  # one day from now
    }
    [(status, message_id)] = await trio.to_thread.run_sync(submit_all, port, [submit])
    assert status == 0

    def query() -> tuple[int, int]:
        client = connect(port)
        try:
            client.bind_transceiver(system_id="demo", password="demo")
            client.query_message(message_id=message_id, **SOURCE)
            answer = client.read_pdu()
            return int(answer.status), int(answer.message_state)
        finally:
            client.disconnect()

    assert await trio.to_thread.run_sync(query) == (0, SmppState.ENROUTE)
    esme = RawEsme(await trio.open_tcp_stream("127.0.0.1", port))
    async with esme.stream:
        bound = await esme.request(BindTransceiver, system_id="demo", password="demo")
        assert bound.command_status == 0
        cancels = [await esme.request(CancelSm, message_id=message_id) for _ in range(2)]
        unknown = await esme.request(CancelSm, message_id="nosuchmessage")
    assert all(isinstance(answer, CancelSmResp) for answer in [*cancels, unknown])
    assert [answer.command_status for answer in cancels] == [
        CommandStatus.ESME_ROK,
        CommandStatus.ESME_RCANCELFAIL,  # cancelled already
    ]
    assert unknown.command_status == CommandStatus.ESME_RCANCELFAIL
    assert await trio.to_thread.run_sync(query) == (0, SmppState.DELETED)
    record = await gateway.store.message(message_id)
    assert record is not None and record.state is MessageState.CANCELLED
    assert not [sms for sms in gateway.simulators["sim0"].network.sent if sms.text == "Tomorrow"]


async def test_replace_sm_gives_a_queued_message_a_new_text_split_again(gateway: Gateway) -> None:
    """SMPP 3.4 4.10 through the door (smpplib submits; it has no replace_sm, so the replace
    goes over our own codec, as cancel_sm does above): a scheduled message takes the new text
    and receipt request, its parts split again, and goes out with that text once the new
    schedule says so; an id the service does not have, or has from another source, is
    ESME_RINVMSGID; a message past replacing (cancelled, sent) is ESME_RREPLACEFAIL."""
    port = smpp_port(gateway)
    tomorrow = "000001000000000R"
    submits = [
        {**to("4741000051"), "short_message": b"Old text", "schedule_delivery_time": tomorrow},
        {**to("4741000052"), "short_message": b"Cancelled", "schedule_delivery_time": tomorrow},
    ]
    [(first, message_id), (second, cancelled_id)] = await trio.to_thread.run_sync(
        submit_all, port, submits
    )
    assert first == second == 0
    esme = RawEsme(await trio.open_tcp_stream("127.0.0.1", port))
    async with esme.stream:
        bound = await esme.request(BindTransceiver, system_id="demo", password="demo")
        assert bound.command_status == 0

        async def replace(message_id: str, text: bytes, **fields: Any) -> int:
            fields = {**SOURCE, **fields}
            answer = await esme.request(
                ReplaceSm, message_id=message_id, short_message=text, **fields
            )
            assert isinstance(answer, ReplaceSmResp)
            return answer.command_status

        # Still scheduled for tomorrow: the text, receipt request and validity (until the day
        # after tomorrow) change, the schedule not.
        two_days = "000002000000000R"
        changed = await replace(
            message_id, LONG_TEXT.encode(), registered_delivery=1, validity_period=two_days
        )
        assert changed == 0
        view = await gateway.store.message_view(1000, message_id)
        assert view is not None and view.state is MessageState.QUEUED
        assert [part.state for part in view.parts] == [MessageState.QUEUED] * 2
        assert "replaced by the ESME (replace_sm), 2 parts" in [e.detail for e in view.events]
        with read_only(Path(gateway.config.gateway.store)) as conn:
            now = gateway.clock.now()
            row = conn.execute(
                "SELECT content, registered_delivery, round((not_before - ?) / 3600),"
                " round((expires_at - ?) / 3600) FROM messages WHERE id = ?",
                (now, now, message_id),
            ).fetchone()
        assert row == (LONG_TEXT, 1, 24, 48)
        assert await replace("nosuchmessage", b"x") == CommandStatus.ESME_RINVMSGID
        other = await replace(message_id, b"x", source_addr_ton=5, source_addr="Other")
        assert other == CommandStatus.ESME_RINVMSGID
        assert (await esme.request(CancelSm, message_id=cancelled_id)).command_status == 0
        assert await replace(cancelled_id, b"x") == CommandStatus.ESME_RREPLACEFAIL
        # Now rather than tomorrow: it goes, with the replaced text in two parts.
        at_once = "000000000000000R"
        assert await replace(message_id, LONG_TEXT.encode(), schedule_delivery_time=at_once) == 0
        sent = await sent_to(gateway, "+4741000051", 2)
        assert "".join(sms.text for sms in sent) == LONG_TEXT
        # Handed to the modem (sending or sent by now): past replacing.
        assert await replace(message_id, b"Too late") == CommandStatus.ESME_RREPLACEFAIL
    assert not [sms for sms in gateway.simulators["sim0"].network.sent if "Old" in sms.text]


async def test_a_replace_sm_between_the_dispatchers_read_and_its_claim_holds_the_message(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replace_sm that moves a message due now to tomorrow, committed after the dispatcher
    read the message as due and before it claims it: the claim finds it no longer due and
    leaves it queued, with its new text, for tomorrow. (The claim took it on `state =
    'queued'` alone, and the new text went out at once.)"""
    port = smpp_port(gateway)
    store = gateway.store
    esme = RawEsme(await trio.open_tcp_stream("127.0.0.1", port))
    replaced: list[int] = []
    claimed: list[list[str]] = []
    first_claim = trio.Event()
    read_due, claim = store.due, store.claim

    async def due_then_replaced(*args: Any, **kwargs: Any) -> Any:
        found = await read_due(*args, **kwargs)
        if found and not replaced:
            [[message]] = found.values()
            answer = await esme.request(
                ReplaceSm,
                message_id=message.id,
                short_message=b"New text, tomorrow",
                schedule_delivery_time="000001000000000R",
                **SOURCE,
            )
            replaced.append(answer.command_status)
        return found

    async def claim_seen(*args: Any, **kwargs: Any) -> Any:
        claims = await claim(*args, **kwargs)
        claimed.append([c.id for c in claims])
        first_claim.set()
        return claims

    async with esme.stream:
        bound = await esme.request(BindTransceiver, system_id="demo", password="demo")
        assert bound.command_status == 0
        monkeypatch.setattr(store, "due", due_then_replaced)
        monkeypatch.setattr(store, "claim", claim_seen)
        submit = {**to("4741000061"), "short_message": b"Old text, now"}
        [(status, message_id)] = await trio.to_thread.run_sync(submit_all, port, [submit])
        assert status == 0
        with trio.fail_after(10):
            await first_claim.wait()
    assert replaced == [CommandStatus.ESME_ROK]
    assert claimed[0] == []
    record = await store.message(message_id)
    assert record is not None and record.state is MessageState.QUEUED
    assert record.not_before == pytest.approx(gateway.clock.now() + 86400, abs=60)
    await trio.sleep(1)
    assert not [sms for sms in gateway.simulators["sim0"].network.sent if "text" in sms.text]


async def test_submit_multi_sends_to_its_good_destinations_and_lists_the_others(
    gateway: Gateway,
) -> None:
    """SMPP 3.4 section 4.5: one message per SME destination; a Norwegian landline, a number
    too short and a distribution list come back in unsuccess_sme, and the rest still go."""
    async with bound_esme(smpp_port(gateway)) as esme:
        answer = await esme.request(
            SubmitMulti,
            **SOURCE,
            dest_addresses=(
                MultiDestination(1, 1, 1, "4741000051"),
                MultiDestination(1, 1, 1, "4722000000"),
                MultiDestination(2, 0, 0, "friends"),
                MultiDestination(1, 1, 1, "4713"),
                MultiDestination(1, 1, 1, "4741000052"),
            ),
            short_message=b"To many",
        )
    assert isinstance(answer, SubmitMultiResp)
    assert answer.command_status == CommandStatus.ESME_ROK
    assert sorted((u.address, u.error_status_code) for u in answer.unsuccess_smes) == [
        ("4713", CommandStatus.ESME_RINVDSTADR),
        ("4722000000", CommandStatus.ESME_RINVDSTADR),
        ("friends", CommandStatus.ESME_RCNTSUBDL),
    ]
    for recipient in ("+4741000051", "+4741000052"):
        (sms,) = await sent_to(gateway, recipient, 1)
        assert sms.text == "To many"
    stored = await gateway.store.read(
        lambda conn: conn.execute("SELECT recipient FROM messages ORDER BY recipient").fetchall()
    )
    assert stored == [("+4741000051",), ("+4741000052",)]


async def test_a_replace_type_protocol_id_goes_out_as_its_tp_pid_and_others_are_refused(
    gateway: Gateway,
) -> None:
    """SMPP 3.4 5.2.13: protocol_id is the TP-PID. "Replace short message type 1" (0x41, TS
    23.040 9.2.3.9) reaches the network as such, 0 as a plain SMS; type 0, (U)SIM data download
    and telematic interworking, which the gateway does not send, are refused, not sent plain."""
    refused = [0x40, 0x7F, 0x20, 0x48]
    submits = [
        {**to("4741000071"), "short_message": b"Replace me", "protocol_id": 0x41},
        {**to("4741000072"), "short_message": b"Plain", "protocol_id": 0},
        *({**to("4741000073"), "short_message": b"No", "protocol_id": pid} for pid in refused),
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port(gateway), submits)
    assert [status for status, _ in results] == [0, 0] + [CommandStatus.ESME_RSUBMITFAIL] * 4
    (replacing,) = await sent_to(gateway, "+4741000071", 1)
    (plain,) = await sent_to(gateway, "+4741000072", 1)
    assert (replacing.text, replacing.pid) == ("Replace me", 0x41)
    assert (plain.text, plain.pid) == ("Plain", 0)
    stored = await gateway.store.read(
        lambda conn: conn.execute(
            "SELECT recipient, pid FROM messages ORDER BY recipient"
        ).fetchall()
    )
    assert stored == [("+4741000071", 0x41), ("+4741000072", 0)]


async def test_a_replace_type_stays_with_its_message_across_a_restart_and_a_replace_sm(
    config: Config,
) -> None:
    """The TP-PID is the stored message's: a message scheduled for tomorrow with protocol_id
    0x47, whose text a replace_sm (which carries no protocol_id) changes after a restart and
    sends at once, still goes out as "replace short message type 7"."""
    message_ids: list[str] = []

    async def before(gateway: Gateway) -> None:
        submit = {
            **to("4741000081"),
            "short_message": b"Old text",
            "protocol_id": 0x47,
            "schedule_delivery_time": "000001000000000R",
        }
        [(status, message_id)] = await trio.to_thread.run_sync(
            submit_all, smpp_port(gateway), [submit]
        )
        assert status == 0
        message_ids.append(message_id)

    async def after(gateway: Gateway) -> None:
        async with bound_esme(smpp_port(gateway)) as esme:
            answer = await esme.request(
                ReplaceSm,
                message_id=message_ids[0],
                short_message=b"New text",
                schedule_delivery_time="000000000000000R",
                **SOURCE,
            )
        assert answer.command_status == CommandStatus.ESME_ROK
        (sms,) = await sent_to(gateway, "+4741000081", 1)
        assert (sms.text, sms.pid) == ("New text", 0x47)

    await run_until(config, before)
    await run_until(config, after)


async def test_ports_reach_every_part_and_a_lone_source_port_is_refused(gateway: Gateway) -> None:
    """SMPP 3.4 5.3.2.20/5.3.2.21: destination_port and source_port go out as the application
    port IE (TS 23.040 9.2.3.24.4) in every part beside the concatenation IE, which leaves 146
    septets a part; a destination_port alone has originator port 0. A source_port without a
    destination_port names no application and is refused."""
    three_parts = "".join(chr(ord("a") + seq) * 146 for seq in range(3))  # exactly 3 parts
    submits = [
        {
            **to("4741000091"),
            "short_message": b"",
            "message_payload": smpplib.gsm.gsm_encode(three_parts),
            "destination_port": 2948,
            "source_port": 9200,
        },
        {
            **to("4741000092"),
            "short_message": "Привет".encode("utf-16-be"),
            "data_coding": 8,
            "destination_port": 5000,
        },
        {**to("4741000093"), "short_message": b"No", "source_port": 9200},
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port(gateway), submits)
    assert [status for status, _ in results] == [0, 0, CommandStatus.ESME_RMISSINGOPTPARAM]
    parts = sorted(await sent_to(gateway, "+4741000091", 3), key=lambda sms: sms.udh)
    assert [sms.text for sms in parts] == [three_parts[i : i + 146] for i in (0, 146, 292)]
    assert [sms.concat[1:] if sms.concat else None for sms in parts] == [(3, 1), (3, 2), (3, 3)]
    assert {sms.ports for sms in parts} == {(2948, 9200)}
    (ucs2,) = await sent_to(gateway, "+4741000092", 1)
    assert (ucs2.text, ucs2.ports) == ("Привет", (5000, 0))
    assert not [sms for sms in gateway.simulators["sim0"].network.sent if sms.text == "No"]


async def test_a_replace_sm_keeps_the_ports_of_its_submit_sm(gateway: Gateway) -> None:
    """replace_sm (SMPP 3.4 4.10) carries no ports: a one-part message sent to an application
    port, scheduled for tomorrow, replaced by a two-part text due at once, sends both parts to
    that port, as the submit_sm asked; it is no ESME's own UDH to refuse the replace for."""
    submit = {
        **to("4741000095"),
        "short_message": b"Old text",
        "schedule_delivery_time": "000001000000000R",
        "destination_port": 2948,
        "source_port": 9200,
    }
    [(status, message_id)] = await trio.to_thread.run_sync(submit_all, smpp_port(gateway), [submit])
    assert status == 0
    async with bound_esme(smpp_port(gateway)) as esme:
        answer = await esme.request(
            ReplaceSm,
            **SOURCE,
            message_id=message_id,
            short_message=LONG_TEXT.encode(),
            schedule_delivery_time="000000000000000R",
        )
        assert isinstance(answer, ReplaceSmResp) and answer.command_status == 0
    sent = sorted(await sent_to(gateway, "+4741000095", 2), key=lambda sms: sms.udh)
    assert "".join(sms.text for sms in sent) == LONG_TEXT
    assert [sms.ports for sms in sent] == [(2948, 9200)] * 2


async def test_dest_addr_subunit_is_the_message_class_of_every_part(gateway: Gateway) -> None:
    """SMPP 3.4 5.3.2.1: dest_addr_subunit 1 (MS display), 2 (mobile equipment), 3 (SIM) and 4
    (external unit) are the TP-DCS message classes 0-3 (TS 23.038 4), set in every part in the
    DCS of the text's alphabet, and kept by a replace_sm. A reserved subunit, or one whose
    class the data_coding contradicts, is refused rather than sent another way."""
    tomorrow, at_once = "000001000000000R", "000000000000000R"
    submits = [
        {**to("4741000101"), "short_message": LONG_TEXT.encode(), "dest_addr_subunit": 3},
        {
            **to("4741000102"),
            "short_message": "Привет".encode("utf-16-be"),
            "data_coding": 8,
            "dest_addr_subunit": 1,
        },
        {
            **to("4741000103"),
            "short_message": b"\x01\x02",
            "data_coding": 4,
            "dest_addr_subunit": 2,
        },
        {
            **to("4741000104"),
            "short_message": b"Old text",
            "schedule_delivery_time": tomorrow,
            "dest_addr_subunit": 4,
        },
        {**to("4741000105"), "short_message": b"No", "dest_addr_subunit": 5},
        {**to("4741000105"), "short_message": b"No", "data_coding": 0xF1, "dest_addr_subunit": 3},
    ]
    results = await trio.to_thread.run_sync(submit_all, smpp_port(gateway), submits)
    refused = CommandStatus.ESME_RINVOPTPARAMVAL
    assert [status for status, _ in results] == [0, 0, 0, 0, refused, refused]
    async with bound_esme(smpp_port(gateway)) as esme:
        answer = await esme.request(
            ReplaceSm,
            **SOURCE,
            message_id=results[3][1],
            short_message=b"New text",
            schedule_delivery_time=at_once,
        )
        assert isinstance(answer, ReplaceSmResp) and answer.command_status == 0
    sim = await sent_to(gateway, "+4741000101", 2)
    assert {(sms.message_class, sms.dcs) for sms in sim} == {(2, 0x12)}
    assert "".join(sms.text for sms in sorted(sim, key=lambda sms: sms.udh)) == LONG_TEXT
    (flash,) = await sent_to(gateway, "+4741000102", 1)
    assert (flash.text, flash.message_class, flash.dcs) == ("Привет", 0, 0x18)
    (equipment,) = await sent_to(gateway, "+4741000103", 1)
    assert (equipment.payload, equipment.message_class, equipment.dcs) == (b"\x01\x02", 1, 0x15)
    (replaced,) = await sent_to(gateway, "+4741000104", 1)
    assert (replaced.text, replaced.message_class, replaced.dcs) == ("New text", 3, 0x13)
    network = gateway.simulators["sim0"].network
    assert not [sms for sms in network.sent if sms.recipient == "+4741000105"]
