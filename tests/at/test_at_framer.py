"""The AT framer against golden transcripts, hostile input and the cases real modems produce."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at.framer import (
    NEED_DATA,
    AtEvent,
    AtFramer,
    FinalKind,
    FinalResult,
    Garbage,
    Prompt,
    Response,
    Urc,
)

VECTORS = sorted((Path(__file__).parent.parent / "vectors" / "at").glob("*.json"))


def describe(event: AtEvent) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(event)
    if isinstance(event, Response):
        fields = {"lines": list(event.lines), "final": msgspec.to_builtins(event.final)}
        fields["final"]["kind"] = event.final.kind.name
    return {"type": type(event).__name__, **fields}


def drain(framer: AtFramer) -> list[AtEvent]:
    events: list[AtEvent] = []
    while (event := framer.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def feed(framer: AtFramer, data: bytes, chunk: int | None) -> list[AtEvent]:
    if chunk is None:
        framer.receive_data(data)
        return drain(framer)
    events: list[AtEvent] = []
    for start in range(0, len(data), chunk):
        framer.receive_data(data[start : start + chunk])
        events.extend(drain(framer))
    return events


def run_transcript(steps: list[dict[str, Any]], chunk: int | None) -> list[list[dict[str, Any]]]:
    framer = AtFramer()
    got = []
    for step in steps:
        if step["expect"] is not None:
            framer.expect(step["expect"])
            if step.get("prompt"):
                framer.expect_prompt()
        got.append([describe(e) for e in feed(framer, step["modem"].encode("latin-1"), chunk)])
    return got


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
@pytest.mark.parametrize("chunk", [None, 1, 3], ids=["whole", "bytewise", "by3"])
def test_golden_transcript(path: Path, chunk: int | None) -> None:
    vector = json.loads(path.read_text(encoding="utf-8"))
    assert vector["source"]
    expected = [step["events"] for step in vector["steps"]]
    assert run_transcript(vector["steps"], chunk) == expected


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_golden_transcript_with_trailing_bytes(path: Path) -> None:
    vector = json.loads(path.read_text(encoding="utf-8"))
    framer = AtFramer()
    for step in vector["steps"]:
        if step["expect"] is not None:
            framer.expect(step["expect"])
            if step.get("prompt"):
                framer.expect_prompt()
        # The next line has begun but not ended: it must wait, and the events before it not.
        events = feed(framer, step["modem"].encode("latin-1") + b'\r\n+CMTI: "SM",', None)
        assert [describe(e) for e in events] == step["events"]
        framer.receive_data(b"9\r\n")
        assert drain(framer) == [Urc("+CMTI", '+CMTI: "SM",9')]


def test_urc_in_the_middle_of_a_cmgs_response_is_split_out() -> None:
    framer = AtFramer()
    framer.expect("AT+CMGS=20")
    framer.expect_prompt()
    assert feed(framer, b"\r\n> ", None) == [Prompt()]
    data = b'\r\n+CMGS: 7\r\n+CDSI: "SR",2\r\nRING\r\n\r\nOK\r\n'
    assert feed(framer, data, 1) == [
        Urc("+CDSI", '+CDSI: "SR",2'),
        Urc("RING", "RING"),
        Response(("+CMGS: 7",), FinalResult(kind=FinalKind.OK, text="OK")),
    ]


def test_cmt_urc_inside_a_response_takes_its_pdu_line_with_it() -> None:
    framer = AtFramer()
    framer.expect("AT+CSQ")
    data = b"\r\n+CMT: ,5\r\n0011AABB\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    assert feed(framer, data, None) == [
        Urc("+CMT", "+CMT: ,5", "0011AABB"),
        Response(("+CSQ: 20,99",), FinalResult(kind=FinalKind.OK, text="OK")),
    ]


def test_cmt_header_without_its_pdu_is_reported_alone() -> None:
    framer = AtFramer()
    assert feed(framer, b"+CMT: ,5\r\nRING\r\n", None) == [
        Urc("+CMT", "+CMT: ,5", None),
        Urc("RING", "RING"),
    ]


@pytest.mark.parametrize("header", ["+CMT: ,24", "+CDS: 25"])
@pytest.mark.parametrize("chunk", [None, 1])
def test_noise_where_the_pdu_should_be_sends_the_header_alone(
    header: str, chunk: int | None
) -> None:
    # The PDU line came as noise. The hex line that comes next answers a command given since,
    # and is that command's, never the header's PDU.
    framer = AtFramer()
    assert feed(framer, f"\r\n{header}\r\n\xff\x02\r\n".encode("latin-1"), chunk) == [
        Urc(header[:4], header, None),
        Garbage("\xff\x02"),
    ]
    framer.send_command("AT+CCID")
    assert feed(framer, b"\r\n89470800123456789012\r\n\r\nOK\r\n", chunk) == [
        Response(("89470800123456789012",), FinalResult(kind=FinalKind.OK, text="OK"))
    ]


def test_creg_is_a_response_to_creg_and_a_urc_otherwise() -> None:
    framer = AtFramer()
    assert feed(framer, b"\r\n+CREG: 1\r\n", None) == [Urc("+CREG", "+CREG: 1")]
    framer.expect("AT+CREG?")
    assert feed(framer, b"\r\n+CREG: 0,1\r\n\r\nOK\r\n", None) == [
        Response(("+CREG: 0,1",), FinalResult(kind=FinalKind.OK, text="OK"))
    ]


def test_echo_left_on_is_dropped_including_the_typed_pdu() -> None:
    framer = AtFramer()
    framer.expect("AT+CMGS=3")
    framer.expect_prompt()
    events = feed(framer, b"AT+CMGS=3\r\r\n> 000100\x1a\r\n+CMGS: 1\r\n\r\nOK\r\n", 1)
    assert events == [
        Prompt(),
        Response(("+CMGS: 1",), FinalResult(kind=FinalKind.OK, text="OK")),
    ]
    assert framer.echoes == 1  # the command line's, not the PDU's


@pytest.mark.parametrize(
    ("line", "kind", "code"),
    [
        (b"+CMS ERROR: 500", FinalKind.CMS_ERROR, 500),
        (b"+CMS ERROR: unknown error", FinalKind.CMS_ERROR, 500),
        (b"+CMS ERROR: Unassigned (unallocated) number", FinalKind.CMS_ERROR, 1),
        (b"+CMS ERROR: SIM memory full", FinalKind.CMS_ERROR, 322),
        (b"+CMS ERROR: something vendor-specific", FinalKind.CMS_ERROR, None),
        (b"+CME ERROR: 16", FinalKind.CME_ERROR, 16),
        (b"+CME ERROR: incorrect password", FinalKind.CME_ERROR, 16),
        (b"+CME ERROR: SIM PIN required", FinalKind.CME_ERROR, 11),
        # Noise on the line that Latin-1 reads as a superscript digit, no number to int().
        (b"+CMS ERROR: \xb2", FinalKind.CMS_ERROR, None),
        (b"+CME ERROR: 1\xb3", FinalKind.CME_ERROR, None),
        (b"ERROR", FinalKind.ERROR, None),
        (b"ok", FinalKind.OK, None),
    ],
)
def test_final_result_codes(line: bytes, kind: FinalKind, code: int | None) -> None:
    framer = AtFramer()
    framer.expect("AT+CMGS=10")
    (event,) = feed(framer, b"\r\n" + line + b"\r\n", None)
    assert isinstance(event, Response)
    assert (event.final.kind, event.final.code) == (kind, code)
    assert framer.pending is None


@pytest.mark.parametrize("chunk", [None, 1])
def test_no_carrier_ends_a_call_command_and_is_unsolicited_otherwise(chunk: int | None) -> None:
    # A caller gives up on a call to the SIM that nobody answers: the modem reports the call
    # ended (SIM800, Quectel), here while it works out the answer to a query.
    framer = AtFramer()
    framer.send_command("AT+CSQ")
    clip = '+CLIP: "+4741000000",145,"",0,"",0'
    ringing = f"\r\nRING\r\n\r\n{clip}\r\n\r\nNO CARRIER\r\n".encode()
    assert feed(framer, ringing + b"\r\n+CSQ: 20,0\r\n\r\nOK\r\n", chunk) == [
        Urc("RING", "RING"),
        Urc("+CLIP", clip),
        Urc("NO CARRIER", "NO CARRIER"),
        Response(("+CSQ: 20,0",), FinalResult(kind=FinalKind.OK, text="OK")),
    ]
    assert feed(framer, b"\r\nNO CARRIER\r\n", chunk) == [Urc("NO CARRIER", "NO CARRIER")]
    for call in ("ATD+4741000000;", "ATD41000000;", "ATDT41000000", "ATA", "ATO0"):
        framer.send_command(call)
        assert feed(framer, b"\r\nNO CARRIER\r\n", chunk) == [
            Response((), FinalResult(kind=FinalKind.ERROR, text="NO CARRIER"))
        ], call
    # Once the call command is answered, NO CARRIER is unsolicited again.
    assert feed(framer, b"\r\nNO CARRIER\r\n", chunk) == [Urc("NO CARRIER", "NO CARRIER")]


@pytest.mark.parametrize("terminator", [b"\r\n", b"\n", b"\r", b"\n\r", b"\r\r\n"])
def test_line_terminator_variants(terminator: bytes) -> None:
    framer = AtFramer()
    framer.expect("AT+CSQ")
    data = terminator.join([b"", b"+CSQ: 5,0", b"", b"OK", b""])
    assert feed(framer, data, 1) == [
        Response(("+CSQ: 5,0",), FinalResult(kind=FinalKind.OK, text="OK"))
    ]


def test_garbage_with_nothing_pending_is_reported_not_raised() -> None:
    framer = AtFramer()
    events = feed(framer, b"\x00\xff\xfe noise\r\nOK\r\n", None)
    assert events == [Garbage("\xff\xfe noise"), Garbage("OK")]


@pytest.mark.parametrize("chunk", [None, 1, 50])
def test_a_line_longer_than_max_line_is_garbage_dropped_as_it_comes(chunk: int | None) -> None:
    # A line of max_line bytes is whole. No answer is longer (this is noise, a wrong baud rate
    # for a moment): its first max_line bytes are reported, the rest is dropped up to its end,
    # and the next line is read as ever. A hex one is never a header's PDU.
    framer = AtFramer(max_line=64)
    framer.send_command("AT+CSQ")
    data = b"\r\n" + b"A" * 64 + b"\r\n+CMT: ,5\r\n" + b"0B" * 40 + b"\r\n" + b"C" * 200
    assert feed(framer, data + b"\r\n+CSQ: 20,0\r\n\r\nOK\r\n", chunk) == [
        Garbage("A" * 64),
        Urc("+CMT", "+CMT: ,5", None),
        Garbage("0B" * 32),
        Garbage("C" * 64),
        Response(("+CSQ: 20,0",), FinalResult(kind=FinalKind.OK, text="OK")),
    ]


def test_the_rest_of_a_long_line_is_dropped_however_long_it_is() -> None:
    framer = AtFramer(max_line=64)
    framer.receive_data(b"B" * 1000)
    assert drain(framer) == [Garbage("B" * 64)]
    framer.receive_data(b"B" * 1000)
    assert drain(framer) == []
    framer.receive_data(b"\r\nOK\r\n")
    assert drain(framer) == [Garbage("OK")]


def test_end_of_stream_completes_the_last_line() -> None:
    framer = AtFramer()
    framer.expect("AT")
    framer.receive_data(b"\r\nOK")
    assert drain(framer) == []
    framer.receive_data(b"")
    assert drain(framer) == [Response((), FinalResult(kind=FinalKind.OK, text="OK"))]


def test_prompt_is_only_recognised_when_expected() -> None:
    framer = AtFramer()
    assert feed(framer, b"\r\n> \r\n", None) == [Garbage(">")]


@pytest.mark.parametrize("chunk", [None, 1])
def test_a_prompt_after_noise_octets_is_the_prompt_and_text_before_one_is_not(
    chunk: int | None,
) -> None:
    # Octets that are no text (a NUL, a framing error's 0xFF) do not hide the prompt; the NUL,
    # Ctrl-Z and ESC some modems emit are dropped as in any line, what is left is noise.
    for noise, garbage in ((b"\x00", []), (b"\xff\x1b\x02", [Garbage("\xff\x02")])):
        framer = AtFramer()
        framer.send_command("AT+CMGS=17", prompt=True)
        events = feed(framer, b"\r\n" + noise + b"> ", chunk)
        assert events == [*garbage, Prompt()]
    # A ">" after text is part of that line, not a prompt: noisy text, a USSD answer.
    framer = AtFramer()
    framer.send_command("AT+CMGS=17", prompt=True)
    data = b'\r\n\xffA> \r\n\r\n+CUSD: 0,"> 5 kr",15\r\n\r\n> '
    assert feed(framer, data, chunk) == [
        Garbage("\xffA>"),
        Urc("+CUSD", '+CUSD: 0,"> 5 kr",15'),
        Prompt(),
    ]


@given(st.lists(st.binary(max_size=64), max_size=20), st.sampled_from(["AT+CMGS=5", "AT", None]))
def test_arbitrary_bytes_give_events(chunks: list[bytes], cmd: str | None) -> None:
    framer = AtFramer(max_line=128)
    if cmd is not None:
        framer.expect(cmd)
        if cmd.startswith("AT+CMGS"):
            framer.expect_prompt()
    for chunk in chunks:
        framer.receive_data(chunk)
        for event in drain(framer):
            assert isinstance(event, Response | Prompt | Urc | Garbage)


def test_line_noise_is_never_taken_as_an_answer() -> None:
    framer = AtFramer()
    assert framer.send_command("AT+CGSN") == b"AT+CGSN\r"
    framer.receive_data(b"\r\n\x00\xff\x13#\r\n866191037123456\r\n\xffA\x07\r\nOK\r\n")
    assert framer.next_event() == Garbage("\xff\x13#")
    assert framer.next_event() == Garbage("\xffA\x07")
    assert framer.next_event() == Response(
        ("866191037123456",), FinalResult(kind=FinalKind.OK, text="OK")
    )


def test_send_command_records_what_it_expects_and_partial_shows_lines_so_far() -> None:
    framer = AtFramer()
    assert framer.send_command(" AT+CMGS=23 ", prompt=True) == b"AT+CMGS=23\r"
    assert framer.pending == "AT+CMGS=23"
    framer.receive_data(b"\r\n> ")
    assert framer.next_event() == Prompt()
    framer.receive_data(b"\r\n+CMGS: 7\r\n")
    assert framer.next_event() is NEED_DATA
    assert framer.partial == ("+CMGS: 7",)
    framer.receive_data(b"\r\nOK\r\n")
    assert framer.next_event() == Response(("+CMGS: 7",), FinalResult(kind=FinalKind.OK, text="OK"))
    assert not framer.partial


@pytest.mark.parametrize("chunk", [None, 1])
def test_a_prefixed_line_no_table_names_is_unsolicited_inside_an_answer(chunk: int | None) -> None:
    # TS 27.007 10.1.19 +CGEV (LTE modems), SIM800's *PSUTTZ and SIM7600's boot noise, written
    # between the PDU of AT+CMGS and its +CMGS: they are no part of the answer.
    framer = AtFramer()
    framer.send_command("AT+CMGS=17", prompt=True)
    data = (
        b"\r\n> "
        b'\r\n+CGEV: ME PDN ACT 1\r\n\r\n*PSUTTZ: 24,12,4,10,48,31,"+4",0\r\n'
        b"\r\nSMS DONE\r\n\r\nPB DONE\r\n\r\n+CMGS: 42\r\n\r\nOK\r\n"
    )
    events = feed(framer, data, chunk)
    assert events[0] == Prompt()
    assert [e.name for e in events if isinstance(e, Urc)] == [
        "+CGEV",
        "*PSUTTZ",
        "SMS DONE",
        "PB DONE",
    ]
    assert events[-1] == Response(("+CMGS: 42",), FinalResult(kind=FinalKind.OK, text="OK"))
    # With nothing pending such a line is unsolicited too, not line noise.
    assert feed(framer, b"\r\n+CGEV: ME PDN DEACT 1\r\n", chunk) == [
        Urc("+CGEV", "+CGEV: ME PDN DEACT 1")
    ]


@pytest.mark.parametrize("chunk", [None, 1])
def test_an_unprefixed_line_is_answer_text_only_of_a_command_that_answers_bare(
    chunk: int | None,
) -> None:
    # SIM800's DST: after its network time (*PSUTTZ:, +CTZV:): no +NAME: prefix, and no table
    # names it. AT+CSQ and AT+CMGS answer +NAME: lines only, so they are none of theirs.
    framer = AtFramer()
    framer.send_command("AT+CSQ")
    events = feed(framer, b"\r\nDST: 0\r\n\r\n+CSQ: 20,0\r\n\r\nOK\r\n", chunk)
    assert events == [
        Garbage("DST: 0"),
        Response(("+CSQ: 20,0",), FinalResult(kind=FinalKind.OK, text="OK")),
    ]
    framer.send_command("AT+CMGS=17", prompt=True)
    events = feed(framer, b"\r\nDST: 0\r\n\r\n> \r\nDST: 1\r\n", chunk)
    assert events == [Garbage("DST: 0"), Prompt(), Garbage("DST: 1")]
    assert framer.partial == ()
    # Identification, an S-register and a storage read answer bare text: it stays theirs.
    for command, text in (
        ("AT+CGSN", "866191037123456"),
        ("ATS7=5;S7?", "005"),
        ("AT+CMGL=4", "Hei"),
    ):
        framer.send_command(command)
        assert feed(framer, f"\r\n{text}\r\n\r\nOK\r\n".encode(), chunk) == [
            Response((text,), FinalResult(kind=FinalKind.OK, text="OK"))
        ]


def test_a_power_down_is_unsolicited_also_inside_an_answer() -> None:
    # Quectel says POWERED DOWN before it goes quiet: logged as what it is, not as noise.
    framer = AtFramer()
    assert feed(framer, b"\r\nPOWERED DOWN\r\n", None) == [Urc("POWERED DOWN", "POWERED DOWN")]
    framer.send_command("AT+CGSN")
    assert feed(framer, b"\r\nPOWERED DOWN\r\n\r\nOK\r\n", None) == [
        Urc("POWERED DOWN", "POWERED DOWN"),
        Response((), FinalResult(kind=FinalKind.OK, text="OK")),
    ]


def test_an_iccid_read_takes_every_vendor_prefix_as_its_answer() -> None:
    for command, answer in (
        ("AT+CCID", "+ICCID: 8947080012345678901"),
        ("AT+ICCID", "^ICCID: 8947080012345678901"),
        ("AT+QCCID", "+QCCID: 8947080012345678901"),
    ):
        framer = AtFramer()
        framer.send_command(command)
        events = feed(framer, f"\r\n{answer}\r\n\r\nOK\r\n".encode(), None)
        assert events == [Response((answer,), FinalResult(kind=FinalKind.OK, text="OK"))]
