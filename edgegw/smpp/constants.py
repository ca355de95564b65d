"""SMPP 3.4 wire codes: command ids, command statuses, TLV tags, message states, esm_class bits.

Pure constants; no I/O. SMPP v3.4 Issue 1.2, sections 5.1.2.1 (command_id), 5.1.3
(command_status), 5.2.12 (esm_class), 5.2.28 (message_state) and 5.3.2 (TLV tags).
"""

from __future__ import annotations

import enum


class CommandId(enum.IntEnum):
    """SMPP 3.4 section 5.1.2.1; a response is its request with bit 31 set."""

    GENERIC_NACK = 0x80000000  # 4.3.1
    BIND_RECEIVER = 0x00000001  # 4.1.3
    BIND_RECEIVER_RESP = 0x80000001  # 4.1.4
    BIND_TRANSMITTER = 0x00000002  # 4.1.1
    BIND_TRANSMITTER_RESP = 0x80000002  # 4.1.2
    QUERY_SM = 0x00000003  # 4.8.1
    QUERY_SM_RESP = 0x80000003  # 4.8.2
    SUBMIT_SM = 0x00000004  # 4.4.1
    SUBMIT_SM_RESP = 0x80000004  # 4.4.2
    DELIVER_SM = 0x00000005  # 4.6.1
    DELIVER_SM_RESP = 0x80000005  # 4.6.2
    UNBIND = 0x00000006  # 4.2.1
    UNBIND_RESP = 0x80000006  # 4.2.2
    REPLACE_SM = 0x00000007  # 4.10.1
    REPLACE_SM_RESP = 0x80000007  # 4.10.2
    CANCEL_SM = 0x00000008  # 4.9.1
    CANCEL_SM_RESP = 0x80000008  # 4.9.2
    BIND_TRANSCEIVER = 0x00000009  # 4.1.5
    BIND_TRANSCEIVER_RESP = 0x80000009  # 4.1.6
    OUTBIND = 0x0000000B  # 4.1.7
    ENQUIRE_LINK = 0x00000015  # 4.11.1
    ENQUIRE_LINK_RESP = 0x80000015  # 4.11.2
    SUBMIT_MULTI = 0x00000021  # 4.5.1
    SUBMIT_MULTI_RESP = 0x80000021  # 4.5.2
    ALERT_NOTIFICATION = 0x00000102  # 4.12.1
    DATA_SM = 0x00000103  # 4.7.1
    DATA_SM_RESP = 0x80000103  # 4.7.2


RESPONSE_BIT = 0x80000000


class CommandStatus(enum.IntEnum):
    """SMPP 3.4 section 5.1.3 (Table 5-2)."""

    ESME_ROK = 0x00000000  # no error
    ESME_RINVMSGLEN = 0x00000001  # message length is invalid
    ESME_RINVCMDLEN = 0x00000002  # command length is invalid
    ESME_RINVCMDID = 0x00000003  # invalid command id
    ESME_RINVBNDSTS = 0x00000004  # incorrect bind status for given command
    ESME_RALYBND = 0x00000005  # ESME already in bound state
    ESME_RINVPRTFLG = 0x00000006  # invalid priority flag
    ESME_RINVREGDLVFLG = 0x00000007  # invalid registered delivery flag
    ESME_RSYSERR = 0x00000008  # system error
    ESME_RINVSRCADR = 0x0000000A  # invalid source address
    ESME_RINVDSTADR = 0x0000000B  # invalid destination address
    ESME_RINVMSGID = 0x0000000C  # message id is invalid
    ESME_RBINDFAIL = 0x0000000D  # bind failed
    ESME_RINVPASWD = 0x0000000E  # invalid password
    ESME_RINVSYSID = 0x0000000F  # invalid system id
    ESME_RCANCELFAIL = 0x00000011  # cancel sm failed
    ESME_RREPLACEFAIL = 0x00000013  # replace sm failed
    ESME_RMSGQFUL = 0x00000014  # message queue full
    ESME_RINVSERTYP = 0x00000015  # invalid service type
    ESME_RINVNUMDESTS = 0x00000033  # invalid number of destinations
    ESME_RINVDLNAME = 0x00000034  # invalid distribution list name
    ESME_RINVDESTFLAG = 0x00000040  # destination flag is invalid (submit_multi)
    ESME_RINVSUBREP = 0x00000042  # invalid submit with replace request
    ESME_RINVESMCLASS = 0x00000043  # invalid esm_class field data
    ESME_RCNTSUBDL = 0x00000044  # cannot submit to distribution list
    ESME_RSUBMITFAIL = 0x00000045  # submit_sm or submit_multi failed
    ESME_RINVSRCTON = 0x00000048  # invalid source address TON
    ESME_RINVSRCNPI = 0x00000049  # invalid source address NPI
    ESME_RINVDSTTON = 0x00000050  # invalid destination address TON
    ESME_RINVDSTNPI = 0x00000051  # invalid destination address NPI
    ESME_RINVSYSTYP = 0x00000053  # invalid system_type field
    ESME_RINVREPFLAG = 0x00000054  # invalid replace_if_present flag
    ESME_RINVNUMMSGS = 0x00000055  # invalid number of messages
    ESME_RTHROTTLED = 0x00000058  # throttling error (ESME has exceeded allowed message limits)
    ESME_RINVSCHED = 0x00000061  # invalid scheduled delivery time
    ESME_RINVEXPIRY = 0x00000062  # invalid message validity period (expiry time)
    ESME_RINVDFTMSGID = 0x00000063  # predefined message invalid or not found
    ESME_RX_T_APPN = 0x00000064  # ESME receiver temporary app error code
    ESME_RX_P_APPN = 0x00000065  # ESME receiver permanent app error code
    ESME_RX_R_APPN = 0x00000066  # ESME receiver reject message error code
    ESME_RQUERYFAIL = 0x00000067  # query_sm request failed
    ESME_RINVOPTPARSTREAM = 0x000000C0  # error in the optional part of the PDU body
    ESME_ROPTPARNOTALLWD = 0x000000C1  # optional parameter not allowed
    ESME_RINVPARLEN = 0x000000C2  # invalid parameter length
    ESME_RMISSINGOPTPARAM = 0x000000C3  # expected optional parameter missing
    ESME_RINVOPTPARAMVAL = 0x000000C4  # invalid optional parameter value
    ESME_RDELIVERYFAILURE = 0x000000FE  # delivery failure (data_sm_resp)
    ESME_RUNKNOWNERR = 0x000000FF  # unknown error


class Tag(enum.IntEnum):
    """Optional parameter (TLV) tags, SMPP 3.4 section 5.3.2 (Table 5-6)."""

    DEST_ADDR_SUBUNIT = 0x0005  # 5.3.2.1
    DEST_NETWORK_TYPE = 0x0006  # 5.3.2.3
    DEST_BEARER_TYPE = 0x0007  # 5.3.2.5
    DEST_TELEMATICS_ID = 0x0008  # 5.3.2.7
    SOURCE_ADDR_SUBUNIT = 0x000D  # 5.3.2.2
    SOURCE_NETWORK_TYPE = 0x000E  # 5.3.2.4
    SOURCE_BEARER_TYPE = 0x000F  # 5.3.2.6
    SOURCE_TELEMATICS_ID = 0x0010  # 5.3.2.8
    QOS_TIME_TO_LIVE = 0x0017  # 5.3.2.9
    PAYLOAD_TYPE = 0x0019  # 5.3.2.10
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D  # 5.3.2.11
    RECEIPTED_MESSAGE_ID = 0x001E  # 5.3.2.12
    MS_MSG_WAIT_FACILITIES = 0x0030  # 5.3.2.13
    PRIVACY_INDICATOR = 0x0201  # 5.3.2.14
    SOURCE_SUBADDRESS = 0x0202  # 5.3.2.15
    DEST_SUBADDRESS = 0x0203  # 5.3.2.16
    USER_MESSAGE_REFERENCE = 0x0204  # 5.3.2.17
    USER_RESPONSE_CODE = 0x0205  # 5.3.2.18
    SOURCE_PORT = 0x020A  # 5.3.2.20
    DESTINATION_PORT = 0x020B  # 5.3.2.21
    SAR_MSG_REF_NUM = 0x020C  # 5.3.2.22
    LANGUAGE_INDICATOR = 0x020D  # 5.3.2.19
    SAR_TOTAL_SEGMENTS = 0x020E  # 5.3.2.23
    SAR_SEGMENT_SEQNUM = 0x020F  # 5.3.2.24
    SC_INTERFACE_VERSION = 0x0210  # 5.3.2.25
    CALLBACK_NUM_PRES_IND = 0x0302  # 5.3.2.37
    CALLBACK_NUM_ATAG = 0x0303  # 5.3.2.38
    NUMBER_OF_MESSAGES = 0x0304  # 5.3.2.39
    CALLBACK_NUM = 0x0381  # 5.3.2.36
    DPF_RESULT = 0x0420  # 5.3.2.28
    SET_DPF = 0x0421  # 5.3.2.29
    MS_AVAILABILITY_STATUS = 0x0422  # 5.3.2.30
    NETWORK_ERROR_CODE = 0x0423  # 5.3.2.31
    MESSAGE_PAYLOAD = 0x0424  # 5.3.2.32
    DELIVERY_FAILURE_REASON = 0x0425  # 5.3.2.33
    MORE_MESSAGES_TO_SEND = 0x0426  # 5.3.2.34
    MESSAGE_STATE = 0x0427  # 5.3.2.35
    USSD_SERVICE_OP = 0x0501  # 5.3.2.44
    DISPLAY_TIME = 0x1201  # 5.3.2.26
    SMS_SIGNAL = 0x1203  # 5.3.2.40
    MS_VALIDITY = 0x1204  # 5.3.2.27
    ALERT_ON_MESSAGE_DELIVERY = 0x130C  # 5.3.2.41
    ITS_REPLY_TYPE = 0x1380  # 5.3.2.42
    ITS_SESSION_INFO = 0x1383  # 5.3.2.43


class MessageState(enum.IntEnum):
    """SMPP 3.4 section 5.2.28; the receipt `stat:` word is in `STAT_WORDS`."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


# SMPP 3.4 Appendix B: the seven-letter words of the delivery receipt's `stat:` field.
STAT_WORDS: dict[MessageState, str] = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}

# esm_class bits, SMPP 3.4 section 5.2.12.
ESM_MODE_MASK = 0x03  # messaging mode: default, datagram, forward, store and forward
ESM_MODE_TRANSACTION = 0x02  # forward mode: the answer waits for the handset's
ESM_TYPE_MASK = 0x3C  # message type
ESM_TYPE_DELIVERY_RECEIPT = 0x04  # deliver_sm: an SMSC delivery receipt
ESM_FEATURE_UDHI = 0x40  # short_message (or message_payload) starts with a UDH
ESM_FEATURE_REPLY_PATH = 0x80

# registered_delivery bits 1..0, SMPP 3.4 section 5.2.17.
RECEIPT_MASK = 0x03

INTERFACE_VERSION_34 = 0x34  # SMPP 3.4 section 5.2.4
HEADER_LENGTH = 16  # command_length, command_id, command_status, sequence_number
MAX_SEQUENCE_NUMBER = 0x7FFFFFFF  # SMPP 3.4 section 3.2: 0x00000001..0x7FFFFFFF
