"""The `edgegw` command line, run as a user runs it: as processes, with signals."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import serial
from support.process import start_gateway

from edgegw.__main__ import _parser, main, modems_table
from edgegw.passwords import hash_password

ROOT = Path(__file__).resolve().parent.parent
EDGEGW = [sys.executable, "-m", "edgegw"]


def example_config(tmp_path: Path, port: int = 0) -> Path:
    """config.example.toml in tmp_path with HTTP on `port`, SMPP and SMTP on any free port (its
    store lands in tmp_path/data)."""
    text = (ROOT / "config.example.toml").read_text()
    path = tmp_path / "config.toml"
    text = text.replace("port = 8080", f"port = {port}").replace("port = 2775", "port = 0")
    text = text.replace("port = 2525", "port = 0")
    path.write_text(text)
    return path


def on_free_port(tmp_path: Path) -> Callable[[dict[str, int]], Path]:
    """The example config on the free HTTP port `start_gateway` picks."""
    return lambda ports: example_config(tmp_path, ports["http"])


def wait_logged(text: str, logged: Callable[[], str], process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while text not in logged():
        assert process.poll() is None, f"the gateway exited before logging {text!r}"
        assert time.monotonic() < deadline, f"the gateway did not log {text!r}"
        time.sleep(0.05)


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config.example.toml")]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["check-config", "--config", str(ROOT / "config.example.toml")],
        ["--help"],
        ["--version"],
        ["send", "--help"],
        ["simulate-modem"],
    ],
)
@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_reader_that_leaves_ends_the_command_quietly(argv: list[str], unbuffered: bool) -> None:
    # `edgegw modems --json | head`: the pipe's reader is gone before the output is written.
    # stdout buffered, as a user's shell leaves it: the help and the version are then written
    # when the interpreter exits, unless the command writes them out itself. Unbuffered
    # (PYTHONUNBUFFERED, as container images set it), argparse writes them at once, and drops
    # the error of that write unless told otherwise.
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if unbuffered:
        environment["PYTHONUNBUFFERED"] = "1"
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run(
            [*EDGEGW, *argv], stdout=writer, stderr=subprocess.PIPE, env=environment, timeout=30
        )
    finally:
        os.close(writer)
    assert result.stderr == b""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert result.returncode == 128 + signal.SIGPIPE


def test_check_config_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[http]\nport = "x"\n[[modems]]\nname = 1\ndriver = "at"\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "http.port:" in err
    assert "modems[0].name:" in err


def test_ctrl_c_during_start_up_exits_quietly(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    with subprocess.Popen(
        [*EDGEGW, "serve", "--config", str(config)], stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        # The store is being set up: the gateway is starting, not serving yet.
        while "store created at schema version" not in process.stderr.readline():
            assert process.poll() is None
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=15) in (0, 130)
        assert "Traceback" not in rest


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_serve_stops_gracefully_on_signal(tmp_path: Path, signum: signal.Signals) -> None:
    # Not as a systemd service (should the tests run in one), where SIGHUP is no stop.
    unsupervised = {name: value for name, value in os.environ.items() if name != "INVOCATION_ID"}
    gateway = start_gateway(lambda _: example_config(tmp_path), doors=(), env=unsupervised)
    try:
        gateway.process.send_signal(signum)
        assert gateway.wait(15) == 0
    finally:
        gateway.stop()
    assert (tmp_path / "data" / "edgegw.db").is_file()


def test_under_systemd_a_sighup_is_no_stop(tmp_path: Path) -> None:
    """A service has no terminal to lose: its SIGHUP asks for a reload, which edgegw has none
    of, and stopping would leave the service down (a stop that exits 0 is not restarted)."""
    gateway = start_gateway(
        on_free_port(tmp_path),
        env={**os.environ, "INVOCATION_ID": "0123456789abcdef0123456789abcdef"},
    )
    try:
        gateway.process.send_signal(signal.SIGHUP)
        wait_logged("SIGHUP ignored", gateway.output, gateway.process)
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/health", timeout=5):
            pass
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.wait(15) == 0
    finally:
        gateway.stop()


def test_in_the_journal_each_line_has_its_level_s_priority(tmp_path: Path) -> None:
    """Run by systemd, stderr goes to the journal, which stores a line without a `<N>` prefix
    at priority info whatever its level: `journalctl -p warning` found no warning at all."""
    config = example_config(tmp_path)
    config.chmod(0o644)  # plaintext passwords every user can read: a warning at start
    journal = tmp_path / "journal"
    with journal.open("w") as stream:
        opened = os.fstat(stream.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{opened.st_dev}:{opened.st_ino}"}
        process = subprocess.Popen(
            [*EDGEGW, "serve", "--config", str(config)], stderr=stream, env=env
        )
        try:
            wait_logged("gateway ready", journal.read_text, process)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            process.kill()
            process.wait()
    lines = journal.read_text().splitlines()
    assert any(
        line.startswith("<4>WARNING edgegw: ") and "plaintext passwords" in line for line in lines
    ), lines
    assert "<6>INFO edgegw.gateway: gateway stopped" in lines
    assert all(line.startswith(("<4>", "<6>")) for line in lines), lines


def test_send_and_status_through_a_running_gateway(tmp_path: Path) -> None:
    gateway = start_gateway(on_free_port(tmp_path))
    config = gateway.config
    try:
        sent = subprocess.run(
            [*EDGEGW, "send", "--config", str(config), "--to", "+4741000000", "--text", "Hi"],
            capture_output=True,
            check=True,
            timeout=30,
        )
        status = json.loads(sent.stdout)
        assert status["statusCode"] == 1
        deadline = time.monotonic() + 15
        state = "queued"
        while state != "sent" and time.monotonic() < deadline:
            shown = subprocess.run(
                [*EDGEGW, "status", "--config", str(config), status["messageId"]],
                capture_output=True,
                check=True,
                timeout=30,
            )
            state = json.loads(shown.stdout)["state"]
        assert state == "sent"
        send = [*EDGEGW, "send", "--config", str(config), "--to", "+4741000000"]
        emoji = subprocess.run([*send, "--text", "Hei 😀"], capture_output=True, timeout=30)
        assert emoji.returncode == 4  # the service's parsing type NONE cannot carry it
        unicode = subprocess.run(
            [*send, "--unicode", "--text", "Hei 😀"], capture_output=True, timeout=30
        )
        assert json.loads(unicode.stdout)["statusCode"] == 1
        gateway.process.terminate()
        assert gateway.wait(15) == 0
    finally:
        gateway.stop()
    assert gateway.log[-1].rstrip("\n").endswith("edgegw.gateway: gateway stopped")


def test_send_reaches_a_gateway_that_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")

    def on_ipv6_loopback(ports: dict[str, int]) -> Path:
        config = example_config(tmp_path, ports["http"])
        config.write_text(config.read_text().replace('host = "127.0.0.1"', 'host = "::1"', 1))
        return config

    gateway = start_gateway(on_ipv6_loopback)
    send = ["send", "--config", str(gateway.config), "--to", "+4741000000", "--text", "v6"]
    try:
        sent = subprocess.run(
            [*EDGEGW, *send],
            capture_output=True,
            timeout=30,
        )
    finally:
        gateway.stop()
    # Not 400 for a Host header of "::1:<port>", as the URL without brackets made it.
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["statusCode"] == 1


def test_send_to_a_gateway_that_is_not_running_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as closed:
        # Bound and never listening: a connection to it is refused, and no one else listens there.
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = example_config(tmp_path, port)
        result = subprocess.run(
            [*EDGEGW, "send", "--config", str(config), "--to", "+4741000000", "--text", "Hi"],
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 3
    # The reason in words and what to check, not urllib's wrapper around the socket's error.
    assert result.stderr.decode().strip() == (
        f"http://127.0.0.1:{port}/gw/rs/sendMessages: cannot reach the gateway (Connection"
        f" refused); is `edgegw serve --config {config}` running, on the [http] host and port"
        " of that file?"
    )


def test_simulate_modem_prints_a_pty_that_answers_at_also_on_a_noisy_link() -> None:
    command = [*EDGEGW, "simulate-modem", "--set", "fragment=true", "--set", "noise=1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            path = process.stdout.readline().decode().strip()
            with serial.Serial(path, timeout=5) as port:
                port.write(b"AT+CGSN\r")
                answer = b""
                # noise=1: a burst with a 0xFF follows every final result code.
                while b"OK\r\n" not in answer or b"\xff" not in answer.split(b"OK\r\n")[-1]:
                    chunk = port.read(64)
                    assert chunk, f"no answer, got {answer!r}"
                    answer += chunk
            assert b"356938035643809" in answer  # the simulator's default IMEI
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0
        finally:
            process.kill()


def test_simulate_modem_refuses_a_bad_setting(capsys: pytest.CaptureFixture[str]) -> None:
    # A usage error, as `--send-delay x` is: the config file has no part in it.
    assert main(["simulate-modem", "--set", "drop_final=2"]) == 64
    assert "drop_final is a probability" in capsys.readouterr().err
    assert main(["simulate-modem", "--set", "fragment"]) == 64
    assert "--set wants KEY=VALUE" in capsys.readouterr().err


def test_check_config_takes_config_like_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", "--config", str(ROOT / "config.example.toml")]) == 0
    assert capsys.readouterr().out.endswith(": ok\n")


def test_check_config_warns_about_a_modem_port_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "config.example.toml").read_text()
    text += '\n[[modems]]\nname = "usb0"\ndriver = "at"\n[modems.at]\nport = "/dev/ttyEDGEGW9"\n'
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "warning: modems[1].at.port: /dev/ttyEDGEGW9 does not exist now; is the modem plugged in?\n"
    )
    assert captured.out == f"{config}: ok\n"


def test_check_config_warns_about_certificate_files_that_are_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head, smtp, rest = (ROOT / "config.example.toml").read_text().partition("[smtp]\n")
    rest = rest.replace('tls_cert_file = ""', 'tls_cert_file = "mail.pem"', 1)
    text = head + smtp + rest.replace('tls_key_file = ""', 'tls_key_file = "mail.key"', 1)
    text += '\n[services.dr]\nurl = "https://customer.test/dr"\nca_file = "/etc/edgegw/ca.pem"\n'
    config = tmp_path / "config.toml"
    config.write_text(text)
    (tmp_path / "mail.key").write_text("")
    assert main(["check-config", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    why = "is not there, or this user cannot read it; serve needs to read it"
    assert captured.err == (
        f"warning: smtp.tls_cert_file: {tmp_path / 'mail.pem'} {why}\n"
        f"warning: services[0].dr.ca_file: /etc/edgegw/ca.pem {why}\n"
    )
    assert captured.out == f"{config}: ok\n"


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["serve"], ["send", "--config", "x.toml", "--to", "+4741000000"]],
)
def test_usage_errors_have_their_own_exit_status(argv: list[str]) -> None:
    assert main(argv) == 64


@pytest.mark.parametrize(
    "command",
    [
        ["send", "--to", "+4741000000", "--text", "Hi"],
        ["status", "m8x3k20a7q01"],
        ["modems"],
        ["simulate-mo", "--from", "+4799999999", "--text", "Hi"],
    ],
)
def test_a_service_the_config_does_not_have_is_a_usage_error(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """As `--service abc` is (64), not a config with problems (2): the config is fine."""
    config = str(ROOT / "config.example.toml")
    assert main([*command, "--config", config, "--service", "9999"]) == 64
    assert capsys.readouterr().err == (
        f"edgegw: --service 9999: no service with that id in {config}\n"
    )


@pytest.mark.parametrize("argv", [["check-config"], ["check-config", "--config", "a", "b"]])
def test_check_config_needs_one_config(argv: list[str]) -> None:
    assert main(argv) == 64


def test_simulate_mo_makes_an_sms_arrive_at_the_running_gateway(tmp_path: Path) -> None:
    gateway = start_gateway(on_free_port(tmp_path))
    config, port = gateway.config, gateway.port
    try:
        command = ["simulate-mo", "--config", str(config), "--from", "+4799999999"]
        result = subprocess.run(
            [*EDGEGW, *command, "--text", "from the CLI"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "an SMS from +4799999999 arrived at the simulated modem\n"
        token = "Basic ZGVtbzpkZW1v"  # demo:demo
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/inbound", headers={"Authorization": token}
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(request, timeout=5) as answer:
                inbound = json.load(answer)["inbound"]
            if inbound:
                break
            time.sleep(0.05)
        assert [(item["originator"], item["content"]) for item in inbound] == [
            ("+4799999999", "from the CLI")
        ]
        # What the gateway said of a character, in the character: not JSON's \ud83d\ude00.
        emoji = subprocess.run(
            [*EDGEGW, "send", "--config", str(config), "--to", "+4741000000", "--text", "Hei 😀"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
        )
        assert emoji.returncode == 4
        assert "character '😀' at position 4" in json.loads(emoji.stdout)["statusMessage"]
        assert "character '😀' at position 4" in emoji.stdout
        # A terminal that cannot show it gets the character's escape, not a traceback.
        ascii_only = subprocess.run(
            [*EDGEGW, "send", "--config", str(config), "--to", "+4741000000", "--text", "Hei 😀"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONIOENCODING": "ascii"},
            timeout=60,
        )
        assert (ascii_only.returncode, ascii_only.stderr) == (4, "")
        assert "character '\\U0001f600' at position 4" in ascii_only.stdout
        # The gateway answered, with an HTTP error: not "cannot reach the gateway" (3).
        unknown_message = ["status", "--config", str(config), "nosuchid"]
        unknown_modem = [*command, "--text", "x", "--modem", "nosuch"]
        for argv in (unknown_message, unknown_modem):
            refused = subprocess.run(
                [*EDGEGW, *argv],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (refused.returncode, refused.stdout) == (4, "")
            assert ": HTTP 4" in refused.stderr
    finally:
        gateway.stop()


def test_the_modems_table_keeps_its_columns_apart() -> None:
    health = {"state": "ready", "sim": "READY", "operator": "Telenor Norge AS (LTE)"}
    modems = [
        {
            "name": "usb0",
            "health": {**health, "registration": "roaming", "signal_dbm": -101},
            "queued": 3,
            "sending": 1,
            "sentLastHour": 12,
            "sentLastDay": 140,
        },
        {
            "name": "sim0",
            "health": {"state": "failed", "detail": "no such device"},
            "queued": 0,
            "sending": 0,
            "sentLastHour": 0,
            "sentLastDay": 0,
        },
    ]
    assert modems_table(modems) == [
        "MODEM STATE  SIM   NETWORK                          SIGNAL SENT ERR QUEUE 1H/24H  DETAIL",
        "usb0  ready  READY Telenor Norge AS (LTE) roaming -101 dBm    0   0     4 12/140",
        "sim0  failed                                                  0   0     0    0/0  no such "
        "device",
    ]


def test_the_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    (commands,) = [
        action.choices
        for action in _parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    assert len(commands) == 10
    assert main(["--help"]) == 0
    described = capsys.readouterr().out.split("positional arguments:")[0]
    for command in commands:
        assert command in described, command


def test_calls_to_the_gateway_say_they_need_the_plaintext_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example_config(tmp_path)
    hashed = hash_password("demo", salt=b"0123456789abcdef")
    config.write_text(config.read_text().replace('password = "demo"', f'password = "{hashed}"'))
    # Not "Access denied" from the gateway (or "cannot reach" it): the config's problem.
    assert main(["send", "--config", str(config), "--to", "+4741000000", "--text", "Hi"]) == 2
    assert "services[0].password: a hash; send, status" in capsys.readouterr().err
