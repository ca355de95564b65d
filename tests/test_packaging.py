"""The appliance packaging (issue 9, item 4): the .deb built by build/deb.sh and checked by
build/check-deb.sh (control file, contents, systemd-analyze verify, dpkg --root install, the
installed binary's check-config), the systemd notify protocol of `edgegw serve`, and the
udev rules for the configured modems. The package here wraps the development `edgegw`; `make
smoke` builds and checks the one around the PyInstaller executable."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.tools import require_tool

from drivers.at import AtOptions
from edgegw.config import ModemConfig
from edgegw.systemd import watchdog_interval
from edgegw.udev import udev_rules

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def packaging_tools() -> None:
    require_tool("dpkg-deb", "dpkg")
    require_tool("systemd-analyze", "systemd")


def stand_in_executable(folder: Path) -> Path:
    """An executable `edgegw` that runs this checkout's, as the PyInstaller one would."""
    path = folder / "edgegw"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m edgegw "$@"\n')
    path.chmod(0o755)
    return path


def test_the_deb_builds_installs_and_checks(tmp_path: Path, packaging_tools: None) -> None:
    exe = stand_in_executable(tmp_path)
    built = subprocess.run(
        [str(ROOT / "build" / "deb.sh"), str(exe), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    (deb,) = (tmp_path / "out").glob("edgegw_*.deb")
    assert f"built {deb}" in built.stdout
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    assert deb.name == f"edgegw_0.1.0_{arch.stdout.strip()}.deb"
    checked = subprocess.run(
        [str(ROOT / "build" / "check-deb.sh"), str(deb)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "edgegw.toml: ok" in checked.stdout


def test_check_deb_refuses_a_unit_systemd_would_ignore_a_key_of(
    tmp_path: Path, packaging_tools: None
) -> None:
    exe = stand_in_executable(tmp_path)
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", "out", ".*cache", ".git"))
    unit = tree / "build" / "deb" / "edgegw.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    subprocess.run([str(tree / "build" / "deb.sh"), str(exe), str(tmp_path / "out")], check=True)
    (deb,) = (tmp_path / "out").glob("edgegw_*.deb")
    checked = subprocess.run(
        [str(ROOT / "build" / "check-deb.sh"), str(deb)], capture_output=True, text=True
    )
    assert checked.returncode == 1
    assert "Unknown key 'NoNewPrivilege'" in checked.stderr


def config_on_free_ports(folder: Path) -> Path:
    """The example config with every door on a port the system picks."""
    text = (ROOT / "config.example.toml").read_text()
    config = folder / "config.toml"
    config.write_text(
        text.replace("port = 8080", "port = 0")
        .replace("port = 2775", "port = 0")
        .replace("port = 2525", "port = 0")
    )
    return config


def test_serve_tells_systemd_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    config = config_on_free_ports(tmp_path)
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        environ = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"}
        process = subprocess.Popen(
            [sys.executable, "-m", "edgegw", "serve", "--config", str(config)], env=environ
        )
        try:
            # The watchdog is fed from the loop's start, READY=1 comes once it serves: a slow
            # start-up sends a few WATCHDOG=1 first.
            received: list[bytes] = []
            while b"READY=1" not in received or received.count(b"WATCHDOG=1") < 3:
                received.append(sock.recv(256))
            process.send_signal(signal.SIGTERM)
            while (message := sock.recv(256)) == b"WATCHDOG=1":
                pass
            assert message == b"STOPPING=1"
            assert process.wait(timeout=15) == 0
        finally:
            process.kill()
            process.wait()


def one_file_stand_in(folder: Path) -> Path:
    """An executable `edgegw` that runs this checkout's as the PyInstaller one-file executable
    does: its bootloader stays the main process, runs the gateway as its child, passes
    SIGTERM and SIGINT on and exits with the child's status."""
    path = folder / "edgegw"
    path.write_text(
        f"#!{sys.executable}\n"
        "import signal, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-m', 'edgegw', *sys.argv[1:]])\n"
        "for signum in (signal.SIGTERM, signal.SIGINT):\n"
        "    signal.signal(signum, lambda signum, frame: child.send_signal(signum))\n"
        "sys.exit(child.wait())\n"
    )
    path.chmod(0o755)
    return path


def unit_setting(key: str) -> str:
    (value,) = [
        line.partition("=")[2]
        for line in (ROOT / "build" / "deb" / "edgegw.service").read_text().splitlines()
        if line.startswith(f"{key}=")
    ]
    return value


def test_the_unit_starts_after_the_clock_is_synchronised_without_waiting_for_it() -> None:
    """The gateway keeps the time it starts with (README, Design rules: one clock); where the
    box waits for NTP (systemd-time-wait-sync), it starts on the synchronised clock."""
    assert "time-sync.target" in unit_setting("After").split()
    assert "time-sync.target" not in unit_setting("Wants").split()


def test_the_unit_takes_ready_and_the_watchdog_from_the_one_file_executable(
    tmp_path: Path,
) -> None:
    """systemd drops a notification from a process its unit's NotifyAccess does not allow,
    and sets WATCHDOG_PID to the main process: the bootloader, not the gateway."""
    config = config_on_free_ports(tmp_path)
    exe = one_file_stand_in(tmp_path)
    notify_access = unit_setting("NotifyAccess")
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(1)
        environ = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"}
        # As systemd starts it: WATCHDOG_PID is the main process's own pid.
        process = subprocess.Popen(
            ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", exe, "serve", "--config", config],
            env=environ,
            start_new_session=True,
        )
        try:
            accepted: list[bytes] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                b"READY=1" not in accepted or accepted.count(b"WATCHDOG=1") < 3
            ):
                with contextlib.suppress(TimeoutError):
                    message, ancillary, _, _ = sock.recvmsg(256, socket.CMSG_SPACE(12))
                    ((_, _, credentials),) = ancillary
                    sender = struct.unpack("3i", credentials)[0]
                    if notify_access == "all" or sender == process.pid:
                        accepted.append(message)
            assert b"READY=1" in accepted
            assert accepted.count(b"WATCHDOG=1") >= 3
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):  # the gateway too, if still there
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    main = str(os.getppid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": main}) == 15.0
    another = str(max(os.getpid(), os.getppid()) + 1)
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": another}) is None
    assert watchdog_interval({}) is None


def test_udev_rules_keep_modemmanager_off_the_configured_modems() -> None:
    def at(name: str, port: str) -> ModemConfig:
        return ModemConfig(name=name, driver="at", at=AtOptions(port=port))

    rules = udev_rules(
        [
            at("usb0", "/dev/serial/by-id/usb-Quectel_EC25_0123-if02-port0"),
            at("usb1", "/dev/ttyACM3"),
            at("net", "socket://10.0.0.5:4001"),
            ModemConfig(name="sim0", driver="simulated"),
        ]
    ).splitlines()
    ignore = 'ENV{ID_MM_DEVICE_IGNORE}="1", ENV{ID_MM_PORT_IGNORE}="1"'
    assert rules[2:] == [
        'SUBSYSTEM=="tty", ENV{ID_SERIAL}=="Quectel_EC25_0123", ENV{ID_USB_INTERFACE_NUM}=="02", '
        f'{ignore}, SYMLINK+="edgegw/usb0"',
        f'SUBSYSTEM=="tty", KERNEL=="ttyACM3", {ignore}, SYMLINK+="edgegw/usb1"',
        "# net: port socket://10.0.0.5:4001 names no device; give a /dev/serial/by-id/ path to "
        "get a rule",
    ]
