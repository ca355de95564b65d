"""The gateway as its own process, for the crash tests: the start of their config (store
crash.db, HTTP on `{port}`, service 1000 as demo/demo), a free port to configure it with and
`edgegw serve` started on a config file (output discarded)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

CONFIG_HEAD = """
[gateway]
store = "crash.db"
log_level = "warning"

[http]
port = {port}

[[services]]
id = 1000
name = "crash"
username = "demo"
password = "demo"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_gateway(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgegw", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
