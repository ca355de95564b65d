"""Golden vectors from published tutorials, captures and TS 23.040, checked in both directions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from drivers.gsm import (
    EncodedPart,
    GsmError,
    build_deliver,
    build_status_report,
    build_submit,
    concat_info,
    decode_gsm,
    decode_text,
    encode_gsm,
    join_sca,
    pack_septets,
    parse_deliver,
    parse_received,
    parse_status_report,
    parse_submit,
    split_sca,
    unpack_septets,
)

VECTORS = Path(__file__).parent.parent / "vectors" / "gsm"


def _load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text("utf-8"))["vectors"]
    assert all(vector["source"] for vector in vectors)
    return vectors


SEPTET_VECTORS = _load("septets.json")
PDU_VECTORS = _load("pdus.json")


@pytest.mark.parametrize("vector", SEPTET_VECTORS, ids=lambda v: v["text"])
def test_septet_vector_packs_to_published_octets(vector: dict[str, Any]) -> None:
    septets = encode_gsm(vector["text"])
    assert pack_septets(septets, vector["fill_bits"]).hex().upper() == vector["packed"]


@pytest.mark.parametrize("vector", SEPTET_VECTORS, ids=lambda v: v["text"])
def test_septet_vector_unpacks_to_text(vector: dict[str, Any]) -> None:
    septets = encode_gsm(vector["text"])
    unpacked = unpack_septets(bytes.fromhex(vector["packed"]), len(septets), vector["fill_bits"])
    assert decode_gsm(unpacked) == vector["text"]


def _part(vector: dict[str, Any]) -> EncodedPart:
    fields = vector["fields"]
    text: str = vector["text"]
    dcs: int = fields["dcs"]
    payload = text.encode("utf-16-be") if dcs == 8 else encode_gsm(text)
    return EncodedPart(dcs=dcs, udh=bytes.fromhex(fields["udh"]), payload=payload)


def _build(vector: dict[str, Any]) -> bytes:
    fields = vector["fields"]
    kind = vector["type"]
    if kind == "submit":
        return build_submit(
            fields["destination"],
            _part(vector),
            message_reference=fields["message_reference"],
            status_report=fields["status_report"],
            validity_minutes=fields["validity_minutes"],
            pid=fields["pid"],
            reject_duplicates=fields["reject_duplicates"],
        )
    if kind == "deliver":
        return build_deliver(
            fields["originator"],
            _part(vector),
            timestamp=dt.datetime.fromisoformat(fields["timestamp"]),
            pid=fields["pid"],
            more_messages=fields["more_messages"],
            status_report_indication=fields["status_report_indication"],
        )
    return build_status_report(
        fields["message_reference"],
        fields["recipient"],
        sc_timestamp=dt.datetime.fromisoformat(fields["sc_timestamp"]),
        discharge_time=dt.datetime.fromisoformat(fields["discharge_time"]),
        status=fields["status"],
    )


def _parse(kind: str, tpdu: bytes) -> Any:
    return {"submit": parse_submit, "deliver": parse_deliver}.get(kind, parse_status_report)(tpdu)


@pytest.mark.parametrize("vector", PDU_VECTORS, ids=lambda v: v["name"])
def test_pdu_vector_builds_to_published_pdu(vector: dict[str, Any]) -> None:
    pdu = join_sca(vector["smsc"], _build(vector))
    assert pdu.hex().upper() == vector["pdu"]


@pytest.mark.parametrize("vector", PDU_VECTORS, ids=lambda v: v["name"])
def test_pdu_vector_parses_to_published_fields(vector: dict[str, Any]) -> None:
    smsc, tpdu = split_sca(bytes.fromhex(vector["pdu"]))
    assert smsc == vector["smsc"]
    parsed = _parse(vector["type"], tpdu)
    for name, expected in vector["fields"].items():
        value = getattr(parsed, name)
        if isinstance(value, bytes):
            assert value.hex().upper() == expected, name
        elif isinstance(value, dt.datetime):
            stamp = dt.datetime.fromisoformat(expected)
            assert (value, value.utcoffset()) == (stamp, stamp.utcoffset()), name
        else:
            assert value == expected, name
    if "text" in vector:
        assert decode_text(parsed.part) == vector["text"]
    if "concat" in vector:
        assert concat_info(parsed.udh) == tuple(vector["concat"])
    if vector["type"] != "submit":
        assert parse_received(tpdu) == parsed


@pytest.mark.parametrize("vector", PDU_VECTORS, ids=lambda v: v["name"])
def test_pdu_vector_truncated_or_extended_is_rejected(vector: dict[str, Any]) -> None:
    _, tpdu = split_sca(bytes.fromhex(vector["pdu"]))
    for end in range(len(tpdu)):
        with pytest.raises(GsmError):
            _parse(vector["type"], tpdu[:end])
    if vector["type"] == "status_report":
        # What follows TP-ST is not read (parse_status_report says why).
        assert _parse(vector["type"], tpdu + b"\xff\xff") == _parse(vector["type"], tpdu)
        return
    with pytest.raises(GsmError):
        _parse(vector["type"], tpdu + b"\x00\x00")
