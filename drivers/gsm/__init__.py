"""The pure GSM SMS codec: alphabets, septets, parts and TPDUs (3GPP TS 23.038 and TS 23.040).

Text in, bytes out and back; it never does I/O, reads a clock or imports trio, serial or sockets.
Spec sections 7.1-7.3 and Appendix A of the Puzzel SMSGW reference.
"""

from drivers.gsm.address import join_sca, split_sca
from drivers.gsm.alphabet import decode_gsm, encode_gsm, gsm_length, is_gsm
from drivers.gsm.dcs import Alphabet, dcs_alphabet, message_class
from drivers.gsm.errors import GsmError, MessageTooLong, NonGsmCharacter
from drivers.gsm.message import (
    EncodedMessage,
    concatenated_octets,
    decode_concatenated,
    decode_text,
    encode_message,
    part_capacity,
)
from drivers.gsm.parts import EncodedPart
from drivers.gsm.sanitise import ParsingType, sanitise
from drivers.gsm.septets import pack_septets, unpack_septets
from drivers.gsm.tpdu import (
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    build_deliver,
    build_status_report,
    build_submit,
    parse_deliver,
    parse_received,
    parse_status_report,
    parse_submit,
    relative_validity,
    validity_period_minutes,
)
from drivers.gsm.udh import concat_info, port_ie, port_info

__all__ = [
    "Alphabet",
    "EncodedMessage",
    "EncodedPart",
    "GsmError",
    "MessageTooLong",
    "NonGsmCharacter",
    "ParsingType",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "build_deliver",
    "build_status_report",
    "build_submit",
    "concat_info",
    "concatenated_octets",
    "dcs_alphabet",
    "decode_concatenated",
    "decode_gsm",
    "decode_text",
    "encode_gsm",
    "encode_message",
    "gsm_length",
    "is_gsm",
    "join_sca",
    "message_class",
    "pack_septets",
    "parse_deliver",
    "parse_received",
    "parse_status_report",
    "parse_submit",
    "part_capacity",
    "port_ie",
    "port_info",
    "relative_validity",
    "sanitise",
    "split_sca",
    "unpack_septets",
    "validity_period_minutes",
]
