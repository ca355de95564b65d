"""The AT driver against what real modems send, scripted byte by byte behind a real
pseudo-terminal: unsolicited codes no table names, boot noise, broken listings, resets.

The modem side is `support.scripted_modem.ScriptedModem` on the pty's master end (or, for a
restart without a word, the simulated modem's pty); the driver opens the slave's path through
the serial transport, as it opens a USB modem. Virtual time jumps only once the loop has idled
a few real milliseconds, so bytes in the pty are never overtaken.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tty
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from support.scripted_modem import OK, Answer, ScriptedModem, inbound

from drivers.at import AtModem, AtOptions
from drivers.at.driver import OTHER_URCS
from drivers.events import InboundSms, StatusReportReceived
from drivers.gsm import (
    build_deliver,
    build_status_report,
    decode_text,
    encode_message,
    join_sca,
)
from drivers.modem import ModemError, ModemUnavailable, OutgoingPart, SendOutcomeUnknown
from drivers.simulator import Simulator, SimulatorOptions, serve_pty
from drivers.transport import open_serial


@pytest.fixture
def pty_clock() -> trio.testing.MockClock:
    # Bytes written to a pty master reach the slave through the kernel's flip buffer a moment
    # later: time may jump only once the loop has idled for longer than that.
    return trio.testing.MockClock(autojump_threshold=0.01)


class Scripted(ScriptedModem):
    """A ScriptedModem whose answers may also be a list of byte strings and pauses (virtual
    seconds), written in turn, as a modem writes what it has while the network is slow."""

    async def _answer(self, stream: trio.abc.Stream, answer: Answer | list[Any]) -> None:
        if not isinstance(answer, list):
            await super()._answer(stream, answer)
            return
        for piece in answer:
            if isinstance(piece, bytes):
                await stream.send_all(piece)
            else:
                await trio.sleep(piece)


class PtyBench:
    """A fresh pty per open, the modem side of the nth served by `modems[n]` (the last one
    again when there are fewer)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.modems: list[ScriptedModem] = []
        self.paths: list[str] = []
        self.masters: list[trio.lowlevel.FdStream] = []
        self._fds: list[int] = []

    async def open(self) -> trio.abc.Stream:
        modem = self.modems[min(len(self.paths), len(self.modems) - 1)]
        master, slave = os.openpty()
        tty.setraw(slave)  # as a USB modem's port: no echo, no CR/LF translation by the kernel
        # The slave stays open here too: with no slave open the master reads EIO, and the
        # modem side would take that for the end before the transport has opened the path.
        self._fds += [master, slave]
        self.paths.append(os.ttyname(slave))
        self.masters.append(trio.lowlevel.FdStream(os.dup(master)))
        self.nursery.start_soon(modem.serve, self.masters[-1])
        return await open_serial(self.paths[-1])

    async def unplug(self) -> None:
        """The USB device goes: the latest pty's master end closes, its slave reads EIO."""
        await self.masters[-1].aclose()
        for fd in self._fds[-2:]:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def bench(nursery: trio.Nursery) -> Iterator[PtyBench]:
    made = PtyBench(nursery)
    yield made
    made.close()


def driver(bench: PtyBench, modem: ScriptedModem, **options: Any) -> AtModem:
    bench.modems.append(modem)
    settings: dict[str, Any] = {"health_interval": 0.0, "sweep_interval": 300.0, **options}
    return AtModem("m1", AtOptions(**settings), open_stream=bench.open)


def part(text: str) -> OutgoingPart:
    (encoded,) = encode_message(text).parts
    return OutgoingPart(recipient="+4791234567", part=encoded, status_report=True)


# ---- unsolicited codes no table names -------------------------------------------------------


@pytest.mark.parametrize(
    "noise",
    [
        b"\r\n+CGEV: ME PDN ACT 1\r\n",  # TS 27.007 10.1.19, LTE modems (SIM7600, EC25)
        b'\r\n*PSUTTZ: 24,12,4,10,48,31,"+4",0\r\n',  # SIM800 network time
        b"\r\n+CTZV: +4,0\r\n",  # TS 27.007 8.41 time zone
        b"\r\nSMS DONE\r\n\r\nPB DONE\r\n",  # SIM7600 boot noise
        b"\r\nDST: 0\r\n",  # SIM800 daylight saving time, after *PSUTTZ: and +CTZV:
        # A call to the SIM that nobody answers, and its caller gives up (SIM800, Quectel).
        b'\r\nRING\r\n\r\n+CLIP: "+4741000000",145,"",0,"",0\r\n\r\nNO CARRIER\r\n',
    ],
)
async def test_an_unsolicited_line_between_the_pdu_and_its_answer_does_not_lose_the_send(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock, noise: bytes
) -> None:
    # While the network takes its time over the SMS, the modem reports something unrelated;
    # that is no part of the AT+CMGS answer, which comes two seconds later.
    fake = Scripted()
    fake.cmgs_result = [noise, 2.0, b"\r\n+CMGS: 42\r\n" + OK]  # type: ignore[assignment]
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    assert await modem.send(part("sent once")) == 42
    assert len(fake.pdus) == 1
    assert modem.health().resyncs == 0


async def test_an_unnamed_unprefixed_line_before_a_slow_delete_does_not_lose_its_answer(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # The SIM takes a second to delete a message, and the modem has set its clock meanwhile.
    # Taken for text of the delete's answer, DST: 0 would make it look lost after final_grace.
    pdu = stored("delete me")
    fake = Scripted()
    fake.answers["AT+CMGL=4"] = listing((4, 1, pdu))
    header = b"\r\n+CMGR: 1,,%d\r\n" % (len(pdu) // 2 - 7)
    fake.answers["AT+CMGR=4"] = header + pdu.encode() + b"\r\n" + OK
    fake.answers["AT+CMGD=4"] = [b"\r\nDST: 0\r\n", 1.0, OK]  # type: ignore[assignment]
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    with trio.fail_after(30):
        (event,) = await inbound(modem, 1)
        await modem.acknowledge(event)
    assert fake.commands.count("AT+CMGD=4") == 1
    assert modem.health().resyncs == 0


async def test_an_unnamed_unprefixed_line_before_the_imei_does_not_hide_it(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # A SIM800 sets its clock from the network while it is being initialised: DST: 0 comes
    # before the bare IMEI, and the configured IMEI must still be found in the answer.
    fake = Scripted()
    fake.answers["AT+CGSN"] = b"\r\nDST: 0\r\n\r\n866191037123456\r\n" + OK
    modem = driver(bench, fake, imei="866191037123456")
    with trio.fail_after(30):
        await nursery.start(modem.run)
    assert modem.health().imei == "866191037123456"
    assert len(bench.paths) == 1


async def test_unsolicited_names_a_garbling_link_makes_up_are_counted_under_one_key(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # A noisy link turns bytes of unsolicited lines into `+NAME:` prefixes no modem has: counted
    # by name, months of them would grow the driver's counter without bound.
    fake = Scripted()
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    await trio.sleep(1.0)  # the first sweep of the storage answered: the line is idle
    made_up = b"".join(b"\r\n+XY%dZ: 1,2\r\n" % n for n in range(1000))
    await bench.masters[-1].send_all(made_up + b"\r\n^RSSI: 20\r\n")
    await trio.sleep(1.0)
    assert modem.urc_counts == {OTHER_URCS: 1000, "^RSSI": 1}
    assert (modem.health().garbage_lines, len(bench.paths)) == (0, 1)


# ---- a voice call to the SIM ------------------------------------------------------------------


async def test_a_call_that_stops_ringing_during_a_query_does_not_shift_the_answers(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # The call ends while the modem works out its signal quality. Taken for the answer to
    # AT+CSQ, NO CARRIER would leave +CSQ's own answer to be taken for AT+CREG?'s.
    fake = Scripted()
    ringing = b'\r\nRING\r\n\r\n+CLIP: "+4741000000",145,"",0,"",0\r\n'
    fake.answers["AT+CSQ"] = [ringing, b"\r\nNO CARRIER\r\n", 0.5, b"\r\n+CSQ: 20,0\r\n" + OK]  # type: ignore[assignment]
    modem = driver(bench, fake)
    with trio.fail_after(30):
        await nursery.start(modem.run)
    health = modem.health()
    assert (health.signal_dbm, health.registration) == (-73, "home")
    assert (health.resyncs, health.garbage_lines, len(bench.paths)) == (0, 0, 1)


# ---- listings of the storage ------------------------------------------------------------------

WHEN = dt.datetime(2024, 5, 17, 14, 2, 8, tzinfo=dt.UTC)


def stored(text: str) -> str:
    (encoded,) = encode_message(text).parts
    return join_sca("+4790002100", build_deliver("+4791234567", encoded, timestamp=WHEN)).hex()


def listing(*entries: tuple[int, int, str]) -> bytes:
    """An AT+CMGL=4 answer: `+CMGL: <index>,<stat>,,<length>` and the PDU line of each; the
    length counts the TPDU, not the 7 octets of the SMSC address in front (TS 27.005 3.1)."""
    out = b""
    for index, stat, pdu in entries:
        out += b"\r\n+CMGL: %d,%d,,%d\r\n%s" % (index, stat, len(pdu) // 2 - 7, pdu.encode())
    return out + b"\r\n" + OK


@pytest.mark.parametrize(
    "broken",
    [
        "not a PDU",  # the line was overwritten by noise
        stored("cut short")[:-1],  # a byte lost on the cable: odd length
        stored("cut short")[:-1] + "\x00",  # the same, with a NUL the framer drops
    ],
)
async def test_one_unreadable_entry_does_not_hide_the_rest_of_the_listing(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock, broken: str
) -> None:
    # Entries 1 and 3 are fine; entry 2's PDU line came garbled. Read alone (AT+CMGR=2) it
    # comes whole. Received messages in any order, with the modem's own sent one (stat 3).
    fake = Scripted()
    fake.answers["AT+CMGL=4"] = listing(
        (3, 0, stored("three")), (2, 1, broken), (5, 3, stored("sent")), (1, 1, stored("one"))
    )
    fake.answers["AT+CMGR=2"] = b"\r\n+CMGR: 1,,21\r\n%s\r\n" % stored("two").encode() + OK
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    with trio.fail_after(30):
        events = await inbound(modem, 3)
    assert sorted(e.index for e in events if e.index is not None) == [1, 2, 3]
    assert modem.health().state.value == "ready"


async def test_a_report_that_lost_an_octet_on_the_cable_is_read_again_not_taken_as_it_came(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # A failed delivery (TP-ST 46) followed by TP-PI. With an octet of its discharge time lost
    # on the way, the report still decodes: TP-ST read from TP-PI, delivered. Its header's
    # <length> says an octet is missing; read alone, the report comes whole.
    report = build_status_report(
        7, "+4791234567", sc_timestamp=WHEN, discharge_time=WHEN, status=0x46
    )
    whole = join_sca("+4790002100", report + b"\x00").hex()
    cut = whole[:-6] + whole[-4:]
    fake = Scripted()
    fake.answers["AT+CMGL=4"] = b"\r\n+CMGL: 1,0,,25\r\n%s\r\n" % cut.encode() + OK
    fake.answers["AT+CMGR=1"] = b"\r\n+CMGR: 0,,25\r\n%s\r\n" % whole.encode() + OK
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    with trio.fail_after(30):
        (event,) = await inbound(modem, 1)
    assert isinstance(event, StatusReportReceived)
    assert (event.report.message_reference, event.report.status) == (7, 0x46)


async def test_a_listing_not_in_pdu_mode_is_reported_not_taken_for_an_empty_storage(
    nursery: trio.Nursery,
    bench: PtyBench,
    pty_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A modem another program switched to text mode (AT+CMGF=1) lists its messages as text:
    # nothing in it can be read, and the sweep must say so rather than find the storage empty.
    fake = Scripted()
    fake.answers["AT+CMGL=4"] = (
        b'\r\n+CMGL: 1,"REC UNREAD","+4799999999",,"26/12/04,10:00:00+04"\r\nHei\r\n' + OK
    )
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    with trio.fail_after(30):
        while "AT+CMGL=4" not in fake.commands:  # noqa: ASYNC110
            await trio.sleep(0.1)
        while not modem.health().errors:  # noqa: ASYNC110
            await trio.sleep(0.1)
    assert "2 lines not read as PDU mode" in (modem.health().last_error or "")
    assert any("not read as PDU mode" in r.getMessage() for r in caplog.records)


async def test_a_failing_sweep_waits_for_the_next_interval_instead_of_repeating_at_once(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # The gateway committed index 4 while the port was away; on the new port the start-up
    # sweep lists it and deletes it, and the modem refuses the delete (+CMS ERROR: 500).
    pdu = stored("committed")
    first, second = Scripted(), Scripted()
    for fake in (first, second):
        fake.answers["AT+CMGL=4"] = listing((4, 1, pdu))
    deleting, swept_again = trio.Event(), trio.Event()

    def refuse() -> bytes:
        deleting.set()
        return b"\r\n+CMS ERROR: 500\r\n"

    second.answers["AT+CMGD=4"] = refuse

    def sweep() -> bytes:
        if second.commands.count("AT+CMGL=4") > 1:
            swept_again.set()
        return listing((4, 1, pdu))

    second.answers["AT+CMGL=4"] = sweep
    bench.modems.append(first)
    modem = driver(bench, second)
    await nursery.start(modem.run)
    (event,) = await inbound(modem, 1)
    await bench.unplug()
    await trio.sleep(0.5)
    await modem.acknowledge(event)  # deferred: the modem is away
    with trio.fail_after(30):
        await deleting.wait()
    # One sweep, one delete refused; the next try is the next sweep's, sweep_interval later.
    with trio.move_on_after(10.0):
        await swept_again.wait()
    assert second.commands.count("AT+CMGL=4") == 1
    assert second.commands.count("AT+CMGD=4") == 1


# ---- a modem that restarts on its own -----------------------------------------------------------


async def test_a_modem_that_restarts_on_its_own_is_initialised_again(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # A brown-out on the hub: the modem boots again on the same port (a UART, or a USB port
    # that does not re-enumerate) with echo on and +CNMI off, and says so (SIM800/SIM7600).
    fake = Scripted()
    initialised = trio.Event()

    def echo_off() -> bytes:
        fake.echo = False
        return OK

    def indications_on() -> bytes:
        if fake.commands.count("AT+CNMI=2,1,0,2,0") > 1:
            initialised.set()
        return OK

    fake.answers["ATE0"] = echo_off
    fake.answers["AT+CNMI=2,1,0,2,0"] = indications_on
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    assert fake.stream is not None
    fake.echo = True
    await fake.stream.send_all(b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n")
    with trio.fail_after(30):
        await initialised.wait()
    assert fake.commands.count("ATE0") == 2
    assert await modem.send(part("after the restart")) == 42
    assert len(bench.paths) == 1


async def test_a_restart_with_the_indication_backlog_full_reopens_the_port(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # While a send holds the modem for five seconds, the modem indicates more new messages
    # than the backlog holds, then restarts: the restart cannot wait in the backlog, and left
    # out nothing would initialise the modem again. The port is opened afresh instead.
    fake = Scripted()
    fake.cmgs_result = [5.0, b"\r\n+CMGS: 42\r\n" + OK]  # type: ignore[assignment]
    modem = driver(bench, fake)
    await nursery.start(modem.run)

    async def send() -> None:
        with contextlib.suppress(ModemError):
            await modem.send(part("while it restarts"))

    nursery.start_soon(send)
    with trio.fail_after(30):
        while not fake.pdus:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert fake.stream is not None
    flood = b"".join(b'\r\n+CMTI: "SM",%d\r\n' % index for index in range(100))
    await fake.stream.send_all(flood + b"\r\nRDY\r\n")
    with trio.fail_after(60):
        while len(bench.paths) < 2:  # noqa: ASYNC110
            await trio.sleep(0.1)
        while modem.health().state.value != "ready":  # noqa: ASYNC110
            await trio.sleep(0.1)


# ---- registration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "urc",
    [
        b"\r\n+CREG: 5\r\n",
        b'\r\n+CREG: 5,"00C3","0010ABCD"\r\n',
        b'\r\n+CREG: 5,"00C3","0010ABCD",7\r\n',
        b"\r\n+CREG: 5,,,7\r\n",  # location left out by a modem that does not know it
        b"\r\n+CREG: 5,00C3,0010ABCD\r\n",  # unquoted, as some firmware writes it
    ],
)
async def test_a_registration_urc_in_every_form_updates_health(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock, urc: bytes
) -> None:
    fake = Scripted()
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    assert modem.health().registration == "home"
    assert fake.stream is not None
    await fake.stream.send_all(urc)
    await trio.sleep(1.0)
    assert modem.health().registration == "roaming"


async def test_a_registration_urc_with_a_noise_octet_for_a_digit_keeps_the_port(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # Octet B3 on a noisy cable reads as "³" in Latin-1: a digit to str.isdigit, which int()
    # refuses. Its ValueError ended the reader with a traceback, and the port was reopened.
    fake = Scripted()
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    assert fake.stream is not None
    await fake.stream.send_all(b"\r\n+CREG: \xb3\r\n")
    await trio.sleep(10.0)
    assert (modem.health().registration, modem.health().recoveries) == ("home", 0)
    assert len(bench.paths) == 1


# ---- an answer to the PDU that cannot be read ---------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"\r\n\xff+CMGS: 42\r\n\r\nOK\r\n",  # noise glued to the +CMGS line: it is dropped
        b"\r\n+CMGS: 4\xfe2\r\n\r\nOK\r\n",
        b"\r\n+CMGS: x\r\n\r\nOK\r\n",
    ],
)
async def test_an_ok_after_the_pdu_with_an_unreadable_reference_leaves_it_to_the_crash_policy(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock, answer: bytes
) -> None:
    # The modem said OK to the PDU: the network took it. Only its TP-MR is unreadable, so
    # whether to send it again is in_flight_after_crash's to decide (SendOutcomeUnknown), not
    # a plain "modem unavailable", which the gateway always answers by sending again.
    fake = Scripted()
    fake.cmgs_result = answer
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    with pytest.raises(SendOutcomeUnknown):
        await modem.send(part("sent once"))
    assert len(fake.pdus) == 1


# ---- noise on the line --------------------------------------------------------------------------


async def test_an_iccid_after_a_direct_delivery_garbled_by_noise_is_not_taken_for_its_pdu(
    nursery: trio.Nursery,
    bench: PtyBench,
    pty_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The modem kept its +CNMI of a former run: an SMS delivered directly comes while it is
    # initialised, and noise stands where its PDU line should be (TS 27.005 3.4.1: the line
    # right after the header). The ICCID the driver asks for next is bare hex: held for that
    # header's PDU, it was refused as that SMS, and the ICCID read again.
    iccid = "89470800123456789012"
    fake = Scripted()
    fake.answers["AT+CGSN"] += b"\r\n+CMT: ,24\r\n\xff\x02\r\n"  # type: ignore[operator]
    fake.answers["AT+CCID"] = b"\r\n%s\r\n" % iccid.encode() + OK
    modem = driver(bench, fake, iccid=iccid)
    with trio.fail_after(30):
        await nursery.start(modem.run)
    await trio.sleep(1.0)
    health = modem.health()
    assert (health.iccid, health.undecodable, health.received) == (iccid, 1, 0)
    assert fake.commands.count("AT+CCID") == 1
    assert not [r for r in caplog.records if iccid in r.getMessage()]
    assert len(bench.paths) == 1


async def test_two_direct_deliveries_whose_pdu_lines_were_lost_are_both_refused(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock
) -> None:
    # Two different SMS of the same length, each delivered directly (+CMT) with noise where
    # its PDU line should be. The second was taken for a repeat of the first, the header
    # alone being all there is to compare: acknowledged with AT+CNMA, and so lost, though the
    # network would deliver it again, as it does the first.
    fake = Scripted()
    fake.answers.update({f"AT+CNMI={setting}": b"\r\nERROR\r\n" for setting in AtOptions().cnmi})
    fake.answers.update(
        {
            "AT+CNMI=2,2,0,1,0": OK,
            "AT+CSMS=1": b"\r\n+CSMS: 1,1,1\r\n" + OK,
            "AT+CNMA": OK,
        }
    )
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    await trio.sleep(1.0)
    assert fake.stream is not None
    for _ in range(2):
        await fake.stream.send_all(b"\r\n+CMT: ,24\r\n\xff\x02\r\n")
        await trio.sleep(1.0)
    assert "AT+CNMA" not in fake.commands
    assert modem.health().undecodable == 2


@pytest.mark.parametrize("noise", [b"\x00", b"\xff", b"\x00\x1b\xff\x02"])
async def test_a_prompt_right_after_noise_is_still_the_prompt(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock, noise: bytes
) -> None:
    # A NUL (or a framing error's 0xFF) just before the "> ": not seen as the prompt, the
    # send waited command_timeout (10 s) for it, escaped and resynchronised, the part unsent.
    fake = Scripted()
    fake.prompt = b"\r\n" + noise + b"> "
    modem = driver(bench, fake)
    await nursery.start(modem.run)
    start = trio.current_time()
    assert await modem.send(part("sent at once")) == 42
    assert trio.current_time() - start < 1.0
    assert (len(fake.pdus), fake.escapes, modem.health().resyncs) == (1, 0, 0)


@pytest.mark.parametrize(
    ("command", "garbled"),
    [
        ("AT+CSQ", b"\r\n+CSQ: 2\xff0,0\r\n" + OK),
        ("AT+CREG?", b"\r\n+CREG: 0,\x1f1\r\n" + OK),
        ("AT+COPS?", b'\r\n+COPS: 0,0,"Tele\x7fnor"\r\n' + OK),
        ("AT+CSQ", b"\r\n+CSQ: \xb3,0\r\n" + OK),  # noise Latin-1 reads as a digit
    ],
)
async def test_a_health_answer_garbled_by_noise_costs_that_poll_not_the_port(
    nursery: trio.Nursery,
    bench: PtyBench,
    pty_clock: trio.testing.MockClock,
    command: str,
    garbled: bytes,
) -> None:
    # The noise line is dropped, so the OK comes without the answer's line: taken for an
    # unreadable answer, it reopened the port and initialised the modem again.
    fake = Scripted()
    clean = fake.answers[command]
    assert isinstance(clean, bytes)
    asked = iter(range(1000))
    fake.answers[command] = lambda: garbled if next(asked) == 1 else clean
    modem = driver(bench, fake, health_interval=10.0)
    await nursery.start(modem.run)
    await trio.sleep(25.0)
    health = modem.health()
    assert fake.commands.count(command) == 3
    assert (health.signal_dbm, health.registration, health.operator) == (-73, "home", "Telenor")
    assert (health.state.value, health.recoveries, len(bench.paths)) == ("ready", 0, 1)


@pytest.mark.parametrize("end", [b"\r\n", b""])
async def test_a_line_longer_than_max_line_is_dropped_and_the_port_kept(
    nursery: trio.Nursery, bench: PtyBench, pty_clock: trio.testing.MockClock, end: bytes
) -> None:
    # A modem that streams junk (a wrong baud rate for a moment, a hub's reset): a line of
    # 5000 bytes, its end come or not yet when the next answer, an OK, ends it. It reopened
    # the port; no answer is that long, so it is one unrecognised line, dropped as it comes.
    fake = Scripted()
    modem = driver(bench, fake, max_line=4096)
    await nursery.start(modem.run)
    await trio.sleep(1.0)  # the first sweep of the storage answered: the line is idle
    assert fake.stream is not None
    await fake.stream.send_all(b"\r\n" + b"Z" * 5000 + end)
    await trio.sleep(1.0)
    assert await modem.send(part("sent after the junk")) == 42
    health = modem.health()
    assert (health.state.value, health.garbage_lines, health.recoveries) == ("ready", 1, 0)
    assert len(bench.paths) == 1


# ---- a modem that restarts without a word: the simulated modem behind its pty ---------------


async def silently_restarting(nursery: trio.Nursery, **options: Any) -> tuple[Simulator, str]:
    """A simulated modem in text mode at power-on that restarts without RDY after 100 s."""
    sim = Simulator(SimulatorOptions(silent_restart=100.0, text_mode=True, **options))
    path: str = await nursery.start(serve_pty, sim)
    return sim, path


@pytest.mark.parametrize("pin", [None, "1234"])
async def test_a_silent_restart_is_seen_by_the_next_health_poll_and_initialised_again(
    nursery: trio.Nursery, pty_clock: trio.testing.MockClock, pin: str | None
) -> None:
    # Back with its indications off, an SMS and a status report came with no +CMTI or +CDSI
    # (or, its PIN asked again, stayed with the network), and AT+CMGL=4 fails in text mode:
    # neither was read until something reopened the port, and a send was refused meanwhile.
    sim, path = await silently_restarting(nursery, pin=pin, report_delay=105.0)
    modem = AtModem("pty", AtOptions(port=path, pin=pin, health_interval=60.0))
    await nursery.start(modem.run)
    reference = await modem.send(part("before the restart"))
    await trio.sleep(101.0)
    await sim.deliver_mo("+4791234567", "while it restarted")
    with trio.fail_after(30.0):  # the health poll at 120 s
        events = await inbound(modem, 2)
    (mo,) = [event for event in events if isinstance(event, InboundSms)]
    (report,) = [event for event in events if isinstance(event, StatusReportReceived)]
    assert decode_text(mo.deliver.part) == "while it restarted"
    assert report.report.message_reference == reference
    assert (sim.engine.echo, sim.engine.cmgf, sim.engine.cnmi[1]) == (False, 0, 1)
    health = modem.health()
    assert (health.state.value, health.recoveries, health.sim) == ("ready", 1, "READY")
    assert await modem.send(part("after it")) == reference + 1
    assert [sms.text for sms in sim.network.sent] == ["before the restart", "after it"]


async def test_a_silent_restart_that_keeps_numeric_errors_is_seen_by_the_polls_echo(
    nursery: trio.Nursery, pty_clock: trio.testing.MockClock
) -> None:
    # A modem whose stored profile (AT&W) or factory setting has +CMEE: 1 answers the poll's
    # AT+CMEE? as initialised after a silent restart: the poll saw nothing, and an SMS that
    # came unannounced was never read, AT+CMGL=4 failing in text mode, on a gateway that
    # sends nothing. The poll's own commands come back echoed, which ATE0 had turned off.
    sim, path = await silently_restarting(nursery)
    modem = AtModem("pty", AtOptions(port=path, health_interval=60.0))
    await nursery.start(modem.run)
    await trio.sleep(101.0)
    sim.engine.cmee = 1  # kept across the restart
    await sim.deliver_mo("+4791234567", "while it restarted")
    with trio.fail_after(30.0):  # the health poll at 120 s
        (mo,) = await inbound(modem, 1)
    assert isinstance(mo, InboundSms)
    assert decode_text(mo.deliver.part) == "while it restarted"
    assert (sim.engine.echo, sim.engine.cmgf, sim.engine.cnmi[1]) == (False, 0, 1)
    assert modem.health().recoveries == 1


@pytest.mark.parametrize("pin", [None, "1234"])
async def test_a_send_right_after_a_silent_restart_goes_out_once_and_in_pdu_mode(
    nursery: trio.Nursery, pty_clock: trio.testing.MockClock, pin: str | None
) -> None:
    # Before the health poll saw the restart, a text-mode modem read AT+CMGS=<length> as
    # AT+CMGS=<da>: it prompted, took the PDU's hex as the text and sent a real SMS of hex
    # digits to a number like "32", and the part counted as sent (with its PIN asked again,
    # the send was refused until the poll). The echo of AT+CMGS, which ATE0 had turned off,
    # says it restarted: ESC, not the PDU, and it is initialised again at once.
    sim, path = await silently_restarting(nursery, pin=pin)
    modem = AtModem("pty", AtOptions(port=path, pin=pin, health_interval=60.0))
    await nursery.start(modem.run)
    await modem.send(part("before the restart"))
    await trio.sleep(101.0)  # it restarted at 100 s; the next health poll is at 120 s
    with pytest.raises(ModemUnavailable, match="restarted") as caught:
        await modem.send(part("after it"))
    assert not isinstance(caught.value, SendOutcomeUnknown)
    assert (sim.engine.echo, sim.engine.cmgf, sim.engine.cnmi[1]) == (False, 0, 1)
    assert await modem.send(part("after it")) == 1
    assert trio.current_time() < 110.0
    assert [(sms.recipient, sms.text) for sms in sim.network.sent] == [
        ("+4791234567", "before the restart"),
        ("+4791234567", "after it"),
    ]
    health = modem.health()
    assert (health.state.value, health.recoveries, health.sim) == ("ready", 1, "READY")
    assert health.resyncs == 0  # the ESC's answer came, so the line stayed in step


async def test_a_modem_whose_echo_stays_on_after_ate0_still_sends(
    nursery: trio.Nursery, pty_clock: trio.testing.MockClock
) -> None:
    # Its echo of AT+CMGS is no sign of a restart: the driver saw at initialisation that ATE0
    # did not take, and writes the PDU after the prompt as ever.
    sim = Simulator(SimulatorOptions(profile="echo_on"))
    path: str = await nursery.start(serve_pty, sim)
    modem = AtModem("pty", AtOptions(port=path, health_interval=60.0))
    await nursery.start(modem.run)
    assert [await modem.send(part(text)) for text in ("one", "two")] == [0, 1]
    assert [sms.text for sms in sim.network.sent] == ["one", "two"]
    assert (modem.health().recoveries, sim.engine.echo_on) == (0, True)
