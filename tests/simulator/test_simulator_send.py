"""Sending SMS through the simulated modem over an in-memory stream, as a terminal would.

PDU-mode AT+CMGS (3GPP TS 27.005 section 3.5.1): the `> ` prompt, the hex PDU ended by Ctrl-Z or
cancelled by ESC, +CMS ERROR 304 for a PDU that is not what was announced, TP-MR assignment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from support.terminal import StreamTerminal

from drivers.gsm import EncodedPart, build_submit, join_sca
from drivers.simulator import (
    ModemEngine,
    SentSms,
    SimulatedNetwork,
    Simulator,
    SimulatorOptions,
    serve_stream,
)

VECTORS_FILE = Path(__file__).resolve().parent.parent / "vectors" / "simulator" / "submit_pdus.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
HELLO = next(vector for vector in VECTORS if vector["name"] == "gsm7")


class Terminal(StreamTerminal):
    """The client end of the line: command answers and PDU-mode sends."""

    async def command(self, line: bytes, final: bytes = b"\r\n") -> bytes:
        """Send one command line and return its whole answer (echo off)."""
        await self.send(line + b"\r")
        answer = await self.read_until(b"\r\n")
        return answer + await self.read_until(final)

    async def send_pdu(self, pdu: str, length: int) -> bytes:
        await self.send(b"AT+CMGS=%d\r" % length)
        assert await self.read_until(b"> ") == b"\r\n> "
        await self.send(pdu.encode() + b"\x1a")
        return await self.read_until(b"OK\r\n")


async def start(
    nursery: trio.Nursery,
    options: SimulatorOptions | None = None,
    *,
    echo: bool = False,
    network: SimulatedNetwork | None = None,
) -> tuple[Simulator, Terminal]:
    sim = Simulator(options, network)
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_stream, sim, server)
    terminal = Terminal(client)
    if not echo:
        await terminal.send(b"ATE0;+CMEE=1\r")
        assert await terminal.read_until(b"OK\r\n") == b"ATE0;+CMEE=1\r\r\nOK\r\n"
    return sim, terminal


def talk(engine: ModemEngine, data: bytes, now: float = 0.0) -> bytes:
    return b"".join(reply.data for reply in engine.receive_data(data, now))


async def answer_of(terminal: Terminal, data: bytes) -> bytes:
    """Send raw bytes and read one final answer line (it ends the exchange)."""
    await terminal.send(data)
    await terminal.read_until(b"\r\n")
    return b"\r\n" + await terminal.read_until(b"\r\n")


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
async def test_a_pdu_mode_send_reaches_the_network_decoded(
    nursery: trio.Nursery, vector: dict[str, Any]
) -> None:
    sim, terminal = await start(nursery)
    answer = await terminal.send_pdu(vector["pdu"], vector["tpdu_length"])
    assert answer == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    (sent,) = sim.network.sent
    assert sent.recipient == vector["recipient"]
    assert sent.text == vector["text"]
    assert sent.dcs == vector["dcs"]
    assert sent.validity_minutes == vector["validity_minutes"]
    assert sent.status_report is vector["status_report"]
    assert sent.concat == (tuple(vector["concat"]) if vector["concat"] else None)
    assert sent.message_reference == 0


async def test_the_pdu_is_echoed_when_echo_is_on(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery, echo=True)
    await terminal.send(b"AT+CMGS=23\r")
    assert await terminal.read_until(b"> ") == b"AT+CMGS=23\r\r\n> "
    await terminal.send(HELLO["pdu"].encode() + b"\x1a")
    answer = await terminal.read_until(b"OK\r\n")
    assert answer == HELLO["pdu"].encode() + b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert sim.network.sent[0].text == "hellohello"


async def test_a_pdu_built_by_the_gsm_codec_with_an_smsc_address(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery)
    part = EncodedPart(dcs=0x08, udh=b"", payload="Grüße €".encode("utf-16-be"))
    tpdu = build_submit("+4798765432", part, status_report=True, validity_minutes=60)
    pdu = join_sca("+4790002100", tpdu).hex().upper()
    assert await terminal.send_pdu(pdu, len(tpdu)) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert sim.network.sent[0].text == "Grüße €"
    assert sim.network.sent[0].recipient == "+4798765432"
    assert sim.network.sent[0].status_report is True
    assert sim.network.sent[0].validity_minutes == 60


async def test_the_network_records_the_tp_pid_it_was_sent(nursery: trio.Nursery) -> None:
    """TS 23.040 9.2.3.9: a "replace short message type 3" (0x43) is told from a plain SMS."""
    sim, terminal = await start(nursery)
    part = EncodedPart(dcs=0x00, udh=b"", payload=bytes(5))
    for pid in (0x43, 0x00):
        tpdu = build_submit("+4798765432", part, pid=pid)
        await terminal.send_pdu(join_sca("", tpdu).hex().upper(), len(tpdu))
    assert [sms.pid for sms in sim.network.sent] == [0x43, 0x00]


async def test_the_network_records_the_ports_and_message_class_of_each_part(
    nursery: trio.Nursery,
) -> None:
    """TS 23.040 9.2.3.24.4 (16-bit ports, in every part) and 9.2.3.24.3 (8-bit ports);
    TS 23.038 4: message class 2 (SIM) in a general group DCS, none in a plain one."""
    sim, terminal = await start(nursery)
    ported = bytes.fromhex("0B00032A0201" + "05040B8423F0")
    eight_bit = bytes.fromhex("0404020500")
    for dcs, udh in ((0x12, ported), (0x00, eight_bit), (0x00, b"")):
        part = EncodedPart(dcs=dcs, udh=udh, payload=bytes(5))
        tpdu = build_submit("+4798765432", part)
        await terminal.send_pdu(join_sca("", tpdu).hex().upper(), len(tpdu))
    sent = sim.network.sent
    assert [sms.ports for sms in sent] == [(2948, 9200), (5, 0), None]
    assert [sms.message_class for sms in sent] == [2, None, None]
    assert sent[0].concat == (0x2A, 2, 1)


@pytest.mark.parametrize(
    ("length", "pdu"),
    [
        (22, HELLO["pdu"]),  # one octet short of the TPDU
        (24, HELLO["pdu"]),  # one octet more than the TPDU
        (23, HELLO["pdu"][:-1]),  # odd number of hex digits
        (23, HELLO["pdu"][:-2] + "ZZ"),  # not hex
        (23, HELLO["pdu"][:10] + " " + HELLO["pdu"][10:]),  # a space inside
        (23, "0000" + HELLO["pdu"][4:]),  # TP-MTI 0: an SMS-DELIVER, not a SUBMIT
        (3, "00110000"),  # truncated TPDU
        (23, ""),  # nothing at all
    ],
)
async def test_a_pdu_that_is_not_what_was_announced_is_cms_304(
    nursery: trio.Nursery, length: int, pdu: str
) -> None:
    sim, terminal = await start(nursery)
    await terminal.send(b"AT+CMGS=%d\r" % length)
    assert await terminal.read_until(b"> ") == b"\r\n> "
    assert await answer_of(terminal, pdu.encode() + b"\x1a") == b"\r\n+CMS ERROR: 304\r\n"
    assert sim.network.sent == []
    assert await terminal.command(b"AT") == b"\r\nOK\r\n"


async def test_an_overlong_pdu_is_cms_304(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery)
    await terminal.send(b"AT+CMGS=23\r")
    await terminal.read_until(b"> ")
    assert await answer_of(terminal, b"00" * 400 + b"\x1a") == b"\r\n+CMS ERROR: 304\r\n"
    assert sim.network.sent == []


async def test_escape_cancels_the_send(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery)
    await terminal.send(b"AT+CMGS=23\r")
    await terminal.read_until(b"> ")
    assert await answer_of(terminal, HELLO["pdu"][:20].encode() + b"\x1b") == b"\r\nOK\r\n"
    assert sim.network.sent == []
    assert await terminal.command(b"AT+CSQ", b"OK\r\n") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    # The reference was not used up by the cancelled send.
    assert await terminal.send_pdu(HELLO["pdu"], 23) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"


def test_a_pdu_arriving_one_octet_at_a_time_is_sent_once_its_ctrl_z_comes() -> None:
    engine = ModemEngine(SimulatorOptions(send_delay=0.5))
    assert talk(engine, b"ATE0;+CMEE=1\rAT+CMGS=23\r") == b"ATE0;+CMEE=1\r\r\nOK\r\n\r\n> "
    for octet in HELLO["pdu"].encode():
        assert engine.receive_data(bytes([octet]), 1.0) == []
    (reply,) = engine.receive_data(b"\x1a", 2.0)
    assert (reply.due, reply.data) == (2.5, b"\r\n+CMGS: 0\r\n\r\nOK\r\n")
    assert reply.sent is not None and reply.sent.text == "hellohello"


def test_a_pdu_and_the_next_command_in_one_chunk_answer_in_order() -> None:
    engine = ModemEngine(SimulatorOptions(send_delay=0.5))
    assert talk(engine, b"ATE0\rAT+CMGS=23\r") == b"ATE0\r\r\nOK\r\n\r\n> "
    sent, csq = engine.receive_data(HELLO["pdu"].encode() + b"\x1aAT+CSQ\r", 1.0)
    assert (sent.due, sent.data) == (1.5, b"\r\n+CMGS: 0\r\n\r\nOK\r\n")
    assert sent.sent is not None and sent.sent.recipient == HELLO["recipient"]
    # The command after the Ctrl-Z waits for the network's answer to the send, as on a modem.
    assert (csq.due, csq.data) == (1.5, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")


def test_a_pdu_split_at_its_ctrl_z_and_escape_in_the_same_chunk() -> None:
    engine = ModemEngine(SimulatorOptions(send_delay=0.0))
    assert talk(engine, b"ATE0\rAT+CMGS=23\r") == b"ATE0\r\r\nOK\r\n\r\n> "
    pdu = HELLO["pdu"].encode()
    assert talk(engine, pdu[:7]) == b""
    # Ctrl-Z sends; the ESC after it, outside any prompt, is one more octet of a command line.
    assert talk(engine, pdu[7:] + b"\x1a\x1bAT\r") == (b"\r\n+CMGS: 0\r\n\r\nOK\r\n\r\nOK\r\n")
    assert talk(engine, b"AT+CMGS=23\r" + pdu[:9] + b"\x1b" + pdu + b"\x1a") == b"\r\n> \r\nOK\r\n"


async def test_replies_due_at_different_times_each_leave_exactly_when_due(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The shared alarm sleeps until the earliest reply of every modem: a send answered sooner
    # than one already waiting must wake it, and a modem unplugged while its answer waits must
    # not take the others' with it.
    delays = [5.0, 0.5, 2.0, 3.0]
    modems = [await start(nursery, SimulatorOptions(send_delay=delay)) for delay in delays]
    began = trio.current_time()
    for _sim, terminal in modems:
        await terminal.send(b"AT+CMGS=23\r")
        assert await terminal.read_until(b"> ") == b"\r\n> "
        await terminal.send(HELLO["pdu"].encode() + b"\x1a")
    assert trio.current_time() == began
    unplugged, _ = modems[2]
    unplugged.unplug(60.0)
    answered = []

    async def answer(index: int, terminal: Terminal) -> None:
        assert await terminal.read_until(b"OK\r\n") == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
        answered.append((trio.current_time() - began, index))

    async with trio.open_nursery() as readers:
        for index in (0, 1, 3):
            readers.start_soon(answer, index, modems[index][1])
    assert answered == [(0.5, 1), (3.0, 3), (5.0, 0)]
    assert unplugged.network.sent == []


async def test_the_message_reference_wraps_after_256_sends(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery)
    references = []
    for _ in range(258):
        answer = await terminal.send_pdu(HELLO["pdu"], 23)
        references.append(int(answer.split(b"+CMGS: ")[1].split(b"\r\n")[0]))
    assert references == [*range(256), 0, 1]
    assert [sms.message_reference for sms in sim.network.sent] == references


async def test_slow_cmgs_answers_after_the_network_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, SimulatorOptions(profile="slow_cmgs"))
    began = trio.current_time()
    await terminal.send(b"AT+CMGS=23\r")
    await terminal.read_until(b"> ")
    # A command typed while the network works is answered after the send, not before it.
    await terminal.send(HELLO["pdu"].encode() + b"\x1aAT+CSQ\r")
    assert await terminal.read_until(b"OK\r\n") == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert trio.current_time() - began == pytest.approx(5.0)
    assert len(sim.network.sent) == 1
    assert await terminal.read_until(b"OK\r\n") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    assert trio.current_time() - began == pytest.approx(5.0)


async def test_send_delay_option_overrides_the_profile(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, SimulatorOptions(send_delay=1.5))
    began = trio.current_time()
    with trio.move_on_after(1.4):
        await terminal.send_pdu(HELLO["pdu"], 23)
    assert sim.network.sent == []
    assert await terminal.read_until(b"OK\r\n") == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert trio.current_time() - began == pytest.approx(1.5)


async def test_no_network_until_registered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, SimulatorOptions(register_delay=30.0))
    assert await terminal.command(b"AT+CREG?", b"OK\r\n") == b"\r\n+CREG: 0,2\r\n\r\nOK\r\n"
    await terminal.send(b"AT+CMGS=23\r")
    await terminal.read_until(b"> ")
    assert await answer_of(terminal, HELLO["pdu"].encode() + b"\x1a") == (
        b"\r\n+CMS ERROR: 331\r\n"
    )
    await trio.sleep(30.0)
    assert await terminal.command(b"AT+CREG?", b"OK\r\n") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert await terminal.send_pdu(HELLO["pdu"], 23) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert len(sim.network.sent) == 1


async def test_the_record_file_has_each_sms_before_cmgs_is_answered(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    record = tmp_path / "sent.jsonl"
    sim, terminal = await start(nursery, SimulatorOptions(record=str(record)))
    for count, vector in enumerate(VECTORS, start=1):
        await terminal.send_pdu(vector["pdu"], vector["tpdu_length"])
        lines = record.read_bytes().splitlines()
        assert len(lines) == count
        sent = msgspec.json.decode(lines[-1], type=SentSms)
        assert sent == sim.network.sent[-1]
        assert sent.text == vector["text"]
        assert sent.recipient == vector["recipient"]


async def test_wait_sent_wakes_when_enough_were_sent(nursery: trio.Nursery) -> None:
    network = SimulatedNetwork()
    _sim, terminal = await start(nursery, network=network)
    seen: list[list[SentSms]] = []

    async def watch() -> None:
        seen.append(await network.wait_sent(2))

    nursery.start_soon(watch)
    await terminal.send_pdu(HELLO["pdu"], 23)
    await trio.testing.wait_all_tasks_blocked()
    assert seen == []
    await terminal.send_pdu(HELLO["pdu"], 23)
    await trio.testing.wait_all_tasks_blocked()
    assert [[sms.message_reference for sms in batch] for batch in seen] == [[0, 1]]


async def test_the_network_keeps_only_the_newest_sms_however_many_were_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork()
    total = SimulatedNetwork.KEPT + 50
    for reference in range(total):
        sms = SentSms("+4741000000", "hi", 0, b"", b"", reference % 256, False, None, None)
        await network.accept(sms)
    assert len(network.sent) == SimulatedNetwork.KEPT
    assert network.sent[0].message_reference == 50 % 256
    assert network.accepted == total
    with trio.move_on_after(1) as waited:
        assert len(await network.wait_sent(total)) == SimulatedNetwork.KEPT
    assert not waited.cancelled_caught


async def test_two_modems_can_share_one_network(nursery: trio.Nursery) -> None:
    network = SimulatedNetwork()
    first, second = Simulator(network=network), Simulator(network=network)
    for sim in (first, second):
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(serve_stream, sim, server)
        terminal = Terminal(client)
        await terminal.send(b"ATE0\r")
        await terminal.read_until(b"OK\r\n")
        await terminal.send_pdu(HELLO["pdu"], 23)
    assert [sms.message_reference for sms in await network.wait_sent(2)] == [0, 0]


async def test_serve_stream_returns_at_end_of_stream() -> None:
    sim = Simulator()
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_stream, sim, server)
            await client.send_all(b"AT\r")
            assert await Terminal(client).read_until(b"OK\r\n") == b"AT\r\r\nOK\r\n"
            await client.aclose()


def test_an_unknown_profile_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known profiles: bare_error, cms_500, default"):
        Simulator(SimulatorOptions(profile="flaky"))
