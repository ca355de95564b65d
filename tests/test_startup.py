"""Start-up as an operator meets it (issue 9, items 1 and 2): one instance per store, a modem
port another program holds, and failures that print one line with the fix and exit 1."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio
from support.gateway import example_config
from support.process import start_gateway
from support.store import damage_table

from drivers.at import AtOptions
from drivers.events import ModemState
from edgegw.config import ModemConfig
from edgegw.gateway import Gateway
from edgegw.startup import StartupError, instance_lock, lock_path
from edgegw.store import SCHEMA_VERSION, connect, migrate

ROOT = Path(__file__).resolve().parent.parent
EDGEGW = [sys.executable, "-m", "edgegw"]


def write_config(tmp_path: Path, http_port: int, extra: str = "") -> Path:
    """config.example.toml on `http_port`, without its SMPP door unless `extra` adds one, and
    its SMTP door on any free port."""
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("port = 8080", f"port = {http_port}")
    smtp = text[text.index("\n[smtp]\n") :].replace("port = 2525", "port = 0")
    text = text[: text.index("\n[smpp]\n") + 1] + extra + smtp
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def serve(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGEGW, "serve", "--config", str(config), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )


def failure_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the failed start printed besides its log lines; never a traceback."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("edgegw: ")]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_the_instance_lock_admits_one_holder_and_names_it(tmp_path: Path) -> None:
    store = tmp_path / "data" / "edgegw.db"
    with instance_lock(store) as path:
        assert path == lock_path(store) == tmp_path / "data" / "edgegw.db.lock"
        assert path.read_text() == f"{os.getpid()}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        with pytest.raises(StartupError) as caught, instance_lock(store):
            pass
        assert str(path) in str(caught.value)
        assert f"pid {os.getpid()}" in str(caught.value)
    with instance_lock(store):  # released with its holder
        pass


def test_a_second_instance_exits_1_naming_the_lock_and_changes_nothing(
    tmp_path: Path, busy_port: int
) -> None:
    config = write_config(tmp_path, 0)
    store = tmp_path / "data" / "edgegw.db"
    # This process plays the running instance.
    with instance_lock(store) as path:
        result = serve(config)
    assert result.returncode == 1
    assert failure_lines(result) == [
        f"edgegw: {path} is held by a running edgegw (pid {os.getpid()}); stop it first, "
        "or give this instance its own [gateway] store"
    ]
    assert sorted(p.name for p in store.parent.iterdir()) == ["edgegw.db.lock"]


def test_a_busy_http_port_is_one_line_and_exit_1(tmp_path: Path, busy_port: int) -> None:
    result = serve(write_config(tmp_path, busy_port))
    assert result.returncode == 1
    assert failure_lines(result) == [
        f"edgegw: HTTP cannot listen on 127.0.0.1:{busy_port}: Address already in use; "
        "stop the program using it or change [http] port"
    ]
    # The next start on a free port finds the store it left behind perfectly usable.
    assert (tmp_path / "data" / "edgegw.db").is_file()


def test_debug_shows_the_traceback(tmp_path: Path, busy_port: int) -> None:
    result = serve(write_config(tmp_path, busy_port), "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "Address already in use" in result.stderr


def test_in_the_journal_the_failure_is_an_error(tmp_path: Path, busy_port: int) -> None:
    """`journalctl -p err -u edgegw` shows why the service did not start."""
    journal = tmp_path / "journal"
    with journal.open("w") as stream:
        opened = os.fstat(stream.fileno())
        process = subprocess.run(
            [*EDGEGW, "serve", "--config", str(write_config(tmp_path, busy_port))],
            stderr=stream,
            env={**os.environ, "JOURNAL_STREAM": f"{opened.st_dev}:{opened.st_ino}"},
            timeout=60,
        )
    assert process.returncode == 1
    errors = [line for line in journal.read_text().splitlines() if line.startswith("<3>")]
    assert errors == [
        f"<3>edgegw: HTTP cannot listen on 127.0.0.1:{busy_port}: Address already in use; "
        "stop the program using it or change [http] port"
    ]


def test_in_the_journal_a_traceback_is_an_error(tmp_path: Path, busy_port: int) -> None:
    """With --debug the failure comes as the interpreter's traceback, as does a crash: every
    line of it at priority err, not at info where `journalctl -p err` never shows it."""
    journal = tmp_path / "journal"
    with journal.open("w") as stream:
        opened = os.fstat(stream.fileno())
        process = subprocess.run(
            [*EDGEGW, "serve", "--debug", "--config", str(write_config(tmp_path, busy_port))],
            stderr=stream,
            env={**os.environ, "JOURNAL_STREAM": f"{opened.st_dev}:{opened.st_ino}"},
            timeout=60,
        )
    assert process.returncode == 1
    lines = journal.read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if "Traceback (most recent call last)" in line)
    assert all(line.startswith("<3>") for line in lines[start:]), lines[start:]
    assert any("Address already in use" in line for line in lines[start:])


def test_in_the_journal_a_config_s_problems_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[http]\nport = "x"\n')
    journal = tmp_path / "journal"
    with journal.open("w") as stream:
        opened = os.fstat(stream.fileno())
        process = subprocess.run(
            [*EDGEGW, "serve", "--config", str(config)],
            stderr=stream,
            env={**os.environ, "JOURNAL_STREAM": f"{opened.st_dev}:{opened.st_ino}"},
            timeout=60,
        )
    assert process.returncode == 2
    lines = journal.read_text().splitlines()
    assert lines[0] == f"<3>{config}: {len(lines) - 1} problem(s)"
    assert any(line.startswith("<3>  http.port: ") for line in lines[1:]), lines
    assert all(line.startswith("<3>") for line in lines)


def test_a_bad_smpp_certificate_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    smpp = (
        '[smpp]\nport = 0\ntls_cert_file = "{0}"\ntls_key_file = "{0}"\n'
        '[[smpp.accounts]]\nsystem_id = "demo"\npassword = "demo"\nservice = 1000\n'
    ).format(tmp_path / "cert.pem")
    result = serve(write_config(tmp_path, 0, smpp))
    assert result.returncode == 1
    (line,) = failure_lines(result)
    assert line.startswith("edgegw: SMPP TLS certificate or key is not usable: ")
    assert "check tls_cert_file and tls_key_file" in line


@pytest.mark.parametrize("door", ["SMPP", "SMTP"])
def test_a_missing_certificate_is_one_line_naming_it(tmp_path: Path, door: str) -> None:
    missing = tmp_path / "missing.pem"
    smpp = (
        f'[smpp]\nport = 0\ntls_cert_file = "{missing}"\ntls_key_file = "{missing}"\n'
        '[[smpp.accounts]]\nsystem_id = "demo"\npassword = "demo"\nservice = 1000\n'
    )
    config = write_config(tmp_path, 0, smpp if door == "SMPP" else "")
    if door == "SMTP":
        text = config.read_text().replace('tls_cert_file = ""', f'tls_cert_file = "{missing}"')
        config.write_text(text.replace('tls_key_file = ""', f'tls_key_file = "{missing}"'))
    result = serve(config)
    assert result.returncode == 1
    assert failure_lines(result) == [
        f"edgegw: {door} TLS file {missing}: No such file or directory; check tls_cert_file"
        " and tls_key_file"
    ]


def test_an_unopenable_store_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, 0)
    (tmp_path / "data" / "edgegw.db").mkdir(parents=True)  # a folder where the file should be
    result = serve(config)
    assert result.returncode == 1
    (line,) = failure_lines(result)
    assert "edgegw.db: cannot open the store" in line
    assert "restore a backup" in line


def test_a_store_from_a_newer_edgegw_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, 0)
    store = tmp_path / "data" / "edgegw.db"
    store.parent.mkdir()
    conn = connect(store)
    migrate(conn)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    result = serve(config)
    assert result.returncode == 1
    assert failure_lines(result) == [
        f"edgegw: {store}: the store has schema version {SCHEMA_VERSION + 1}, from a newer "
        f"edgegw; this one knows {SCHEMA_VERSION}: run the newer edgegw, or restore a backup "
        "this one made"
    ]


@pytest.mark.parametrize("table", ["schema_version", "messages", "parts", "status_reports"])
def test_a_damaged_store_is_one_line(tmp_path: Path, table: str) -> None:
    """A store whose header reads well but one of whose tables is damaged (a power cut on an
    SD card): the open, or the first task at start that meets it, stops the gateway with one
    line, whatever the task did with the error, and no traceback."""
    config = write_config(tmp_path, 0)
    store = tmp_path / "data" / "edgegw.db"
    store.parent.mkdir()
    damage_table(store, table)
    result = serve(config)
    assert result.returncode == 1
    (line,) = failure_lines(result)
    assert line.startswith(f"edgegw: {store}: the store is damaged (")
    assert "restore a backup" in line


# `edgegw` whose files may not grow past 4096 bytes (RLIMIT_FSIZE, SIGXFSZ ignored: writes
# past it fail with EFBIG), as on a full disk.
ON_A_FULL_DISK = (
    "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
    " resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY));"
    " sys.argv = ['edgegw', *sys.argv[1:]]; runpy.run_module('edgegw', run_name='__main__')"
)


def test_a_start_on_a_full_disk_says_so_and_not_restore_a_backup(tmp_path: Path) -> None:
    """A store on a full disk cannot even be opened (its WAL index must be written): the
    start fails with one line that says to free space, not to restore a backup over a store
    that is whole."""
    config = write_config(tmp_path, 0)
    store = tmp_path / "data" / "edgegw.db"
    store.parent.mkdir()
    conn = connect(store)
    migrate(conn)
    conn.close()
    result = subprocess.run(
        [sys.executable, "-c", ON_A_FULL_DISK, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert failure_lines(result) == [
        f"edgegw: {store}: the store cannot take writes (disk I/O error); nothing new is"
        " accepted and received SMS stay on the modems until there is room: free space on its"
        " disk"
    ]


def test_damage_met_while_serving_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    """Only a send with an Idempotency-Key writes that table: the gateway serves until one
    comes, answers that its message was not accepted, and stops."""
    store = tmp_path / "data" / "edgegw.db"
    store.parent.mkdir()
    damage_table(store, "idempotent_responses")
    gateway = start_gateway(lambda ports: write_config(tmp_path, ports["http"]))
    send = urllib.request.Request(
        f"http://127.0.0.1:{gateway.port}/gw/rs/sendMessages",
        data=b'{"serviceId": 1000, "username": "demo", "password": "demo",'
        b' "message": [{"recipient": "+4741000000", "content": "Hi"}]}',
        headers={
            "content-type": "application/json",
            "accept": "application/json",
            "idempotency-key": "k1",
        },
    )
    try:
        with urllib.request.urlopen(send, timeout=10) as answer:
            (status,) = json.loads(answer.read())["messageStatus"]
        assert status["statusCode"] == 6  # not accepted: the store failed
        assert gateway.wait(30) == 1
    finally:
        gateway.stop()
    logged = gateway.output()
    assert "Traceback" not in logged
    lines = [line for line in logged.splitlines() if line.startswith("edgegw: ")]
    assert lines == [
        f"edgegw: {store}: the store is damaged (database disk image is malformed); stop"
        " edgegw and restore a backup"
    ]


async def test_a_modem_port_held_by_another_program_shows_in_its_health(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    other = os.open(path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another program holds the modem
    config = example_config(tmp_path)
    modem = ModemConfig(name="usb0", driver="at", at=AtOptions(port=path), service=1000)
    gateway = Gateway(msgspec.structs.replace(config, modems=[modem]))
    try:
        await nursery.start(gateway.run)
        with trio.fail_after(10):
            while True:
                health = gateway.modems["usb0"].health()
                if health.state is ModemState.FAILED:
                    break
                await trio.sleep(0.01)
        assert f"{path}: in use by another program" in health.detail
        gateway.stop()
    finally:
        for fd in (other, slave, master):
            os.close(fd)
