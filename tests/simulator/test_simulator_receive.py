"""The simulated modem receiving: MO injection in each +CNMI mode and status reports after their
delay, over an in-memory stream on trio's virtual clock.

3GPP TS 27.005 section 3.4.1 (+CMTI, +CMT, +CDS, +CDSI), 3.4.4 (+CNMA); TS 23.040 sections
9.2.2.1 (SMS-DELIVER), 9.2.2.3 (SMS-STATUS-REPORT), 9.2.3.24.1/9.2.3.24.8 (concatenation).
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from support.terminal import StreamTerminal

from drivers.gsm import (
    GsmError,
    SmsStatusReport,
    build_submit,
    concat_info,
    decode_concatenated,
    encode_message,
    join_sca,
    parse_deliver,
    parse_status_report,
    split_sca,
)
from drivers.simulator import SimulatedNetwork, Simulator, SimulatorOptions, serve_stream

OK = b"\r\nOK\r\n"


class Terminal(StreamTerminal):
    """The client end of the line: commands answered by OK, unsolicited lines and PDUs."""

    async def command(self, line: bytes) -> bytes:
        await self.stream.send_all(line + b"\r")
        return await self.read_until(OK)

    async def line(self) -> bytes:
        """One unsolicited line, without its framing."""
        assert await self.read_until(b"\r\n") == b"\r\n"
        return (await self.read_until(b"\r\n"))[:-2]

    async def pdu_line(self) -> bytes:
        """The TPDU on the line after +CMT/+CDS/+CMGR, without the SMSC address."""
        _smsc, tpdu = split_sca(bytes.fromhex((await self.read_until(b"\r\n"))[:-2].decode()))
        return tpdu

    async def send_submit(self, recipient: str, text: str, *, report: bool = True) -> int:
        (part,) = encode_message(text).parts
        tpdu = build_submit(recipient, part, status_report=report)
        await self.stream.send_all(b"AT+CMGS=%d\r" % len(tpdu))
        assert await self.read_until(b"> ") == b"\r\n> "
        await self.stream.send_all(join_sca("", tpdu).hex().upper().encode() + b"\x1a")
        answer = await self.read_until(OK)
        assert answer.startswith(b"\r\n+CMGS: ")
        return int(answer[9:].split(b"\r\n")[0])


async def start(
    nursery: trio.Nursery, cnmi: bytes, **options: object
) -> tuple[Simulator, Terminal]:
    sim = Simulator(SimulatorOptions(**options))  # type: ignore[arg-type]
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_stream, sim, server)
    terminal = Terminal(client)
    assert await terminal.command(b"ATE0;+CMEE=1;+CNMI=" + cnmi) == b"ATE0;+CMEE=1;+CNMI=" + (
        cnmi + b"\r" + OK
    )
    return sim, terminal


async def read_stored(terminal: Terminal, index: int) -> bytes:
    await terminal.stream.send_all(b"AT+CMGR=%d\r" % index)
    assert (await terminal.line()).startswith(b"+CMGR: 0,,")
    tpdu = await terminal.pdu_line()
    assert await terminal.read_until(OK) == OK
    return tpdu


# ---- MO injection ------------------------------------------------------------------------------


async def test_mt_1_stores_and_indicates(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery, b"2,1,0,0,0")
    assert await sim.deliver_mo("+4799999999", "Hello edgegw") == [1]
    assert await terminal.line() == b'+CMTI: "SM",1'
    deliver = parse_deliver(await read_stored(terminal, 1))
    assert deliver.originator == "+4799999999"
    assert decode_concatenated([deliver.part]) == "Hello edgegw"


async def test_mt_0_stores_silently(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery, b"2,0,0,0,0")
    assert await sim.deliver_mo("12345", "no news") == [1]
    assert (
        await terminal.command(b"AT+CPMS?") == b'\r\n+CPMS: "SM",1,30,"SM",1,30,"SM",1,30\r\n' + OK
    )


async def test_mt_2_delivers_directly_and_waits_for_cnma(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, b"2,2,0,0,0")
    assert await terminal.command(b"AT+CSMS=1") == b"\r\n+CSMS: 1,1,1\r\n" + OK
    assert await sim.deliver_mo("+4799999999", "first") == []
    assert await sim.deliver_mo("+4799999999", "second") == []
    assert await terminal.line() == b"+CMT: ,23"
    assert decode_concatenated([parse_deliver(await terminal.pdu_line()).part]) == "first"
    # TS 27.005 3.4.1: no second +CMT before the first is acknowledged.
    with trio.move_on_after(5):
        await terminal.read_until(b"+CMT")
        pytest.fail("a second +CMT came before +CNMA")
    await terminal.stream.send_all(b"AT+CNMA\r")
    assert await terminal.read_until(OK) == OK
    assert await terminal.line() == b"+CMT: ,24"
    assert decode_concatenated([parse_deliver(await terminal.pdu_line()).part]) == "second"
    assert await terminal.command(b"AT+CNMA") == OK
    assert (
        await terminal.command(b"AT+CPMS?") == b'\r\n+CPMS: "SM",0,30,"SM",0,30,"SM",0,30\r\n' + OK
    )


async def test_an_unacknowledged_cmt_is_stored_and_routing_drops_to_zero(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, b"2,2,0,1,0", ack_timeout=15.0)
    await terminal.command(b"AT+CSMS=1")
    start_time = trio.current_time()
    await sim.deliver_mo("+4799999999", "nobody acks")
    await terminal.read_until(b"+CMT: ")
    await terminal.read_until(b"\r\n")
    await terminal.pdu_line()
    await trio.sleep(20)
    # TS 27.005 3.4.1: <mt> and <ds> are 0 now and the network's retry went to the storage.
    assert await terminal.command(b"AT+CNMI?") == b"\r\n+CNMI: 2,0,0,0,0\r\n" + OK
    await terminal.stream.send_all(b"AT+CNMA\r")
    assert await terminal.read_until(b"\r\n+CMS ERROR: 340\r\n") == b"\r\n+CMS ERROR: 340\r\n"
    deliver = parse_deliver(await read_stored(terminal, 1))
    assert decode_concatenated([deliver.part]) == "nobody acks"
    assert trio.current_time() - start_time >= 15.0


async def test_cnma_2_makes_the_network_try_again(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, b"2,2,0,0,0", ack_timeout=10.0)
    await terminal.command(b"AT+CSMS=1")
    await sim.deliver_mo("+4799999999", "again")
    assert await terminal.line() == b"+CMT: ,23"
    await terminal.pdu_line()
    sent_at = trio.current_time()
    assert await terminal.command(b"AT+CNMA=2") == OK
    assert await terminal.line() == b"+CMT: ,23"
    assert trio.current_time() - sent_at == pytest.approx(10.0)


@pytest.mark.parametrize("concat_16bit", [False, True])
async def test_long_text_arrives_as_concatenated_parts(
    nursery: trio.Nursery, concat_16bit: bool
) -> None:
    sim, terminal = await start(nursery, b"2,1,0,0,0")
    text = "".join(f"word{number} " for number in range(80))  # 560 characters, GSM 7-bit
    indexes = await sim.deliver_mo("+4799999999", text, concat_16bit=concat_16bit, reference=300)
    assert indexes == [1, 2, 3, 4]
    delivers = []
    for index in indexes:
        assert await terminal.line() == b'+CMTI: "SM",%d' % index
    for index in indexes:
        delivers.append(parse_deliver(await read_stored(terminal, index)))
    infos = [concat_info(deliver.udh) for deliver in delivers]
    reference = 300 if concat_16bit else 300 % 256
    assert infos == [(reference, 4, seq) for seq in (1, 2, 3, 4)]
    # The IEI says which kind: 08 for 16-bit references, 00 for 8-bit ones.
    assert {deliver.udh[1] for deliver in delivers} == {0x08 if concat_16bit else 0x00}
    assert decode_concatenated([deliver.part for deliver in delivers]) == text
    # TP-MMS: more messages follow until the last part.
    assert [deliver.more_messages for deliver in delivers] == [True, True, True, False]


@pytest.mark.parametrize("concat_16bit", [False, True])
async def test_ucs2_with_emoji_survives_splitting(
    nursery: trio.Nursery, concat_16bit: bool
) -> None:
    sim, terminal = await start(nursery, b"2,0,0,0,0")
    text = "Hei 😀 på deg! " * 12  # UCS-2: the emoji's surrogate pairs must not be split
    indexes = await sim.deliver_mo("+4799999999", text, concat_16bit=concat_16bit)
    assert len(indexes) > 1
    delivers = [parse_deliver(await read_stored(terminal, index)) for index in indexes]
    assert {deliver.dcs for deliver in delivers} == {0x08}
    for deliver in delivers:
        assert not 0xD800 <= int.from_bytes(deliver.payload[-2:], "big") <= 0xDBFF
    assert decode_concatenated([deliver.part for deliver in delivers]) == text


async def test_references_differ_between_messages(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery, b"2,0,0,0,0")
    long = "x" * 200
    first = await sim.deliver_mo("+4799999999", long)
    second = await sim.deliver_mo("+4799999999", long)
    refs = set()
    for index in first + second:
        info = concat_info(parse_deliver(await read_stored(terminal, index)).udh)
        assert info is not None
        refs.add(info[0])
    assert len(refs) == 2


VECTOR_8BIT_ALPHANUMERIC = bytes.fromhex(
    # SMS-DELIVER from alphanumeric "edgegw" (TOA D0), PID 00, DCS 04 (8-bit data),
    # SCTS 2026-11-24 21:00:00 +00, UDL 4, UD DEADBEEF; assembled field by field from
    # TS 23.040 section 9.2.2.1 and 9.1.2.5 (alphanumeric address, TS 23.038 septets).
    "040BD065F2B97CBE03000462114212000000" + "04DEADBEEF"
)


async def test_raw_pdu_with_8bit_data_and_alphanumeric_originator(nursery: trio.Nursery) -> None:
    sim, terminal = await start(nursery, b"2,1,0,0,0")
    assert await sim.deliver_mo_pdu(VECTOR_8BIT_ALPHANUMERIC) == [1]
    assert await terminal.line() == b'+CMTI: "SM",1'
    tpdu = await read_stored(terminal, 1)
    assert tpdu == VECTOR_8BIT_ALPHANUMERIC
    deliver = parse_deliver(tpdu)
    assert (deliver.originator, deliver.dcs, deliver.payload) == ("edgegw", 4, b"\xde\xad\xbe\xef")


async def test_a_raw_pdu_that_is_no_sms_deliver_is_refused(nursery: trio.Nursery) -> None:
    sim, _terminal = await start(nursery, b"2,1,0,0,0")
    with pytest.raises(GsmError):
        await sim.deliver_mo_pdu(b"\x01\x00\x00")


async def test_mo_waits_in_the_network_until_the_modem_is_registered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, b"2,1,0,0,0", pin="1111")
    assert await sim.deliver_mo("+4799999999", "after the PIN") == []
    assert await terminal.command(b"AT+CPIN=1111") == OK
    assert await terminal.line() == b'+CMTI: "SM",1'


# ---- status reports ----------------------------------------------------------------------------


async def read_report(terminal: Terminal) -> SmsStatusReport:
    head = await terminal.line()
    assert head.startswith(b"+CDS: ")
    tpdu = await terminal.pdu_line()
    assert int(head[6:]) == len(tpdu)
    return parse_status_report(tpdu)


async def test_ds_1_reports_directly_after_the_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _sim, terminal = await start(nursery, b"2,1,0,1,0", report_delay=7.5)
    sent_at = trio.current_time()
    reference = await terminal.send_submit("+4712345678", "report me")
    report = await read_report(terminal)
    assert trio.current_time() - sent_at == pytest.approx(7.5)
    assert (report.message_reference, report.recipient, report.status) == (
        reference,
        "+4712345678",
        0,
    )
    assert (report.discharge_time - report.sc_timestamp).total_seconds() == pytest.approx(7, abs=1)


async def test_ds_2_stores_the_report_and_indicates_cdsi(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _sim, terminal = await start(nursery, b"2,1,0,2,0", report_delay=3.0, report_status=0x46)
    sent_at = trio.current_time()
    reference = await terminal.send_submit("+4712345678", "expired")
    assert await terminal.line() == b'+CDSI: "SM",1'
    assert trio.current_time() - sent_at == pytest.approx(3.0)
    await terminal.stream.send_all(b"AT+CMGR=1\r")
    assert await terminal.line() == b"+CMGR: 0,,24"
    report = parse_status_report(await terminal.pdu_line())
    assert (report.message_reference, report.status) == (reference, 0x46)


async def test_ds_1_with_csms_1_needs_cnma_too(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _sim, terminal = await start(nursery, b"2,1,0,1,0", report_delay=1.0)
    await terminal.command(b"AT+CSMS=1")
    await terminal.send_submit("+4712345678", "one")
    await terminal.send_submit("+4712345679", "two")
    assert (await read_report(terminal)).recipient == "+4712345678"
    with trio.move_on_after(5):
        await terminal.read_until(b"+CDS")
        pytest.fail("a second +CDS came before +CNMA")
    await terminal.stream.send_all(b"AT+CNMA\r")
    assert await terminal.read_until(OK) == OK
    assert (await read_report(terminal)).recipient == "+4712345679"


async def test_per_recipient_outcomes_and_delays(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = SimulatedNetwork()
    network.set_outcome("+4700000001", 0x45, delay=20.0)
    network.set_outcome("+4700000002", 0x22)
    network.set_outcome("+4700000003", 0x00, delay=math.inf)
    sim, terminal = await start(nursery, b"2,1,0,1,0", report_delay=5.0)
    sim.network = network
    start_time = trio.current_time()
    for recipient in ("+4700000001", "+4700000002", "+4700000003", "+4700000004"):
        await terminal.send_submit(recipient, "outcome")
    reports = []
    for _ in range(3):
        reports.append(await read_report(terminal))
        reports_time = trio.current_time() - start_time
        assert reports_time == pytest.approx(20.0 if len(reports) == 3 else 5.0)
    assert [(report.recipient, report.status) for report in reports] == [
        ("+4700000002", 0x22),
        ("+4700000004", 0x00),
        ("+4700000001", 0x45),
    ]
    with trio.move_on_after(3600):
        await terminal.read_until(b"+CDS")
        pytest.fail("a report came for a recipient set to never report")


async def test_reports_arrive_at_their_due_times_whatever_order_they_were_scheduled_in(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The timer task sleeps until the earliest report; one due earlier must wake it, one due
    # later must still come at its own time.
    delays = {"+4700000001": 100.0, "+4700000002": 10.0, "+4700000003": 50.0, "+4700000004": 10.5}
    sim, terminal = await start(nursery, b"2,1,0,1,0", report_delay=5.0)
    for recipient, delay in delays.items():
        sim.network.set_outcome(recipient, 0x00, delay=delay)
    due = {}
    for recipient, delay in delays.items():
        await terminal.send_submit(recipient, "when")
        due[recipient] = trio.current_time() + delay
    for recipient in sorted(delays, key=due.__getitem__):
        report = await read_report(terminal)
        assert (report.recipient, trio.current_time()) == (recipient, due[recipient])
        seconds = (report.discharge_time - report.sc_timestamp).total_seconds()
        assert seconds == pytest.approx(delays[recipient], abs=1)


async def test_report_delay_none_never_reports_and_no_srr_no_report(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _sim, terminal = await start(nursery, b"2,1,0,1,0", report_delay=None)
    await terminal.send_submit("+4712345678", "never")
    sim2, terminal2 = await start(nursery, b"2,1,0,1,0", report_delay=1.0)
    await terminal2.send_submit("+4712345678", "not asked", report=False)
    with trio.move_on_after(3600):
        await terminal.read_until(b"+CDS")
        pytest.fail("a report came with report_delay None")
    with trio.move_on_after(10):
        await terminal2.read_until(b"+CDS")
        pytest.fail("a report came for an SMS without TP-SRR")
    assert [sms.status_report for sms in sim2.network.sent] == [False]


async def test_reports_follow_the_mr_across_its_wrap(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _sim, terminal = await start(nursery, b"2,1,0,1,0", report_delay=0.5)
    for number in range(260):
        reference = await terminal.send_submit(f"+47{number:08d}", "wrap")
        assert reference == number % 256
        report = await read_report(terminal)
        assert (report.message_reference, report.recipient) == (reference, f"+47{number:08d}")


async def test_reports_wait_in_the_network_while_nobody_is_connected(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, b"2,1,0,2,0", report_delay=30.0)
    await terminal.send_submit("+4712345678", "report later")
    await terminal.stream.aclose()
    await trio.sleep(60)
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_stream, sim, server)
    terminal = Terminal(client)
    assert await terminal.line() == b'+CDSI: "SM",1'


async def test_mo_for_an_unplugged_modem_waits_until_it_is_back(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim, terminal = await start(nursery, b"2,1,0,0,0")
    sim.unplug(10.0)
    with pytest.raises(EOFError):
        await terminal.read_until(b"never")
    start_time = trio.current_time()
    # The modem came back with factory settings (<mt> 0), so the message is stored unannounced.
    assert await sim.deliver_mo("+4799999999", "when you are back") == [1]
    assert trio.current_time() - start_time == pytest.approx(10.0)
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_stream, sim, server)
    terminal = Terminal(client)
    assert await terminal.command(b"ATE0;+CPMS?") == (
        b'ATE0;+CPMS?\r\r\n+CPMS: "SM",1,30,"SM",1,30,"SM",1,30\r\n' + OK
    )
