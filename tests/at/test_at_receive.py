"""Receiving with the AT driver: golden transcripts of real modems' indications and listings,
the storage sweep, acknowledge, +CNMI fallbacks, and that no inbound event is ever dropped.

Scripted peers on memory streams, trio's virtual clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from support.scripted_modem import inbound, resync_answer

from drivers.at import AtModem, AtOptions
from drivers.events import (
    InboundSms,
    ModemEvent,
    ModemState,
    RegistrationChanged,
    StatusReportReceived,
    StorageRead,
)
from drivers.gsm import build_deliver, build_status_report, decode_text, encode_message, join_sca
from drivers.transport import TransportError

# Golden transcripts of the driver; the framer's vectors are the ones directly in vectors/at.
VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "at" / "driver"
ALL_VECTORS = {
    path.stem: json.loads(path.read_text(encoding="utf-8")) for path in VECTORS.glob("*.json")
}
TRANSCRIPTS = sorted(ALL_VECTORS)
OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
WHEN = dt.datetime(2024, 5, 17, 14, 2, 8, tzinfo=dt.timezone(dt.timedelta(hours=1)))

Answer = bytes | Callable[[str], bytes | None] | None


def base_answers() -> dict[str, Answer]:
    return {
        "AT": OK,
        "ATE0": OK,
        "AT+CMEE=1": OK,
        "AT+CGSN": b"\r\n866191037123456\r\n" + OK,
        "AT+CCID": b"\r\n8947080012345678901\r\n" + OK,
        "AT+CPIN?": b"\r\n+CPIN: READY\r\n" + OK,
        "AT+CMGF=0": OK,
        "AT+CPMS=?": b'\r\n+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")\r\n' + OK,
        'AT+CPMS="SM","SM","SM"': b"\r\n+CPMS: 0,30,0,30,0,30\r\n" + OK,
        "AT+CNMI=2,1,0,2,0": OK,
        "AT+CSQ": b"\r\n+CSQ: 20,0\r\n" + OK,
        "AT+CREG?": b"\r\n+CREG: 2,1\r\n" + OK,
        "AT+CREG=2": OK,
        "AT+CMGL=4": OK,
    }


def stored_pdu(originator: str, text: str, smsc: str = "+4790002100") -> bytes:
    (part,) = encode_message(text).parts
    return join_sca(smsc, build_deliver(originator, part, timestamp=WHEN))


def stored_report(reference: int, recipient: str) -> bytes:
    tpdu = build_status_report(
        reference, recipient, sc_timestamp=WHEN, discharge_time=WHEN, status=0
    )
    return join_sca("+4790002100", tpdu)


class Storage:
    """A message storage that outlives a connection, answering +CMGR, +CMGL and +CMGD."""

    def __init__(self) -> None:
        self.slots: dict[int, tuple[int, bytes]] = {}

    def put(self, index: int, pdu: bytes, stat: int = 0) -> None:
        self.slots[index] = (stat, pdu)

    def tpdu_length(self, pdu: bytes) -> int:
        return len(pdu) - pdu[0] - 1

    def answer(self, line: str) -> bytes | None:
        if line == "AT+CMGL=4":
            listing = b"".join(
                b"\r\n+CMGL: %d,%d,,%d\r\n%s"
                % (i, s, self.tpdu_length(p), p.hex().upper().encode())
                for i, (s, p) in sorted(self.slots.items())
            )
            return listing + b"\r\n" + OK
        if line.startswith("AT+CMGR="):
            slot = self.slots.get(int(line[8:]))
            if slot is None:
                return b"\r\n+CMS ERROR: 321\r\n"
            stat, pdu = slot
            return (
                b"\r\n+CMGR: %d,,%d\r\n%s\r\n"
                % (
                    stat,
                    self.tpdu_length(pdu),
                    pdu.hex().upper().encode(),
                )
                + OK
            )
        if line.startswith("AT+CMGD="):
            self.slots.pop(int(line[8:]), None)
            return OK
        return ERROR


class LosingStorage(Storage):
    """Deletes, but the OK of the first AT+CMGD is lost on the cable."""

    lost = 1

    def answer(self, line: str) -> bytes | None:
        reply = super().answer(line)
        if line.startswith("AT+CMGD=") and self.lost:
            self.lost -= 1
            return None
        return reply


class Peer:
    """A scripted modem: answers from a table (bytes, or a function of the line), records
    every command, and writes unsolicited output when told."""

    def __init__(self, answers: dict[str, Answer] | None = None, storage: Storage | None = None):
        self.answers = base_answers()
        self.answers.update(answers or {})
        self.storage = storage
        self.commands: list[str] = []
        self.stream: trio.abc.Stream | None = None

    async def serve(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            buffer = b""
            while data := await stream.receive_some(1024):
                buffer += data.replace(b"\x1b", b"")
                while (end := buffer.find(b"\r")) >= 0:
                    line, buffer = buffer[:end].decode().strip(), buffer[end + 1 :]
                    if line:
                        self.commands.append(line)
                        answer = self.answer(line)
                        if answer is not None:
                            await stream.send_all(answer)

    def answer(self, line: str) -> bytes | None:
        if self.storage is not None and line.startswith(("AT+CMGL", "AT+CMGR", "AT+CMGD")):
            return self.storage.answer(line)
        answer = self.answers.get(line, ERROR)
        return answer(line) if callable(answer) else answer

    async def unsolicited(self, data: bytes) -> None:
        assert self.stream is not None
        await self.stream.send_all(data)


class Bench:
    def __init__(self, nursery: trio.Nursery, peers: list[Peer]) -> None:
        self.nursery = nursery
        self.peers = peers
        self.opens: list[float] = []
        self.ports: list[trio.abc.Stream] = []

    async def open(self) -> trio.abc.Stream:
        self.opens.append(trio.current_time())
        if len(self.opens) > len(self.peers):
            raise TransportError("no such device")
        driver_end, peer_end = trio.testing.memory_stream_pair()
        self.ports.append(peer_end)
        self.nursery.start_soon(self.peers[len(self.opens) - 1].serve, peer_end)
        return driver_end


def make(bench: Bench, **options: Any) -> AtModem:
    settings: dict[str, Any] = {"health_interval": 0.0, "sweep_interval": 60.0, **options}
    return AtModem("m1", AtOptions(**settings), open_stream=bench.open)


def pending_events(modem: AtModem) -> list[ModemEvent]:
    """What the modem has emitted and nobody took yet."""
    found: list[ModemEvent] = []
    while True:
        try:
            found.append(modem.events.receive_nowait())
        except trio.WouldBlock:
            return found


def pending_inbound(modem: AtModem) -> list[InboundSms | StatusReportReceived]:
    return [
        event
        for event in pending_events(modem)
        if isinstance(event, InboundSms | StatusReportReceived)
    ]


async def settled(peer: Peer) -> None:
    """Let the start-up sweep finish (virtual time jumps while everything waits)."""
    await trio.sleep(1.0)
    assert "AT+CMGL=4" in peer.commands


def describe(event: InboundSms | StatusReportReceived) -> dict[str, object]:
    if isinstance(event, InboundSms):
        return {
            "type": "InboundSms",
            "storage": event.storage,
            "index": event.index,
            "smsc": event.smsc,
            "originator": event.deliver.originator,
            "text": decode_text(event.deliver.part),
        }
    return {
        "type": "StatusReportReceived",
        "storage": event.storage,
        "index": event.index,
        "smsc": event.smsc,
        "message_reference": event.report.message_reference,
        "recipient": event.report.recipient,
        "status": event.report.status,
    }


def direct_only(*, cnma: bytes | None = OK, csms: bytes = b"\r\n+CSMS: 1,1,1\r\n" + OK) -> Peer:
    """A modem that only delivers directly (+CMT): every stored-delivery +CNMI refused, the
    direct one taken; `cnma` answers AT+CNMA (None: no answer), `csms` AT+CSMS=1."""
    return Peer(
        {
            **{f"AT+CNMI={s}": ERROR for s in AtOptions().cnmi},
            "AT+CNMI=2,2,0,1,0": OK,
            "AT+CSMS=1": csms,
            "AT+CNMA": cnma,
        }
    )


# ---- golden transcripts --------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRANSCRIPTS)
async def test_golden_transcript(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, name: str
) -> None:
    vector = ALL_VECTORS[name]
    assert vector["source"]
    answers: dict[str, Answer] = {k: v.encode("latin-1") for k, v in vector["answers"].items()}
    peer = Peer(answers)
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    await settled(peer)
    before = len(peer.commands)
    if vector["unsolicited"]:
        await peer.unsolicited(vector["unsolicited"].encode("latin-1"))
    events = await inbound(modem, len(vector["events"]))
    assert [describe(event) for event in events] == vector["events"]
    await trio.sleep(1.0)
    assert peer.commands[before:] == vector["commands_after_unsolicited"]
    assert pending_inbound(modem) == []
    if vector["commands_after_acknowledge"] is None:
        return
    before = len(peer.commands)
    for event in events:
        await modem.acknowledge(event)
    assert peer.commands[before:] == vector["commands_after_acknowledge"]
    health = modem.health()
    assert (health.received, health.reports) == (
        sum(isinstance(e, InboundSms) for e in events),
        sum(isinstance(e, StatusReportReceived) for e in events),
    )


async def test_golden_sweep_skips_stored_outgoing_messages(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    vector = ALL_VECTORS["telit_cmgl_sweep"]
    peer = Peer({"AT+CMGL=4": vector["answers"]["AT+CMGL=4"].encode("latin-1")})
    modem = make(Bench(nursery, [peer]), sweep_interval=60.0)
    await nursery.start(modem.run)
    assert len(await inbound(modem, 2)) == 2
    # A second sweep finds the same two awaiting acknowledgement: nothing is emitted twice,
    # and the stored SMS-SUBMIT (stat 2) is neither emitted nor counted as undecodable.
    await trio.sleep(61.0)
    assert peer.commands.count("AT+CMGL=4") == 2
    assert pending_inbound(modem) == []
    assert modem.health().undecodable == 0


# ---- the sweep and acknowledge -------------------------------------------------------------------


async def test_sweep_emits_once_then_again_after_a_reconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storage = Storage()
    storage.put(1, stored_pdu("+4791234567", "one"), stat=1)
    storage.put(2, stored_pdu("+4791234567", "two"))
    bench = Bench(nursery, [Peer(storage=storage), Peer(storage=storage), Peer(storage=storage)])
    modem = make(bench, sweep_interval=60.0)
    await nursery.start(modem.run)
    first = await inbound(modem, 2)
    assert [e.index for e in first] == [1, 2]
    await trio.sleep(130.0)  # two more sweeps
    assert bench.peers[0].commands.count("AT+CMGL=4") == 3
    assert pending_inbound(modem) == []
    await modem.acknowledge(first[0])
    assert sorted(storage.slots) == [2]
    # The gateway never acknowledged index 2: after a reconnect it comes again, index 1 not.
    await bench.ports[0].aclose()
    (again,) = await inbound(modem, 1)
    assert isinstance(again, InboundSms)
    assert (again.index, decode_text(again.deliver.part)) == (2, "two")
    assert again.pdu == first[1].pdu
    await modem.acknowledge(again)
    assert storage.slots == {}


async def test_cmti_while_awaiting_acknowledgement_is_not_emitted_twice(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storage = Storage()
    peer = Peer(storage=storage)
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    await settled(peer)
    storage.put(7, stored_pdu("+4791234567", "new"))
    await peer.unsolicited(b'\r\n+CMTI: "SM",7\r\n')
    (event,) = await inbound(modem, 1)
    await peer.unsolicited(b'\r\n+CMTI: "SM",7\r\n')  # some modems repeat an indication
    await trio.sleep(1.0)
    assert pending_inbound(modem) == []
    assert peer.commands.count("AT+CMGR=7") == 1
    await modem.acknowledge(event)
    assert storage.slots == {}


async def test_acknowledge_leaves_an_index_that_holds_another_message(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storage = Storage()
    storage.put(3, stored_pdu("+4791234567", "old"))
    peer = Peer(storage=storage)
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    (event,) = await inbound(modem, 1)
    # Deleted by hand and the slot taken by a newer message before the gateway acknowledged.
    storage.put(3, stored_pdu("+4791234567", "newer"))
    await modem.acknowledge(event)
    assert 3 in storage.slots
    assert "AT+CMGD=3" not in peer.commands


async def test_acknowledge_when_the_modem_is_down_is_deferred_to_the_sweep_after_recovery(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = Storage()
    storage.put(4, stored_pdu("+4791234567", "kept"))
    bench = Bench(nursery, [Peer(storage=storage), Peer(storage=storage)])
    modem = make(bench)
    await nursery.start(modem.run)
    (event,) = await inbound(modem, 1)
    await bench.ports[0].aclose()
    await trio.sleep(0.5)
    await modem.acknowledge(event)  # committed by the gateway; the modem is away
    assert 4 in storage.slots
    await trio.sleep(5.0)  # reopened after 1 s, initialised, swept
    assert len(bench.opens) == 2
    assert modem.health().state is ModemState.READY
    # The first sweep after recovery deletes it, and does not emit it again.
    assert 4 not in storage.slots
    assert modem.health().received == 1
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


async def test_acknowledge_whose_delete_answer_is_lost_retries_after_a_resync(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storage = LosingStorage()
    storage.put(4, stored_pdu("+4791234567", "kept"))
    bench = Bench(nursery, [Peer(storage=storage)])
    modem = make(bench)
    await nursery.start(modem.run)
    (event,) = await inbound(modem, 1)
    await modem.acknowledge(event)
    # The first delete went through with its OK lost: the re-read finds the index empty.
    assert 4 not in storage.slots
    health = modem.health()
    assert (health.state, health.resyncs, len(bench.opens)) == (ModemState.READY, 1, 1)


async def test_a_deferred_delete_whose_answer_is_lost_still_lets_the_sweep_emit_the_rest(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storage = LosingStorage()
    storage.lost = 0
    storage.put(4, stored_pdu("+4791234567", "committed"))
    bench = Bench(nursery, [Peer(storage=storage), Peer(storage=storage)])
    modem = make(bench)  # sweeps every 60 s
    await nursery.start(modem.run)
    (event,) = await inbound(modem, 1)
    await bench.ports[0].aclose()
    await trio.sleep(0.5)
    await modem.acknowledge(event)  # deferred: the modem is away
    storage.put(5, stored_pdu("+4791234567", "new"))
    storage.lost = 1  # the first sweep's AT+CMGD=4 loses its OK
    with trio.fail_after(10):  # not left to the sweep 60 s later
        (new,) = await inbound(modem, 1)
    assert new.index == 5
    await trio.sleep(61.0)  # the next sweep finds index 4 gone (the delete had worked)
    assert 4 not in storage.slots
    assert modem.health().received == 2


@pytest.mark.parametrize("delete", [False, True])
async def test_undecodable_pdu_is_counted_and_kept_unless_configured(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, delete: bool
) -> None:
    storage = Storage()
    storage.put(0, bytes.fromhex("07914497000000F0040B914497"), stat=0)  # cut short
    storage.put(1, stored_pdu("+4791234567", "fine"))
    peer = Peer(storage=storage)
    modem = make(Bench(nursery, [peer]), delete_undecodable=delete)
    await nursery.start(modem.run)
    (event,) = await inbound(modem, 1)
    assert event.index == 1
    await trio.sleep(125.0)  # more sweeps find it again but count it once
    assert modem.health().undecodable == 1
    assert (0 in storage.slots) is not delete


# ---- no inbound event is dropped ---------------------------------------------------------------


async def five_stored_two_buffered(nursery: trio.Nursery) -> AtModem:
    """A modem started on a SIM holding 5 messages, with room for 2 events, swept once; no
    health polls."""
    storage = Storage()
    for index in range(5):
        storage.put(index, stored_pdu("+4791234567", f"message {index}"))
    peer = Peer(storage=storage)
    modem = make(Bench(nursery, [peer]), event_buffer=2, sweep_interval=30.0)
    await nursery.start(modem.run)
    await settled(peer)
    return modem


async def test_a_full_buffer_defers_stored_messages_to_the_sweep(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    modem = await five_stored_two_buffered(nursery)
    # The buffer held the registration and READY, which gave way to the first message; then it
    # was full.
    first = pending_inbound(modem)
    assert [e.index for e in first] == [0]
    assert modem.health().events_dropped == 1
    for event in first:
        await modem.acknowledge(event)
    await trio.sleep(30.0)
    second = pending_inbound(modem)
    assert [e.index for e in second] == [1, 2]
    for event in second:
        await modem.acknowledge(event)
    await trio.sleep(30.0)
    assert [e.index for e in pending_inbound(modem)] == [3, 4]
    assert modem.health().received == 5


async def test_a_full_buffer_at_the_start_keeps_the_registration_with_no_health_polls(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A SIM full of messages after a stop fills the buffer at the start; the registration the
    driver read at its initialisation must still reach the gateway, whose sweeps wait SETTLE
    from it: with health_interval 0 nothing reads it again while it holds."""
    modem = await five_stored_two_buffered(nursery)
    told: list[bool] = []
    for _ in range(4):
        for event in pending_events(modem):
            if isinstance(event, RegistrationChanged):
                told.append(event.registered)
            elif isinstance(event, InboundSms | StatusReportReceived):
                await modem.acknowledge(event)
        await trio.sleep(30.0)
    assert modem.health().received == 5
    assert told == [True]


async def test_the_first_sweep_that_emitted_the_whole_storage_is_followed_by_storage_read(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """StorageRead tells the gateway that what the SIM held came before it: not after a sweep
    that left messages for later (the buffer full), and once only."""
    modem = await five_stored_two_buffered(nursery)
    seen: list[list[int | str]] = []
    for _ in range(4):
        events: list[int | str] = []
        for event in pending_events(modem):
            if isinstance(event, StorageRead):
                events.append("read")
            elif isinstance(event, InboundSms):
                events.append(event.index or 0)
                await modem.acknowledge(event)
        seen.append(events)
        await trio.sleep(30.0)
    assert seen == [[0], [1, 2], [3, 4], ["read"]]


class Storages(Storage):
    """The storages of a modem that keeps status reports in "SR": AT+CMGL, AT+CMGR and
    AT+CMGD act on the one AT+CPMS last pointed <mem1> at."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name = {"SM": Storage(), "SR": Storage()}
        self.current = "SM"

    def point(self, line: str) -> bytes:
        self.current = line.split('"')[1]
        return b"\r\n+CPMS: 0,30,0,30,0,30\r\n" + OK

    def answer(self, line: str) -> bytes | None:
        return self.by_name[self.current].answer(line)


async def test_reports_waiting_in_the_report_storage_come_before_storage_read(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A modem that reads from "SR" keeps received status reports there (TS 27.005 3.2.2): a
    report that came while the gateway was down has no +CDSI to point at it, so the first
    sweep lists "SR" too, and StorageRead comes after the report, not before it was read."""
    storages = Storages()
    storages.by_name["SR"].put(0, stored_report(200, "+4741234567"))
    peer = Peer(
        {
            "AT+CPMS=?": b'\r\n+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")\r\n' + OK,
            'AT+CPMS="SR"': storages.point,
            'AT+CPMS="SM"': storages.point,
        },
        storage=storages,
    )
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    await settled(peer)
    events: list[str] = []
    for event in pending_events(modem):
        if isinstance(event, StatusReportReceived):
            events.append(f"report {event.storage} {event.report.message_reference}")
        elif isinstance(event, StorageRead):
            events.append("read")
    assert events == ["report SR 200", "read"]


async def test_a_report_storage_offered_but_refused_is_left_out_of_the_sweep(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """AT+CPMS=? may list "SR" and AT+CPMS="SR" be refused all the same (TS 27.005 3.2.2: a
    storage the TA supports and the ME cannot use): the sweep reads the storage in use and
    keeps the link, and with "SR" unread there is no StorageRead."""
    storage = Storage()
    storage.put(0, stored_pdu("+4791234567", "hello"))
    peer = Peer(
        {
            "AT+CPMS=?": b'\r\n+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")\r\n' + OK,
            'AT+CPMS="SR"': b"\r\n+CMS ERROR: 302\r\n",
        },
        storage=storage,
    )
    bench = Bench(nursery, [peer])
    modem = make(bench)
    await nursery.start(modem.run)
    await settled(peer)
    events: list[str] = []
    for event in pending_events(modem):
        if isinstance(event, InboundSms):
            events.append(f"sms {event.storage} {event.index}")
        elif isinstance(event, StorageRead):
            events.append("read")
    assert events == ["sms SM 0"]
    assert len(bench.opens) == 1
    assert modem.health().state is ModemState.READY


async def test_a_direct_message_without_room_is_left_to_the_network(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    tpdu = stored_pdu("+4799887766", "direct")
    urc = b"\r\n+CMT: ,%d\r\n%s\r\n" % (len(tpdu) - tpdu[0] - 1, tpdu.hex().upper().encode())
    peer = direct_only(cnma=OK)
    # Room for the registration, never dropped, and READY.
    modem = make(Bench(nursery, [peer]), event_buffer=2, sweep_interval=30.0)
    await nursery.start(modem.run)
    await settled(peer)
    await peer.unsolicited(urc)
    await trio.sleep(1.0)
    assert peer.commands.count("AT+CNMA") == 1  # the READY event gave way to it
    await peer.unsolicited(urc)  # the buffer is full now: no acknowledgement
    await trio.sleep(1.0)
    assert peer.commands.count("AT+CNMA") == 1
    cnmi_before = peer.commands.count("AT+CNMI=2,2,0,1,0")
    await trio.sleep(30.0)
    # The modem turns indications off after a missing +CNMA; the next sweep turns them on.
    assert peer.commands.count("AT+CNMI=2,2,0,1,0") == cnmi_before + 1
    (event,) = pending_inbound(modem)
    assert event.index is None and event.storage == ""


async def test_a_direct_message_whose_acknowledgement_is_lost_is_logged_without_its_pdu(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The PDU carries the text: at info, a failed acknowledgement names the message only.
    caplog.set_level(logging.INFO, logger="drivers.at")
    tpdu = stored_pdu("+4799887766", "personal")
    urc = b"\r\n+CMT: ,%d\r\n%s\r\n" % (len(tpdu) - tpdu[0] - 1, tpdu.hex().upper().encode())
    peer = direct_only(cnma=None)
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    await settled(peer)
    await peer.unsolicited(urc)
    await trio.sleep(30.0)
    assert peer.commands.count("AT+CNMA") == 1
    lines = [record.getMessage() for record in caplog.records]
    assert any("+CMT" in line and "failed" in line for line in lines), lines
    assert [line for line in lines if tpdu.hex().upper()[-20:] in line] == []


class LateStorage(Storage):
    """Holds back its first answer to AT+CMGR until the driver's resync, as a modem that
    answered after the driver gave up on it."""

    def __init__(self) -> None:
        super().__init__()
        self.held: bytes | None = None
        self.holding = True

    def answer(self, line: str) -> bytes | None:
        reply = super().answer(line)
        if line.startswith("AT+CMGR=") and self.holding:
            self.held, self.holding = reply, False
            return None
        return reply


class LatePeer(Peer):
    def answer(self, line: str) -> bytes | None:
        if line.startswith("ATS7=") and isinstance(self.storage, LateStorage):
            late, self.storage.held = self.storage.held or b"", None
            return late + resync_answer(int(line[5:].partition(";")[0]))
        return super().answer(line)


async def test_a_late_answer_to_a_read_is_logged_without_its_pdu(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The answer to AT+CMGR comes after the driver gave up on it: the resync takes it off the
    # line. Its PDU carries the message's text and sender, which the journal must not get.
    caplog.set_level(logging.INFO, logger="drivers.at")
    storage = LateStorage()
    peer = LatePeer(storage=storage)
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    await settled(peer)
    pdu = stored_pdu("+4799887766", "personal")
    storage.put(7, pdu)
    await peer.unsolicited(b'\r\n+CMTI: "SM",7\r\n')
    (event,) = await inbound(modem, 1)
    assert isinstance(event, InboundSms)
    assert peer.commands.count("AT+CMGR=7") == 2
    assert modem.health().resyncs == 1
    lines = [record.getMessage() for record in caplog.records]
    assert "modem m1: a late answer taken off the line: 1 other line, OK" in lines, lines
    assert [line for line in lines if pdu.hex().upper()[-16:] in line] == []


async def test_a_direct_message_that_does_not_decode_is_refused_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    tpdu = stored_pdu("+4799887766", "garbled once")
    whole = b"\r\n+CMT: ,%d\r\n%s\r\n" % (len(tpdu) - tpdu[0] - 1, tpdu.hex().upper().encode())
    # The line lost the last octet of the text: the PDU is shorter than it says.
    garbled = whole.replace(tpdu.hex().upper().encode(), tpdu[:-1].hex().upper().encode())
    peer = direct_only(cnma=OK)
    modem = make(Bench(nursery, [peer]), sweep_interval=30.0)
    await nursery.start(modem.run)
    await settled(peer)
    cnmi_before = peer.commands.count("AT+CNMI=2,2,0,1,0")
    await peer.unsolicited(garbled)
    await trio.sleep(1.0)
    # Refused: the modem gives up waiting for AT+CNMA, and the network delivers it again.
    assert "AT+CNMA" not in peer.commands
    assert modem.health().undecodable == 1
    await trio.sleep(30.0)
    assert peer.commands.count("AT+CNMI=2,2,0,1,0") == cnmi_before + 1  # indications back on
    await peer.unsolicited(whole)
    (event,) = await inbound(modem, 1)
    assert isinstance(event, InboundSms) and decode_text(event.deliver.part) == "garbled once"
    await trio.sleep(1.0)
    assert peer.commands.count("AT+CNMA") == 1
    # The same octets again are the network's own: acknowledged, so it stops sending them.
    await peer.unsolicited(garbled)
    await trio.sleep(1.0)
    assert peer.commands.count("AT+CNMA") == 2
    assert modem.health().undecodable == 1
    assert pending_inbound(modem) == []


# ---- +CNMI fallbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "chosen", "csms"),
    [
        ("2,1,0,2,0", "2,1,0,2,0", False),  # SIM800, EC25: +CMTI and +CDSI
        ("1,1,0,2,0", "1,1,0,2,0", False),  # modems without <mode> 2
        ("2,1,0,1,0", "2,1,0,1,0", True),  # +CDS only for reports: AT+CSMS=1 for AT+CNMA
        ("1,1,0,0,0", "1,1,0,0,0", False),  # no status report routing at all
        ("2,2,0,1,0", "2,2,0,1,0", True),  # direct delivery only
        ("", "", False),  # nothing accepted: the sweep alone receives
    ],
)
async def test_cnmi_falls_back_through_the_settings(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    accepted: str,
    chosen: str,
    csms: bool,
) -> None:
    peer = Peer(
        {
            **{f"AT+CNMI={s}": ERROR for s in AtOptions().cnmi},
            **({f"AT+CNMI={accepted}": OK} if accepted else {}),
            "AT+CSMS=1": b"\r\n+CSMS: 1,1,1\r\n" + OK,
        }
    )
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    tried = [c[len("AT+CNMI=") :] for c in peer.commands if c.startswith("AT+CNMI=")]
    settings = AtOptions().cnmi
    expected = settings[: settings.index(chosen) + 1] if chosen else settings
    assert tried == expected
    assert ("AT+CSMS=1" in peer.commands) is csms
    health = modem.health()
    assert health.state is ModemState.READY
    assert ("sweeping only" in health.detail) is (not chosen)


async def test_storage_prefers_sm_then_me(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    peer = Peer(
        {
            "AT+CPMS=?": b'\r\n+CPMS: ("ME","MT"),("ME","MT"),("ME","MT")\r\n' + OK,
            'AT+CPMS="ME","ME","ME"': b"\r\n+CPMS: 0,100,0,100,0,100\r\n" + OK,
        }
    )
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    assert modem.health().storage == "ME"
    assert 'AT+CPMS="ME","ME","ME"' in peer.commands


# ---- health from unsolicited codes ---------------------------------------------------------------


async def test_registration_urcs_update_health(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    peer = Peer()
    modem = make(Bench(nursery, [peer]))
    await nursery.start(modem.run)
    assert modem.health().registration == "home"
    await peer.unsolicited(b'\r\n+CREG: 5,"00C3","0000AB12",2\r\n')
    await trio.sleep(0.1)
    assert modem.health().registration == "roaming"
    await peer.unsolicited(b"\r\n+CREG: 2\r\n")
    await trio.sleep(0.1)
    assert modem.health().registration == "searching"
    # An LTE stick: circuit-switched searching, EPS registered at home.
    await peer.unsolicited(b'\r\n+CEREG: 1,"1A2B","01A2B3C4",7\r\n')
    await trio.sleep(0.1)
    assert modem.health().registration == "home"


async def test_a_direct_message_the_modem_acknowledged_itself_waits_for_room(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    tpdus = [stored_pdu("+4799887766", f"direct {n}") for n in range(3)]
    peer = direct_only(csms=b"\r\n+CMS ERROR: 303\r\n")  # phase 2 only: the modem acknowledges
    modem = make(Bench(nursery, [peer]), event_buffer=1)
    await nursery.start(modem.run)
    await settled(peer)
    for tpdu in tpdus:
        length = len(tpdu) - tpdu[0] - 1
        await peer.unsolicited(b"\r\n+CMT: ,%d\r\n%s\r\n" % (length, tpdu.hex().upper().encode()))
    await trio.sleep(5.0)
    # One in the buffer, the next waiting for room: none refused, none dropped.
    events = await inbound(modem, 3)
    texts = [decode_text(e.deliver.part) for e in events if isinstance(e, InboundSms)]
    assert texts == ["direct 0", "direct 1", "direct 2"]
    assert "AT+CNMA" not in peer.commands
    assert modem.health().received == 3


async def test_an_unacknowledged_message_comes_again_after_reemit_after(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storage = Storage()
    storage.put(6, stored_pdu("+4791234567", "store me"))
    peer = Peer(storage=storage)
    modem = make(Bench(nursery, [peer]), sweep_interval=60.0, reemit_after=300.0)
    await nursery.start(modem.run)
    (first,) = await inbound(modem, 1)
    start = trio.current_time()
    # The gateway failed to store it and never acknowledged: sweeps keep quiet for 300 s,
    # then the next one emits it again.
    (again,) = await inbound(modem, 1)
    assert trio.current_time() - start == pytest.approx(300.0)
    assert (again.index, again.pdu) == (first.index, first.pdu)
    assert peer.commands.count("AT+CMGL=4") == 6
    await modem.acknowledge(again)
    assert storage.slots == {}
