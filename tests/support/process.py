"""The gateway as its own process: the start of the crash tests' config (store crash.db, HTTP
on `{port}`, service 1000 as demo/demo) and `edgegw serve` started on free ports. A port picked
free may be taken by any socket before the gateway binds it; the gateway then exits naming it,
and is started again on new ones."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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

SERVE = (sys.executable, "-m", "edgegw", "serve", "--config")
TRIES = 5  # starts on new ports before a taken port counts as the test's failure
START_TIMEOUT = 60.0  # seconds from a start to READY=1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class GatewayProcess:
    """A started gateway: its process, its config file, the port of each door, and the lines
    of its stderr (read until it exits)."""

    process: subprocess.Popen[bytes]
    config: Path
    ports: dict[str, int]
    log: list[str] = field(default_factory=list)
    _reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def port(self) -> int:
        """The HTTP door's port."""
        return self.ports["http"]

    def output(self) -> str:
        return "".join(self.log)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.decode(errors="replace"))

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, once its stderr is all read."""
        status = self.process.wait(timeout)
        self._reader.join()
        return status

    def stop(self) -> None:
        """SIGTERM it if it still runs, wait for it to exit (SIGKILL after 30 s, and fail) and
        close its stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.wait()
            raise
        finally:
            assert self.process.stderr is not None
            self.process.stderr.close()


def start_gateway(
    write_config: Callable[[dict[str, int]], Path],
    doors: Sequence[str] = ("http",),
    *,
    command: Sequence[str] = SERVE,
    env: Mapping[str, str] | None = None,
) -> GatewayProcess:
    """`command` with the path `write_config` wrote for a free port for each of `doors`, once
    it serves (its sd_notify READY=1). A start that exits 1 because one of them was taken
    meanwhile is retried on new ports; any other exit before READY=1 fails the test. `env` is
    its whole environment (by default ours), NOTIFY_SOCKET aside."""
    for _ in range(TRIES):
        ports = {door: _free_port() for door in doors}
        gateway = _start_ready(command, write_config(ports), ports, env)
        if gateway is not None:
            return gateway
    raise AssertionError(f"{TRIES} starts each found a port taken")


def _start_ready(
    command: Sequence[str], config: Path, ports: dict[str, int], env: Mapping[str, str] | None
) -> GatewayProcess | None:
    """The started gateway once ready; None when it exited because a port was taken."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ready:
        ready.bind("")  # an abstract address the kernel picks, as systemd's own may be
        ready.settimeout(0.05)
        notify = "@" + ready.getsockname()[1:].decode()
        process = subprocess.Popen(
            [*command, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**(os.environ if env is None else env), "NOTIFY_SOCKET": notify},
        )
        gateway = GatewayProcess(process, config, ports)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if ready.recv(64) == b"READY=1":
                    return gateway
            except TimeoutError:
                pass
            if process.poll() is not None:
                status = gateway.wait()
                gateway.stop()
                if status == 1 and "Address already in use" in gateway.output():
                    return None
                raise AssertionError(f"the gateway exited {status}:\n{gateway.output()}")
        gateway.stop()
        raise AssertionError(f"the gateway did not start in {START_TIMEOUT:g} s")
