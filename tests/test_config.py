"""The config: the example parses, every problem is listed with its key path, paths resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgegw.config import (
    ConfigError,
    CrashPolicy,
    check_config,
    config_warnings,
    load_config,
    prefix_warnings,
)

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[[services]]
id = 1000
name = "demo"
username = "demo"
password = "demo"

[[modems]]
name = "sim0"
driver = "simulated"
"""


def test_example_config_parses_to_one_service_and_one_simulated_modem() -> None:
    config = load_config(ROOT / "config.example.toml")
    (service,) = config.services
    assert (service.id, service.username, service.password) == (1000, "demo", "demo")
    (modem,) = config.modems
    assert modem.driver == "simulated"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.gateway.in_flight_after_crash is CrashPolicy.RESEND


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "gw.toml"
    path.write_text('[gateway]\nstore = "var/gw.db"\n' + MINIMAL)
    assert load_config(path).gateway.store == str(folder / "var" / "gw.db")


def test_the_simulators_files_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "gw.toml"
    simulator = '[modems.simulator]\nrecord = "log/at.txt"\nlink_dir = "run"\n'
    path.write_text(MINIMAL + simulator)
    (modem,) = load_config(path).modems
    assert modem.simulator.record == str(folder / "log" / "at.txt")
    assert modem.simulator.link_dir == str(folder / "run")


def test_the_doors_tls_files_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "gw.toml"
    tls = 'tls_cert_file = "tls/cert.pem"\ntls_key_file = "tls/key.pem"\n'
    account = '[[smpp.accounts]]\nsystem_id = "demo"\npassword = "demo"\nservice = 1000\n'
    path.write_text(MINIMAL + "[smpp]\n" + tls + account + "[smtp]\n" + tls)
    config = load_config(path)
    for door in (config.smpp, config.smtp):
        assert door is not None
        assert door.tls_cert_file == str(folder / "tls" / "cert.pem")
        assert door.tls_key_file == str(folder / "tls" / "key.pem")


def test_every_problem_is_listed_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[gateway]
in_flight_after_crash = "maybe"
stroe = "x.db"

[http]
port = "eighty"

[[services]]
id = 1000
name = "a"
password = 7

[[modems]]
name = "m"
driver = "carrier-pigeon"
"""
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    problems = raised.value.problems
    assert any(p.startswith("gateway.in_flight_after_crash:") for p in problems)
    assert any(p.startswith("gateway.stroe: unknown key") for p in problems)
    assert any(p.startswith("http.port:") for p in problems)
    assert "services[0].username: required key is missing" in problems
    assert any(p.startswith("services[0].password:") for p in problems)
    assert any(p.startswith("modems[0].driver:") for p in problems)
    assert len(problems) == 6, problems


def test_meaning_checks_name_the_key() -> None:
    problems = check_config(
        {
            "services": [
                {"id": 1, "name": "a", "username": "u", "password": "p", "priority": 7},
                {"id": 1, "name": "b", "username": "u", "password": "p", "modems": ["nope"]},
            ],
            "modems": [{"name": "m", "driver": "at"}],
        }
    )
    assert "services[1].id: 1 is used twice" in problems
    assert "services[1].username: 'u' is used twice" in problems
    assert "services[0].priority: must be 1, 2 or 3" in problems
    assert "services[1].modems: no modem is named 'nope'" in problems
    assert (
        "modems[0].at.port: the at driver needs a port or URL, or an imei or iccid to find the"
        " modem by"
    ) in problems


def test_a_recipient_prefix_that_no_recipient_can_start_with_is_a_warning_not_a_refusal(
    tmp_path: Path,
) -> None:
    """Such a config started the gateway before (its other modems send): refused, an upgrade's
    restart would stop the whole gateway."""
    text = (
        (ROOT / "config.example.toml")
        .read_text()
        .replace("prefixes = []", 'prefixes = ["+47", "+4690", "47", "0046", "+47 9"]', 1)
    )
    path = tmp_path / "edgegw.toml"
    path.write_text(text)
    config = load_config(path)
    assert prefix_warnings(config) == [
        f"modems[0].prefixes: {prefix!r} is never matched; a prefix is + and digits, as"
        " recipients are stored (+4741000000), so this modem sends to no recipient it names"
        for prefix in ("47", "0046", "+47 9")
    ]
    assert prefix_warnings(config) == [
        warning for warning in config_warnings(config) if "prefixes" in warning
    ]


@pytest.mark.parametrize("identity", ['imei = "356938035643809"', 'iccid = "8947080012345678901"'])
def test_an_at_modem_without_a_port_is_found_by_its_imei_or_iccid(
    tmp_path: Path, identity: str
) -> None:
    # config.example.toml: "find the modem by IMEI when `port` is empty".
    path = tmp_path / "config.toml"
    path.write_text(
        MINIMAL + f'\n[[modems]]\nname = "usb0"\ndriver = "at"\n[modems.at]\n{identity}\n'
    )
    (_, usb0) = load_config(path).modems
    assert usb0.at.port == ""


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_trusted_proxies_are_none_by_default_and_a_bad_one_stops_the_start(
    tmp_path: Path,
) -> None:
    assert load_config(ROOT / "config.example.toml").http.trusted_proxies == []
    path = tmp_path / "proxy.toml"
    path.write_text(
        '[http]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/33", "::1", "nginx"]\n' + MINIMAL
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [
        "http.trusted_proxies: '10.0.0.0/33' is not an IP address or network",
        "http.trusted_proxies: 'nginx' is not an IP address or network",
    ]
    path.write_text('[http]\ntrusted_proxies = "127.0.0.1"\n' + MINIMAL)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == ["http.trusted_proxies: Expected `array`, got `str`"]
    # Every address trusted, whole or in pieces, would let any client name its own.
    wide = [
        "0.0.0.0/0",
        "::/0",
        "0.0.0.0/1",
        "128.0.0.0/1",
        "::ffff:0:0/96",  # every IPv4 address, mapped
        "::ffff:0:0/95",
        "64:ff9b::/96",  # NAT64's, and 6to4's
        "2002::/16",
        "fc00::/6",
    ]
    path.write_text(f"[http]\ntrusted_proxies = {json.dumps(wide)}\n" + MINIMAL)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [problem.split(" holds ")[0] for problem in raised.value.problems] == [
        f"http.trusted_proxies: {entry!r}" for entry in wide
    ]
    assert "holds more IPv4 addresses than a /8" in raised.value.problems[0]
    assert "holds more IPv6 addresses than a /7" in raised.value.problems[-1]
    good = [
        "127.0.0.1",
        "10.0.0.0/8",
        "fd00::/8",
        "fc00::/7",
        "::ffff:10.0.0.0/104",
        "2002:a00::/24",
    ]
    path.write_text(f"[http]\ntrusted_proxies = {json.dumps(good)}\n" + MINIMAL)
    assert load_config(path).http.trusted_proxies == good


def test_values_a_modems_options_refuse_are_problems_with_their_key_paths(tmp_path: Path) -> None:
    # README: check-config exits 2 "listing every problem with its key path", never a traceback.
    path = tmp_path / "config.toml"
    path.write_text(
        MINIMAL
        + "[modems.simulator]\nsignal = 32\n"
        + '\n[[modems]]\nname = "usb0"\ndriver = "at"\n[modems.at]\nport = "/dev/ttyUSB0"\n'
        + "query_timeout = 0.0\n"
        + '\n[[modems]]\nname = "usb1"\ndriver = "at"\n[modems.at]\nport = "/dev/ttyUSB1"\n'
        + "max_line = 15\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [
        "modems[0].simulator: signal must be 0..31 or 99, not 32",
        "modems[1].at: query_timeout must be more than 0 seconds",
        "modems[2].at: max_line must be at least 16",
    ]


def test_the_example_callback_tables_parse_once_uncommented(tmp_path: Path) -> None:
    # config.example.toml: 'remove the leading "# " to enable' must give valid TOML.
    lines = (ROOT / "config.example.toml").read_text().splitlines()
    start = lines.index("# [services.dr]")
    end = lines.index("[services.smtp]")
    for index in range(start, end):
        if lines[index].startswith("# "):
            lines[index] = lines[index][2:]
    relay = lines.index("[smtp_relay]")
    lines[lines.index('host = ""', relay)] = 'host = "relay.example"'  # mo_email needs a relay
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    (service,) = load_config(path).services
    assert service.dr is not None and service.dr.oauth2 is not None
    assert service.mo is not None and service.mo_email is not None


def test_a_number_that_is_nan_is_a_problem_with_its_key_path(tmp_path: Path) -> None:
    # NaN passes every "must not be negative" check and then compares false with everything:
    # keep_final_days = nan kept everything, a modem's min_interval = nan never rested.
    path = tmp_path / "config.toml"
    path.write_text(
        "[store]\nkeep_final_days = nan\n[reports]\nrematch = nan\n"
        + MINIMAL
        + "min_interval = nan\n[modems.at]\nsend_timeout = nan\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [
        "modems[0].at.send_timeout: must be a finite number, not nan",
        "modems[0].min_interval: must be a finite number, not nan",
        "reports.rematch: must be a finite number, not nan",
        "store.keep_final_days: must be a finite number, not nan",
    ]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("init_timeout", "-1.0", "init_timeout must be more than 0 seconds"),
        ("command_timeout", "0.0", "command_timeout must be more than 0 seconds"),
        ("send_timeout", "0.0", "send_timeout must be more than 0 seconds"),
        ("probe_timeout", "0.0", "probe_timeout must be more than 0 seconds"),
        ("sim_poll_interval", "0.0", "sim_poll_interval must be more than 0 seconds"),
        ("reopen_backoff_initial", "0.0", "reopen_backoff_initial must be more than 0 seconds"),
        ("reopen_backoff_max", "-1.0", "reopen_backoff_max must be more than 0 seconds"),
        ("quarantine_seconds", "-1.0", "quarantine_seconds must not be negative"),
    ],
)
def test_an_at_wait_trio_cannot_take_or_that_spins_is_a_problem(
    tmp_path: Path, key: str, value: str, problem: str
) -> None:
    # init_timeout = -1 made every initialisation a ValueError of trio's, quarantine_seconds =
    # -1 the quarantine's sleep one; a reopen backoff of 0 reopened a gone port in a spin;
    # check-config said ok to each.
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL + f"[modems.at]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [f"modems[0].at: {problem}"]


def test_an_smtp_relay_timeout_or_port_smtplib_cannot_take_is_a_problem(tmp_path: Path) -> None:
    # smtplib refuses a timeout of 0 or below with a ValueError, which failed the MO email
    # worker instead of a try; a port past 65535 connected to another one.
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL + '[smtp_relay]\nhost = "relay.example"\nport = 70000\ntimeout = 0.0\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [
        "smtp_relay.port: Expected `int` <= 65535",
        "smtp_relay.timeout: Expected `float` > 0.0",
    ]


def test_a_report_window_of_0_is_a_problem(tmp_path: Path) -> None:
    # A report arrives after its part was sent, so a window of 0 matched none: every message
    # stayed `sent` until closed with DR 362.
    path = tmp_path / "config.toml"
    path.write_text("[reports]\nwindow = 0.0\n" + MINIMAL)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == ["reports.window: must be positive"]


def test_a_number_that_is_inf_is_a_problem_with_its_key_path(tmp_path: Path) -> None:
    # A lockout of cooldown = inf answered every later login from its address with a 500, as
    # its Retry-After raised OverflowError; a min_interval of inf never let its SIM send again.
    path = tmp_path / "config.toml"
    path.write_text(
        "[security.auth]\ncooldown = inf\n" + MINIMAL + "min_interval = +inf\njitter = -inf\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [
        "modems[0].min_interval: must be a finite number, not inf",
        "modems[0].jitter: must be a finite number, not -inf",
        "security.auth.cooldown: must be a finite number, not inf",
    ]
