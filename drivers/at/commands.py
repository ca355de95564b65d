"""AT command builders, response parsers and the +CMS/+CME error tables.

Pure: strings in, typed values out; no I/O, no clock. Implements 3GPP TS 27.005 sections 3.1
(<stat>, <pdu>), 3.2 (+CSMS, +CPMS, +CMS ERROR), 3.4 (+CNMI, +CNMA), 3.5 (+CMGL, +CMGR, +CMGS,
+CMGD), TS 27.007 sections 5.1-5.4 (+CGMI, +CGMM, +CGSN), 7.2 (+CREG), 7.3 (+COPS), 8.3 (+CPIN),
8.5 (+CSQ), 8.18 (+CRSM), 9.2 (+CME ERROR) and 10.1.22 (+CEREG).
"""

from __future__ import annotations

import enum
import re

import msgspec

from drivers.at.errors import AtProtocolError

# Fixed command lines of the initialisation (TS 27.007 section 4: every line starts with "AT").
SYNC = "AT"
ECHO_OFF = "ATE0"  # ITU-T V.250 section 6.2.4
CMEE_NUMERIC_MODE = 1  # TS 27.007 section 9.1: numeric +CME ERROR codes; factory setting 0
CMEE_NUMERIC = f"AT+CMEE={CMEE_NUMERIC_MODE}"
CMEE_QUERY = "AT+CMEE?"
PDU_MODE = "AT+CMGF=0"  # TS 27.005 section 3.2.3
CPIN_QUERY = "AT+CPIN?"
CSQ = "AT+CSQ"
CREG_QUERY = "AT+CREG?"
COPS_QUERY = "AT+COPS?"
CGSN = "AT+CGSN"
CCID = "AT+CCID"
CGMI = "AT+CGMI"  # manufacturer
CGMM = "AT+CGMM"  # model
# Ways to read the ICCID, in the order tried: most modems know +CCID, Huawei and Telit +ICCID,
# Quectel +QCCID; AT+CRSM reads the SIM's EF-ICCID (file 2FE2 = 12258, 10 octets) on any modem
# that implements TS 27.007 section 8.18.
ICCID = "AT+ICCID"
QCCID = "AT+QCCID"
CRSM_ICCID = "AT+CRSM=176,12258,0,0,10"
ICCID_COMMANDS = (CCID, ICCID, QCCID, CRSM_ICCID)
# The prefixes their answers carry, by vendor (any of them may answer any of those commands).
ICCID_PREFIXES = ("+CCID", "+ICCID", "^ICCID", "+QCCID")
CREG_URC_ON = "AT+CREG=2"  # +CREG: <stat>[,<lac>,<ci>[,<AcT>]] whenever it changes
CEREG_URC_ON = "AT+CEREG=2"  # the same for EPS (LTE) registration
CEREG_QUERY = "AT+CEREG?"
COPS_LONG_NAME = "AT+COPS=3,0"  # answer AT+COPS? with the long alphanumeric name
CPMS_TEST = "AT+CPMS=?"
CPMS_QUERY = "AT+CPMS?"
CSMS_PHASE2_PLUS = "AT+CSMS=1"  # +CMT and +CDS then need +CNMA (TS 27.005 section 3.2.1)
CNMA = "AT+CNMA"  # acknowledge the last +CMT or +CDS (TS 27.005 section 3.4.4)
CMGL_ALL = "AT+CMGL=4"  # PDU mode <stat> 4: every stored message (TS 27.005 section 3.5.2)

CTRL_Z = "\x1a"  # ends the PDU after the "> " prompt (TS 27.005 section 3.5.1)
ESC = "\x1b"  # aborts the PDU entry without sending

_PIN_RE = re.compile(r"[0-9]{4,8}")
_DECIMAL = re.compile(r"[0-9]{1,9}")


def cmgs(length: int) -> str:
    """AT+CMGS in PDU mode; `length` counts TPDU octets, not the SMSC address (TS 27.005 3.5.1)."""
    if not 1 <= length <= 255:
        raise ValueError(f"TPDU length {length} is outside 1..255")
    return f"AT+CMGS={length}"


def cpin_enter(pin: str) -> str:
    """AT+CPIN=<pin>; a SIM PIN is 4 to 8 digits (TS 27.007 section 8.3, TS 31.101)."""
    if not _PIN_RE.fullmatch(pin):
        raise ValueError("a SIM PIN is 4 to 8 digits")
    return f'AT+CPIN="{pin}"'


def shown(command: str) -> str:
    """`command` as a log line or a modem's health names it: the PIN of AT+CPIN= left out, as
    the journal and /ready (which answers without credentials) show a failure's reason."""
    if command.upper().startswith("AT+CPIN="):
        return "AT+CPIN=<pin>"
    return command


def resync(nonce: int) -> str:
    """Set S7 (V.250 6.3.6, the data-call connection timeout, unused for SMS) to `nonce` and read
    it back: an answer that carries the nonce cannot be a late answer to an earlier command."""
    if not 1 <= nonce <= 255:
        raise ValueError(f"a resync nonce is 1..255, not {nonce}")
    return f"ATS7={nonce};S7?"


def command_name(command: str) -> str:
    """The name a response to `command` is prefixed with: "AT+CMGS=23" -> "+CMGS"."""
    body = command.strip()
    if body[:2].upper() == "AT":
        body = body[2:]
    match = re.match(r"[+^$%#*][A-Za-z0-9_]+|[A-Za-z&]\d*", body)
    return match.group(0).upper() if match else body.upper()


# ---- Response parsers -------------------------------------------------------------------------


def _info(lines: tuple[str, ...], prefix: str) -> str:
    """The value after `prefix:` in the one line that carries it."""
    tag = prefix + ":"
    for line in lines:
        if line.upper().startswith(tag):
            return line[len(tag) :].strip()
    raise AtProtocolError(f"no {prefix} line in response {lines!r}")


def _split_fields(value: str) -> list[str]:
    """Comma-separated fields; commas inside double quotes belong to the string (TS 27.007 4.1)."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if quoted:
        raise AtProtocolError(f"unterminated string in {value!r}")
    fields.append("".join(current).strip())
    return fields


def decimal(text: str) -> int | None:
    """`text` as a number when it is one to nine ASCII digits (V.250 5.7: numbers are IA5
    decimal), else None. Not `str.isdigit`: a line is decoded as Latin-1, and noise on it can
    be the superscripts ¹²³, digits to `isdigit` that `int` refuses with a ValueError."""
    return int(text) if _DECIMAL.fullmatch(text) else None


def _int(text: str, what: str) -> int:
    value = decimal(text)
    if value is None:
        raise AtProtocolError(f"{what} is not a number: {text!r}")
    return value


def parse_cmgs(lines: tuple[str, ...]) -> int:
    """`+CMGS: <mr>[,<scts>|<ackpdu>]` -> TP-MR, 0..255 (TS 27.005 section 3.5.1)."""
    mr = _int(_split_fields(_info(lines, "+CMGS"))[0], "+CMGS <mr>")
    if mr > 255:
        raise AtProtocolError(f"+CMGS <mr> {mr} is not an octet")
    return mr


def parse_cpin(lines: tuple[str, ...]) -> str:
    """`+CPIN: <code>` -> "READY", "SIM PIN", "SIM PUK", ... (TS 27.007 section 8.3)."""
    code = _info(lines, "+CPIN").strip('"').upper()
    if not code:
        raise AtProtocolError("empty +CPIN code")
    return code


class SignalQuality(msgspec.Struct, frozen=True, kw_only=True):
    """`+CSQ: <rssi>,<ber>` (TS 27.007 section 8.5)."""

    rssi: int  # 0..31, 99 = not known or not detectable
    ber: int  # 0..7 (RXQUAL), 99 = not known or not detectable

    @property
    def dbm(self) -> int | None:
        """Received level in dBm: 0 = -113 or less, 31 = -51 or more, 2 dB steps between."""
        if self.rssi == 99:
            return None
        return -113 + 2 * self.rssi


def parse_csq(lines: tuple[str, ...]) -> SignalQuality:
    fields = _split_fields(_info(lines, "+CSQ"))
    if len(fields) != 2:
        raise AtProtocolError(f"+CSQ wants 2 fields, got {fields!r}")
    rssi = _int(fields[0], "+CSQ <rssi>")
    ber = _int(fields[1], "+CSQ <ber>")
    if not (rssi <= 31 or rssi == 99) or not (ber <= 7 or ber == 99):
        raise AtProtocolError(f"+CSQ out of range: {rssi},{ber}")
    return SignalQuality(rssi=rssi, ber=ber)


def parse_cmee(lines: tuple[str, ...]) -> int:
    """The error report mode of `+CMEE: <n>` (TS 27.007 section 9.1)."""
    return _int(_info(lines, "+CMEE"), "+CMEE <n>")


class RegistrationStatus(enum.IntEnum):
    """+CREG <stat> (TS 27.007 section 7.2)."""

    NOT_REGISTERED = 0  # not searching for an operator
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5
    SMS_ONLY_HOME = 6
    SMS_ONLY_ROAMING = 7
    EMERGENCY_ONLY = 8
    CSFB_NOT_PREFERRED_HOME = 9
    CSFB_NOT_PREFERRED_ROAMING = 10

    @property
    def registered(self) -> bool:
        return self in _REGISTERED


_REGISTERED = frozenset(
    {
        RegistrationStatus.HOME,
        RegistrationStatus.ROAMING,
        RegistrationStatus.SMS_ONLY_HOME,
        RegistrationStatus.SMS_ONLY_ROAMING,
        RegistrationStatus.CSFB_NOT_PREFERRED_HOME,
        RegistrationStatus.CSFB_NOT_PREFERRED_ROAMING,
    }
)


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    stat: RegistrationStatus
    n: int | None = None  # the URC mode; absent in the unsolicited form
    lac: str = ""  # location area code, hexadecimal
    ci: str = ""  # cell id, hexadecimal
    act: int | None = None  # access technology (TS 27.007 section 7.3 <AcT>)


def parse_creg(lines: tuple[str, ...], prefix: str = "+CREG") -> Registration:
    """Read form `+CREG: <n>,<stat>[,<lac>,<ci>[,<AcT>]]`, or the URC `+CREG: <stat>[,...]`.

    The two forms differ in whether <n> leads; a quoted, empty or non-numeric second field
    is <lac>, so `+CREG: 1,"00C3",...` and `+CEREG: 1,,,7` are the URC with <stat>=1 (TS
    27.007 section 7.2). `prefix` "+CEREG"
    reads the EPS form, whose <tac> stands where <lac> does (TS 27.007 section 10.1.22).
    """
    fields = _split_fields(_info(lines, prefix))
    raw = _info(lines, prefix)
    second_is_quoted = len(fields) > 1 and raw.split(",")[1].strip().startswith('"')
    # A second field that is empty or no <stat> is an omitted or unquoted <lac>/<tac>: the
    # URC `+CEREG: 1,,,7` of a modem that leaves out what it does not know.
    second_is_stat = len(fields) > 1 and len(fields[1]) <= 2 and decimal(fields[1]) is not None
    # Three fields are the URC's <stat>,<lac>,<ci>: the read form has <lac> and <ci> together
    # after <n>,<stat>, so never three (`+CREG: 1,12,3456` has an unquoted <lac> of "12").
    if len(fields) in (1, 3) or second_is_quoted or not second_is_stat:
        n, rest = None, fields
    else:
        n, rest = _int(fields[0], "+CREG <n>"), fields[1:]
    stat = _int(rest[0], f"{prefix} <stat>")
    try:
        status = RegistrationStatus(stat)
    except ValueError:
        raise AtProtocolError(f"{prefix} <stat> {stat} is not defined") from None
    lac = rest[1] if len(rest) > 1 else ""
    ci = rest[2] if len(rest) > 2 else ""
    act = _int(rest[3], f"{prefix} <AcT>") if len(rest) > 3 and rest[3] else None
    return Registration(stat=status, n=n, lac=lac, ci=ci, act=act)


def parse_cereg(lines: tuple[str, ...]) -> Registration:
    """`+CEREG:` in the read form or as the URC (TS 27.007 section 10.1.22)."""
    return parse_creg(lines, "+CEREG")


class Operator(msgspec.Struct, frozen=True, kw_only=True):
    """`+COPS: <mode>[,<format>,<oper>[,<AcT>]]` (TS 27.007 section 7.3)."""

    mode: int
    format: int | None = None
    name: str = ""
    act: int | None = None


def parse_cops(lines: tuple[str, ...]) -> Operator:
    fields = _split_fields(_info(lines, "+COPS"))
    mode = _int(fields[0], "+COPS <mode>")
    fmt = _int(fields[1], "+COPS <format>") if len(fields) > 1 and fields[1] else None
    name = fields[2].strip('"') if len(fields) > 2 else ""
    act = _int(fields[3], "+COPS <AcT>") if len(fields) > 3 and fields[3] else None
    return Operator(mode=mode, format=fmt, name=name, act=act)


def _bare_or_prefixed(
    lines: tuple[str, ...], prefixes: tuple[str, ...], shape: re.Pattern[str] | None = None
) -> str:
    """The value of the first `<prefix>: <value>` line, else the first bare line; with `shape`,
    the first bare line of that shape, if any: an unsolicited line without a prefix (SIM800's
    DST: 0) may come before it, and the framer cannot tell it from bare answer text."""
    for line in lines:
        upper = line.upper()
        for prefix in prefixes:
            if upper.startswith(prefix + ":"):
                return line[len(prefix) + 1 :].strip().strip('"')
    bare = [line.strip().strip('"') for line in lines if line.strip()]
    if not bare:
        raise AtProtocolError(f"empty response {lines!r}")
    if shape is not None:
        return next((text for text in bare if shape.fullmatch(text)), bare[0])
    return bare[0]


_IMEI = re.compile(r"[0-9]{14,17}")
_ICCID = re.compile(r"[0-9]{18,20}F?", re.IGNORECASE)


def parse_imei(lines: tuple[str, ...]) -> str:
    """AT+CGSN answers the IMEI bare or as `+CGSN: <sn>` (TS 27.007 section 5.4): 15 digits."""
    imei = _bare_or_prefixed(lines, ("+CGSN",), _IMEI)
    if not _IMEI.fullmatch(imei):
        raise AtProtocolError(f"not an IMEI: {imei!r}")
    return imei


def parse_iccid(lines: tuple[str, ...]) -> str:
    """An ICCID read answers `<prefix>: <iccid>` (`ICCID_PREFIXES`) or the bare ICCID (ITU-T
    E.118).

    An ICCID has 18 to 20 digits; an odd count is padded with "F" on some SIMs.
    """
    iccid = _bare_or_prefixed(lines, ICCID_PREFIXES, _ICCID).upper()
    if not _ICCID.fullmatch(iccid):
        raise AtProtocolError(f"not an ICCID: {iccid!r}")
    return iccid.rstrip("F")


def parse_crsm_iccid(lines: tuple[str, ...]) -> str:
    """`+CRSM: <sw1>,<sw2>,"<response>"` of a READ BINARY of EF-ICCID (TS 27.007 section 8.18).

    The file holds the ICCID as BCD with swapped nibbles (TS 31.102 section 4.1.1, ITU-T E.118);
    sw1 144 (0x90) means success.
    """
    fields = _split_fields(_info(lines, "+CRSM"))
    if len(fields) < 3 or _int(fields[0], "+CRSM <sw1>") != 0x90:
        raise AtProtocolError(f"the SIM refused to read EF-ICCID: {fields!r}")
    raw = fields[2].upper()
    if not re.fullmatch(r"(?:[0-9A-F]{2}){9,10}", raw):
        raise AtProtocolError(f"EF-ICCID is not BCD: {raw!r}")
    digits = "".join(raw[i + 1] + raw[i] for i in range(0, len(raw), 2))
    return parse_iccid((digits,))


def parse_text(lines: tuple[str, ...], prefix: str) -> str:
    """The answer to AT+CGMI or AT+CGMM: bare (most modems) or as `<prefix>: <text>`."""
    return _bare_or_prefixed(lines, (prefix,))


# ---- Message storage and indications (TS 27.005 sections 3.2.2, 3.4.1, 3.5) ----------------------


def cpms(storage: str) -> str:
    """AT+CPMS with one storage for reading/deleting, writing and receiving alike, so every
    message the network delivers lands where AT+CMGR, AT+CMGL and AT+CMGD look."""
    _check_storage(storage)
    return f'AT+CPMS="{storage}","{storage}","{storage}"'


def cpms_read_from(storage: str) -> str:
    """AT+CPMS with <mem1> alone: where AT+CMGR/AT+CMGL/AT+CMGD act, the others unchanged."""
    _check_storage(storage)
    return f'AT+CPMS="{storage}"'


def _check_storage(storage: str) -> None:
    if not re.fullmatch(r"[A-Z]{2}", storage):
        raise ValueError(f"a message storage is two capital letters, not {storage!r}")


def parse_cpms_test(lines: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    """`+CPMS: (<mem1>s),(<mem2>s),(<mem3>s)` -> the storages each position accepts."""
    value = _info(lines, "+CPMS")
    groups = re.findall(r"\(([^()]*)\)", value)
    if not groups:
        raise AtProtocolError(f"+CPMS=? lists no storages: {value!r}")
    return tuple(
        frozenset(name.upper() for name in _split_fields(group) if name) for group in groups
    )


def parse_cpms_read(lines: tuple[str, ...]) -> str:
    """`+CPMS: <mem1>,<used1>,<total1>,...` -> <mem1>, where reading and deleting act."""
    fields = _split_fields(_info(lines, "+CPMS"))
    storage = fields[0].upper()
    if not re.fullmatch(r"[A-Z]{2}", storage):
        raise AtProtocolError(f"+CPMS? names no storage: {fields!r}")
    return storage


def choose_storage(supported: tuple[frozenset[str], ...], preferred: list[str]) -> str | None:
    """The first preferred storage that every +CPMS position accepts, or None."""
    for storage in preferred:
        if all(storage.upper() in group for group in supported):
            return storage.upper()
    return None


class Cnmi(msgspec.Struct, frozen=True):
    """AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr> (TS 27.005 section 3.4.1)."""

    mode: int  # 1: discard indications while the link is busy; 2: buffer them in the modem
    mt: int  # 1: +CMTI (stored); 2: +CMT (direct, +CNMA needed); 3: class 3 direct
    bm: int  # cell broadcast; 0 here
    ds: int  # 1: +CDS (direct, +CNMA needed); 2: +CDSI (stored)
    bfr: int  # 0: flush buffered indications to the TE when the mode is set

    @property
    def command(self) -> str:
        return f"AT+CNMI={self.mode},{self.mt},{self.bm},{self.ds},{self.bfr}"

    @property
    def direct(self) -> bool:
        """True when messages or reports come in the URC itself (+CMT, +CDS), not stored."""
        return self.mt in (2, 3) or self.ds == 1


def parse_cnmi_setting(text: str) -> Cnmi:
    """ "2,1,0,2,0" -> Cnmi; omitted trailing values are 0, as the modem defaults them."""
    fields = [field.strip() for field in text.split(",")]
    if not 1 <= len(fields) <= 5 or not all(field.isdigit() for field in fields):
        raise ValueError(f"a +CNMI setting is up to five numbers, not {text!r}")
    values = [int(field) for field in fields] + [0] * (5 - len(fields))
    limits = (3, 3, 3, 2, 1)
    if any(value > limit for value, limit in zip(values, limits, strict=True)):
        raise ValueError(f"+CNMI setting {text!r} is out of range")
    return Cnmi(*values)


def cmgr(index: int) -> str:
    return f"AT+CMGR={_index(index)}"


def cmgd(index: int) -> str:
    return f"AT+CMGD={_index(index)}"


def _index(index: int) -> int:
    if not 0 <= index <= 65535:
        raise ValueError(f"a storage index is 0..65535, not {index}")
    return index


class StoredStat(enum.IntEnum):
    """PDU mode <stat> (TS 27.005 section 3.1)."""

    REC_UNREAD = 0
    REC_READ = 1
    STO_UNSENT = 2
    STO_SENT = 3

    @property
    def received(self) -> bool:
        return self in (StoredStat.REC_UNREAD, StoredStat.REC_READ)


class StoredPdu(msgspec.Struct, frozen=True, kw_only=True):
    """One stored message as +CMGR or +CMGL shows it: the PDU still has its SMSC prefix."""

    index: int
    stat: int  # a StoredStat value; kept as read, modems add their own
    pdu: bytes


def _hex(text: str, what: str) -> bytes:
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", text):
        raise AtProtocolError(f"{what} is not hexadecimal octets: {text[:40]!r}")
    return bytes.fromhex(text)


def _pdu(text: str, length: int | None, what: str) -> bytes:
    """The PDU line after a header whose <length> is `length`: the octets of the TPDU, the
    SMSC address in front of it not counted (TS 27.005 section 3.1). A line that lost or gained
    an octet on the cable can still decode, wrongly: a status report's TP-ST read from the
    octet after it, a failed delivery taken for a delivered one."""
    pdu = _hex(text, what)
    tpdu_octets = len(pdu) - 1 - pdu[0]
    if tpdu_octets != length:
        raise AtProtocolError(f"{what} holds {tpdu_octets} TPDU octets, its header says {length}")
    return pdu


def parse_cmgr(lines: tuple[str, ...], index: int) -> StoredPdu | None:
    """`+CMGR: <stat>,[<alpha>],<length>` then the PDU; None when the index is empty.

    An empty index answers OK without lines (most modems) or `+CMGR: 0,,0` (some Huawei).
    """
    for position, line in enumerate(lines):
        if not line.upper().startswith("+CMGR:"):
            continue
        fields = _split_fields(line[len("+CMGR:") :])
        stat = _int(fields[0], "+CMGR <stat>")
        length = _int(fields[-1], "+CMGR <length>")
        if length == 0:
            return None
        if position + 1 >= len(lines):
            raise AtProtocolError(f"+CMGR without its PDU: {lines!r}")
        return StoredPdu(
            index=index, stat=stat, pdu=_pdu(lines[position + 1], length, "+CMGR <pdu>")
        )
    return None


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """An AT+CMGL answer: the entries read whole, the indexes listed whose PDU line is
    missing or not hexadecimal octets (noise or a lost byte on the cable), to read alone, and
    how many lines were skipped: a header too broken to give an index (or not a PDU-mode one:
    a modem fallen back to text mode), a line that follows no header. With any skipped, the
    listing does not say for sure what the storage holds."""

    messages: tuple[StoredPdu, ...] = ()
    unreadable: tuple[int, ...] = ()
    skipped: int = 0


def parse_cmgl(lines: tuple[str, ...]) -> Listing:
    """`+CMGL: <index>,<stat>,[<alpha>],<length>` each followed by its PDU line.

    One broken entry costs only itself: its index goes to `unreadable` (a header too broken
    to give one is counted in `skipped`, as is a line that follows no header); the others are
    listed.
    """
    messages: list[StoredPdu] = []
    unreadable: list[int] = []
    skipped = 0
    waiting: tuple[int, int, int | None] | None = None
    for line in lines:
        if line.upper().startswith("+CMGL:"):
            if waiting is not None:
                unreadable.append(waiting[0])
            waiting = _cmgl_header(line)
            skipped += waiting is None
        elif waiting is not None:
            try:
                pdu = _pdu(line, waiting[2], "+CMGL <pdu>")
            except AtProtocolError:
                unreadable.append(waiting[0])
            else:
                messages.append(StoredPdu(index=waiting[0], stat=waiting[1], pdu=pdu))
            waiting = None
        elif line.strip():
            skipped += 1
    if waiting is not None:
        unreadable.append(waiting[0])
    return Listing(messages=tuple(messages), unreadable=tuple(unreadable), skipped=skipped)


def _cmgl_header(line: str) -> tuple[int, int, int | None] | None:
    """(index, stat, length) of a header; None without an index and a stat, a length of None
    when it is unreadable (the entry is then read alone)."""
    fields = _split_fields(line[len("+CMGL:") :]) if line.count('"') % 2 == 0 else []
    if len(fields) < 3:
        return None
    index, stat = decimal(fields[0]), decimal(fields[1])
    return None if index is None or stat is None else (index, stat, decimal(fields[-1]))


def parse_storage_indication(line: str) -> tuple[str, int]:
    """`+CMTI: <mem>,<index>` or `+CDSI: <mem>,<index>` -> (storage, index)."""
    name, _, value = line.partition(":")
    if name.upper() not in ("+CMTI", "+CDSI"):
        raise AtProtocolError(f"not a storage indication: {line!r}")
    fields = _split_fields(value)
    if len(fields) != 2:
        raise AtProtocolError(f"{name} wants <mem>,<index>: {line!r}")
    storage = fields[0].upper()
    if not re.fullmatch(r"[A-Z]{2}", storage):
        raise AtProtocolError(f"{name} names no storage: {line!r}")
    return storage, _int(fields[1], f"{name} <index>")


def parse_urc_pdu(header: str, pdu: str | None) -> bytes:
    """The PDU line after `header`, `+CMT: [<alpha>],<length>` or `+CDS: <length>` (SMSC
    prefix included), as octets."""
    if pdu is None:
        raise AtProtocolError("the PDU line after the indication never came")
    length = decimal(_split_fields(header.partition(":")[2])[-1])
    return _pdu(pdu, length, "indication PDU")


# ---- Error tables -----------------------------------------------------------------------------


class CmsError(enum.IntEnum):
    """+CMS ERROR <err> values, TS 27.005 section 3.2.5.

    0..127 are TS 24.011 annex E.2 RP-cause values, 128..255 TS 23.040 section 9.2.3.22
    TP-Failure-Cause values, 300.. the TA/ME's own, 512.. manufacturer specific.
    """

    UNASSIGNED_NUMBER = 1
    OPERATOR_DETERMINED_BARRING = 8
    CALL_BARRED = 10
    NETWORK_FAILURE = 17
    SM_TRANSFER_REJECTED = 21
    MEMORY_CAPACITY_EXCEEDED = 22
    DESTINATION_OUT_OF_ORDER = 27
    UNIDENTIFIED_SUBSCRIBER = 28
    FACILITY_REJECTED = 29
    UNKNOWN_SUBSCRIBER = 30
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    CONGESTION = 42
    RESOURCES_UNAVAILABLE = 47
    FACILITY_NOT_SUBSCRIBED = 50
    FACILITY_NOT_IMPLEMENTED = 69
    INVALID_SM_TRANSFER_REFERENCE = 81
    SEMANTICALLY_INCORRECT_MESSAGE = 95
    INVALID_MANDATORY_INFORMATION = 96
    MESSAGE_TYPE_NOT_IMPLEMENTED = 97
    MESSAGE_NOT_COMPATIBLE_WITH_STATE = 98
    INFORMATION_ELEMENT_NOT_IMPLEMENTED = 99
    PROTOCOL_ERROR = 111
    INTERWORKING = 127
    TELEMATIC_INTERWORKING_NOT_SUPPORTED = 0x80
    SM_TYPE_0_NOT_SUPPORTED = 0x81
    CANNOT_REPLACE_SM = 0x82
    TP_PID_ERROR = 0x8F
    DCS_NOT_SUPPORTED = 0x90
    MESSAGE_CLASS_NOT_SUPPORTED = 0x91
    TP_DCS_ERROR = 0x9F
    COMMAND_CANNOT_BE_ACTIONED = 0xA0
    COMMAND_UNSUPPORTED = 0xA1
    TP_COMMAND_ERROR = 0xAF
    TPDU_NOT_SUPPORTED = 0xB0
    SC_BUSY = 0xC0
    NO_SC_SUBSCRIPTION = 0xC1
    SC_SYSTEM_FAILURE = 0xC2
    INVALID_SME_ADDRESS = 0xC3
    DESTINATION_SME_BARRED = 0xC4
    SM_REJECTED_DUPLICATE = 0xC5
    TP_VPF_NOT_SUPPORTED = 0xC6
    TP_VP_NOT_SUPPORTED = 0xC7
    SIM_SMS_STORAGE_FULL = 0xD0
    NO_SMS_STORAGE_IN_SIM = 0xD1
    ERROR_IN_MS = 0xD2
    MS_MEMORY_CAPACITY_EXCEEDED = 0xD3
    SIM_TOOLKIT_BUSY = 0xD4
    SIM_DATA_DOWNLOAD_ERROR = 0xD5
    UNSPECIFIED_FAILURE_CAUSE = 0xFF
    ME_FAILURE = 300
    SMS_SERVICE_RESERVED = 301
    OPERATION_NOT_ALLOWED = 302
    OPERATION_NOT_SUPPORTED = 303
    INVALID_PDU_MODE_PARAMETER = 304
    INVALID_TEXT_MODE_PARAMETER = 305
    SIM_NOT_INSERTED = 310
    SIM_PIN_REQUIRED = 311
    PH_SIM_PIN_REQUIRED = 312
    SIM_FAILURE = 313
    SIM_BUSY = 314
    SIM_WRONG = 315
    SIM_PUK_REQUIRED = 316
    SIM_PIN2_REQUIRED = 317
    SIM_PUK2_REQUIRED = 318
    MEMORY_FAILURE = 320
    INVALID_MEMORY_INDEX = 321
    MEMORY_FULL = 322
    SMSC_ADDRESS_UNKNOWN = 330
    NO_NETWORK_SERVICE = 331
    NETWORK_TIMEOUT = 332
    NO_CNMA_EXPECTED = 340
    UNKNOWN_ERROR = 500


# Verbose texts (AT+CMEE=2); modems differ in case and in "SIM" versus "(U)SIM", which
# `cms_code_from_text` normalises away.
CMS_TEXT: dict[CmsError, str] = {
    CmsError.UNASSIGNED_NUMBER: "Unassigned (unallocated) number",
    CmsError.OPERATOR_DETERMINED_BARRING: "Operator determined barring",
    CmsError.CALL_BARRED: "Call barred",
    CmsError.NETWORK_FAILURE: "Network failure",
    CmsError.SM_TRANSFER_REJECTED: "Short message transfer rejected",
    CmsError.MEMORY_CAPACITY_EXCEEDED: "Memory capacity exceeded",
    CmsError.DESTINATION_OUT_OF_ORDER: "Destination out of order",
    CmsError.UNIDENTIFIED_SUBSCRIBER: "Unidentified subscriber",
    CmsError.FACILITY_REJECTED: "Facility rejected",
    CmsError.UNKNOWN_SUBSCRIBER: "Unknown subscriber",
    CmsError.NETWORK_OUT_OF_ORDER: "Network out of order",
    CmsError.TEMPORARY_FAILURE: "Temporary failure",
    CmsError.CONGESTION: "Congestion",
    CmsError.RESOURCES_UNAVAILABLE: "Resources unavailable, unspecified",
    CmsError.FACILITY_NOT_SUBSCRIBED: "Requested facility not subscribed",
    CmsError.FACILITY_NOT_IMPLEMENTED: "Requested facility not implemented",
    CmsError.INVALID_SM_TRANSFER_REFERENCE: "Invalid short message transfer reference value",
    CmsError.SEMANTICALLY_INCORRECT_MESSAGE: "Semantically incorrect message",
    CmsError.INVALID_MANDATORY_INFORMATION: "Invalid mandatory information",
    CmsError.MESSAGE_TYPE_NOT_IMPLEMENTED: "Message type non-existent or not implemented",
    CmsError.MESSAGE_NOT_COMPATIBLE_WITH_STATE: (
        "Message not compatible with short message protocol state"
    ),
    CmsError.INFORMATION_ELEMENT_NOT_IMPLEMENTED: (
        "Information element non-existent or not implemented"
    ),
    CmsError.PROTOCOL_ERROR: "Protocol error, unspecified",
    CmsError.INTERWORKING: "Interworking, unspecified",
    CmsError.TELEMATIC_INTERWORKING_NOT_SUPPORTED: "Telematic interworking not supported",
    CmsError.SM_TYPE_0_NOT_SUPPORTED: "Short message Type 0 not supported",
    CmsError.CANNOT_REPLACE_SM: "Cannot replace short message",
    CmsError.TP_PID_ERROR: "Unspecified TP-PID error",
    CmsError.DCS_NOT_SUPPORTED: "Data coding scheme (alphabet) not supported",
    CmsError.MESSAGE_CLASS_NOT_SUPPORTED: "Message class not supported",
    CmsError.TP_DCS_ERROR: "Unspecified TP-DCS error",
    CmsError.COMMAND_CANNOT_BE_ACTIONED: "Command cannot be actioned",
    CmsError.COMMAND_UNSUPPORTED: "Command unsupported",
    CmsError.TP_COMMAND_ERROR: "Unspecified TP-Command error",
    CmsError.TPDU_NOT_SUPPORTED: "TPDU not supported",
    CmsError.SC_BUSY: "SC busy",
    CmsError.NO_SC_SUBSCRIPTION: "No SC subscription",
    CmsError.SC_SYSTEM_FAILURE: "SC system failure",
    CmsError.INVALID_SME_ADDRESS: "Invalid SME address",
    CmsError.DESTINATION_SME_BARRED: "Destination SME barred",
    CmsError.SM_REJECTED_DUPLICATE: "SM Rejected-Duplicate SM",
    CmsError.TP_VPF_NOT_SUPPORTED: "TP-VPF not supported",
    CmsError.TP_VP_NOT_SUPPORTED: "TP-VP not supported",
    CmsError.SIM_SMS_STORAGE_FULL: "(U)SIM SMS storage full",
    CmsError.NO_SMS_STORAGE_IN_SIM: "No SMS storage capability in (U)SIM",
    CmsError.ERROR_IN_MS: "Error in MS",
    CmsError.MS_MEMORY_CAPACITY_EXCEEDED: "Memory capacity exceeded",
    CmsError.SIM_TOOLKIT_BUSY: "(U)SIM Application Toolkit busy",
    CmsError.SIM_DATA_DOWNLOAD_ERROR: "(U)SIM data download error",
    CmsError.UNSPECIFIED_FAILURE_CAUSE: "Unspecified error cause",
    CmsError.ME_FAILURE: "ME failure",
    CmsError.SMS_SERVICE_RESERVED: "SMS service of ME reserved",
    CmsError.OPERATION_NOT_ALLOWED: "operation not allowed",
    CmsError.OPERATION_NOT_SUPPORTED: "operation not supported",
    CmsError.INVALID_PDU_MODE_PARAMETER: "invalid PDU mode parameter",
    CmsError.INVALID_TEXT_MODE_PARAMETER: "invalid text mode parameter",
    CmsError.SIM_NOT_INSERTED: "(U)SIM not inserted",
    CmsError.SIM_PIN_REQUIRED: "(U)SIM PIN required",
    CmsError.PH_SIM_PIN_REQUIRED: "PH-(U)SIM PIN required",
    CmsError.SIM_FAILURE: "(U)SIM failure",
    CmsError.SIM_BUSY: "(U)SIM busy",
    CmsError.SIM_WRONG: "(U)SIM wrong",
    CmsError.SIM_PUK_REQUIRED: "(U)SIM PUK required",
    CmsError.SIM_PIN2_REQUIRED: "(U)SIM PIN2 required",
    CmsError.SIM_PUK2_REQUIRED: "(U)SIM PUK2 required",
    CmsError.MEMORY_FAILURE: "memory failure",
    CmsError.INVALID_MEMORY_INDEX: "invalid memory index",
    CmsError.MEMORY_FULL: "memory full",
    CmsError.SMSC_ADDRESS_UNKNOWN: "SMSC address unknown",
    CmsError.NO_NETWORK_SERVICE: "no network service",
    CmsError.NETWORK_TIMEOUT: "network timeout",
    CmsError.NO_CNMA_EXPECTED: "no +CNMA acknowledgement expected",
    CmsError.UNKNOWN_ERROR: "unknown error",
}


class CmeError(enum.IntEnum):
    """+CME ERROR <err> values, TS 27.007 section 9.2 (9.2.1 general, 9.2.2 GPRS)."""

    PHONE_FAILURE = 0
    NO_CONNECTION_TO_PHONE = 1
    PHONE_ADAPTOR_LINK_RESERVED = 2
    OPERATION_NOT_ALLOWED = 3
    OPERATION_NOT_SUPPORTED = 4
    PH_SIM_PIN_REQUIRED = 5
    PH_FSIM_PIN_REQUIRED = 6
    PH_FSIM_PUK_REQUIRED = 7
    SIM_NOT_INSERTED = 10
    SIM_PIN_REQUIRED = 11
    SIM_PUK_REQUIRED = 12
    SIM_FAILURE = 13
    SIM_BUSY = 14
    SIM_WRONG = 15
    INCORRECT_PASSWORD = 16
    SIM_PIN2_REQUIRED = 17
    SIM_PUK2_REQUIRED = 18
    MEMORY_FULL = 20
    INVALID_INDEX = 21
    NOT_FOUND = 22
    MEMORY_FAILURE = 23
    TEXT_STRING_TOO_LONG = 24
    INVALID_CHARACTERS_IN_TEXT = 25
    DIAL_STRING_TOO_LONG = 26
    INVALID_CHARACTERS_IN_DIAL_STRING = 27
    NO_NETWORK_SERVICE = 30
    NETWORK_TIMEOUT = 31
    EMERGENCY_CALLS_ONLY = 32
    NETWORK_PERSONALISATION_PIN_REQUIRED = 40
    NETWORK_PERSONALISATION_PUK_REQUIRED = 41
    NETWORK_SUBSET_PERSONALISATION_PIN_REQUIRED = 42
    NETWORK_SUBSET_PERSONALISATION_PUK_REQUIRED = 43
    SERVICE_PROVIDER_PERSONALISATION_PIN_REQUIRED = 44
    SERVICE_PROVIDER_PERSONALISATION_PUK_REQUIRED = 45
    CORPORATE_PERSONALISATION_PIN_REQUIRED = 46
    CORPORATE_PERSONALISATION_PUK_REQUIRED = 47
    HIDDEN_KEY_REQUIRED = 48
    EAP_METHOD_NOT_SUPPORTED = 49
    INCORRECT_PARAMETERS = 50
    UNKNOWN = 100
    ILLEGAL_MS = 103
    ILLEGAL_ME = 106
    GPRS_SERVICES_NOT_ALLOWED = 107
    PLMN_NOT_ALLOWED = 111
    LOCATION_AREA_NOT_ALLOWED = 112
    ROAMING_NOT_ALLOWED = 113
    SERVICE_OPTION_NOT_SUPPORTED = 132
    SERVICE_OPTION_NOT_SUBSCRIBED = 133
    SERVICE_OPTION_OUT_OF_ORDER = 134
    UNSPECIFIED_GPRS_ERROR = 148
    PDP_AUTHENTICATION_FAILURE = 149
    INVALID_MOBILE_CLASS = 150


CME_TEXT: dict[CmeError, str] = {
    CmeError.PHONE_FAILURE: "phone failure",
    CmeError.NO_CONNECTION_TO_PHONE: "no connection to phone",
    CmeError.PHONE_ADAPTOR_LINK_RESERVED: "phone-adaptor link reserved",
    CmeError.OPERATION_NOT_ALLOWED: "operation not allowed",
    CmeError.OPERATION_NOT_SUPPORTED: "operation not supported",
    CmeError.PH_SIM_PIN_REQUIRED: "PH-SIM PIN required",
    CmeError.PH_FSIM_PIN_REQUIRED: "PH-FSIM PIN required",
    CmeError.PH_FSIM_PUK_REQUIRED: "PH-FSIM PUK required",
    CmeError.SIM_NOT_INSERTED: "SIM not inserted",
    CmeError.SIM_PIN_REQUIRED: "SIM PIN required",
    CmeError.SIM_PUK_REQUIRED: "SIM PUK required",
    CmeError.SIM_FAILURE: "SIM failure",
    CmeError.SIM_BUSY: "SIM busy",
    CmeError.SIM_WRONG: "SIM wrong",
    CmeError.INCORRECT_PASSWORD: "incorrect password",
    CmeError.SIM_PIN2_REQUIRED: "SIM PIN2 required",
    CmeError.SIM_PUK2_REQUIRED: "SIM PUK2 required",
    CmeError.MEMORY_FULL: "memory full",
    CmeError.INVALID_INDEX: "invalid index",
    CmeError.NOT_FOUND: "not found",
    CmeError.MEMORY_FAILURE: "memory failure",
    CmeError.TEXT_STRING_TOO_LONG: "text string too long",
    CmeError.INVALID_CHARACTERS_IN_TEXT: "invalid characters in text string",
    CmeError.DIAL_STRING_TOO_LONG: "dial string too long",
    CmeError.INVALID_CHARACTERS_IN_DIAL_STRING: "invalid characters in dial string",
    CmeError.NO_NETWORK_SERVICE: "no network service",
    CmeError.NETWORK_TIMEOUT: "network timeout",
    CmeError.EMERGENCY_CALLS_ONLY: "network not allowed - emergency calls only",
    CmeError.NETWORK_PERSONALISATION_PIN_REQUIRED: "network personalization PIN required",
    CmeError.NETWORK_PERSONALISATION_PUK_REQUIRED: "network personalization PUK required",
    CmeError.NETWORK_SUBSET_PERSONALISATION_PIN_REQUIRED: (
        "network subset personalization PIN required"
    ),
    CmeError.NETWORK_SUBSET_PERSONALISATION_PUK_REQUIRED: (
        "network subset personalization PUK required"
    ),
    CmeError.SERVICE_PROVIDER_PERSONALISATION_PIN_REQUIRED: (
        "service provider personalization PIN required"
    ),
    CmeError.SERVICE_PROVIDER_PERSONALISATION_PUK_REQUIRED: (
        "service provider personalization PUK required"
    ),
    CmeError.CORPORATE_PERSONALISATION_PIN_REQUIRED: "corporate personalization PIN required",
    CmeError.CORPORATE_PERSONALISATION_PUK_REQUIRED: "corporate personalization PUK required",
    CmeError.HIDDEN_KEY_REQUIRED: "hidden key required",
    CmeError.EAP_METHOD_NOT_SUPPORTED: "EAP method not supported",
    CmeError.INCORRECT_PARAMETERS: "Incorrect parameters",
    CmeError.UNKNOWN: "unknown",
    CmeError.ILLEGAL_MS: "Illegal MS",
    CmeError.ILLEGAL_ME: "Illegal ME",
    CmeError.GPRS_SERVICES_NOT_ALLOWED: "GPRS services not allowed",
    CmeError.PLMN_NOT_ALLOWED: "PLMN not allowed",
    CmeError.LOCATION_AREA_NOT_ALLOWED: "Location area not allowed",
    CmeError.ROAMING_NOT_ALLOWED: "Roaming not allowed in this location area",
    CmeError.SERVICE_OPTION_NOT_SUPPORTED: "service option not supported",
    CmeError.SERVICE_OPTION_NOT_SUBSCRIBED: "requested service option not subscribed",
    CmeError.SERVICE_OPTION_OUT_OF_ORDER: "service option temporarily out of order",
    CmeError.UNSPECIFIED_GPRS_ERROR: "unspecified GPRS error",
    CmeError.PDP_AUTHENTICATION_FAILURE: "PDP authentication failure",
    CmeError.INVALID_MOBILE_CLASS: "invalid mobile class",
}


def _normalise(text: str) -> str:
    """Case, "(U)SIM"/"SIM", "_"/"-"/" " and trailing dots differ between modem vendors."""
    text = text.lower().replace("(u)sim", "sim").replace("_", " ").replace("-", " ")
    text = text.replace("personalisation", "personalization")
    return " ".join(re.sub(r"[.,]", " ", text).split())


# "Memory capacity exceeded" is both RP cause 22 and TP-FCS 0xD3; the RP cause, the lower code,
# wins. The aliases below are texts older modems print (GSM 07.05 wording).
_CMS_BY_TEXT: dict[str, CmsError] = {}
for _code, _text in sorted(CMS_TEXT.items()):
    _CMS_BY_TEXT.setdefault(_normalise(_text), _code)
_CMS_BY_TEXT[_normalise("SC address unknown")] = CmsError.SMSC_ADDRESS_UNKNOWN
_CMS_BY_TEXT[_normalise("SIM memory full")] = CmsError.MEMORY_FULL
_CMS_BY_TEXT[_normalise("Destination out of service")] = CmsError.DESTINATION_OUT_OF_ORDER

_CME_BY_TEXT: dict[str, CmeError] = {_normalise(t): c for c, t in CME_TEXT.items()}
_CME_BY_TEXT[_normalise("unknown error")] = CmeError.UNKNOWN
_CME_BY_TEXT[_normalise("phone adapter link reserved")] = CmeError.PHONE_ADAPTOR_LINK_RESERVED
_CME_BY_TEXT[_normalise("network not allowed, emergency calls only")] = (
    CmeError.EMERGENCY_CALLS_ONLY
)
# GSM 07.07 named code 48 "PH-SIM PUK required" before TS 27.007 renamed it.
_CME_BY_TEXT[_normalise("PH-SIM PUK required")] = CmeError.HIDDEN_KEY_REQUIRED


def cms_code_from_text(text: str) -> int | None:
    """The numeric +CMS ERROR code of a verbose text, or None when the text is not in the table."""
    code = _CMS_BY_TEXT.get(_normalise(text))
    return None if code is None else int(code)


def cme_code_from_text(text: str) -> int | None:
    """The numeric +CME ERROR code of a verbose text, or None when the text is not in the table."""
    code = _CME_BY_TEXT.get(_normalise(text))
    return None if code is None else int(code)


# Causes that say this message, as built, will never be accepted: a wrong or barred
# destination, or a TPDU the network cannot take. Everything else (network down, congestion,
# SIM or modem trouble, unknown and manufacturer codes 500..) may pass on a later try or on
# another modem.
_PERMANENT_CMS = frozenset(
    {
        CmsError.UNASSIGNED_NUMBER,
        CmsError.OPERATOR_DETERMINED_BARRING,
        CmsError.CALL_BARRED,
        CmsError.SM_TRANSFER_REJECTED,
        CmsError.FACILITY_REJECTED,
        CmsError.SEMANTICALLY_INCORRECT_MESSAGE,
        CmsError.INVALID_MANDATORY_INFORMATION,
        CmsError.MESSAGE_TYPE_NOT_IMPLEMENTED,
        CmsError.INFORMATION_ELEMENT_NOT_IMPLEMENTED,
        CmsError.TELEMATIC_INTERWORKING_NOT_SUPPORTED,
        CmsError.SM_TYPE_0_NOT_SUPPORTED,
        CmsError.CANNOT_REPLACE_SM,
        CmsError.TP_PID_ERROR,
        CmsError.DCS_NOT_SUPPORTED,
        CmsError.MESSAGE_CLASS_NOT_SUPPORTED,
        CmsError.TP_DCS_ERROR,
        CmsError.COMMAND_CANNOT_BE_ACTIONED,
        CmsError.COMMAND_UNSUPPORTED,
        CmsError.TP_COMMAND_ERROR,
        CmsError.TPDU_NOT_SUPPORTED,
        CmsError.INVALID_SME_ADDRESS,
        CmsError.DESTINATION_SME_BARRED,
        CmsError.SM_REJECTED_DUPLICATE,
        CmsError.TP_VPF_NOT_SUPPORTED,
        CmsError.TP_VP_NOT_SUPPORTED,
        CmsError.INVALID_PDU_MODE_PARAMETER,
        CmsError.INVALID_TEXT_MODE_PARAMETER,
    }
)


def cms_is_permanent(code: int) -> bool:
    """True when +CMS ERROR `code` means retrying this same message cannot succeed."""
    return code in _PERMANENT_CMS
