"""What the gateway sends to ESMEs: delivery receipts and MO messages, and the deliver_sm PDUs
that carry them (receipt text, receipted_message_id, message_state and user_message_reference
TLVs, UDH for long MO).

Pure; no I/O. SMPP 3.4 section 4.6.1 (deliver_sm), 5.2.12 (esm_class 0x04 for a receipt),
5.3.2.12, 5.3.2.17 and 5.3.2.35 (receipt TLVs) and Appendix B (the receipt text).
"""

from __future__ import annotations

import datetime as dt

import msgspec

from drivers.gsm import Alphabet, ParsingType, encode_gsm, encode_message, sanitise
from edgegw.smpp.constants import (
    ESM_FEATURE_UDHI,
    ESM_TYPE_DELIVERY_RECEIPT,
    STAT_WORDS,
    MessageState,
    Tag,
)
from edgegw.smpp.pdu import DeliverSm
from edgegw.smpp.submission import Address
from edgegw.smpp.tlv import cstring_tlv, int_tlv

__all__ = [
    "MobileOriginated",
    "Outbound",
    "Receipt",
    "deliver_sms",
    "receipt_text",
]

_RECEIPT_TEXT_CHARACTERS = 20  # SMPP 3.4 Appendix B: the first 20 characters of the message
_MAX_MO_PARTS = 255  # the concatenation IE counts parts in one octet


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery receipt for a message an ESME submitted. `recipient` is the handset the
    message went to (the receipt's source), `originator` the message's sender (its destination).
    `user_message_reference` is the submit_sm's own, returned as it came (SMPP 3.4 4.6.1: a
    receipt carries the original message's); None when it had none."""

    message_id: str
    recipient: Address
    originator: Address
    submit_date: dt.datetime
    done_date: dt.datetime
    message_state: MessageState
    error_code: int = 0
    text: str = ""
    user_message_reference: int | None = None


class MobileOriginated(msgspec.Struct, frozen=True, kw_only=True):
    """An SMS from a handset for the ESME. `text` is the message (None for 8-bit data, which
    `octets` then holds with `data_coding` 4)."""

    source: Address
    destination: Address
    text: str | None
    octets: bytes = b""
    data_coding: int = 0


class Outbound(msgspec.Struct, frozen=True, kw_only=True):
    """One durable item of the delivery outbox to a service's ESMEs."""

    id: int
    item: Receipt | MobileOriginated


def _date(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%y%m%d%H%M")


def receipt_text(receipt: Receipt) -> str:
    """The conventional receipt text of SMPP 3.4 Appendix B."""
    delivered = 1 if receipt.message_state is MessageState.DELIVERED else 0
    return (
        f"id:{receipt.message_id} sub:001 dlvrd:{delivered:03d}"
        f" submit date:{_date(receipt.submit_date)} done date:{_date(receipt.done_date)}"
        f" stat:{STAT_WORDS[receipt.message_state]} err:{receipt.error_code % 1000:03d}"
        f" text:{receipt.text[:_RECEIPT_TEXT_CHARACTERS]}"
    )


def _receipt_pdu(receipt: Receipt) -> DeliverSm:
    # data_coding 0 carries GSM septets (spec section 2.7); the quoted text may hold anything.
    text = sanitise(receipt_text(receipt), ParsingType.SAFE_REMOVE_NON_GSM_WITH_REPLACE)
    tlvs = [
        cstring_tlv(Tag.RECEIPTED_MESSAGE_ID, receipt.message_id),
        int_tlv(Tag.MESSAGE_STATE, receipt.message_state),
    ]
    if receipt.user_message_reference is not None:
        tlvs.append(int_tlv(Tag.USER_MESSAGE_REFERENCE, receipt.user_message_reference))
    return DeliverSm(
        sequence_number=0,
        source_addr_ton=receipt.recipient.ton,
        source_addr_npi=receipt.recipient.npi,
        source_addr=receipt.recipient.address,
        dest_addr_ton=receipt.originator.ton,
        dest_addr_npi=receipt.originator.npi,
        destination_addr=receipt.originator.address,
        esm_class=ESM_TYPE_DELIVERY_RECEIPT,
        data_coding=0,
        short_message=encode_gsm(text)[:254],
        tlvs=tuple(tlvs),
    )


def _mo_pdus(mo: MobileOriginated, reference: int) -> list[DeliverSm]:
    if mo.text is None:
        encoded = encode_message(
            mo.octets.hex(), dcs=mo.data_coding, reference=reference, max_parts=_MAX_MO_PARTS
        )
    else:
        encoded = encode_message(
            mo.text,
            parsing=ParsingType.AUTO_DETECT,
            reference=reference,
            max_parts=_MAX_MO_PARTS,
        )
    pdus = []
    for part in encoded.parts:
        # GSM text travels as unpacked septets with data_coding 0 (spec section 2.7).
        dcs = 0 if encoded.alphabet is Alphabet.GSM7 else part.dcs
        pdus.append(
            DeliverSm(
                sequence_number=0,
                source_addr_ton=mo.source.ton,
                source_addr_npi=mo.source.npi,
                source_addr=mo.source.address,
                dest_addr_ton=mo.destination.ton,
                dest_addr_npi=mo.destination.npi,
                destination_addr=mo.destination.address,
                esm_class=ESM_FEATURE_UDHI if part.udh else 0,
                data_coding=dcs,
                short_message=part.udh + part.payload,
            )
        )
    return pdus


def deliver_sms(outbound: Outbound) -> list[DeliverSm]:
    """The deliver_sm PDUs (sequence number 0, set when sent) that carry one outbox item; a
    long MO becomes several parts joined by a UDH whose reference comes from the item id."""
    if isinstance(outbound.item, Receipt):
        return [_receipt_pdu(outbound.item)]
    return _mo_pdus(outbound.item, outbound.id & 0xFF)
