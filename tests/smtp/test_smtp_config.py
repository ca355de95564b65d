"""The SMTP keys of the configuration: the example's door and demo service, and check-config
naming each bad key with its path."""

from __future__ import annotations

from pathlib import Path

from edgegw.config import check_config, load_config
from edgegw.smtp.config import ServiceSmtp

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_example_listens_on_2525_for_the_demo_service_from_loopback() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.smtp is not None
    assert (config.smtp.host, config.smtp.port, config.smtp.domain) == (
        "127.0.0.1",
        2525,
        "sms.localhost",
    )
    assert config.services[0].smtp == ServiceSmtp(allow=["127.0.0.1"])


def test_bad_smtp_keys_are_named() -> None:
    service = {"id": 1, "name": "a", "username": "u", "password": "p"}
    modems = [{"name": "m", "driver": "simulated"}]
    problems = check_config(
        {
            "services": [{**service, "smtp": {"allow": ["10.0.0.0/8", "intranet"]}}],
            "modems": modems,
            "smtp": {"tls_cert_file": "cert.pem", "max_recipients": 0},
        }
    )
    assert problems == ["smtp.max_recipients: Expected `int` >= 1"]
    problems = check_config(
        {
            "services": [{**service, "smtp": {"allow": ["10.0.0.0/8", "intranet"]}}],
            "modems": modems,
            "smtp": {"tls_cert_file": "cert.pem"},
        }
    )
    assert problems == [
        "smtp.tls_cert_file: STARTTLS needs both tls_cert_file and tls_key_file",
        "services[0].smtp.allow: 'intranet' is not an IP address or network",
    ]
    problems = check_config({"services": [{**service, "smtp": {}}], "modems": modems})
    assert problems == ["services[0].smtp: needs an [smtp] listener"]
