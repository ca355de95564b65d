"""The simulated modem's message storage through AT: exact bytes of +CPMS, +CMGR, +CMGL, +CMGD,
+CMGW and +CNMI routing, on the pure engine (3GPP TS 27.005 sections 3.2.2, 3.4.1, 3.5.1-3.5.4).
"""

from __future__ import annotations

import datetime as dt

import pytest

from drivers.gsm import EncodedPart, build_submit, encode_gsm, join_sca, parse_deliver, split_sca
from drivers.simulator import ModemEngine, SimulatorOptions, deliver_tpdus

OK = b"\r\nOK\r\n"
STAMP = dt.datetime(2026, 11, 24, 21, 0, tzinfo=dt.UTC)
SMSC_HEX = "06917409001200"  # +4790002100, as the network puts it in front of every TPDU


def talk(engine: ModemEngine, data: bytes, now: float = 0.0) -> bytes:
    return b"".join(reply.data for reply in engine.receive_data(data, now))


def quiet_engine(**options: object) -> ModemEngine:
    engine = ModemEngine(SimulatorOptions(**options))  # type: ignore[arg-type]
    assert talk(engine, b"ATE0;+CMEE=1\r") == b"ATE0;+CMEE=1\r" + OK
    return engine


def deliver(text: str, originator: str = "+4799999999") -> bytes:
    part = EncodedPart(dcs=0, udh=b"", payload=encode_gsm(text))
    (tpdu,) = deliver_tpdus(originator, [part], timestamp=STAMP)
    return tpdu


def receive(engine: ModemEngine, text: str, now: float = 0.0) -> tuple[bytes, int | None]:
    replies, index = engine.receive_sms(deliver(text), now)
    return b"".join(reply.data for reply in replies), index


def stored_hex(text: str) -> str:
    return SMSC_HEX + deliver(text).hex().upper()


def test_cpms_counts_what_is_stored() -> None:
    engine = quiet_engine(storage_capacity=5)
    assert talk(engine, b"AT+CPMS?\r") == b'\r\n+CPMS: "SM",0,5,"SM",0,5,"SM",0,5\r\n' + OK
    receive(engine, "one")
    receive(engine, "two")
    assert talk(engine, b"AT+CPMS?\r") == b'\r\n+CPMS: "SM",2,5,"SM",2,5,"SM",2,5\r\n' + OK
    assert talk(engine, b'AT+CPMS="ME","SM","SM"\r') == b"\r\n+CPMS: 0,100,2,5,2,5\r\n" + OK
    assert talk(engine, b"AT+CPMS?\r") == b'\r\n+CPMS: "ME",0,100,"SM",2,5,"SM",2,5\r\n' + OK
    # <mem1> is ME now: reading finds nothing at index 1 there.
    assert talk(engine, b"AT+CMGR=1\r") == OK
    assert talk(engine, b'AT+CPMS="MT"\r') == b"\r\n+CMS ERROR: 303\r\n"


def test_cnmi_mt_0_stores_without_indication() -> None:
    engine = quiet_engine()
    assert receive(engine, "quiet") == (b"", 1)
    assert talk(engine, b"AT+CMGL\r") == (
        b"\r\n+CMGL: 1,0,,23\r\n" + stored_hex("quiet").encode() + b"\r\n" + OK
    )


def test_cnmi_mt_1_stores_and_indicates_with_cmti() -> None:
    engine = quiet_engine()
    talk(engine, b"AT+CNMI=2,1,0,0,0\r")
    assert receive(engine, "first") == (b'\r\n+CMTI: "SM",1\r\n', 1)
    assert receive(engine, "second") == (b'\r\n+CMTI: "SM",2\r\n', 2)


def test_cnmi_mt_2_delivers_with_cmt_and_stores_nothing() -> None:
    engine = quiet_engine()
    talk(engine, b"AT+CNMI=2,2,0,0,0\r")
    assert receive(engine, "direct") == (
        b"\r\n+CMT: ,24\r\n" + stored_hex("direct").encode() + b"\r\n",
        None,
    )
    assert talk(engine, b"AT+CPMS?\r") == b'\r\n+CPMS: "SM",0,30,"SM",0,30,"SM",0,30\r\n' + OK
    # Without +CSMS=1 the modem acknowledges on its own: +CNMA has nothing to acknowledge.
    assert talk(engine, b"AT+CNMA\r") == b"\r\n+CMS ERROR: 340\r\n"


def test_cnmi_mode_0_buffers_indications_until_mode_2_flushes_them_after_the_ok() -> None:
    engine = quiet_engine()
    talk(engine, b"AT+CNMI=0,1,0,0,0\r")
    assert receive(engine, "one") == (b"", 1)
    assert receive(engine, "two") == (b"", 2)
    assert talk(engine, b"AT+CNMI=2,1,0,0,0\r") == (
        OK + b'\r\n+CMTI: "SM",1\r\n\r\n+CMTI: "SM",2\r\n'
    )
    talk(engine, b"AT+CNMI=0\r")
    receive(engine, "three")
    # <bfr> 1 clears the buffer instead.
    assert talk(engine, b"AT+CNMI=2,1,0,0,1\r") == OK


def test_cmgr_reads_and_marks_read_unless_mode_1() -> None:
    engine = quiet_engine()
    receive(engine, "hello")
    pdu = stored_hex("hello").encode()
    assert talk(engine, b"AT+CMGR=1,1\r") == b"\r\n+CMGR: 0,,23\r\n" + pdu + b"\r\n" + OK
    assert talk(engine, b"AT+CMGR=1\r") == b"\r\n+CMGR: 0,,23\r\n" + pdu + b"\r\n" + OK
    assert talk(engine, b"AT+CMGR=1\r") == b"\r\n+CMGR: 1,,23\r\n" + pdu + b"\r\n" + OK
    # An empty slot reads as nothing; an index outside the storage is refused.
    assert talk(engine, b"AT+CMGR=2\r") == OK
    assert talk(engine, b"AT+CMGR=0\r") == b"\r\n+CMS ERROR: 321\r\n"
    assert talk(engine, b"AT+CMGR=31\r") == b"\r\n+CMS ERROR: 321\r\n"
    assert talk(engine, b"AT+CMGR\r") == b"\r\nERROR\r\n"
    assert talk(engine, b"AT+CMGR=1,2\r") == b"\r\nERROR\r\n"


def test_the_pdu_read_back_parses_to_what_was_delivered() -> None:
    engine = quiet_engine()
    receive(engine, "Grüße {ok}")
    lines = talk(engine, b"AT+CMGR=1\r").split(b"\r\n")
    smsc, tpdu = split_sca(bytes.fromhex(lines[2].decode()))
    assert smsc == "+4790002100"
    deliver_pdu = parse_deliver(tpdu)
    assert (deliver_pdu.originator, deliver_pdu.timestamp) == ("+4799999999", STAMP)


def write(engine: ModemEngine, status: int | None = None) -> bytes:
    tpdu = build_submit("+4711111111", EncodedPart(dcs=0, udh=b"", payload=encode_gsm("draft")))
    command = b"AT+CMGW=%d" % len(tpdu) + (b",%d" % status if status is not None else b"")
    assert talk(engine, command + b"\r") == b"\r\n> "
    return talk(engine, join_sca("", tpdu).hex().upper().encode() + b"\x1a")


def stocked_engine() -> ModemEngine:
    """Index 1 REC UNREAD, 2 REC READ, 3 STO UNSENT, 4 STO SENT."""
    engine = quiet_engine()
    receive(engine, "unread")
    receive(engine, "read")
    talk(engine, b"AT+CMGR=2\r")
    assert write(engine) == b"\r\n+CMGW: 3\r\n" + OK
    assert write(engine, 3) == b"\r\n+CMGW: 4\r\n" + OK
    return engine


def listed(engine: ModemEngine, stat: int) -> list[tuple[int, int]]:
    """(index, stat) of each +CMGL line, checking the PDU line that follows each."""
    lines = talk(engine, b"AT+CMGL=%d,1\r" % stat).split(b"\r\n")
    assert lines[-3:] == [b"", b"OK", b""]
    found = []
    for head, pdu in zip(lines[1:-3:2], lines[2:-3:2], strict=True):
        index, status, alpha, length = head.removeprefix(b"+CMGL: ").split(b",")
        assert alpha == b""
        octets = bytes.fromhex(pdu.decode())
        # <length> counts the TPDU only, not the SMSC address in front of it.
        assert len(octets) == 1 + octets[0] + int(length)
        found.append((int(index), int(status)))
    return found


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        (0, [(1, 0)]),
        (1, [(2, 1)]),
        (2, [(3, 2)]),
        (3, [(4, 3)]),
        (4, [(1, 0), (2, 1), (3, 2), (4, 3)]),
    ],
)
def test_cmgl_lists_each_stat(stat: int, expected: list[tuple[int, int]]) -> None:
    assert listed(stocked_engine(), stat) == expected


def test_cmgl_exact_bytes_and_listing_marks_unread_as_read() -> None:
    engine = quiet_engine()
    receive(engine, "a")
    receive(engine, "b")
    first, second = stored_hex("a").encode(), stored_hex("b").encode()
    assert talk(engine, b"AT+CMGL=4\r") == (
        b"\r\n+CMGL: 1,0,,19\r\n" + first + b"\r\n+CMGL: 2,0,,19\r\n" + second + b"\r\n" + OK
    )
    assert talk(engine, b"AT+CMGL=0\r") == OK
    assert talk(engine, b"AT+CMGL=1\r").count(b"+CMGL: ") == 2
    assert talk(engine, b"AT+CMGL=5\r") == b"\r\nERROR\r\n"
    assert talk(engine, b"AT+CMGL=?\r") == b"\r\n+CMGL: (0-4)\r\n" + OK


@pytest.mark.parametrize(
    ("delflag", "left"),
    [(1, [1, 3, 4]), (2, [1, 3]), (3, [1]), (4, [])],
)
def test_cmgd_delflags(delflag: int, left: list[int]) -> None:
    engine = stocked_engine()
    assert talk(engine, b"AT+CMGD=1,%d\r" % delflag) == OK
    assert [index for index, _stat in listed(engine, 4)] == left


def test_cmgd_index_and_test_form() -> None:
    engine = stocked_engine()
    assert talk(engine, b"AT+CMGD=?\r") == b"\r\n+CMGD: (1,2,3,4),(0-4)\r\n" + OK
    assert talk(engine, b"AT+CMGD=2\r") == OK
    assert talk(engine, b"AT+CMGD=2,0\r") == OK  # already empty: nothing to do
    assert talk(engine, b"AT+CMGD=?\r") == b"\r\n+CMGD: (1,3,4),(0-4)\r\n" + OK
    assert talk(engine, b"AT+CMGD=0\r") == b"\r\n+CMS ERROR: 321\r\n"
    assert talk(engine, b"AT+CMGD=1,5\r") == b"\r\nERROR\r\n"


def test_indexes_are_reused_after_delete() -> None:
    engine = quiet_engine()
    for text in ("a", "b", "c"):
        receive(engine, text)
    talk(engine, b"AT+CMGD=2\r")
    assert receive(engine, "d")[1] == 2
    assert receive(engine, "e")[1] == 4
    talk(engine, b"AT+CMGD=1;+CMGD=3\r")
    assert [receive(engine, text)[1] for text in ("f", "g", "h")] == [1, 3, 5]


def test_storage_full_stores_nothing_and_says_nothing_then_delivers_on_delete() -> None:
    engine = quiet_engine(storage_capacity=2)
    talk(engine, b"AT+CNMI=2,1,0,0,0\r")
    assert receive(engine, "a") == (b'\r\n+CMTI: "SM",1\r\n', 1)
    assert receive(engine, "b") == (b'\r\n+CMTI: "SM",2\r\n', 2)
    assert receive(engine, "c") == (b"", None)
    assert talk(engine, b"AT+CMGW=1\r") == b"\r\n+CMS ERROR: 322\r\n"
    assert talk(engine, b"AT+CMGR=2;+CMGD=2\r") == (
        b"\r\n+CMGR: 0,,19\r\n" + stored_hex("b").encode() + b"\r\n" + OK + b'\r\n+CMTI: "SM",2\r\n'
    )
    lines = talk(engine, b"AT+CMGR=2\r").split(b"\r\n")
    assert lines[2] == stored_hex("c").encode()


def test_cnma_forms_and_csms() -> None:
    engine = quiet_engine()
    assert talk(engine, b"AT+CSMS=1;+CNMI=2,2,0,0,0\r") == b"\r\n+CSMS: 1,1,1\r\n" + OK
    assert talk(engine, b"AT+CNMA\r") == b"\r\n+CMS ERROR: 340\r\n"
    for command in (b"AT+CNMA", b"AT+CNMA=0", b"AT+CNMA=1", b"AT+CNMA=1,0"):
        receive(engine, "x")
        assert talk(engine, command + b"\r") == OK
    receive(engine, "x")
    assert talk(engine, b"AT+CNMA=1,5\r") == b"\r\n+CMS ERROR: 303\r\n"
    assert talk(engine, b"AT+CNMA=3\r") == b"\r\nERROR\r\n"
