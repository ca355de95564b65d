"""Crash safety of the SMTP door (spec 2.6): `kill -9` the gateway process while mail clients
send; every mail answered 250 must have its message in the store, under the ids the 250 named.
"""

from __future__ import annotations

import signal
import smtplib
import threading
from pathlib import Path

import pytest
import trio
from support.db import read_only
from support.process import CONFIG_HEAD, start_gateway

ENOUGH = 200  # acknowledged mails before the kill

CONFIG = (
    CONFIG_HEAD
    + """
[services.smtp]
allow = ["127.0.0.1"]

[[modems]]
name = "m0"
driver = "simulated"

[smtp]
port = {smtp_port}
domain = "sms.crash"
"""
)


class Mailers:
    """Clients sending one-recipient mails until the gateway dies; keep the acknowledged ids."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acknowledged: dict[str, str] = {}  # message id -> recipient
        self.enough = trio.Event()
        self._lock = threading.Lock()

    def run(self, client: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
                smtp.ehlo("crash.test")
                for n in range(10_000):
                    recipient = f"+47{41000000 + client * 100_000 + n}"
                    smtp.mail("panel@alarm.test")
                    smtp.rcpt(f"{recipient}-1000@sms.crash")
                    code, reply = smtp.data(b"\r\nzone open\r\n")
                    assert code == 250, reply
                    (message_id,) = reply.decode().removeprefix("2.0.0 queued as ").split()
                    with self._lock:
                        self.acknowledged[message_id] = recipient
                        count = len(self.acknowledged)
                    if count == ENOUGH:
                        trio.from_thread.run_sync(self.enough.set)
        except (OSError, smtplib.SMTPException):
            return  # the gateway was killed


@pytest.mark.slow
async def test_kill_9_loses_no_acknowledged_mail(tmp_path: Path) -> None:

    def write_config(ports: dict[str, int]) -> Path:
        config = tmp_path / "crash.toml"
        config.write_text(CONFIG.format(port=ports["http"], smtp_port=ports["smtp"]))
        return config

    gateway = await trio.to_thread.run_sync(start_gateway, write_config, ("http", "smtp"))
    try:
        mailers = Mailers(gateway.ports["smtp"])
        async with trio.open_nursery() as nursery:
            for client in range(4):
                nursery.start_soon(trio.to_thread.run_sync, mailers.run, client)
            with trio.fail_after(30):
                await mailers.enough.wait()
            gateway.process.send_signal(signal.SIGKILL)
    finally:
        await trio.to_thread.run_sync(gateway.stop)
    with read_only(tmp_path / "crash.db") as db:
        stored = dict(db.execute("SELECT id, recipient FROM messages").fetchall())
    missing = {i: r for i, r in mailers.acknowledged.items() if stored.get(i) != r}
    assert len(mailers.acknowledged) >= ENOUGH
    assert missing == {}, "acknowledged with 250 but not in the store"
