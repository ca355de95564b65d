"""Email to SMS on the running gateway (spec 2.6) through the standard library's smtplib and a real
mail program (swaks): plain, multipart, quoted-printable UTF-8, base64 (and base64 that does not
decode), HTML beside a blank text part, a subject of raw UTF-8 and RFC 2047 words, several
recipients, lines ending in a bare LF (dot-unstuffed, and never the end of DATA), every refusal
with its reply (EXPN's 502 too), format=flowed text and a byte order mark, AUTH after STARTTLS,
and a 50 MB mail refused while another client is served. Every 250 names message ids that are in
the store with the mail's text.

smtplib and swaks block; they run in `trio.to_thread.run_sync`."""

from __future__ import annotations

import base64
import shutil
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import threading
from email.message import EmailMessage
from pathlib import Path

import msgspec
import pytest
import trio
from support.gateway import example_config
from support.tools import require_tool

from edgegw.gateway import Gateway
from edgegw.offload import DECODED_IN_A_THREAD
from edgegw.pipeline import smtp_backend
from edgegw.smtp.config import ServiceSmtp, SmtpConfig
from edgegw.smtp.mail import MailContent, mail_content

DOMAIN = "sms.localhost"


def smtp_port(gateway: Gateway) -> int:
    assert gateway.bound is not None and gateway.bound.smtp_port is not None
    return gateway.bound.smtp_port


def deliver(port: int, recipients: list[str], message: bytes) -> tuple[int, str]:
    """One mail through smtplib; (code, text) of the end of DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("tests.local")
        client.mail("alarm@panel.test")
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            assert code == 250, (recipient, code, text)
        code, reply = client.data(message)
        return code, reply.decode()


async def stored_texts(gateway: Gateway, reply: str) -> dict[str, tuple[str, str]]:
    """recipient -> (message id, content) of the ids a 250 reply names."""
    ids = reply.removeprefix("2.0.0 queued as ").split()

    def read(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
        rows = conn.execute(
            f"SELECT id, recipient, content FROM messages WHERE id IN ({','.join('?' * len(ids))})",
            ids,
        )
        return {recipient: (message_id, text) for message_id, recipient, text in rows}

    return await gateway.store.read(read)


async def test_plain_mail_to_several_recipients(gateway: Gateway) -> None:
    raw = b"From: alarm@panel.test\r\nSubject: ignored\r\n\r\nDoor 3 open\r\n.dot stays\r\n"
    recipients = [f"+4741000000-1000@{DOMAIN}", f"4741000001-1000@{DOMAIN}"]
    code, reply = await trio.to_thread.run_sync(deliver, smtp_port(gateway), recipients, raw)
    assert code == 250
    stored = await stored_texts(gateway, reply)
    assert {r: text for r, (_, text) in stored.items()} == {
        "+4741000000": "Door 3 open\n.dot stays",
        "+4741000001": "Door 3 open\n.dot stays",
    }
    view = await gateway.store.message_view(1000, stored["+4741000000"][0])
    assert view is not None and view.serviceId == 1000


async def test_a_big_mail_is_read_off_the_event_loop(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mail is read before it is accepted: one with a big attachment (an alarm panel's
    snapshot) must not hold up every other door and modem while its parts are decoded."""
    read_in: list[int] = []

    def recording(raw: bytes, **options: bool) -> MailContent:
        read_in.append(threading.get_ident())
        return mail_content(raw, **options)

    monkeypatch.setattr(smtp_backend, "mail_content", recording)
    texts = []
    for snapshot in (b"", b"\xff" * DECODED_IN_A_THREAD):
        mail = EmailMessage()
        mail.set_content("Zone 3 open")
        if snapshot:
            mail.add_attachment(snapshot, maintype="image", subtype="jpeg", filename="zone3.jpg")
        code, reply = await trio.to_thread.run_sync(
            deliver, smtp_port(gateway), [f"+4741000000-1000@{DOMAIN}"], mail.as_bytes()
        )
        assert code == 250
        texts.append((await stored_texts(gateway, reply))["+4741000000"][1])
    assert texts == ["Zone 3 open", "Zone 3 open"]
    loop = threading.get_ident()
    assert read_in[0] == loop
    assert read_in[1] != loop


async def test_a_number_listed_twice_gets_one_sms(gateway: Gateway) -> None:
    recipients = [
        f"+4741000007-1000@{DOMAIN}",
        f"4741000007-1000@{DOMAIN}",
        f"+4741000007-1000@{DOMAIN.upper()}",
        f"4741000008-1000@{DOMAIN}",
    ]
    code, reply = await trio.to_thread.run_sync(
        deliver, smtp_port(gateway), recipients, b"\r\nZone 5 open\r\n"
    )
    assert code == 250
    assert len(reply.removeprefix("2.0.0 queued as ").split()) == 2

    def recipients_stored(conn: sqlite3.Connection) -> list[str]:
        return [row[0] for row in conn.execute("SELECT recipient FROM messages ORDER BY recipient")]

    assert await gateway.store.read(recipients_stored) == ["+4741000007", "+4741000008"]


def deliver_exactly(port: int, recipient: str, data: bytes) -> tuple[list[int], str]:
    """One mail whose DATA is `data` byte for byte, end marker included (smtplib's `data`
    would stuff and end it itself); the codes of DATA, its end and a NOOP after, and the text
    of the end."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("tests.local")
        client.mail("alarm@panel.test")
        assert client.rcpt(recipient)[0] == 250
        started, _ = client.docmd("DATA")
        client.send(data)
        ended, reply = client.getreply()
        after, _ = client.noop()
        return [started, ended, after], reply.decode()


async def test_a_line_after_a_bare_lf_is_dot_unstuffed_and_never_ends_data(
    gateway: Gateway,
) -> None:
    port = smtp_port(gateway)
    # smtplib, given bytes, sends their bare LFs as they are and stuffs a dot after any LF.
    raw = b"Subject: bare LF\n\nZone 3 open\n.5 bar\n..two dots\n"
    code, reply = await trio.to_thread.run_sync(deliver, port, [f"4741000003-1000@{DOMAIN}"], raw)
    assert code == 250
    stored = await stored_texts(gateway, reply)
    assert stored["+4741000003"][1] == "Zone 3 open\n.5 bar\n..two dots"
    # A "." line with a bare LF on either side is a line of this mail, not its end (no
    # smuggling): one mail, its text up to the CRLF.CRLF, and the session goes on.
    exact = (
        b"Subject: smuggled?\r\n\r\nfirst\n..5 bar\n.\nsecond\n.\r\nthird\r\n.\n"
        b"MAIL FROM:<a@b.test>\r\n.\r\n"
    )
    codes, reply = await trio.to_thread.run_sync(
        deliver_exactly, port, f"4741000004-1000@{DOMAIN}", exact
    )
    assert codes == [354, 250, 250]
    stored = await stored_texts(gateway, reply)
    assert list(stored) == ["+4741000004"]
    assert stored["+4741000004"][1] == "first\n.5 bar\n\nsecond\n\nthird\n\nMAIL FROM:<a@b.test>"


async def test_multipart_with_quoted_printable_utf8(gateway: Gateway) -> None:
    mail = EmailMessage()
    mail["Subject"] = "Kvittering"
    mail.set_content("Blåbærsyltetøy på lager: 12", charset="utf-8", cte="quoted-printable")
    mail.add_alternative("<p>ignored html</p>", subtype="html")
    raw = mail.as_bytes()
    assert b"=C3=A5" in raw
    code, reply = await trio.to_thread.run_sync(
        deliver, smtp_port(gateway), [f"4741000002-1000@{DOMAIN}"], raw
    )
    assert code == 250
    stored = await stored_texts(gateway, reply)
    assert stored["+4741000002"][1] == "Blåbærsyltetøy på lager: 12"


async def test_flowed_text_is_joined_and_a_byte_order_mark_dropped(gateway: Gateway) -> None:
    # As Thunderbird writes a long line (RFC 3676): soft breaks after a space, a stuffed line
    # that starts with a space, and the signature separator, which never flows.
    flowed = (
        b"Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
        b"Content-Transfer-Encoding: 8bit\r\nSubject: Vakt\r\n\r\n"
        + "Alarm i sone 3 på lageret, kjølerom B har vært \r\n".encode()
        + b"over 8 grader i 20 minutter. \r\n  Sjekk d\xc3\xb8ren.\r\n"
        + b"Ring vakta.\r\n-- \r\nDrift\r\n"
    )
    delsp = (
        b"Content-Type: text/plain; charset=us-ascii; format=flowed; delsp=yes\r\n\r\n"
        b"Temperatu \r\nre high\r\n"
    )
    bom = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode("\ufeffDør 3 åpen".encode())
        + b"\r\n"
    )
    texts = []
    for raw in (flowed, delsp, bom):
        code, reply = await trio.to_thread.run_sync(
            deliver, smtp_port(gateway), [f"4741000011-1000@{DOMAIN}"], raw
        )
        assert code == 250, reply
        texts.append((await stored_texts(gateway, reply))["+4741000011"][1])
    assert texts == [
        "Alarm i sone 3 på lageret, kjølerom B har vært over 8 grader i 20 minutter.  Sjekk"
        " døren.\nRing vakta.\n-- \nDrift",
        "Temperature high",
        "Dør 3 åpen",
    ]


async def test_a_blank_text_alternative_gives_way_to_the_html_one(gateway: Gateway) -> None:
    texts = []
    for plain in ("", " \n\t\n"):
        mail = EmailMessage()
        mail["Subject"] = "Alarm"
        mail.set_content(plain)
        mail.add_alternative("<p>Zone 3 <b>open</b></p><p>10:02</p>", subtype="html")
        code, reply = await trio.to_thread.run_sync(
            deliver, smtp_port(gateway), [f"4741000010-1000@{DOMAIN}"], mail.as_bytes()
        )
        assert code == 250, reply
        texts.append((await stored_texts(gateway, reply))["+4741000010"][1])
    assert texts == ["Zone 3 open\n10:02", "Zone 3 open\n10:02"]


async def test_base64_that_does_not_decode_is_refused_not_sent_as_it_stands(
    gateway: Gateway,
) -> None:
    port = smtp_port(gateway)
    head = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    encoded = base64.b64encode("Dør 3 åpen nå".encode())
    assert encoded.endswith(b"=")
    bodies = {
        # Line breaks, spaces and other characters outside the alphabet are skipped (RFC 2045
        # 6.8), so a mailer's folding and a stray mark do not lose the text.
        "skipped": encoded[:5] + b"\r\n " + encoded[5:9] + b"!\t" + encoded[9:],
        # Plain text sent as base64: its 9 letters and digits are not whole octets.
        "text": b"Door 3 open",
        "cut short": encoded.rstrip(b"="),
        "after the padding": encoded + b"\r\n" + base64.b64encode(b" since 10:02"),
    }
    answers = {}
    for name, body in bodies.items():
        answers[name] = await trio.to_thread.run_sync(
            deliver, port, [f"4741000009-1000@{DOMAIN}"], head + body + b"\r\n"
        )
    code, reply = answers.pop("skipped")
    assert code == 250
    assert (await stored_texts(gateway, reply))["+4741000009"][1] == "Dør 3 åpen nå"
    for name, (code, reply) in answers.items():
        assert code == 554, name
        assert reply.startswith("5.6.0 the text part is not valid base64: "), name


async def test_a_subject_of_raw_utf8_beside_an_encoded_word_is_read_whole(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    base = example_config(tmp_path, smtp=ServiceSmtp(allow=["127.0.0.1"], prepend_subject=True))
    gateway = Gateway(msgspec.structs.replace(base, smtp=SmtpConfig(port=0, domain=DOMAIN)))
    bound = await nursery.start(gateway.run)
    # Raw UTF-8 (RFC 6532) where the device wrote it itself, an RFC 2047 word where its
    # library encoded a value it filled in.
    raw = "Subject: Blåbær =?utf-8?q?p=C3=A5_lager:?= =?utf-8?q?_12?=\r\n\r\nKvittering\r\n"
    code, reply = await trio.to_thread.run_sync(
        deliver, bound.smtp_port, [f"4741000011-1000@{DOMAIN}"], raw.encode()
    )
    assert code == 250
    stored = await stored_texts(gateway, reply)
    assert stored["+4741000011"][1] == "Blåbær på lager: 12\nKvittering"
    gateway.stop()


async def test_an_smtputf8_mail_with_utf8_addresses_and_headers_is_sent(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """RFC 6531 end to end: smtplib sends MAIL with SMTPUTF8 only to a server that advertises
    it; the sender's and the recipient domain's UTF-8 are read as such (the domain matches the
    configured one in its A-label form too), and so are the headers (RFC 6532)."""
    domain = "sms.blåbær.test"
    base = example_config(tmp_path, smtp=ServiceSmtp(allow=["127.0.0.1"], prepend_subject=True))
    gateway = Gateway(msgspec.structs.replace(base, smtp=SmtpConfig(port=0, domain=domain)))
    bound = await nursery.start(gateway.run)
    raw = "From: Ålarm <ålarm@panel.test>\r\nSubject: Sone 3 åpen\r\n\r\nKjølerom\r\n".encode()

    def send(recipients: list[str]) -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", bound.smtp_port, timeout=10) as client:
            client.ehlo("tests.local")
            assert client.has_extn("smtputf8")
            client.mail("ålarm@panel.test", ["SMTPUTF8"])
            for recipient in recipients:
                code, text = client.rcpt(recipient)
                assert code == 250, (recipient, code, text)
            code, reply = client.data(raw)
            return code, reply.decode()

    by_u_label = f"4741000021-1000@{domain}"
    by_a_label = f"4741000022-1000@{domain.encode('idna').decode()}"
    code, reply = await trio.to_thread.run_sync(send, [by_u_label, by_a_label])
    assert code == 250
    stored = await stored_texts(gateway, reply)
    assert {r: text for r, (_, text) in stored.items()} == {
        "+4741000021": "Sone 3 åpen\nKjølerom",
        "+4741000022": "Sone 3 åpen\nKjølerom",
    }
    gateway.stop()


async def test_the_door_names_an_internationalised_domain_by_its_a_label(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """RFC 5321 4.1.2: the Domain of the greeting and of the EHLO, HELO and QUIT replies is
    letters, digits and hyphens, and the replies are ASCII: a mail domain configured as a U-label
    is named by its A-label (RFC 5891), as a client can read it and mail to it."""
    domain = "sms.blåbær.test"
    base = example_config(tmp_path, smtp=ServiceSmtp(allow=["127.0.0.1"]))
    gateway = Gateway(msgspec.structs.replace(base, smtp=SmtpConfig(port=0, domain=domain)))
    bound = await nursery.start(gateway.run)

    def session() -> list[tuple[int, bytes]]:
        client = smtplib.SMTP(timeout=10)
        greeting = client.connect("127.0.0.1", bound.smtp_port)
        ehlo = client.ehlo("tests.local")
        helo = client.helo("tests.local")
        return [greeting, (ehlo[0], ehlo[1].split(b"\n")[0]), helo, client.quit()]

    assert await trio.to_thread.run_sync(session) == [
        (220, b"sms.xn--blbr-roah.test ESMTP edgegw"),
        (250, b"sms.xn--blbr-roah.test greets tests.local"),
        (250, b"sms.xn--blbr-roah.test"),
        (221, b"2.0.0 sms.xn--blbr-roah.test closing"),
    ]
    gateway.stop()


async def test_smtputf8_with_a_value_is_refused_as_a_syntax_error(gateway: Gateway) -> None:
    """RFC 6531 3.4: SMTPUTF8 has no value; `SMTPUTF8=yes` is not the parameter, so it opens no
    UTF-8 transaction (501, the parameter is known but malformed), and the bare one still does."""

    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            client.ehlo("tests.local")
            answers = [client.mail("a@b.test", ["SMTPUTF8=yes"])]
            # smtplib writes UTF-8 only with the bare parameter: this line by hand.
            client.send("MAIL FROM:<ålarm@panel.test> SMTPUTF8=yes\r\n".encode())
            answers.append(client.getreply())
            answers.append(client.mail("ålarm@panel.test", ["SMTPUTF8"]))
            return answers

    assert await trio.to_thread.run_sync(session) == [
        (501, b"5.5.4 SMTPUTF8 takes no value"),
        (501, b"5.5.4 SMTPUTF8 takes no value"),
        (250, b"2.1.0 sender OK"),
    ]


async def test_body_takes_only_the_values_8bitmime_defines(gateway: Gateway) -> None:
    """RFC 6152: BODY is 7BIT or 8BITMIME. BINARYMIME (RFC 3030) is not offered, so a binary
    body announced by it, or a value the door does not know, is refused before any data."""

    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            client.ehlo("tests.local")
            answers = []
            for options in (["BODY=BINARYMIME"], ["BODY=9BIT"], ["BODY"], ["BODY=7bit"]):
                answers.append(client.mail("a@b.test", options))
                client.rset()
            answers.append(client.mail("a@b.test", ["BODY=8BITMIME"]))
            return answers

    refusal = (501, b"5.5.4 BODY takes 7BIT or 8BITMIME")
    accepted = (250, b"2.1.0 sender OK")
    assert await trio.to_thread.run_sync(session) == [refusal] * 3 + [accepted] * 2


async def test_after_helo_mail_parameters_are_refused_and_a_plain_mail_is_sent(
    gateway: Gateway,
) -> None:
    """RFC 5321 4.1.1.1: a client that greeted with HELO, not EHLO, was offered no service
    extension, so a MAIL parameter (SIZE, BODY, SMTPUTF8) is none it may use: 555."""

    def session() -> tuple[list[tuple[int, bytes]], tuple[int, str]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            client.helo("tests.local")
            # smtplib's `mail` drops its options after HELO; the commands as a client sends them.
            answers = [
                client.docmd("MAIL", f"FROM:<a@b.test> {parameter}")
                for parameter in ("SIZE=100", "BODY=8BITMIME", "SMTPUTF8")
            ]
            answers.append(client.mail("a@b.test"))
            client.rcpt(f"4741000009-1000@{DOMAIN}")
            code, reply = client.data(b"\r\nZone 9 open\r\n")
            return answers, (code, reply.decode())

    answers, (code, reply) = await trio.to_thread.run_sync(session)
    refusal = (555, b"5.5.4 MAIL FROM parameters not recognized or not implemented after HELO")
    assert answers == [refusal, refusal, refusal, (250, b"2.1.0 sender OK")]
    assert code == 250
    assert (await stored_texts(gateway, reply))["+4741000009"][1] == "Zone 9 open"


async def test_refusals_at_rcpt_and_at_end_of_data(gateway: Gateway) -> None:
    port = smtp_port(gateway)

    def session() -> list[tuple[int, str]]:
        answers = []
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("tests.local")
            client.mail("a@b.test")
            for recipient in (
                "4741000000@sms.localhost",
                "4741000000-9999@sms.localhost",
                "4741000000-1000@elsewhere.test",
                "12-1000@sms.localhost",
            ):
                code, text = client.rcpt(recipient)
                answers.append((code, text.decode()))
            client.rset()
            for body in (
                b"\r\nHallo \xd0\xbf\r\n",  # UTF-8 Cyrillic: not GSM, parsing type NONE
                b"\r\n" + b"x" * 919 + b"\r\n",
                b"X-NewSession: true\r\n\r\nhi\r\n",
                b"Content-Type: text/plain; charset=x-unknown\r\n\r\nhi\r\n",
            ):
                client.mail("a@b.test")
                client.rcpt("4741000000-1000@sms.localhost")
                header = b"Content-Type: text/plain; charset=utf-8\r\n" if b"\xd0" in body else b""
                code, text = client.data(header + body)
                answers.append((code, text.decode()))
        return answers

    answers = await trio.to_thread.run_sync(session)
    codes = [code for code, _ in answers]
    assert codes == [550, 550, 550, 550, 554, 554, 554, 554]
    assert "is not <number>-<service id>" in answers[0][1]
    assert "service 9999 takes no email" in answers[1][1]
    assert "only @sms.localhost" in answers[2][1]
    assert "not an international number" in answers[3][1]
    assert "not in the GSM 03.38 alphabet" in answers[4][1]
    assert "919 characters, at most 918" in answers[5][1]
    assert "sessions need short-number" in answers[6][1]
    assert "unknown charset 'x-unknown'" in answers[7][1]

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])

    assert await gateway.store.read(count) == 0


async def test_mail_to_the_postmaster_is_taken_from_any_client_and_logged(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 5321 4.5.1: mail to the postmaster is taken, bare or at the mail domain, also from a
    client no service takes mail from. With no mailbox to keep it in, it is logged (at most
    once a minute per client address); a number beside it gets its SMS as ever."""
    port = smtp_port(gateway)

    def session(source: str, recipients: list[str]) -> tuple[list[int], int, str]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
            client.ehlo("tests.local")
            client.mail("mailer-daemon@far.test")
            codes = [client.rcpt(recipient)[0] for recipient in recipients]
            code, reply = client.data(b"Subject: Undelivered\r\n\r\nYour mail bounced\r\n")
            return codes, code, reply.decode()

    bare = await trio.to_thread.run_sync(session, "127.0.0.1", ["Postmaster"])
    assert bare == ([250], 250, "2.0.0 logged for the postmaster")
    beside = [f"POSTMASTER@{DOMAIN.upper()}", f"4741000010-1000@{DOMAIN}"]
    codes, code, reply = await trio.to_thread.run_sync(session, "127.0.0.1", beside)
    assert (codes, code) == ([250, 250], 250)
    assert (await stored_texts(gateway, reply))["+4741000010"][1] == "Your mail bounced"
    # Not on the service's allow list: the number is refused, the postmaster is not.
    off_list = [f"4741000010-1000@{DOMAIN}", f"postmaster@{DOMAIN}"]
    refused = await trio.to_thread.run_sync(session, "127.0.0.2", off_list)
    assert refused == ([550, 250], 250, "2.0.0 logged for the postmaster")
    logged = [r.getMessage() for r in caplog.records if "postmaster" in r.getMessage()]
    line = (
        "SMTP mail to the postmaster from 'mailer-daemon@far.test' (client {}, subject"
        " 'Undelivered', 43 bytes) is only logged: the gateway keeps no mailbox"
    )
    assert logged == [line.format("127.0.0.1"), line.format("127.0.0.2")]

    def elsewhere() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("tests.local")
            client.mail("mailer-daemon@far.test")
            return client.rcpt("postmaster@far.test")

    assert await trio.to_thread.run_sync(elsewhere) == (
        550,
        b"5.1.3 mail for 'far.test' is not taken here, only @sms.localhost",
    )


async def test_expn_is_known_but_not_implemented_and_vrfy_is_252_or_501_without_address(
    gateway: Gateway,
) -> None:
    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            client.ehlo("tests.local")
            return [
                client.expn("staff"),
                client.verify(f"4741000000-1000@{DOMAIN}"),
                client.verify(""),
                client.noop(),
            ]

    assert await trio.to_thread.run_sync(session) == [
        (502, b"5.5.1 EXPN is not implemented"),
        (252, b"2.5.2 cannot verify, but will try delivery"),
        (501, b"5.5.4 VRFY needs an address"),
        (250, b"2.0.0 OK"),
    ]


async def test_a_text_line_over_1000_octets_is_refused_as_content_and_nothing_stored(
    gateway: Gateway,
) -> None:
    """RFC 5321 4.5.3.1.6: a line of the message is at most 1000 octets with its CRLF. One of
    1001 gets 500 with the content's enhanced code (5.6.0; 5.5.6 is a too long AUTH line, RFC
    4954), nothing is stored, and a mail of 1000-octet lines after it on the connection is."""

    def session() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            answers = []
            # A header line, so that the text still fits an SMS.
            for header in (b"X-Pad: " + b"y" * 992, b"X-Pad: " + b"z" * 991):
                client.ehlo("tests.local")
                client.mail("a@b.test")
                client.rcpt(f"4741000012-1000@{DOMAIN}")
                answers.append(client.data(header + b"\r\n\r\nZone 12\r\n"))
            return answers

    (code, text), (accepted, reply) = await trio.to_thread.run_sync(session)
    assert (code, text) == (500, b"5.6.0 a line is longer than 1000")
    assert accepted == 250
    stored = await stored_texts(gateway, reply.decode())
    assert stored["+4741000012"][1] == "Zone 12"

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])

    assert await gateway.store.read(count) == 1


async def test_recipients_past_the_limit_get_452_and_the_others_their_mail(
    gateway: Gateway,
) -> None:
    recipients = [f"+47410{n:05d}-1000@{DOMAIN}" for n in range(115)]

    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            return client.sendmail("a@b.test", recipients, b"\r\nPump 4 failed\r\n")

    refused = await trio.to_thread.run_sync(send)
    assert sorted(refused) == recipients[100:]
    assert set(refused.values()) == {(452, b"4.5.3 too many recipients")}

    def texts(conn: sqlite3.Connection) -> dict[str, str]:
        return dict(conn.execute("SELECT recipient, content FROM messages"))

    stored = await gateway.store.read(texts)
    assert stored == {f"+47410{n:05d}": "Pump 4 failed" for n in range(100)}


async def test_a_relay_that_logged_in_may_pass_the_auth_parameter(gateway: Gateway) -> None:
    def relay() -> tuple[int, int, str]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            client.login("demo", "demo")
            mail, _ = client.mail("alarm@panel.test", ["SIZE=20", "AUTH=<>"])
            client.rcpt(f"4741000006-1000@{DOMAIN}")
            code, reply = client.data(b"\r\nRelayed\r\n")
            return mail, code, reply.decode()

    mail, code, reply = await trio.to_thread.run_sync(relay)
    assert (mail, code) == (250, 250)
    stored = await stored_texts(gateway, reply)
    assert stored["+4741000006"][1] == "Relayed"


async def test_a_relay_may_send_a_mail_line_as_long_as_its_parameters_allow(
    gateway: Gateway,
) -> None:
    """RFC 5321 4.5.3.1.4 caps a command at 512 octets, and each offered extension lengthens
    MAIL by what its parameter needs (SIZE 26, BODY 9, SMTPUTF8 10, AUTH 500): a relay that
    logged in passes a long sender twice, as the path and as AUTH=, in one MAIL of 544 octets."""
    sender = "a" * 64 + "@" + "b" * 180 + ".test"
    options = ["SIZE=20", "BODY=8BITMIME", f"AUTH=<{sender}>"]

    def relay() -> tuple[int, int, str]:
        with smtplib.SMTP("127.0.0.1", smtp_port(gateway), timeout=10) as client:
            client.login("demo", "demo")
            mail, _ = client.mail(sender, options)
            client.rcpt(f"4741000013-1000@{DOMAIN}")
            code, reply = client.data(b"\r\nRelayed far\r\n")
            return mail, code, reply.decode()

    assert len(f"mail FROM:<{sender}> {' '.join(options)}\r\n") == 544
    mail, code, reply = await trio.to_thread.run_sync(relay)
    assert (mail, code) == (250, 250)
    assert (await stored_texts(gateway, reply))["+4741000013"][1] == "Relayed far"


def certificate(folder: Path) -> tuple[str, str]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for a certificate")
async def test_an_address_off_the_allow_list_must_auth_after_starttls(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    cert, key = certificate(tmp_path)
    base = example_config(tmp_path, smtp=ServiceSmtp(allow=["10.0.0.0/8"], strip_signature=True))
    config = msgspec.structs.replace(
        base,
        smtp=SmtpConfig(
            port=0, domain=DOMAIN, tls_cert_file=cert, tls_key_file=key, require_auth=True
        ),
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)
    port = bound.smtp_port

    def session() -> tuple[int, int, int, str]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("tests.local")
            refused_mail, _ = client.mail("a@b.test")
            client.rset()
            client.starttls(context=ssl._create_unverified_context())
            client.ehlo("tests.local")
            assert client.has_extn("auth")
            client.login("demo", "demo")
            client.mail("a@b.test")
            code_rcpt, _ = client.rcpt(f"4741000000-1000@{DOMAIN}")
            code, reply = client.data(b"\r\nPump 2 failed\r\n-- \r\nACME\r\n")
        return refused_mail, code_rcpt, code, reply.decode()

    refused_mail, code_rcpt, code, reply = await trio.to_thread.run_sync(session)
    assert refused_mail == 530
    assert (code_rcpt, code) == (250, 250)
    stored = await stored_texts(gateway, reply)
    assert stored["+4741000000"][1] == "Pump 2 failed"
    gateway.stop()


async def test_a_50_mb_mail_is_refused_and_another_client_is_served(gateway: Gateway) -> None:
    port = smtp_port(gateway)

    def huge() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"EHLO big\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<4741000000-1000@sms.localhost>\r\n"
                b"DATA\r\n"
            )
            line = b"y" * 998 + b"\r\n"
            sock.sendall(line * (50 * 1024))
            sock.sendall(b".\r\nQUIT\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    async with trio.open_nursery() as nursery:
        answers: list[bytes] = []

        async def refuse() -> None:
            answers.append(await trio.to_thread.run_sync(huge))

        nursery.start_soon(refuse)
        code, reply = await trio.to_thread.run_sync(
            deliver, port, [f"4741000003-1000@{DOMAIN}"], b"\r\nsmall one\r\n"
        )
        assert code == 250
    assert b"552 5.3.4 message size exceeds 1048576\r\n" in answers[0]
    assert answers[0].endswith(b"221 2.0.0 sms.localhost closing\r\n")
    stored = await stored_texts(gateway, reply)
    assert stored["+4741000003"][1] == "small one"


async def test_doubled_dots_do_not_count_toward_the_size(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """RFC 1870 section 4: the size is the message's without the dots the client doubles. smtplib
    declares SIZE=1002 (within 1024) for 250 lines that start with a dot, then sends 1252 bytes
    once they are stuffed: the mail is taken whole."""
    base = example_config(tmp_path, smtp=ServiceSmtp(allow=["127.0.0.1"]))
    config = msgspec.structs.replace(
        base, smtp=SmtpConfig(port=0, domain=DOMAIN, max_message_bytes=1024)
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)
    body = b"\r\n" + b".x\r\n" * 250
    assert len(body) == 1002

    def send() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", bound.smtp_port, timeout=10) as client:
            client.ehlo("tests.local")
            assert client.esmtp_features["size"] == "1024"
            client.mail("a@b.test", [f"SIZE={len(body)}"])
            client.rcpt(f"4741000010-1000@{DOMAIN}")
            code, reply = client.data(body)
            return code, reply.decode()

    code, reply = await trio.to_thread.run_sync(send)
    assert code == 250, reply
    assert (await stored_texts(gateway, reply))["+4741000010"][1] == "\n".join([".x"] * 250)
    gateway.stop()


async def test_a_garbage_client_is_cut_off_and_another_is_served(gateway: Gateway) -> None:
    port = smtp_port(gateway)

    def garbage() -> bytes:
        noise = bytes(range(256)) * 64 + b"\r\n" * 40
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(noise)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    async with trio.open_nursery() as nursery:
        answers: list[bytes] = []

        async def send_garbage() -> None:
            answers.append(await trio.to_thread.run_sync(garbage))

        nursery.start_soon(send_garbage)
        code, _ = await trio.to_thread.run_sync(
            deliver, port, [f"4741000005-1000@{DOMAIN}"], b"\r\nstill served\r\n"
        )
        assert code == 250
    assert answers[0].startswith(b"220 ")
    assert answers[0].endswith(b"421 4.7.0 sms.localhost too many errors, closing\r\n")


@pytest.fixture(scope="session")
def swaks() -> str:
    """The swaks program, installed from the Debian packages when missing."""
    return require_tool("swaks", "swaks")


async def test_swaks_sends_a_mail(gateway: Gateway, swaks: str) -> None:
    command = [
        swaks,
        "--server",
        "127.0.0.1",
        "--port",
        str(smtp_port(gateway)),
        "--from",
        "printer@office.test",
        "--to",  # swaks reads a leading + as an option prefix; the + is optional anyway
        f"4741000004-1000@{DOMAIN}",
        "--header",
        "Subject: Toner low",
        "--body",
        "Toner low on printer 4",
    ]
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(command, capture_output=True, text=True, timeout=30)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (reply,) = [line for line in result.stdout.splitlines() if "queued as" in line]
    stored = await stored_texts(gateway, reply.partition("250 ")[2])
    assert stored["+4741000004"][1] == "Toner low on printer 4"


async def test_one_connection_over_the_limit_gets_421(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    base = example_config(tmp_path, smtp=ServiceSmtp(allow=["127.0.0.1"]))
    config = msgspec.structs.replace(
        base,
        smtp=SmtpConfig(port=0, domain=DOMAIN, max_connections=2, max_connections_per_address=2),
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)

    async def greeting(stream: trio.SocketStream) -> bytes:
        received = b""
        while not received.endswith(b"\r\n"):
            chunk = await stream.receive_some(1024)
            if not chunk:
                break
            received += chunk
        return received

    held = [await trio.open_tcp_stream("127.0.0.1", bound.smtp_port) for _ in range(2)]
    for stream in held:
        assert (await greeting(stream)).startswith(b"220 ")
    extra = await trio.open_tcp_stream("127.0.0.1", bound.smtp_port)
    assert await greeting(extra) == b"421 4.3.2 too many connections, try again later\r\n"
    assert await extra.receive_some(1024) == b""
    await held[0].aclose()
    # Once the listener has seen that close, a new client is served again.
    with trio.fail_after(5):
        while True:
            again = await trio.open_tcp_stream("127.0.0.1", bound.smtp_port)
            if (await greeting(again)).startswith(b"220 "):
                break
            await again.aclose()
            await trio.sleep(0.01)
    for stream in (held[1], extra, again):
        await stream.aclose()
    gateway.stop()
