"""Soak probe: whether the gateway's memory, file descriptors and threads stay flat under churn.

Starts `edgegw serve` as its own process (a scratch store, a simulated modem whose port vanishes
and comes back under a new path every 45 s) and, for `--seconds`, drives every door from many
loopback source addresses (127.x.y.z, one per connection): sends over keep-alive connections
dropped (half of them with a reset) and idle ones left to time out, sends with wrong
passwords and a new username each (`--guessers` threads of them), SMPP binds with a submit
and an unbind, wrong binds, bound sessions abandoned with a reset and connections never bound,
SMTP sessions (allowed, refused at RCPT, failed AUTH), and MO (`/status/simulate-mo`) whose
callbacks a local endpoint answers 500 half the time. Prints the process's RSS, open fds and
threads every `--every` seconds, and the RSS growth of each half of the run: a table that
grows with traffic, clients or time shows as a second half that grows as fast as the first.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import http.server
import itertools
import json
import os
import random
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from gateway_process import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[gateway]
store = "soak.db"
log_level = "warning"

[http]
host = "127.0.0.1"
port = {http_port}

[http.limits]
keep_alive_timeout = 5.0

[[services]]
id = 1000
name = "soak"
username = "soak"
password = "soak"
delivery_reports = true

[services.mo]
url = "http://127.0.0.1:{callback_port}/mo?id=[messageid]&text=[content]"
method = "GET"
retry_initial = 2.0
retry_max = 10.0
give_up_after = 60.0

[services.dr]
url = "http://127.0.0.1:{callback_port}/dr"
method = "POST"
retry_initial = 2.0
retry_max = 10.0
give_up_after = 60.0

[services.smtp]
allow = ["127.0.0.1"]

[[modems]]
name = "sim0"
driver = "simulated"
service = 1000

[modems.simulator]
report_delay = 2.0
vanish_after = 45.0
vanish_for = 3.0

[smpp]
host = "127.0.0.1"
port = {smpp_port}
bind_timeout = 10.0

[[smpp.accounts]]
system_id = "soak"
password = "soak"
service = 1000

[smtp]
host = "127.0.0.1"
port = {smtp_port}
domain = "sms.soak"
"""

CLIENTS = 1 << 20  # source addresses a run may use: 127.1.0.1 onwards


def source(number: int) -> str:
    """A loopback source address of its own for each `number` below CLIENTS."""
    number %= CLIENTS
    return f"127.{1 + (number >> 16)}.{(number >> 8) & 255}.{1 + (number & 255) % 254}"


def recipient() -> str:
    return f"+4741{random.randrange(10**6):06d}"


class Driver:
    """The load's threads, their outcome counts, and the flag that stops them."""

    def __init__(self, http_port: int, smpp_port: int, smtp_port: int) -> None:
        self.http_port, self.smpp_port, self.smtp_port = http_port, smpp_port, smtp_port
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._addresses = itertools.count()

    def count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def number(self) -> int:
        with self._lock:
            return next(self._addresses)

    def address(self) -> str:
        return source(self.number())

    def loop(self, step: Callable[[], None], pause: float) -> None:
        while not self.stop.is_set():
            try:
                step()
            except (OSError, smtplib.SMTPException, http.client.HTTPException) as exc:
                self.count(f"error {type(exc).__name__}")
            time.sleep(pause)

    def _send(self, conn: http.client.HTTPConnection, password: str, username: str) -> int:
        body = {
            "serviceId": 1000,
            "username": username,
            "password": password,
            "message": [{"recipient": recipient(), "content": "soak"}],
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        conn.request("POST", "/gw/rs/sendMessages", json.dumps(body), headers)
        response = conn.getresponse()
        response.read()
        return response.status

    def keep_alive(self) -> None:
        """Three sends on one connection, then dropped (every other one with a reset), and an
        idle connection left for the keep-alive timer."""
        address = self.address()
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.http_port, timeout=30, source_address=(address, 0)
        )
        for _ in range(3):
            self.count(f"send {self._send(conn, 'soak', 'soak')}")
        if conn.sock is not None and random.random() < 0.5:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        idle = socket.create_connection(("127.0.0.1", self.http_port), source_address=(address, 0))
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: soak\r\n\r\n")
        threading.Timer(10.0, idle.close).start()

    def guess(self) -> None:
        """A wrong password for a username never seen before, from an address never seen."""
        address = self.address()
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.http_port, timeout=30, source_address=(address, 0)
        )
        try:
            self._send(conn, "wrong", f"guess-{address}")
            self.count("wrong password")
        finally:
            conn.close()

    def smpp(self) -> None:
        """In turn: bind, submit, unbind; a wrong bind; a bind abandoned with a reset; a
        connection never bound, closed by the bind timer."""
        with self._lock:
            kind = self.counts["smpp"] % 4
            self.counts["smpp"] += 1
        sock = socket.create_connection(
            ("127.0.0.1", self.smpp_port), timeout=20, source_address=(self.address(), 0)
        )
        if kind == 3:
            threading.Timer(15.0, sock.close).start()
            return
        try:
            password = "wrong" if kind == 1 else "soak"
            sock.sendall(_pdu(0x09, 1, _bind(password)))  # bind_transceiver
            status = _read_pdu(sock, 0x80000009)
            self.count(f"smpp bind {status}")
            if kind == 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif kind == 0:
                sock.sendall(_pdu(0x04, 2, _submit(recipient())))
                self.count(f"smpp submit {_read_pdu(sock, 0x80000004)}")
                sock.sendall(_pdu(0x06, 3))  # unbind
                _read_pdu(sock, 0x80000006)
        finally:
            sock.close()

    def smtp(self) -> None:
        """From 127.0.0.1 a mail is taken; from another address it is refused at RCPT, or its
        AUTH fails."""
        number = self.number()
        address = "127.0.0.1" if number % 3 == 0 else source(number)
        with smtplib.SMTP(
            "127.0.0.1", self.smtp_port, timeout=20, source_address=(address, 0)
        ) as client:
            if number % 3 == 1:
                try:
                    client.login("soak", "wrong")
                except smtplib.SMTPAuthenticationError:
                    self.count("smtp auth refused")
                return
            try:
                client.sendmail("panel@soak", [f"{recipient()}-1000@sms.soak"], "\r\nsoak\r\n")
                self.count("smtp sent")
            except smtplib.SMTPRecipientsRefused:
                self.count("smtp refused")

    def mo(self) -> None:
        token = base64.b64encode(b"soak:soak").decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            fields = {"from": f"+4799{random.randrange(10**6):06d}", "text": "soak mo"}
            headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
            conn.request("POST", "/status/simulate-mo", json.dumps(fields), headers)
            self.count(f"mo {conn.getresponse().status}")
        finally:
            conn.close()


def _pdu(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body


def _bind(password: str) -> bytes:
    # system_id, password, system_type, interface_version 3.4, addr_ton, addr_npi, address_range
    return b"soak\0" + password.encode() + b"\0\0\x34\0\0\0"


def _submit(to: str) -> bytes:
    # service_type, source (alphanumeric), destination (international), esm_class,
    # protocol_id, priority_flag, schedule and validity (none), registered_delivery 1,
    # replace_if_present, data_coding, sm_default_msg_id, sm_length, short_message
    text = b"soak smpp"
    return (
        b"\0\x05\0EdgeGW\0\x01\x01"
        + to.encode()
        + b"\0\0\0\0\0\0\x01\0\0\0"
        + bytes([len(text)])
        + text
    )


def _read_pdu(sock: socket.socket, command_id: int) -> int:
    """The command_status of the next PDU of `command_id`; others (enquire_link, deliver_sm)
    are skipped."""
    while True:
        head = _read_exactly(sock, 16)
        length, got, status, _sequence = struct.unpack(">IIII", head)
        _read_exactly(sock, length - 16)
        if got == command_id:
            return int(status)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the gateway closed the connection")
        data += chunk
    return data


class Callbacks(http.server.BaseHTTPRequestHandler):
    """The customer's endpoint: HTTP 200 to half the callbacks, 500 to the others."""

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200 if random.random() < 0.5 else 500)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def figures(pid: int) -> tuple[float, int, int]:
    """The process's resident memory (MB), open file descriptors and threads."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return int(status["VmRSS"].split()[0]) / 1024, fds, int(status["Threads"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--every", type=float, default=20.0)
    parser.add_argument("--guessers", type=int, default=2)
    args = parser.parse_args()

    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callbacks)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    ports = {name: free_port() for name in ("http_port", "smpp_port", "smtp_port")}
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "soak.toml"
        config.write_text(CONFIG.format(callback_port=endpoint.server_address[1], **ports))
        log = Path(scratch) / "gateway.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "edgegw", "serve", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        driver = Driver(ports["http_port"], ports["smpp_port"], ports["smtp_port"])
        try:
            wait_ready(ports["http_port"], process)
            steps = [(driver.keep_alive, 0.05), (driver.smpp, 0.1), (driver.smtp, 0.2)]
            steps += [(driver.mo, 0.5)] + [(driver.guess, 0.02)] * args.guessers
            for step, pause in steps:
                threading.Thread(target=driver.loop, args=(step, pause), daemon=True).start()
            started = time.monotonic()
            samples = [(0.0, *figures(process.pid))]
            print("     s   RSS MB  fds  threads")
            print(f"{0:6.0f} {samples[0][1]:8.1f} {samples[0][2]:4d} {samples[0][3]:8d}")
            while (elapsed := time.monotonic() - started) < args.seconds:
                time.sleep(min(args.every, args.seconds - elapsed))
                at = time.monotonic() - started
                samples.append((at, *figures(process.pid)))
                rss, fds, threads = samples[-1][1:]
                print(f"{at:6.0f} {rss:8.1f} {fds:4d} {threads:8d}", flush=True)
            driver.stop.set()
            time.sleep(15)  # sessions, keep-alives and idle connections time out
            rss, fds, threads = figures(process.pid)
            print(f" quiet {rss:8.1f} {fds:4d} {threads:8d}")
        finally:
            process.terminate()
            process.wait(timeout=30)
            endpoint.shutdown()
        logged = log.stat().st_size / 1024
    middle = samples[len(samples) // 2]
    first, last = middle[1] - samples[0][1], samples[-1][1] - middle[1]
    print(", ".join(f"{name}: {count}" for name, count in sorted(driver.counts.items())))
    print(
        f"RSS grew {first:.1f} MB in the first {middle[0]:.0f} s and {last:.1f} MB in the"
        f" {samples[-1][0] - middle[0]:.0f} s after; fds {samples[0][2]} at start, {fds} once"
        f" quiet; threads {samples[0][3]} at start, {threads} once quiet; {logged:.0f} KiB logged"
    )


if __name__ == "__main__":
    main()
