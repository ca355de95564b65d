"""Defensive readers of client input that the HTTP shell and routes share: counts in a query or
path, Basic credentials, the charset of a body, and the framing of a request head. Pure: text
or bytes in, a value or a refusal out; no I/O, no logging. RFC 7617 (Basic), RFC 9110 8.3.2
(charset), RFC 9112 2.3 and 6.3 (version, Content-Length with Transfer-Encoding); spec 2.3
(bodies are UTF-8).
"""

from __future__ import annotations

import base64
import codecs
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Final

from edgegw.http.puzzel import XML_PIECE, RequestSyntaxError, UnsupportedCharset

__all__ = [
    "MAX_COUNT_DIGITS",
    "ascii_count",
    "basic_credentials",
    "framing_refusal",
    "media_type_and_charset",
    "percent_charset",
    "request_target",
    "text_charset",
    "to_utf8",
    "utf8_pieces",
]

# A count, a limit, a service id or a `pid` never needs more digits than this; more is refused
# before `int()` (whose 4,300-digit guard raises) ever sees it.
MAX_COUNT_DIGITS: Final = 9

# Codecs Python calls text encodings that are transfer or escape syntaxes, not charsets a body
# can be written in; and UTF-7, which no HTTP body should be in (browsers dropped it for the
# markup it smuggles) and whose decoder, fed a piece at a time, holds back and decodes again
# a base64 run as long as the body.
_NOT_CHARSETS: Final = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined", "utf-7"}
)
# The byte-order marks of the codecs that read one, each with the codec its absence means: as
# `bytes.decode` does, the machine's own byte order.
_ORDER_MARKS: Final = {
    "utf-16": ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), f"utf-16-{sys.byteorder[0]}e"),
    "utf-32": ((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), f"utf-32-{sys.byteorder[0]}e"),
}
# IANA charset names are at most 40 characters (RFC 2978 2.3).
_MAX_CHARSET_NAME: Final = 40
_PROBE: Final = b"\x00\x00\x00\x00"
_UTF8: Final = frozenset({"utf-8", "ascii"})
_HTTP_VERSIONS: Final = frozenset({b"1.0", b"1.1"})
# An absolute-form request target (RFC 9112 section 3.2.2): scheme, authority, the rest.
_ABSOLUTE_FORM: Final = re.compile(r"(?i:https?)://([^/?#]*)(.*)", re.DOTALL)
# A Host header's value: uri-host [":" port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2),
# an IP literal in brackets or a reg-name, which may be empty.
_HOST: Final = re.compile(
    rb"(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]*)(?::[0-9]*)?"
)


def ascii_count(text: str) -> int | None:
    """The value of `text` when it is 1..MAX_COUNT_DIGITS ASCII digits, else None. `str.isdigit`
    alone accepts "²" and "٣", which `int` then refuses or reads as a number nobody typed."""
    if not 0 < len(text) <= MAX_COUNT_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) of an HTTP Basic Authorization header (RFC 7617); None for no
    header, another scheme, or a token that is not base64 of UTF-8 "user:password"."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, a non-ASCII character in the token
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def media_type_and_charset(header: str) -> tuple[str, str | None]:
    """(media type, charset or None) of a Content-Type header, both in lower case."""
    media_type, *params = header.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media_type.strip().lower(), charset


def text_charset(charset: str) -> str:
    """The codec name of a declared charset; `UnsupportedCharset` (415) when Python does not
    know it or it is no charset at all (base64, hex, rot13, zlib, uu, punycode, ...)."""
    name = ""
    if len(charset) <= _MAX_CHARSET_NAME:
        try:
            name = codecs.lookup(charset).name
            # bytes.decode refuses bytes-to-bytes and str-to-str codecs with LookupError (an
            # empty input would skip that check).
            _PROBE.decode(name, "ignore")
        except (LookupError, ValueError):  # ValueError: a NUL or a lone surrogate in the name
            name = ""
    if not name or name in _NOT_CHARSETS:
        shown = charset[:_MAX_CHARSET_NAME]
        raise UnsupportedCharset(f"{shown!r} is not a text encoding we can read")
    return name


def utf8_pieces(body: bytes | bytearray, charset: str) -> Iterator[bytes]:
    """The body read in the charset its Content-Type declares (for XML, which then takes
    precedence over the document's own declaration, RFC 7303 section 3.2), as UTF-8 a piece
    (XML_PIECE) at a time, so that no copy of the whole body is made; read as `bytes.decode`
    would read it whole. UnsupportedCharset (415) at once for a charset we cannot read;
    RequestSyntaxError, when its piece is reached, for bytes that do not fit it, named by
    their offset in the body."""
    name = text_charset(charset)
    view = memoryview(body)
    skipped = 0  # bytes of a byte-order mark read here
    if name == "utf-8-sig":
        name, skipped = "utf-8", len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    elif name in _ORDER_MARKS:
        marks, unmarked = _ORDER_MARKS[name]
        if not body.startswith(marks):
            name = unmarked
    return _recoded(view[skipped:], skipped, codecs.getincrementaldecoder(name)(), charset)


def _recoded(
    body: memoryview, offset: int, decoder: codecs.IncrementalDecoder, charset: str
) -> Iterator[bytes]:
    for start in range(0, len(body), XML_PIECE):
        pending = len(decoder.getstate()[0])  # bytes of a character the last piece cut
        try:
            text = decoder.decode(body[start : start + XML_PIECE], start + XML_PIECE >= len(body))
            piece = text.encode("utf-8")
        except UnicodeDecodeError as exc:
            at = offset + start - pending + exc.start
            raise RequestSyntaxError("body", f"not {charset} at byte {at}") from None
        except ValueError as exc:  # UnicodeError and the like from codecs that check more
            raise RequestSyntaxError("body", f"not {charset}: {exc}") from None
        yield piece


def percent_charset(charset: str | None) -> str:
    """The codec a form's percent-encoded octets are read in: the charset its Content-Type
    declares, as a form encoder writes them in it (a browser's, Java's URLEncoder, PHP's
    urlencode); UTF-8 for none, as the spec's bodies are, and for ASCII, which has no octet
    that needs one."""
    if charset is None:
        return "utf-8"
    name = text_charset(charset)
    return "utf-8" if name in _UTF8 else name


def to_utf8(body: bytes | bytearray, charset: str | None) -> bytes | bytearray:
    """The body as UTF-8. The spec's bodies are UTF-8; a client that declares another text
    charset is taken at its word. A UTF-8 byte order mark, which Windows editors put before a
    file sent as the body, is dropped (RFC 8259 section 8.1 lets a JSON parser ignore it), as
    an XML body's is."""
    if charset is None or text_charset(charset) in _UTF8:
        return body[len(codecs.BOM_UTF8) :] if body.startswith(codecs.BOM_UTF8) else body
    return b"".join(utf8_pieces(body, charset))


def request_target(target: str) -> tuple[str, str, str | None]:
    """(path, query, authority) of a request line's target, path and query not percent-decoded,
    the query "" when absent. An absolute-form target (`http://host:port/path?query`), which a
    server must accept (RFC 9112 section 3.2.2), is read as its path (an empty one is "/") and
    query, and its authority is the host asked for, in place of the Host header; an
    origin-form target has None."""
    absolute = _ABSOLUTE_FORM.fullmatch(target)
    authority = None
    if absolute is not None:
        authority, target = absolute.group(1), absolute.group(2)
        if not target.startswith("/"):
            target = "/" + target
    path, _, query = target.partition("?")
    return path, query, authority


def framing_refusal(
    http_version: bytes, headers: Iterable[tuple[bytes, bytes]], target: bytes = b"/"
) -> tuple[int, str] | None:
    """Why a request head must be refused (status, reason), or None. Only HTTP/1.0 and 1.1 are
    spoken (505 otherwise); a request with both Content-Length and Transfer-Encoding is framed
    two ways at once, the stuff of request smuggling behind a proxy (400, RFC 9112 6.3), and
    so is an HTTP/1.0 one with Transfer-Encoding, which that version does not have: its
    framing is faulty (RFC 9112 6.1). A Host that is no host and port is 400 (RFC 9112 3.2),
    and so is an absolute-form `target` whose authority, which stands for the Host, is none
    (`http://user@host/`: RFC 9110 4.2.4 has a recipient treat userinfo as an error)."""
    if http_version not in _HTTP_VERSIONS:
        return 505, f"HTTP/{http_version.decode('ascii', 'replace')} is not supported"
    _, _, authority = request_target(target.decode("ascii", "replace"))
    if authority is not None and _HOST.fullmatch(authority.encode()) is None:
        return 400, "the request target's authority is not a host and port"
    names = set()
    for name, value in headers:
        names.add(name)
        if name == b"host" and _HOST.fullmatch(value) is None:
            return 400, "the Host header is not a host and port"
    if b"transfer-encoding" in names:
        if b"content-length" in names:
            return 400, "Content-Length and Transfer-Encoding together are refused"
        if http_version == b"1.0":
            return 400, "Transfer-Encoding is refused in HTTP/1.0, which has none"
    return None
