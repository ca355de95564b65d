"""A modem scripted from a table of answers, for the AT driver's tests: it answers each command
line, gives `> ` after AT+CMGS and takes the PDU up to Ctrl-Z (ESC aborts it), TS 27.005
section 3.5.1; on any trio stream, a memory stream or a pty's master end alike."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from drivers.at import AtModem
from drivers.events import InboundSms, StatusReportReceived

OK = b"\r\nOK\r\n"

Answer = bytes | None | Callable[[], bytes | None]


def resync_answer(nonce: int) -> bytes:
    """The answer to the driver's resync `ATS7=<nonce>;S7?`: the nonce read back."""
    return b"\r\n%03d\r\n" % nonce + OK


def default_answers() -> dict[str, Answer]:
    return {
        **{f"ATS7={n};S7?": resync_answer(n) for n in range(1, 256)},
        "AT": OK,
        "ATE0": OK,
        "AT+CMEE=1": OK,
        "AT+CPIN?": b"\r\n+CPIN: READY\r\n" + OK,
        "AT+CMGF=0": OK,
        "AT+CSQ": b"\r\n+CSQ: 20,0\r\n" + OK,
        "AT+CREG?": b"\r\n+CREG: 0,1\r\n" + OK,
        # Identity, storage and indications as a SIM800 answers them (SIM800 Series AT Command
        # Manual V1.09): no AT+CEREG, +CCID bare.
        "AT+CGMI": b"\r\nSIMCOM_Ltd\r\n" + OK,
        "AT+CGMM": b"\r\nSIMCOM_SIM800L\r\n" + OK,
        "AT+CGSN": b"\r\n866191037123456\r\n" + OK,
        "AT+CCID": b"\r\n8947080012345678901\r\n" + OK,
        "AT+CPMS=?": b'\r\n+CPMS: ("SM","ME","SM_P","ME_P","MT"),("SM","ME","SM_P","ME_P","MT"),'
        b'("SM","ME","SM_P","ME_P","MT")\r\n' + OK,
        'AT+CPMS="SM","SM","SM"': b"\r\n+CPMS: 0,30,0,30,0,30\r\n" + OK,
        "AT+CNMI=2,1,0,2,0": OK,
        "AT+CREG=2": OK,
        "AT+COPS=3,0": OK,
        "AT+COPS?": b'\r\n+COPS: 0,0,"Telenor"\r\n' + OK,
        "AT+CMGL=4": OK,
    }


INIT_COMMANDS = [
    "AT",
    "ATE0",
    "AT+CMEE=1",
    "AT+CGMI",
    "AT+CGMM",
    "AT+CGSN",
    "AT+CCID",
    "AT+CPIN?",
    "AT+CMGF=0",
    "AT+CPMS=?",
    'AT+CPMS="SM","SM","SM"',
    "AT+CNMI=2,1,0,2,0",
    "AT+CREG=2",
    "AT+CEREG=2",
    "AT+COPS=3,0",
    "AT+CSQ",
    "AT+CREG?",
    "AT+CEREG?",
    "AT+COPS?",
]


@dataclass
class ScriptedModem:
    """Answers command lines from a table; after a "> " it collects the PDU up to Ctrl-Z."""

    answers: dict[str, Answer] = field(default_factory=default_answers)
    prompt: bytes | None = b"\r\n> "  # None: never prompt after AT+CMGS
    cmgs_result: Answer = b"\r\n+CMGS: 42\r\n" + OK
    echo: bool = False
    commands: list[str] = field(default_factory=list)
    pdus: list[str] = field(default_factory=list)
    escapes: int = 0
    hung: bool = False  # reads everything, answers nothing: a modem whose firmware hangs
    stream: trio.abc.Stream | None = None

    async def serve(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        # The driver hangs up whenever it gives up on a port, also in the middle of an answer.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._serve(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        buffer = b""
        in_pdu = False
        while True:
            data = await stream.receive_some(1024)
            if not data:
                return
            buffer += data
            while True:
                if in_pdu:
                    end = min(
                        (i for i in (buffer.find(b"\x1a"), buffer.find(b"\x1b")) if i >= 0),
                        default=-1,
                    )
                    if end < 0:
                        break
                    pdu, terminator, buffer = buffer[:end], buffer[end : end + 1], buffer[end + 1 :]
                    in_pdu = False
                    if terminator == b"\x1b":
                        self.escapes += 1
                        continue
                    self.pdus.append(pdu.decode())
                    if self.hung:
                        continue
                    if self.echo:
                        await stream.send_all(pdu + b"\x1a")
                    await self._answer(stream, self.cmgs_result)
                    continue
                while buffer.startswith(b"\x1b"):
                    self.escapes += 1
                    buffer = buffer[1:]
                end = buffer.find(b"\r")
                if end < 0:
                    break
                line, buffer = buffer[:end].decode().strip(), buffer[end + 1 :]
                if not line:
                    continue
                self.commands.append(line)
                if self.hung:
                    continue
                if self.echo:
                    await stream.send_all(line.encode() + b"\r")
                if line.startswith("AT+CMGS="):
                    if self.prompt is not None:
                        await stream.send_all(self.prompt)
                        in_pdu = True
                    continue
                await self._answer(stream, self.answers.get(line, b"\r\nERROR\r\n"))

    async def _answer(self, stream: trio.abc.Stream, answer: Answer) -> None:
        value = answer() if callable(answer) else answer
        if value is not None:
            await stream.send_all(value)


async def inbound(modem: AtModem, count: int) -> list[InboundSms | StatusReportReceived]:
    """The next `count` inbound events of the driver, skipping health changes and the end of
    its first read of the storage."""
    events: list[InboundSms | StatusReportReceived] = []
    while len(events) < count:
        event = await modem.events.receive()
        if isinstance(event, InboundSms | StatusReportReceived):
            events.append(event)
    return events
