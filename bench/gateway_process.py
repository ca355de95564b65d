"""What the benchmarks share: the gateway's config, a free port, starting a process and waiting
for it to be ready, reading its CPU time (and its event loop's), the load average, medians and
percentiles. Imported by the bench scripts, which run from this folder."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# The bench's gateway (format with `port` and `log_level`): HTTP on 127.0.0.1, the service the
# benches send with, and one simulated modem kept nearly idle, since a modem sends a few SMS a
# minute; a bench adds its own tables after it.
BASE_CONFIG = """
[gateway]
store = "bench.db"
log_level = "{log_level}"

[http]
host = "127.0.0.1"
port = {port}

[[services]]
id = 1000
name = "bench"
username = "bench"
password = "bench"

[[modems]]
name = "sim0"
driver = "simulated"

[modems.simulator]
send_delay = 30.0
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll the gateway's /health until it answers; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the gateway did not become ready in {timeout:g} s")


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until something accepts TCP connections on the port; fail if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the process exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout:g} s")


def start(args: list[str], root: Path) -> subprocess.Popen[bytes]:
    """A Python process from the repository root, with it on the import path."""
    return subprocess.Popen(
        [sys.executable, *args], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process's main thread alone (the gateway's event loop);
    the rest of `cpu_seconds` is its worker threads (the store's writer and readers)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds() -> tuple[float, float]:
    """The whole machine's CPU time so far, all CPUs: (busy, stolen). Busy is user, nice,
    system, irq and softirq; stolen is the time a virtual machine's CPUs wanted to run and the
    hypervisor ran something else (0 on real hardware)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes, as uptime prints it."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def read_store(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a store file the benchmark made, closed when done."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def check_stored(path: Path, accepted: int) -> None:
    """Print how many messages the store holds against how many were accepted; exit non-zero
    when they differ (an acknowledged message must be on disk)."""
    with read_store(path) as db:
        (stored,) = db.execute("SELECT count(*) FROM messages").fetchone()
    print(f"durability: {stored} messages in the store, {accepted} accepted")
    if stored != accepted:
        raise SystemExit("the store does not hold every accepted message")
