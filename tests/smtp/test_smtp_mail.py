"""A mail's SMS text and its recipient address (spec 2.6): plain, multipart, HTML only, QP and
base64, declared charsets (and refused ones), signature, subject, X-NewSession, the 918
character limit, MIME nested too deeply (refused before the parser sees it); and hypothesis: any
bytes give a text or a MailError."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegw.smtp import mail
from edgegw.smtp.mail import (
    MAX_CHARACTERS,
    MAX_MIME_CONTAINERS,
    MailError,
    is_postmaster,
    mail_content,
    parse_recipient,
)


def content(raw: bytes, *, prepend_subject: bool = False, strip_signature: bool = False) -> str:
    return mail_content(raw, prepend_subject=prepend_subject, strip_signature=strip_signature).text


def test_plain_text_body_subject_ignored() -> None:
    raw = b"From: a@b\r\nSubject: Alarm\r\n\r\nDoor 3 open\r\nat 10:02\r\n\r\n"
    assert content(raw) == "Door 3 open\nat 10:02"
    assert content(raw, prepend_subject=True) == "Alarm\nDoor 3 open\nat 10:02"


def test_multipart_takes_the_first_text_plain_part() -> None:
    mail = EmailMessage()
    mail["Subject"] = "=?utf-8?q?Bl=C3=A5b=C3=A6r?="
    mail.set_content("Blåbærsyltetøy er godt", charset="utf-8", cte="quoted-printable")
    mail.add_alternative("<p>HTML <b>version</b></p>", subtype="html")
    mail.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")
    raw = mail.as_bytes()
    assert b"quoted-printable" in raw
    assert content(raw) == "Blåbærsyltetøy er godt"
    assert content(raw, prepend_subject=True) == "Blåbær\nBlåbærsyltetøy er godt"


def test_a_raw_utf8_subject_is_read_as_utf8() -> None:
    # As swaks --header and devices that never heard of RFC 2047 send it (RFC 6532 allows it).
    raw = "Subject: Blåbær på lager\r\n\r\nKvittering\r\n".encode()
    assert content(raw, prepend_subject=True) == "Blåbær på lager\nKvittering"
    not_utf8 = "Subject: Bl\xe5b\xe6r\r\n\r\nKvittering\r\n".encode("latin-1")
    assert content(not_utf8, prepend_subject=True) == "Kvittering"


def test_a_subject_folded_inside_an_encoded_word_is_kept_as_it_stands() -> None:
    # A device folding at a fixed width cuts a word in two: by RFC 2047 it is no word then.
    raw = b"Subject: =?utf-8?q?Alarm_sone\r\n _3?=\r\n\r\nZone 3 open\r\n"
    assert content(raw) == "Zone 3 open"
    assert content(raw, prepend_subject=True) == "=?utf-8?q?Alarm_sone _3?=\nZone 3 open"
    whole = b"Subject: =?utf-8?q?Alarm_sone_3?=\r\n =?utf-8?q?_=C3=A5pen?=\r\n\r\nZone\r\n"
    assert content(whole, prepend_subject=True) == "Alarm sone 3 \u00e5pen\nZone"
    # A raw space inside a word, against RFC 2047 but as some mailers write it, is read.
    spaced = b"Subject: =?iso-8859-1?q?Alarm sone 3?=\r\n\r\nZone\r\n"
    assert content(spaced, prepend_subject=True) == "Alarm sone 3\nZone"


def test_a_mail_attached_to_the_mail_is_not_its_text() -> None:
    forwarded = EmailMessage()
    forwarded["Subject"] = "old alarm"
    forwarded.set_content("Zone 1 open (yesterday)")
    mail = EmailMessage()
    mail.set_content("<p>Zone 2 open</p>", subtype="html")
    mail.add_attachment(forwarded)  # message/rfc822, Content-Disposition: attachment
    raw = mail.as_bytes()
    assert b"message/rfc822" in raw
    assert content(raw) == "Zone 2 open"


def test_html_only_is_reduced_to_text() -> None:
    mail = EmailMessage()
    mail.set_content(
        "<html><head><style>p{}</style></head><body><p>Level &amp; pressure</p>"
        "<script>x()</script><div>ok   now</div>tail<br>end</body></html>",
        subtype="html",
        charset="utf-8",
        cte="base64",
    )
    assert content(mail.as_bytes()) == "Level & pressure\nok now\ntail\nend"


def test_html_ending_inside_a_tag_drops_that_tag() -> None:
    # Python's HTMLParser.close() gave the open tag back as text, after trying it again from
    # each "<" in it, each try reading to the end: 13 s for these 30 kB (hours for 1 MB), on
    # the gateway's event loop. A browser shows nothing of such a tag.
    raw = b"Content-Type: text/html\r\n\r\n<p>Tank &amp; pump 2 low</p>" + b"<a " * 10_000
    assert content(raw) == "Tank & pump 2 low"
    assert content(b"Content-Type: text/html\r\n\r\nFish &amp chips") == "Fish & chips"
    assert content(b"Content-Type: text/html\r\n\r\nlevel <b>< 5") == "level < 5"


def test_declared_charsets_and_refused_ones() -> None:
    latin = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nS\xf8ndag\r\n"
    assert content(latin) == "Søndag"
    with pytest.raises(MailError, match="unknown charset 'x-klingon'"):
        content(b"Content-Type: text/plain; charset=x-klingon\r\n\r\nhi\r\n")
    with pytest.raises(MailError, match="unknown charset"):
        content(b"Content-Type: text/plain; charset=base64_codec\r\n\r\naGk=\r\n")
    with pytest.raises(MailError, match="not valid utf-8 at byte 1"):
        content(b"Content-Type: text/plain; charset=utf-8\r\n\r\nS\xf8ndag\r\n")


def test_undeclared_8bit_text_is_read_as_utf8() -> None:
    # As devices that never heard of MIME send it; US-ASCII reads the same either way.
    assert content("\r\nTemperatur høy i rom 3\r\n".encode()) == "Temperatur høy i rom 3"
    assert content(b"Content-Type: text/plain\r\n\r\nDoor open\r\n") == "Door open"
    with pytest.raises(MailError, match=r"not valid utf-8 \(no charset declared\) at byte 1"):
        content(b"\r\nS\xf8ndag\r\n")


def test_signature_is_cut_only_when_asked() -> None:
    raw = b"\r\nReading: 42\r\n-- \r\nACME Alarm\r\nwww.acme.test\r\n"
    assert content(raw, strip_signature=True) == "Reading: 42"
    assert content(raw) == "Reading: 42\n-- \nACME Alarm\nwww.acme.test"


def test_new_session_header_and_limits() -> None:
    assert mail_content(
        b"X-NewSession: TRUE\r\n\r\nhi\r\n", prepend_subject=False, strip_signature=False
    ).new_session
    assert not mail_content(b"\r\nhi\r\n", prepend_subject=False, strip_signature=False).new_session
    assert content(b"\r\n" + b"a" * MAX_CHARACTERS) == "a" * MAX_CHARACTERS
    with pytest.raises(MailError, match="919 characters, at most 918"):
        content(b"\r\n" + b"a" * (MAX_CHARACTERS + 1))
    with pytest.raises(MailError, match="no text to send"):
        content(b"Subject: only\r\n\r\n  \r\n")
    with pytest.raises(MailError, match="no text/plain or text/html part"):
        content(b"Content-Type: image/png\r\n\r\nxx\r\n")


def nested(levels: int, *, header: str = "Content-Type: multipart/mixed; boundary=") -> bytes:
    """A text/plain part inside `levels` multiparts, each the only part of the one before."""
    containers = "".join(f"{header}b{i}\r\n\r\n--b{i}\r\n" for i in range(levels))
    return (containers + "Content-Type: text/plain\r\n\r\nhi\r\n").encode()


class NoParser:
    """Stands in for the stdlib parser where a mail must be refused before it is parsed."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    def parsebytes(self, raw: bytes) -> None:
        self.calls += 1
        raise self.error


def test_nesting_up_to_the_limit_is_read() -> None:
    assert content(nested(MAX_MIME_CONTAINERS)) == "hi"
    # Folded and in other case, a container still counts.
    folded = nested(MAX_MIME_CONTAINERS, header="CONTENT-TYPE:\r\n\tMultipart/Mixed; boundary=")
    assert content(folded) == "hi"


@pytest.mark.parametrize(
    "raw",
    [
        nested(MAX_MIME_CONTAINERS + 1),
        # The hostile-input probe's mail: 1000 levels made the parser raise RecursionError.
        nested(1000),
        nested(1000, header="content-type:\r\n multipart/digest; boundary="),
        (
            "Content-Type: message/rfc822\r\n\r\n" * 1000 + "Content-Type: text/plain\r\n\r\nhi\r\n"
        ).encode(),
        # Lines ended by a bare CR, which the parser also takes as a line end.
        nested(1000).replace(b"\r\n", b"\r"),
    ],
    ids=["limit+1", "1000", "1000-folded", "1000-rfc822", "1000-bare-cr"],
)
def test_deep_nesting_is_refused_before_parsing(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = NoParser(AssertionError("parsed a mail that is nested too deeply"))
    monkeypatch.setattr(mail, "_parser", parser)
    with pytest.raises(MailError, match="MIME parts nested too deeply"):
        content(raw)
    assert parser.calls == 0


def test_a_recursion_error_of_the_parser_is_the_same_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = NoParser(RecursionError("maximum recursion depth exceeded"))
    monkeypatch.setattr(mail, "_parser", parser)
    with pytest.raises(MailError, match="MIME parts nested too deeply"):
        content(nested(2))
    assert parser.calls == 1


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("+4741000000-1000@sms.test", ("+4741000000", 1000)),
        ("4741000000-1000@SMS.Test", ("+4741000000", 1000)),
    ],
)
def test_recipient_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse_recipient(address, "sms.test") == expected


@pytest.mark.parametrize(
    ("address", "postmaster"),
    [
        ("postmaster", True),  # RFC 5321 4.1.1.3: without a domain
        ("Postmaster", True),
        ("POSTMASTER@sms.straße.test", True),
        ("postmaster@SMS.xn--strae-oqa.test", True),
        ("postmaster@elsewhere.test", False),  # relaying, not ours
        ("postmaster-1000@sms.straße.test", False),
        ("4741000000-1000@sms.straße.test", False),
        ("", False),
    ],
)
def test_the_postmaster_is_the_local_part_postmaster_bare_or_at_the_domain(
    address: str, postmaster: bool
) -> None:
    assert is_postmaster(address, "sms.straße.test") is postmaster


@pytest.mark.parametrize(
    ("host", "taken"),
    [
        ("sms.straße.test", True),
        ("SMS.Straße.test", True),
        ("sms.xn--strae-oqa.test", True),  # IDNA2008's A-label, as RFC 6531 clients write it
        ("sms.strasse.test", False),  # another domain since IDNA2008 (IDNA2003 folded ß)
    ],
)
def test_an_internationalised_domain_is_read_as_idna2008(host: str, taken: bool) -> None:
    address = f"4741000000-1000@{host}"
    if taken:
        assert parse_recipient(address, "sms.straße.test") == ("+4741000000", 1000)
    else:
        with pytest.raises(MailError, match=re.escape("only @sms.xn--strae-oqa.test")):
            parse_recipient(address, "sms.straße.test")


@pytest.mark.parametrize(
    ("domain", "host"),
    [
        ("sms.i❤.test", "sms.xn--i-7iq.test"),  # a symbol: UTS 46 and IDNA2003 write it
        ("sms.xn--i-7iq.test", "SMS.I❤.TEST"),
        ("sms_gw.straße.test", "sms_gw.xn--strae-oqa.test"),  # an `_` in another label
    ],
)
def test_a_domain_idna2008_refuses_matches_in_either_form(domain: str, host: str) -> None:
    """A name IDNA2008 cannot write as a whole (a symbol, an `_`) is read label by label: a
    label it refuses is written as IDNA2003 writes it, so that its U-label and A-label still
    meet."""
    assert parse_recipient(f"4741000000-1000@{host}", domain) == ("+4741000000", 1000)


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("4741000000-1000@other.test", "only @sms.test"),
        ("4741000000-1000", "only @sms.test"),
        ("4741000000@sms.test", "is not <number>-<service id>"),
        ("+47 41000000-1000@sms.test", "is not <number>-<service id>"),
        ("4741000000-abc@sms.test", "is not <number>-<service id>"),
    ],
)
def test_malformed_recipients(address: str, words: str) -> None:
    with pytest.raises(MailError, match=words):
        parse_recipient(address, "sms.test")


@given(st.binary(max_size=600), st.booleans(), st.booleans())
def test_any_bytes_give_text_or_mail_error(raw: bytes, prepend: bool, strip: bool) -> None:
    try:
        text = mail_content(raw, prepend_subject=prepend, strip_signature=strip).text
    except MailError:
        return
    assert 0 < len(text) <= MAX_CHARACTERS


# Pieces of the headers and bodies that take the less travelled ways: encoded words whole, cut
# or folded, raw UTF-8 and bytes of no charset, flowed lines, quotes, signatures, a BOM.
_PIECES = [
    b"=?utf-8?q?",
    b"=?iso-8859-1?b?",
    b"?=",
    b"=C3=A5",
    b"_",
    b"5Ze4",
    b" ",
    b"\r\n ",
    b"\r\n",
    "bl\u00e5".encode(),
    b"\xff",
    b"text",
    b">",
    b"-- ",
    "\ufeff".encode(),
]
_TEXT_TYPES = [
    b"text/plain; charset=utf-8; format=flowed",
    b"text/plain; format=flowed; delsp=yes",
    b"text/plain; charset=iso-8859-1",
    b"text/html; charset=utf-8",
]


@settings(max_examples=1000)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=20),
    st.sampled_from(_TEXT_TYPES),
    st.lists(st.sampled_from(_PIECES), max_size=40),
    st.booleans(),
)
def test_mails_of_tricky_pieces_give_text_or_mail_error(
    subject: list[bytes], content_type: bytes, body: list[bytes], prepend: bool
) -> None:
    raw = (
        b"Subject: " + b"".join(subject) + b"\r\nContent-Type: " + content_type + b"\r\n\r\n"
    ) + b"".join(body)
    try:
        text = mail_content(raw, prepend_subject=prepend, strip_signature=True).text
    except MailError:
        return
    assert 0 < len(text) <= MAX_CHARACTERS
