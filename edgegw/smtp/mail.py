"""An email as an SMS (spec section 2.6): the recipient address `<msisdn>-<serviceid>@<domain>`
and the text of the mail, read with the standard library's `email` package (MIME multipart,
quoted-printable and base64, any declared charset). Pure: no I/O, no clock, no logging.

Every way a mail or an address can be unusable is a `MailError` with a reason for the reply.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import encodings.idna
import itertools
import re
from html.parser import HTMLParser
from typing import Final

import idna
import msgspec

__all__ = [
    "MAX_CHARACTERS",
    "MAX_MIME_CONTAINERS",
    "MailContent",
    "MailError",
    "ascii_domain",
    "is_postmaster",
    "mail_content",
    "mail_subject",
    "parse_recipient",
]

# Spec 2.6: at most 918 characters (six concatenated GSM parts).
MAX_CHARACTERS: Final = 918
# Multipart and message/* parts a mail may declare. The stdlib parser recurses once per
# nested one (and blocks for the whole parse), so a mail nesting hundreds ends in RecursionError
# after half a second of CPU; each container adds at most a level or two, so this count bounds
# the depth. Real mail nests a handful (mixed > related > alternative).
MAX_MIME_CONTAINERS: Final = 16

_LOCAL_PART: Final = re.compile(r"(\+?)([0-9]{1,20})-([0-9]{1,10})")
_SIGNATURE: Final = "-- "  # RFC 3676 4.3 signature separator line
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_NOT_BASE64: Final = re.compile(r"[^A-Za-z0-9+/=]")
# RFC 2047 section 2 allows no white space inside a word. A space some mailers leave in one
# is taken (as the stdlib's decoder takes it), but not a line break: a word folded in two is
# not one.
_ENCODED_WORD: Final = r"=\?[^?\s]+\?[BbQq]\?[^?\r\n]*\?="
_ENCODED_WORDS: Final = re.compile(rf"{_ENCODED_WORD}(?:\s*{_ENCODED_WORD})*")
_parser = email.parser.BytesParser(policy=email.policy.compat32)
_header_parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
# A Content-Type header (folded or not, any case) that makes its part a container the parser
# descends into. Counted over the raw bytes before parsing; a match in a body only over-counts.
_CONTAINER: Final = re.compile(rb"(?<![^\r\n])content-type:[ \t\r\n]*(?:multipart|message)/", re.I)


class MailError(ValueError):
    """A recipient or a mail that cannot become an SMS; `reason` goes into the 5xx reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The label separators of an internationalised name (RFC 3490 section 3.1).
_DOTS: Final = re.compile("[.\u3002\uff0e\uff61]")


def ascii_domain(domain: str) -> str:
    """A domain in lower-case ASCII, a label at a time, so that a label IDNA2008 refuses does
    not take the others' A-labels with it (`_ascii_label`)."""
    return ".".join(_ascii_label(label) for label in _DOTS.split(domain))


def _ascii_label(label: str) -> str:
    """A label in lower-case ASCII: IDNA2008's A-label (RFC 5891, which RFC 6531 names, with the
    UTS 46 mapping of case); for a label it refuses (a symbol, which UTS 46 and IDNA2003 still
    write), IDNA2003's; as it is when neither can write it. IDNA2003 not first: it reads
    `straße` as another domain's `strasse`, not as `xn--strae-oqa`."""
    if label.isascii():
        return label.lower()
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except UnicodeError:
        try:
            return encodings.idna.ToASCII(label).decode("ascii")
        except UnicodeError:
            return label.lower()


class MailContent(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    new_session: bool  # the X-NewSession header (spec 2.6 leaves the header to us)


def parse_recipient(address: str, domain: str) -> tuple[str, int]:
    """(recipient as `+` and digits, service id) from `<msisdn>-<serviceid>@<domain>`; the `+`
    is optional and the domain compared without case, an internationalised one in either of
    its forms (RFC 6531: a U-label from an SMTPUTF8 client, an A-label from another)."""
    local, at, host = address.rpartition("@")
    # The replies name the domain as RFC 5321 4.1.2 writes one: an internationalised one as its
    # A-label.
    taken = ascii_domain(domain)
    if not at or ascii_domain(host) != taken:
        raise MailError(f"mail for {host or address!r} is not taken here, only @{taken}")
    match = _LOCAL_PART.fullmatch(local)
    if match is None:
        raise MailError(f"{local!r} is not <number>-<service id>, as in 4741000000-1000@{taken}")
    _, number, service = match.groups()
    return "+" + number, int(service)


def is_postmaster(address: str, domain: str) -> bool:
    """`address` is the postmaster's, which RFC 5321 4.5.1 has every mail server take: the local
    part `Postmaster` in any case, bare (`RCPT TO:<Postmaster>`, RFC 5321 4.1.1.3) or at the
    mail domain, an internationalised one in either form."""
    local, at, host = address.rpartition("@")
    if not at:
        return host.lower() == "postmaster"
    return local.lower() == "postmaster" and ascii_domain(host) == ascii_domain(domain)


def mail_subject(raw: bytes) -> str:
    """The Subject of a mail as `mail_content` reads it, from its header section alone."""
    return _header(_header_parser.parsebytes(raw), "subject")


def mail_content(raw: bytes, *, prepend_subject: bool, strip_signature: bool) -> MailContent:
    """The SMS text of a mail: the first text/plain part, else (or when that is blank) the
    first text/html one as text; line ends as LF, trailing blank space removed, a `-- `
    signature cut when asked, the subject and a newline before it when asked."""
    too_deep = MailError(
        f"MIME parts nested too deeply (at most {MAX_MIME_CONTAINERS} multipart or message parts)"
    )
    containers = itertools.islice(_CONTAINER.finditer(raw), MAX_MIME_CONTAINERS + 1)
    if sum(1 for _ in containers) > MAX_MIME_CONTAINERS:
        raise too_deep
    try:
        message = _parser.parsebytes(raw)
        plain = _first_part(message, "text/plain")
        html = _first_part(message, "text/html")
    except RecursionError:
        # Nesting the count above did not see ends the same way.
        raise too_deep from None
    if plain is None and html is None:
        raise MailError("the mail has no text/plain or text/html part")
    text = "" if plain is None else _plain_text(plain)
    # A text/plain alternative left blank beside the HTML one, as some mailers write it, is
    # not the text: the HTML's is.
    if not text.strip() and html is not None:
        text = _line_ends(_html_text(_decoded_text(html)))
    if strip_signature:
        lines = text.split("\n")
        if _SIGNATURE in lines:
            cut = len(lines) - 1 - lines[::-1].index(_SIGNATURE)
            text = "\n".join(lines[:cut])
    text = text.rstrip()
    subject = _header(message, "subject")
    if prepend_subject and subject:
        text = f"{subject}\n{text}" if text else subject
    if not text:
        raise MailError("the mail has no text to send")
    if len(text) > MAX_CHARACTERS:
        raise MailError(
            f"the text has {len(text)} characters, at most {MAX_CHARACTERS} are allowed"
        )
    new_session = _header(message, "x-newsession").lower() in _TRUE
    return MailContent(text=text, new_session=new_session)


def _first_part(message: email.message.Message, content_type: str) -> email.message.Message | None:
    """The first part of `content_type` that is no attachment and in none: the text of a mail
    forwarded as an attachment (message/rfc822) is not this mail's."""
    if (message.get("content-disposition") or "").strip().lower().startswith("attachment"):
        return None
    if not message.is_multipart():
        return message if message.get_content_type() == content_type else None
    for part in message.get_payload():
        found = _first_part(part, content_type) if isinstance(part, email.message.Message) else None
        if found is not None:
            return found
    return None


def _line_ends(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _plain_text(part: email.message.Message) -> str:
    """A text/plain part's text, its lines joined back into paragraphs when it is
    format=flowed (RFC 3676), as Thunderbird and Apple Mail send it: else the SMS would keep
    the mailer's soft line breaks, some 72 characters apart."""
    text = _line_ends(_decoded_text(part))
    if _param(part, "format") != "flowed":
        return text
    delete_space = _param(part, "delsp") == "yes"
    # Each paragraph as its pieces, joined once at the end: adding to a growing string would
    # copy it for every line, quadratic in a megabyte of short flowed lines.
    paragraphs: list[list[str]] = []
    open_depth: int | None = None  # the quote depth of a paragraph whose last line flowed
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        body = body.removeprefix(" ")  # space-stuffing (RFC 3676 4.4)
        flowed = body.endswith(" ") and body != _SIGNATURE
        if flowed and delete_space:
            body = body[:-1]
        if open_depth == depth and body != _SIGNATURE:
            paragraphs[-1].append(body)
        else:
            paragraphs.append([f"{'>' * depth} {body}" if depth else body])
        # A flowed line before one of another quote depth ends its paragraph (4.5).
        open_depth = depth if flowed else None
    return "\n".join("".join(pieces) for pieces in paragraphs)


def _param(part: email.message.Message, name: str) -> str:
    """A Content-Type parameter, lower case; '' when absent or RFC 2231 encoded."""
    value = part.get_param(name)
    return value.strip().lower() if isinstance(value, str) else ""


def _decoded_text(part: email.message.Message) -> str:
    """The part's text in its charset, without the byte order mark some Windows mailers put
    first (a character no GSM alphabet has)."""
    payload = _payload(part)
    declared = part.get_content_charset()
    # Undeclared, the text is US-ASCII (RFC 2045); a device that sends 8-bit text without
    # saying so sends UTF-8, as in its headers (RFC 6532), and US-ASCII reads the same as it.
    charset = declared or "utf-8"
    try:
        # LookupError also for codecs that are no charset (base64_codec, rot13...).
        return payload.decode(charset).removeprefix("\ufeff")
    except LookupError:
        raise MailError(f"unknown charset {charset[:40]!r}") from None
    except UnicodeDecodeError as exc:
        undeclared = "" if declared else " (no charset declared)"
        raise MailError(
            f"the text is not valid {charset[:40]}{undeclared} at byte {exc.start}"
        ) from None


def _payload(part: email.message.Message) -> bytes:
    """The part's body with its transfer encoding undone. Base64 is read here, not by the
    stdlib, which passes base64 that is cut short through as if it were text and drops what
    follows a misplaced `=`: a garbled SMS. Characters outside the alphabet, line breaks among
    them, are skipped as RFC 2045 6.8 has decoders do; the rest must be whole groups of four,
    with `=` padding only at the end."""
    if str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        encoded = part.get_payload()
        if isinstance(encoded, str):
            try:
                return base64.b64decode(_NOT_BASE64.sub("", encoded), validate=True)
            except binascii.Error as exc:
                raise MailError(f"the text part is not valid base64: {exc}") from None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise MailError("the text part has no readable body")
    return payload


def _header(message: email.message.Message, name: str) -> str:
    """A header's value with RFC 2047 encoded words decoded and raw 8-bit text read as UTF-8
    (RFC 6532); '' when absent or undecodable."""
    value = message.get(name)
    if value is None:
        return ""
    try:
        if isinstance(value, email.header.Header):
            # compat32 hands a header with raw 8-bit bytes over as a Header of unknown bytes,
            # whose str() turns each byte into U+FFFD.
            [(raw, _)] = email.header.decode_header(value)
            value = raw.decode("utf-8")
        decoded = _decoded_words(str(value))
    except (LookupError, UnicodeDecodeError, ValueError, email.errors.HeaderParseError):
        return ""
    return " ".join(decoded.split())


def _decoded_words(value: str) -> str:
    """`value` with its RFC 2047 encoded words decoded and the text around them kept as it is,
    raw UTF-8 too (the stdlib's decode_header mangles that when a word is beside it). Each run
    of words goes to decode_header alone, which drops the white space between them (RFC 2047
    6.2) and joins their bytes, as a character split over two words needs. A word that does
    not decode raises."""
    pieces: list[str] = []
    end = 0
    for run in _ENCODED_WORDS.finditer(value):
        pieces.append(value[end : run.start()])
        for data, charset in email.header.decode_header(run.group()):
            # str when decode_header finds no word in the run after all.
            pieces.append(data if isinstance(data, str) else data.decode(charset or "ascii"))
        end = run.end()
    pieces.append(value[end:])
    return "".join(pieces)


class _HtmlText(HTMLParser):
    """Visible text of an HTML body: script and style dropped, block ends as line breaks."""

    _BREAKS: Final = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table"})
    _HIDDEN: Final = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BREAKS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BREAKS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.pieces.append(data)


def _html_text(markup: str) -> str:
    parser = _HtmlText()
    # No close(): given a tag left open at the end, it rescans the rest once for every "<" in
    # it (quadratic, CVE-2025-6069: 50 kB took minutes, the event loop blocked), and a browser
    # shows nothing of such a tag either. The newline lets feed() pass on text that ends in
    # what could still become an entity ("&amp"), which it otherwise holds back for more.
    parser.feed(markup + "\n")
    lines = (" ".join(line.split()) for line in "".join(parser.pieces).split("\n"))
    return "\n".join(line for line in lines if line)
