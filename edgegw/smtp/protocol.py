"""The server side of an SMTP dialogue (RFC 5321, with RFC 1870 SIZE, RFC 3207 STARTTLS,
RFC 4954 AUTH PLAIN/LOGIN and RFC 6531 SMTPUTF8) as a sans-IO state machine: bytes in, events
and reply bytes out. No sockets, no clock, no logging; the shell owns timeouts, TLS and every
decision an event asks for. Spec section 2.6 (email to SMS).

Every input is answered with a reply, never an exception: bounded buffers, refused commands
(503 in the wrong phase, 500 for garbage) and, after too many errors without a mail for a number
taken between them (one to the postmaster alone does not count), 421 and close.
Only CRLF ends a command and only CRLF.CRLF ends DATA (no bare-LF smuggling). Inside DATA a bare
LF ends a line of the message, as the mail parser reads it, so the line after it is
dot-unstuffed like one after CRLF (RFC 5321 4.5.2).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from typing import Final, TypeAlias, TypeVar

import msgspec

from edgegw.smtp.mail import ascii_domain, is_postmaster

__all__ = [
    "NEED_DATA",
    "AuthRequested",
    "ConnectionClosed",
    "Event",
    "MessageReceived",
    "Phase",
    "RecipientRequested",
    "Reply",
    "SmtpLimits",
    "SmtpSession",
    "StartTlsRequested",
]


class Reply(msgspec.Struct, frozen=True):
    """An SMTP reply: a three-digit code and its text (with the enhanced status code, RFC 3463,
    at its start where there is one). Several lines are separated by newlines in `text`."""

    code: int
    text: str

    def encode(self) -> bytes:
        lines = self.text.split("\n")
        out = [f"{self.code}-{line}\r\n" for line in lines[:-1]]
        out.append(f"{self.code} {lines[-1]}\r\n")
        # Replies are ASCII, also to an SMTPUTF8 client; echoed non-ASCII text is escaped.
        return "".join(out).encode("ascii", "backslashreplace")

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


class SmtpLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_command_bytes: int = 512  # RFC 5321 4.5.3.1.4, CRLF included
    max_line_bytes: int = 1000  # RFC 5321 4.5.3.1.6, a line of the message, CRLF included
    max_message_bytes: int = 1_048_576  # announced as SIZE; larger is refused with 552
    max_recipients: int = 100  # RCPT beyond this gets 452 (RFC 5321 4.5.3.1.8 asks >= 100)
    # Refused commands before 421 and close, counted since the last mail for a number taken (or
    # the start): good commands between them do not start the count again.
    max_errors: int = 10


class Phase(enum.Enum):
    INIT = "init"  # before EHLO/HELO (and again after STARTTLS)
    READY = "ready"  # greeted, no transaction
    MAIL = "mail"  # MAIL FROM accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading the message
    AUTH = "auth"  # reading a base64 line of an AUTH exchange
    WAITING = "waiting"  # an event awaits the shell's `answer`
    CLOSED = "closed"


# Events that ask the shell for a decision; it answers each with `answer(Reply)`.
class RecipientRequested(msgspec.Struct, frozen=True):
    address: str  # the path of RCPT TO, without the angle brackets


class MessageReceived(msgspec.Struct, frozen=True):
    sender: str
    recipients: tuple[str, ...]  # each accepted at RCPT
    content: bytes  # dot-unstuffed, line ends as sent (CRLF or bare LF), without the final "."


class AuthRequested(msgspec.Struct, frozen=True):
    mechanism: str  # PLAIN or LOGIN
    username: str
    password: str


# Events the shell acts on without answering.
class StartTlsRequested(msgspec.Struct, frozen=True):
    """The 220 is queued: send it, then run the TLS handshake, then call `tls_started`."""


class ConnectionClosed(msgspec.Struct, frozen=True):
    """QUIT was answered, the peer closed, or the session gave up on it: send what is queued
    and close."""


class _NeedData(enum.Enum):
    NEED_DATA = "need data"


NEED_DATA: Final = _NeedData.NEED_DATA
Event: TypeAlias = (
    RecipientRequested | MessageReceived | AuthRequested | StartTlsRequested | ConnectionClosed
)

# Which verbs each phase accepts; a verb missing from its phase's set is a bad sequence (503).
_ANY: Final = frozenset({"EHLO", "HELO", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP"})
_ALLOWED: Final[dict[Phase, frozenset[str]]] = {
    Phase.INIT: _ANY,
    Phase.READY: _ANY | {"MAIL", "STARTTLS", "AUTH"},
    Phase.MAIL: _ANY | {"RCPT", "DATA"},
    Phase.RCPT: _ANY | {"RCPT", "DATA"},
}
_KNOWN: Final = frozenset().union(*_ALLOWED.values())
# Where an accepted answer to a pending event leads (a refusal keeps the phase it came from).
_AFTER_ACCEPT: Final[dict[type, Phase]] = {
    RecipientRequested: Phase.RCPT,
    MessageReceived: Phase.READY,
    AuthRequested: Phase.READY,
}

# A path in angle brackets (RFC 5321 4.1.2), or bare, as old devices write it and MTAs take.
_PATH: Final = re.compile(r"\s*(?:<([^<>]*)>|([^\s<>]+))(.*)", re.DOTALL)
_PARAMETER: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([!-<>-~]+))?")
_SIZE_VALUE: Final = re.compile(r"[0-9]{1,20}")
_END_OF_DATA: Final = b"\r\n.\r\n"
# Octets each offered extension's MAIL parameter adds to the longest MAIL command line, as its
# RFC says: SIZE 26 (RFC 1870), BODY 9 (RFC 6152), SMTPUTF8 10 (RFC 6531); AUTH 500 (RFC 4954)
# where it is offered.
_MAIL_PARAMETERS_BYTES: Final = 26 + 9 + 10
_MAIL_AUTH_BYTES: Final = 500
# RFC 4954 section 4: a line of an AUTH exchange may be far longer than a command; 12288 octets
# hold the responses of deployed mechanisms. Longer fails the AUTH command with 500 5.5.6.
_AUTH_LINE_BYTES: Final = 12288
_AUTH_LINE_TOO_LONG: Final = Reply(500, "5.5.6 authentication exchange line is too long")
# Of a line skipped as too long, its start is kept: enough for its verb.
_HEAD_BYTES: Final = 16
_PRINTABLE: Final = re.compile(r"[^!-~]")
_Decision = TypeVar("_Decision", RecipientRequested, MessageReceived, AuthRequested)


def _reply(code: int, text: str) -> Reply:
    return Reply(code, text)


class SmtpSession:
    """One connection's dialogue. The greeting is queued at once; read replies with
    `data_to_send`, feed input with `receive_data` (b"" at end of stream), and pull events with
    `next_event` until it returns NEED_DATA."""

    def __init__(
        self,
        domain: str,
        limits: SmtpLimits,
        *,
        tls_available: bool = False,
        auth_available: bool = False,
        auth_required: bool = False,
    ) -> None:
        self.domain = domain
        # How the replies name the server: RFC 5321 4.1.2's Domain is ASCII letters, digits and
        # hyphens, so an internationalised mail domain goes as its A-label.
        self._name = ascii_domain(domain)
        self.limits = limits
        self.tls_active = False
        self.tls_available = tls_available
        self.auth_available = auth_available
        self.auth_required = auth_required
        self.authenticated = False
        self.phase = Phase.INIT
        # The client greeted with EHLO, so the service extensions it lists apply (RFC 5321
        # 4.1.1.1: after HELO there are none, and a MAIL parameter is one of them).
        self._extended = False
        # Lines (commands, AUTH responses) and messages read so far: a shell restarts its
        # timeout when this moves, so a client trickling bytes cannot stretch one step.
        self.steps = 0
        self._resume = Phase.INIT  # where a refused decision returns to
        self._buffer = bytearray()
        self._out = bytearray()
        self._eof = False
        self._discarded: str | None = None  # the start of an overlong line being skipped
        self._errors = 0
        self._pending: RecipientRequested | MessageReceived | AuthRequested | None = None
        self._sender = ""
        self._utf8 = False  # the transaction's MAIL carried SMTPUTF8
        self._recipients: list[str] = []
        self._data_start = 0  # where to search for the end of DATA next
        # Stuffed dots (a "\n." pair) in the buffer up to _data_counted: unstuffing drops them.
        self._data_dots = 0
        self._data_counted = 0
        self._data_too_big = False
        self._auth_mechanism = ""
        self._auth_username: str | None = None
        self._send(_reply(220, f"{self._name} ESMTP edgegw"))

    # -- the shell's side ----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        if not data:
            self._eof = True
        elif self.phase is not Phase.CLOSED:
            self._buffer += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def answer(self, reply: Reply) -> None:
        """The decision on the pending RecipientRequested, MessageReceived or AuthRequested."""
        if self.phase is not Phase.WAITING or self._pending is None:
            raise RuntimeError("no event is waiting for an answer")
        pending, self._pending = self._pending, None
        if reply.positive:
            if isinstance(pending, MessageReceived):
                # A client whose mail was taken is not the one the error count keeps out: a
                # count over its whole connection would end a long run of mails for stray errors.
                # Not so a mail to the postmaster alone, taken from any client (RFC 5321 4.5.1):
                # one every nine errors would keep a client off every allow list going for ever.
                if not all(is_postmaster(to, self.domain) for to in pending.recipients):
                    self._errors = 0
            elif isinstance(pending, AuthRequested):
                self.authenticated = True
            elif isinstance(pending, RecipientRequested):
                self._recipients.append(pending.address)
            self.phase = _AFTER_ACCEPT[type(pending)]
        else:
            self.phase = self._resume
        if isinstance(pending, MessageReceived):
            self._reset_transaction()
        if isinstance(pending, AuthRequested) and not reply.positive:
            # Refused credentials count as errors, so guessing ends with 421 and a new
            # connection (each one bounded by the listener).
            self._error(reply)
        else:
            self._send(reply)

    def tls_started(self) -> None:
        """The handshake after STARTTLS succeeded: back to the start (RFC 3207 4.2), now with
        AUTH offered, since the password no longer crosses the network in the clear."""
        self.tls_active = True
        self.tls_available = False
        self.auth_available = True
        self.phase = Phase.INIT
        self._extended = False

    def next_event(self) -> Event | _NeedData:
        while True:
            if self.phase is Phase.CLOSED:
                return ConnectionClosed()
            if self.phase is Phase.WAITING:
                return NEED_DATA
            event: Event | _NeedData | None
            if self.phase is Phase.DATA:
                event = self._read_data()
            else:
                read = self._read_line()
                if read is None:
                    event = NEED_DATA
                elif self.phase is Phase.AUTH:
                    event = self._auth_line(*read)
                else:
                    event = self._command(*read)
            if event is NEED_DATA:
                if self._eof:
                    self.phase = Phase.CLOSED
                    continue
                return NEED_DATA
            if event is not None:
                return event

    def timed_out(self) -> None:
        """The shell's idle or DATA deadline passed."""
        self._close(_reply(421, f"4.4.2 {self._name} timeout, closing the connection"))

    # -- lines and commands --------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out += reply.encode()

    def _close(self, reply: Reply) -> None:
        self._send(reply)
        self.phase = Phase.CLOSED
        self._buffer.clear()

    def _read_line(self) -> tuple[str, bool] | None:
        """One CRLF-terminated line as text (latin-1 keeps every byte) and whether it is longer
        than any line taken now, or None for more input. A line past that limit is skipped to
        its CRLF, and only its start, which names its verb, is returned."""
        limit = self._line_limit()
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > limit:
                if self._discarded is None:
                    self._discarded = self._buffer[:_HEAD_BYTES].decode("latin-1")
                keep = 1 if self._buffer.endswith(b"\r") else 0
                del self._buffer[: len(self._buffer) - keep]
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        self.steps += 1
        if self._discarded is not None:
            head, self._discarded = self._discarded, None
            return head, True
        return line.decode("latin-1"), end + 2 > limit

    def _line_limit(self) -> int:
        """The longest line to read now: a response of an AUTH exchange's, or where MAIL or AUTH
        may come, the longest of theirs; `_command` holds each verb to its own limit."""
        if self.phase is Phase.AUTH:
            return _AUTH_LINE_BYTES
        if self.phase is Phase.READY:
            return max(self._verb_limit("MAIL"), self._verb_limit("AUTH"))
        return self.limits.max_command_bytes

    def _verb_limit(self, verb: str) -> int:
        """The longest command line of `verb`, CRLF included: 512 octets (RFC 5321 4.5.3.1.4),
        which extensions may raise: after EHLO a MAIL's by the parameters of the extensions
        offered, and an AUTH's, where offered, to an exchange line's, so that an initial response
        is held to what the same response after a 334 is (RFC 4954 section 4 has a client keep
        the AUTH line within 512 octets; RFC 5321 4.5.3.1 has a server take what it can)."""
        limit = self.limits.max_command_bytes
        if verb == "MAIL" and self._extended:
            return limit + _MAIL_PARAMETERS_BYTES + (_MAIL_AUTH_BYTES if self.auth_available else 0)
        if verb == "AUTH" and self._auth_offered:
            return max(limit, _AUTH_LINE_BYTES)
        return limit

    @property
    def _auth_offered(self) -> bool:
        """AUTH is offered: in the reply to EHLO (RFC 4954 section 3), until it succeeded."""
        return self._extended and self.auth_available and not self.authenticated

    def _error(self, reply: Reply) -> None:
        self._errors += 1
        if self._errors >= self.limits.max_errors:
            self._close(_reply(421, f"4.7.0 {self._name} too many errors, closing"))
        else:
            self._send(reply)

    def _command(self, line: str, too_long: bool) -> Event | None:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if too_long or len(line) + 2 > self._verb_limit(verb):
            if verb == "AUTH" and self._auth_offered:
                self._error(_AUTH_LINE_TOO_LONG)
            else:
                self._error(_reply(500, "5.5.2 line too long"))
            return None
        if verb not in _KNOWN:
            self._error(_reply(500, "5.5.2 command not recognised"))
            return None
        if verb not in _ALLOWED[self.phase]:
            self._error(_reply(503, f"5.5.1 {verb} is not allowed now"))
            return None
        handler = getattr(self, f"_verb_{verb.lower()}")
        result: Event | None = handler(argument.strip())
        return result

    def _verb_ehlo(self, argument: str) -> None:
        if not argument:
            self._error(_reply(501, "5.5.4 EHLO needs a domain or address"))
            return
        self._reset_transaction()
        self.phase = Phase.READY
        self._extended = True
        lines = [
            f"{self._name} greets {_PRINTABLE.sub('?', argument[:64])}",
            "PIPELINING",
            f"SIZE {self.limits.max_message_bytes}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ]
        if self.tls_available and not self.tls_active:
            lines.append("STARTTLS")
        if self._auth_offered:
            lines.append("AUTH PLAIN LOGIN")
        self._send(_reply(250, "\n".join(lines)))

    def _verb_helo(self, argument: str) -> None:
        if not argument:
            self._error(_reply(501, "5.5.4 HELO needs a domain"))
            return
        self._reset_transaction()
        self.phase = Phase.READY
        self._extended = False
        self._send(_reply(250, self._name))

    def _verb_rset(self, argument: str) -> None:
        self._reset_transaction()
        if self.phase is not Phase.INIT:
            self.phase = Phase.READY
        self._send(_reply(250, "2.0.0 OK"))

    def _verb_noop(self, argument: str) -> None:
        self._send(_reply(250, "2.0.0 OK"))

    def _verb_help(self, argument: str) -> None:
        self._send(_reply(214, "2.0.0 mail to <number>-<service id>@" + self._name))

    def _verb_vrfy(self, argument: str) -> None:
        # RFC 5321 4.1.1.6: VRFY names what to verify; without it, a syntax error (501).
        if not argument:
            self._error(_reply(501, "5.5.4 VRFY needs an address"))
            return
        self._send(_reply(252, "2.5.2 cannot verify, but will try delivery"))

    def _verb_expn(self, argument: str) -> None:
        # RFC 5321 4.2.4: a command of the protocol this server does not carry out is 502, not
        # 500 ("not recognised"); there are no mailing lists here to expand.
        self._error(_reply(502, "5.5.1 EXPN is not implemented"))

    def _verb_quit(self, argument: str) -> ConnectionClosed:
        self._close(_reply(221, f"2.0.0 {self._name} closing"))
        return ConnectionClosed()

    def _verb_starttls(self, argument: str) -> StartTlsRequested | None:
        if not self.tls_available or self.tls_active:
            self._error(_reply(502, "5.5.1 STARTTLS is not available"))
            return None
        if not self._extended:
            # RFC 5321 2.2.1: an extension is offered in the reply to EHLO (STARTTLS is an EHLO
            # keyword, RFC 3207 section 2), so a client that greeted with HELO, or not yet, was
            # not offered it.
            self._error(_reply(503, "5.5.1 STARTTLS is offered after EHLO only"))
            return None
        if argument:
            self._error(_reply(501, "5.5.4 STARTTLS takes no argument"))
            return None
        self._send(_reply(220, "2.0.0 ready to start TLS"))
        # Anything pipelined after STARTTLS came in the clear; it must not count as sent
        # under TLS (RFC 3207 section 6).
        self._buffer.clear()
        self._reset_transaction()
        self.authenticated = False
        return StartTlsRequested()

    def _verb_auth(self, argument: str) -> AuthRequested | None:
        if self.authenticated:
            self._error(_reply(503, "5.5.1 already authenticated"))
            return None
        if not self.auth_available:
            if self.tls_available and not self.tls_active:
                self._error(_reply(538, "5.7.11 encryption required: STARTTLS first"))
            else:
                self._error(_reply(502, "5.5.1 AUTH is not available"))
            return None
        if not self._extended:
            # RFC 4954 section 3: AUTH is an EHLO keyword, not offered to a HELO client.
            self._error(_reply(503, "5.5.1 AUTH is offered after EHLO only"))
            return None
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "LOGIN"):
            self._error(_reply(504, "5.5.4 unrecognised authentication mechanism"))
            return None
        self._auth_mechanism = mechanism
        self._auth_username = None
        initial = initial.strip()
        if initial:
            return self._auth_line(initial, too_long=False)
        self.phase = Phase.AUTH
        # RFC 4954: PLAIN sends an empty challenge; LOGIN asks "Username:".
        self._send(_reply(334, "" if mechanism == "PLAIN" else "VXNlcm5hbWU6"))
        return None

    def _auth_line(self, line: str, too_long: bool) -> AuthRequested | None:
        self.phase = Phase.READY
        if too_long:
            self._error(_AUTH_LINE_TOO_LONG)
            return None
        if line.strip() == "*":
            self._error(_reply(501, "5.0.0 authentication cancelled"))
            return None
        try:
            decoded = base64.b64decode(line.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self._error(_reply(501, "5.5.2 cannot decode the response (base64 UTF-8)"))
            return None
        if self._auth_mechanism == "PLAIN":
            fields = decoded.split("\x00")
            if len(fields) != 3:
                self._error(_reply(501, "5.5.2 PLAIN needs authzid NUL user NUL password"))
                return None
            return self._await(AuthRequested("PLAIN", fields[1], fields[2]), Phase.READY)
        if self._auth_username is None:
            self._auth_username = decoded
            self.phase = Phase.AUTH
            self._send(_reply(334, "UGFzc3dvcmQ6"))  # "Password:"
            return None
        return self._await(AuthRequested("LOGIN", self._auth_username, decoded), Phase.READY)

    def _verb_mail(self, argument: str) -> None:
        if self.auth_required and not self.authenticated:
            self._error(_reply(530, "5.7.0 authentication required"))
            return
        path = self._path(argument, "FROM:")
        if path is None:
            return
        address, parameters = path
        if parameters and not self._extended:
            refusal = "MAIL FROM parameters not recognized or not implemented after HELO"
            self._error(_reply(555, f"5.5.4 {refusal}"))
            return
        for name, value in parameters:
            if name == "SIZE":
                # RFC 1870 section 3: size-value is 1*20DIGIT; more digits are a syntax error
                # (501), not a size this server refuses (552).
                if value is None or _SIZE_VALUE.fullmatch(value) is None:
                    self._error(_reply(501, "5.5.4 SIZE needs a number of at most 20 digits"))
                    return
                if int(value) > self.limits.max_message_bytes:
                    self._error(
                        _reply(552, f"5.3.4 message size exceeds {self.limits.max_message_bytes}")
                    )
                    return
            elif name == "AUTH" and self.auth_available:
                # RFC 4954 section 5: a server offering AUTH takes the parameter (relays such
                # as Exim and sendmail send AUTH=<> after logging in) and may ignore it.
                continue
            elif name == "SMTPUTF8":
                # RFC 6531 3.4: the parameter has no value. It is one we know, written wrong:
                # a syntax error in an argument (501), not one we cannot implement (555).
                if value is not None:
                    self._error(_reply(501, "5.5.4 SMTPUTF8 takes no value"))
                    return
            elif name == "BODY":
                # RFC 6152 section 2: 7BIT or 8BITMIME. BINARYMIME (RFC 3030) needs CHUNKING,
                # which is not offered: a binary body would be read as text lines here.
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    self._error(_reply(501, "5.5.4 BODY takes 7BIT or 8BITMIME"))
                    return
            else:
                self._error(_reply(555, f"5.5.4 parameter {name} is not supported"))
                return
        utf8 = any(name == "SMTPUTF8" for name, _ in parameters)
        sender = self._address(address, utf8)
        if sender is None:
            return
        self._sender = sender
        self._utf8 = utf8
        self.phase = Phase.MAIL
        self._send(_reply(250, "2.1.0 sender OK"))

    def _verb_rcpt(self, argument: str) -> RecipientRequested | None:
        path = self._path(argument, "TO:")
        if path is None:
            return None
        address, parameters = path
        readable = self._address(address, self._utf8)
        if readable is None:
            return None
        address = readable
        if parameters:
            self._error(_reply(555, f"5.5.4 parameter {parameters[0][0]} is not supported"))
            return None
        if not address:
            self._error(_reply(501, "5.1.3 an empty recipient"))
            return None
        if len(self._recipients) >= self.limits.max_recipients:
            # Not a client error: RFC 5321 4.5.3.1.10 has the client send the rest later, so
            # a long list must not run into the close after max_errors.
            self._send(_reply(452, "4.5.3 too many recipients"))
            return None
        return self._await(RecipientRequested(address), self.phase)

    def _verb_data(self, argument: str) -> None:
        if argument:
            self._error(_reply(501, "5.5.4 DATA takes no argument"))
            return
        if not self._recipients:
            self._error(_reply(554, "5.5.1 no valid recipients"))
            return
        self.phase = Phase.DATA
        self._data_start = 0
        self._data_dots = 0
        self._data_counted = 0
        self._data_too_big = False
        # A virtual CRLF before the first line lets one search find the end of an empty message.
        self._buffer[:0] = b"\r\n"
        self._send(_reply(354, "end data with <CR><LF>.<CR><LF>"))

    def _path(self, argument: str, keyword: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        if argument[: len(keyword)].upper() != keyword:
            self._error(_reply(501, f"5.5.4 syntax: {keyword}<address>"))
            return None
        match = _PATH.fullmatch(argument[len(keyword) :])
        if match is None:
            self._error(_reply(501, f"5.5.4 syntax: {keyword}<address>"))
            return None
        bracketed, bare, rest = match.groups()
        address = bare if bracketed is None else bracketed
        if bare is not None and rest[:1].strip():
            self._error(_reply(501, f"5.5.4 syntax: {keyword}<address>"))
            return None
        parameters: list[tuple[str, str | None]] = []
        for item in rest.split():
            parameter = _PARAMETER.fullmatch(item)
            if parameter is None:
                self._error(_reply(501, f"5.5.4 malformed parameter {item[:40]!r}"))
                return None
            name = parameter.group(1).upper()
            if any(name == seen for seen, _ in parameters):
                # Which of the two would count is anyone's guess (SIZE=10 SIZE=20): as a field
                # given twice at the other doors, a syntax error in the arguments.
                self._error(_reply(501, f"5.5.4 parameter {name} given more than once"))
                return None
            parameters.append((name, parameter.group(2)))
        return address.strip(), parameters

    def _await(self, event: _Decision, resume: Phase) -> _Decision:
        self._pending = event
        self._resume = resume
        self.phase = Phase.WAITING
        return event

    def _address(self, address: str, utf8: bool) -> str | None:
        """A MAIL or RCPT address as text: its bytes (read as latin-1 with the line) as UTF-8
        in a transaction that SMTPUTF8 opened (RFC 6531 section 3.3), else ASCII only; None
        once the refusal is sent."""
        if address.isascii():
            return address
        if not utf8:
            self._error(_reply(553, "5.6.7 a non-ASCII address needs the SMTPUTF8 parameter"))
            return None
        try:
            return address.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            self._error(_reply(501, "5.6.7 the address is not UTF-8"))
            return None

    def _reset_transaction(self) -> None:
        self._sender = ""
        self._utf8 = False
        self._recipients = []

    # -- DATA ----------------------------------------------------------------------------------

    def _read_data(self) -> MessageReceived | _NeedData | None:
        limit = self.limits.max_message_bytes
        end = self._buffer.find(_END_OF_DATA, self._data_start)
        if end < 0:
            # The size is the message's without the dots the client doubled (RFC 1870 section
            # 4), so a message stuffed past the limit but not past it itself is taken. Past the
            # virtual CRLF, the tail may be the end marker begun ("\r\n.\r": its dot counted,
            # its ".\r" no part of the message): only more than that is surely too big.
            self._data_dots += self._buffer.count(b"\n.", self._data_counted)
            if len(self._buffer) - self._data_dots > limit + 3:
                # Too big: keep counting it as refused, hold on to the tail that may begin the
                # end marker, drop the rest.
                self._data_too_big = True
                del self._buffer[: len(self._buffer) - 4]
                self._data_dots = 0
            # A pair may start at the last byte; none starts before it uncounted.
            self._data_counted = max(0, len(self._buffer) - 1)
            self._data_start = max(0, len(self._buffer) - 4)
            return NEED_DATA
        # Unstuff with the virtual leading CRLF in place, then drop it. A line after a bare LF
        # is unstuffed like one after CRLF: a client that ends lines with a bare LF (smtplib
        # given bytes, for one) doubles the leading dot of such a line too.
        content = self._buffer[: end + 2].replace(b"\n.", b"\n")[2:]
        del self._buffer[: end + len(_END_OF_DATA)]
        self.steps += 1
        self.phase = Phase.READY
        if self._data_too_big or len(content) > limit:
            self._reset_transaction()
            self._error(_reply(552, f"5.3.4 message size exceeds {limit}"))
            return None
        # A line ends at LF, CRLF or bare (the mail parser takes both): its length with its LF.
        if max(map(len, content.split(b"\n"))) + 1 > self.limits.max_line_bytes:
            self._reset_transaction()
            # RFC 5321 4.5.3.1.9 answers "500 Line too long"; the enhanced code is the message
            # content's (RFC 3463 X.6.0), as 5.5.6 is RFC 4954's too long AUTH exchange line.
            self._error(_reply(500, f"5.6.0 a line is longer than {self.limits.max_line_bytes}"))
            return None
        event = MessageReceived(self._sender, tuple(self._recipients), bytes(content))
        return self._await(event, Phase.READY)
