"""MO by email (spec 3.4) through a tiny SMTP relay started by the test on 127.0.0.1: the
templates are filled with raw values, a relay refusal is retried, and the item is recorded."""

from __future__ import annotations

import email
import email.policy
import functools
from email.message import EmailMessage
from pathlib import Path

import msgspec
import trio

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.delivery.config import SmtpRelayConfig
from edgegw.delivery.outbox import enqueue_mo, outbox_items
from edgegw.delivery.worker import Deliveries
from edgegw.store import Store


class Relay:
    """Answers the SMTP dialogue line by line; refuses the first `busy` connections with 421.
    `extensions`: what it answers EHLO with after its name."""

    def __init__(self, busy: int = 0, extensions: tuple[bytes, ...] = (b"8BITMIME",)) -> None:
        self.busy = busy
        self.extensions = extensions
        self.connections = 0
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.received = trio.Event()

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            if self.connections <= self.busy:
                await stream.send_all(b"421 relay busy, try later\r\n")
                return
            await stream.send_all(b"220 relay.test ESMTP\r\n")
            buffer = b""
            sender, data, in_data = "", b"", False
            recipients: list[str] = []
            while True:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                buffer += chunk
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    if in_data:
                        if line == b".":
                            in_data = False
                            self.envelopes.append((sender, recipients, data))
                            self.received.set()
                            await stream.send_all(b"250 queued\r\n")
                        else:
                            data += (line[1:] if line.startswith(b"..") else line) + b"\r\n"
                        continue
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        lines = [b"250-" + x for x in (b"relay.test", *self.extensions)]
                        lines[-1] = b"250 " + lines[-1][4:]
                        await stream.send_all(b"".join(x + b"\r\n" for x in lines))
                    elif verb == b"MAIL":
                        sender = line.decode().split(":", 1)[1].split()[0].strip("<>")
                        await stream.send_all(b"250 ok\r\n")
                    elif verb == b"RCPT":
                        recipients.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                        await stream.send_all(b"250 ok\r\n")
                    elif verb == b"DATA":
                        in_data = True
                        await stream.send_all(b"354 go ahead\r\n")
                    elif verb == b"QUIT":
                        await stream.send_all(b"221 bye\r\n")
                        return
                    else:
                        await stream.send_all(b"250 ok\r\n")


async def start_mail(
    nursery: trio.Nursery, tmp_path: Path, relay: Relay, mo_email: dict[str, object]
) -> tuple[Store, Clock]:
    """`relay` listening on 127.0.0.1, a store, and the deliveries of service 7 whose MO go
    out as email by the `mo_email` template through it."""
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, relay.serve, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    services = [
        msgspec.convert(
            {"id": 7, "name": "mail", "username": "u", "password": "p", "mo_email": mo_email},
            ServiceConfig,
        )
    ]
    clock = Clock()
    store = Store(tmp_path / "db", clock=clock)
    await nursery.start(store.run)
    relay_config = SmtpRelayConfig(host="127.0.0.1", port=port, timeout=5)
    await nursery.start(Deliveries(store, clock, services, relay_config).run)
    return store, clock


async def queue_mo(
    store: Store, clock: Clock, message_id: str, originator: str, content: str, command: str = ""
) -> int:
    """An MO of service 7 from `originator`, queued for its email as the inbound side does."""
    queued: int = await store.write(
        functools.partial(
            enqueue_mo,
            message_id=message_id,
            service_id=7,
            sno="1960",
            originator=originator,
            content=content,
            command=command,
            stripped_content=content.removeprefix(command).lstrip() if command else content,
            received_at=clock.now(),
            sc_timestamp=clock.now(),
        )
    )
    return queued


async def test_mo_email_is_sent_through_the_relay_and_retried_after_a_refusal(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    relay = Relay(busy=1)
    store, clock = await start_mail(
        nursery,
        tmp_path,
        relay,
        {
            "to": "inbox@customer.test",
            "from": "[originator]-[serviceid]@sms.test",
            "subject": "SMS from [Originator] to [sno]",
            "body": "User sent: [content] ([strippedcontent])",
            "retry_initial": 0.2,
        },
    )
    queued = await queue_mo(
        store, clock, "mo0000000007", "+4799999999", "KODE hei på deg", command="KODE"
    )
    assert queued == 1
    with trio.fail_after(10):
        await relay.received.wait()
    (sender, recipients, data) = relay.envelopes[0]
    assert (sender, recipients) == ("+4799999999-7@sms.test", ["inbox@customer.test"])
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["From"] == "+4799999999-7@sms.test"
    assert message["To"] == "inbox@customer.test"
    assert message["Subject"] == "SMS from +4799999999 to 1960"
    assert message["Message-ID"] == "<mo0000000007.mo@edgegw>"
    (item,) = await store.read(outbox_items)
    assert message["Date"].datetime.timestamp() == int(item.created_at)  # RFC 5322 3.6
    assert message.get_content() == "User sent: KODE hei på deg (hei på deg)\r\n"
    with trio.fail_after(10):
        while True:
            (item,) = await store.read(outbox_items)
            if item.state == "delivered":
                break
            await trio.sleep(0.05)
    assert (item.attempts, item.last_status, relay.connections) == (2, 250, 2)


async def test_line_breaks_an_sms_sender_chooses_stay_out_of_the_headers(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """An alphanumeric sender or a text with CR/LF (GSM 03.38 has both) in a header template:
    the email goes out with one header line each, and the MO after it goes out too."""
    relay = Relay()
    store, clock = await start_mail(
        nursery,
        tmp_path,
        relay,
        {
            "to": "inbox@customer.test",
            "from": "[originator]-[serviceid]@sms.test",
            "subject": "SMS from [originator]: [content]",
            "body": "[originator] sent: [content]",
            "retry_initial": 60.0,
        },
    )
    for number, originator, content in (
        (1, "Bank\nX", "hi\r\nBcc: victim@else.test"),
        (2, "+4799999999", "line\u2028paragraph\u2029next\x85line"),  # UCS-2 separators
        (3, "+4799999999", "after it"),
    ):
        await queue_mo(store, clock, f"mo000000000{number}", originator, content)
    with trio.fail_after(10):
        while len(relay.envelopes) < 3:
            await relay.received.wait()
            relay.received = trio.Event()
    first = email.message_from_bytes(relay.envelopes[0][2], policy=email.policy.default)
    assert first["Subject"] == "SMS from Bank X: hi Bcc: victim@else.test"
    assert first["From"] == "Bank_X-7@sms.test"
    assert "Bcc" not in first and "X-7@sms.test" not in relay.envelopes[0][1]
    assert isinstance(first, EmailMessage)
    # The body keeps them.
    assert first.get_content() == "Bank\r\nX sent: hi\r\nBcc: victim@else.test\r\n"
    second = email.message_from_bytes(relay.envelopes[1][2], policy=email.policy.default)
    assert second["Subject"] == "SMS from +4799999999: line paragraph next line"
    third = email.message_from_bytes(relay.envelopes[2][2], policy=email.policy.default)
    assert third["Subject"] == "SMS from +4799999999: after it"


async def test_an_sms_sender_cannot_choose_the_emails_sender_address(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """An alphanumeric sender named like an address (GSM 03.38 has < > @, 11 characters fit
    "<ceo@c.no>") in the `from` template: the email's From and envelope sender stay ours."""
    relay = Relay()
    store, clock = await start_mail(
        nursery,
        tmp_path,
        relay,
        {
            "to": "inbox@customer.test",
            "from": "[originator]-[serviceid]@sms.test",
            "subject": "SMS from [originator]",
            "body": "[content]",
        },
    )
    await queue_mo(store, clock, "mo0000000001", "<ceo@c.no>", "Please pay invoice 42")
    with trio.fail_after(10):
        await relay.received.wait()
    (sender, _, data) = relay.envelopes[0]
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert sender == "_ceo_c.no_-7@sms.test"
    assert message["From"] == "_ceo_c.no_-7@sms.test"
    assert message["Subject"] == "SMS from <ceo@c.no>"


async def test_a_norwegian_or_emoji_mo_travels_in_7_bit_to_a_relay_without_8bitmime(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """RFC 6152 section 3: 8-bit octets go only to a relay that offers 8BITMIME and with
    BODY=8BITMIME; a body of "på" and an emoji reaches a plain relay encoded, read back whole."""
    relay = Relay(extensions=())
    store, clock = await start_mail(
        nursery,
        tmp_path,
        relay,
        {"to": "inbox@customer.test", "subject": "SMS: [content]", "body": "[content]"},
    )
    await queue_mo(store, clock, "mo0000000001", "+4799999999", "Hei på deg \U0001f600")
    with trio.fail_after(10):
        await relay.received.wait()
    (_, _, data) = relay.envelopes[0]
    assert data.isascii()
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "SMS: Hei på deg \U0001f600"
    assert message.get_content() == "Hei på deg \U0001f600\r\n"
    assert message["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
