"""SMPP 3.4 optional parameters (TLVs): the allowed value lengths of the known tags and typed
accessors over a PDU's `(tag, value)` pairs.

Pure; no I/O. SMPP 3.4 section 3.2.4 (TLV layout) and 5.3.2 (each tag). Unknown tags are kept as
they came and ignored, as section 3.2.4 asks of a receiver.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgegw.smpp.constants import Tag

Tlvs = tuple[tuple[int, bytes], ...]

_U8 = (1, 1)
_U16 = (2, 2)
_U32 = (4, 4)

# Tag -> (minimum, maximum) value length in octets, SMPP 3.4 section 5.3.2. C-octet strings
# count their terminating NUL.
TLV_LENGTHS: dict[int, tuple[int, int]] = {
    Tag.DEST_ADDR_SUBUNIT: _U8,
    Tag.DEST_NETWORK_TYPE: _U8,
    Tag.DEST_BEARER_TYPE: _U8,
    Tag.DEST_TELEMATICS_ID: _U16,
    Tag.SOURCE_ADDR_SUBUNIT: _U8,
    Tag.SOURCE_NETWORK_TYPE: _U8,
    Tag.SOURCE_BEARER_TYPE: _U8,
    Tag.SOURCE_TELEMATICS_ID: _U8,
    Tag.QOS_TIME_TO_LIVE: _U32,
    Tag.PAYLOAD_TYPE: _U8,
    Tag.ADDITIONAL_STATUS_INFO_TEXT: (1, 256),
    Tag.RECEIPTED_MESSAGE_ID: (1, 65),
    Tag.MS_MSG_WAIT_FACILITIES: _U8,
    Tag.PRIVACY_INDICATOR: _U8,
    Tag.SOURCE_SUBADDRESS: (2, 23),
    Tag.DEST_SUBADDRESS: (2, 23),
    Tag.USER_MESSAGE_REFERENCE: _U16,
    Tag.USER_RESPONSE_CODE: _U8,
    Tag.SOURCE_PORT: _U16,
    Tag.DESTINATION_PORT: _U16,
    Tag.SAR_MSG_REF_NUM: _U16,
    Tag.LANGUAGE_INDICATOR: _U8,
    Tag.SAR_TOTAL_SEGMENTS: _U8,
    Tag.SAR_SEGMENT_SEQNUM: _U8,
    Tag.SC_INTERFACE_VERSION: _U8,
    Tag.CALLBACK_NUM_PRES_IND: _U8,
    Tag.CALLBACK_NUM_ATAG: (0, 65),
    Tag.NUMBER_OF_MESSAGES: _U8,
    Tag.CALLBACK_NUM: (4, 19),
    Tag.DPF_RESULT: _U8,
    Tag.SET_DPF: _U8,
    Tag.MS_AVAILABILITY_STATUS: _U8,
    Tag.NETWORK_ERROR_CODE: (3, 3),
    Tag.MESSAGE_PAYLOAD: (0, 0xFFFF),
    Tag.DELIVERY_FAILURE_REASON: _U8,
    Tag.MORE_MESSAGES_TO_SEND: _U8,
    Tag.MESSAGE_STATE: _U8,
    Tag.USSD_SERVICE_OP: _U8,
    Tag.DISPLAY_TIME: _U8,
    Tag.SMS_SIGNAL: _U16,
    Tag.MS_VALIDITY: _U8,
    Tag.ALERT_ON_MESSAGE_DELIVERY: (0, 0),
    Tag.ITS_REPLY_TYPE: _U8,
    Tag.ITS_SESSION_INFO: (2, 2),
}


def tlv_value(tlvs: Sequence[tuple[int, bytes]], tag: int) -> bytes | None:
    """The value of the first TLV with `tag`, or None."""
    for found, value in tlvs:
        if found == tag:
            return value
    return None


def tlv_int(tlvs: Sequence[tuple[int, bytes]], tag: int) -> int | None:
    """An integer TLV (1, 2 or 4 octets, big-endian), or None when absent."""
    value = tlv_value(tlvs, tag)
    return None if value is None else int.from_bytes(value, "big")


def int_tlv(tag: Tag, value: int) -> tuple[int, bytes]:
    """A TLV of the integer width section 5.3.2 gives `tag`."""
    width = TLV_LENGTHS[tag][0]
    return (int(tag), value.to_bytes(width, "big"))


def cstring_tlv(tag: Tag, value: str) -> tuple[int, bytes]:
    return (int(tag), value.encode("latin-1") + b"\0")
