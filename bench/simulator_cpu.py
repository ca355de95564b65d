"""Benchmark: the simulated modem's own CPU per send, without a gateway.

Starts `simulators.py` (`--modems` simulated modems in a process of their own, each answering
+CMGS after `--send-delay` seconds, status reports requested and due after `--report-delay`)
and drives every modem over its pseudo-terminal with a minimal AT client in this process, as the
gateway's AT driver does: ATE0 once, then per SMS `AT+CMGS=<length>`, the `> ` prompt, the PDU
and Ctrl-Z, and the `+CMGS: <mr>` with its OK before the next. Prints the simulators' process
CPU (its /proc utime + stime) per send, total and net of its idle CPU measured first, and the
send rate as a fraction of modems / send delay.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import time
import tty
from pathlib import Path

from gateway_process import cpu_seconds

from drivers.gsm import build_submit, encode_message

ROOT = Path(__file__).resolve().parent.parent

TEXT = "Benchmark message from the simulated modem path"


def submit_pdu(recipient: str) -> tuple[int, bytes]:
    """The TPDU length and the hex the gateway would type after the prompt (empty SMSC)."""
    (part,) = encode_message(TEXT).parts
    tpdu = build_submit(recipient, part, status_report=True, validity_minutes=1440)
    return len(tpdu), b"00" + tpdu.hex().upper().encode() + b"\x1a"


class Client:
    """One terminal: what it waits for from the modem, and how many sends are left."""

    def __init__(self, path: str, recipient: str, sends: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        length, self.pdu = submit_pdu(recipient)
        self.command = f"AT+CMGS={length}\r".encode()
        self.left = sends
        self.buffer = b""
        self.waiting_for = b"OK\r\n"
        self.sending = False
        os.write(self.fd, b"ATE0\r")

    @property
    def done(self) -> bool:
        return self.left == 0 and not self.sending and self.waiting_for == b""

    def readable(self) -> int:
        """Read what the modem wrote and type what follows; 1 when that completed a send."""
        self.buffer += os.read(self.fd, 4096)
        if self.waiting_for not in self.buffer:
            return 0
        self.buffer = b""
        if self.waiting_for == b"> ":
            os.write(self.fd, self.pdu)
            self.waiting_for = b"OK\r\n"
            return 0
        completed = 1 if self.sending else 0
        self.sending = False
        if self.left == 0:
            self.waiting_for = b""
            return completed
        self.left -= 1
        self.sending = True
        os.write(self.fd, self.command)
        self.waiting_for = b"> "
        return completed


def drive(paths: list[str], sends: int) -> tuple[int, float]:
    """Run every client to its last send; the sends completed and the seconds they took."""
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    for index, path in enumerate(paths):
        client = Client(path, f"+4790{index:06d}", sends)
        selector.register(client.fd, selectors.EVENT_READ, client)
    completed = 0
    while selector.get_map():
        for key, _mask in selector.select():
            client = key.data
            completed += client.readable()
            if client.done:
                selector.unregister(client.fd)
                os.close(client.fd)
    return completed, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modems", type=int, default=32)
    parser.add_argument("--sends", type=int, default=60, help="SMS each modem sends")
    parser.add_argument("--send-delay", type=float, default=0.1, help="+CMGS answer delay, s")
    parser.add_argument("--report-delay", type=float, default=86400.0, help="s to each report")
    parser.add_argument("--idle", type=float, default=3.0, help="s of idle CPU measured first")
    args = parser.parse_args()
    command = [
        sys.executable,
        str(ROOT / "bench" / "simulators.py"),
        f"--modems={args.modems}",
        f"--send-delay={args.send_delay}",
        f"--report-delay={args.report_delay}",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as simulators:
        try:
            assert simulators.stdout is not None
            paths = json.loads(simulators.stdout.readline())
            before = cpu_seconds(simulators.pid)
            time.sleep(args.idle)
            idle = (cpu_seconds(simulators.pid) - before) / args.idle if args.idle > 0 else 0.0
            before = cpu_seconds(simulators.pid)
            mine = time.process_time()
            completed, seconds = drive(paths, args.sends)
            used = cpu_seconds(simulators.pid) - before
            client = time.process_time() - mine
        finally:
            simulators.terminate()
    net = used - idle * seconds
    capacity = args.modems / args.send_delay
    print(f"{completed} sends over {args.modems} modems in {seconds:.2f} s")
    print(f"rate: {completed / seconds:.1f}/s, {completed / seconds / capacity:.4f} of capacity")
    print(f"simulators' idle CPU: {idle * 1000:.2f} ms/s")
    print(
        f"simulators' process CPU: {used / completed * 1000:.3f} ms per send, "
        f"{net / completed * 1000:.3f} ms net of idle"
    )
    print(f"client CPU: {client / completed * 1000:.3f} ms per send")


if __name__ == "__main__":
    main()
