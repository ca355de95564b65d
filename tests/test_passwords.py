"""Hashed passwords in the config (issue 9, item 4): `edgegw hash-password`, scrypt hashes
accepted for services (REST body and HTTP Basic), SMPP accounts and the admin account, and the
warning about a config readable by others that holds plaintext passwords."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import msgspec
import trio
from support.gateway import example_config
from support.smpp import bind_status

from edgegw.config import check_config, load_config, plaintext_exposure
from edgegw.gateway import Gateway
from edgegw.passwords import PasswordChecker, check_hash_format, hash_password, verify_password
from edgegw.smpp.constants import CommandStatus

ROOT = Path(__file__).resolve().parent.parent
HASHED = hash_password("demo", salt=b"0123456789abcdef")


def test_a_hash_verifies_its_password_only() -> None:
    assert HASHED.startswith("$scrypt$ln=14,r=8,p=1$")
    assert verify_password(HASHED, "demo")
    assert not verify_password(HASHED, "demo ")
    assert not verify_password(HASHED, "")
    assert hash_password("demo") != hash_password("demo")  # salted
    assert verify_password("plain", "plain") and not verify_password("plain", "plaiN")


def test_a_malformed_hash_is_refused_and_explained() -> None:
    broken = HASHED[:-5]
    assert not verify_password("$scrypt$ln=99,r=8,p=1$AAAA$AAAA", "demo")
    assert check_hash_format("$scrypt$nonsense") == "not an scrypt hash from `edgegw hash-password`"
    assert check_hash_format("$scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43) == (
        "scrypt parameters out of range"
    )
    assert check_hash_format(HASHED) is None
    assert not verify_password(broken, "demo")


async def test_the_checker_remembers_a_verified_password_and_nothing_else() -> None:
    checker = PasswordChecker()
    assert not await checker.verify(HASHED, "wrong")
    assert await checker.verify(HASHED, "demo")
    assert await checker.verify(HASHED, "demo")  # from memory
    assert not await checker.verify(HASHED, "wrong")


def test_hash_password_reads_stdin_and_prints_a_usable_hash() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgegw", "hash-password"],
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        check=True,
    )
    (line,) = result.stdout.splitlines()
    assert verify_password(line, "s3cret pass")


def test_config_checks_smpp_passwords_and_hashes() -> None:
    raw = msgspec.toml.decode((ROOT / "config.example.toml").read_bytes())
    raw["smpp"]["accounts"][0]["password"] = "longer than eight"
    raw["services"][0]["password"] = "$scrypt$bogus"
    assert check_config(raw) == [
        "services[0].password: not an scrypt hash from `edgegw hash-password`",
        "smpp.accounts[0].password: a plaintext bind password is at most 8 octets (SMPP 3.4); "
        "an `edgegw hash-password` hash may be longer",
    ]
    raw["smpp"]["accounts"][0]["password"] = HASHED
    raw["services"][0]["password"] = HASHED
    assert check_config(raw) == []


def test_a_world_readable_config_with_plaintext_passwords_gets_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "edgegw.toml"
    path.write_text((ROOT / "config.example.toml").read_text())
    path.chmod(0o644)
    warning = plaintext_exposure(path, load_config(path))
    assert warning == (
        f"{path} is readable by every user and holds plaintext passwords (services[0].password,"
        " smpp.accounts[0].password): chmod 640 it, or put hashes from `edgegw hash-password`"
        " there instead"
    )
    path.chmod(0o640)
    assert plaintext_exposure(path, load_config(path)) is None
    path.chmod(0o644)
    path.write_text(path.read_text().replace('password = "demo"', f'password = "{HASHED}"'))
    assert plaintext_exposure(path, load_config(path)) is None


async def test_a_gateway_with_hashed_passwords_lets_the_right_ones_in(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    example = load_config(ROOT / "config.example.toml")
    assert example.smpp is not None
    account = msgspec.structs.replace(example.smpp.accounts[0], password=HASHED)
    config = msgspec.structs.replace(
        example_config(tmp_path, password=HASHED),
        smpp=msgspec.structs.replace(example.smpp, port=0, accounts=[account]),
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:
        assert (await client.get("/api/modems", auth=("demo", "demo"))).status_code == 200
        assert (await client.get("/api/modems", auth=("demo", HASHED))).status_code == 401
        answer = await client.post(
            "/gw/rs/sendMessages",
            json={
                "serviceId": 1000,
                "username": "demo",
                "password": "demo",
                "message": [{"recipient": "+4741000000", "content": "hashed"}],
            },
            headers={"Accept": "application/json"},
        )
        assert answer.json()["messageStatus"][0]["statusCode"] == 1
    port = bound.smpp_port
    assert await trio.to_thread.run_sync(bind_status, port, "demo", "demo") == 0
    wrong = await trio.to_thread.run_sync(bind_status, port, "demo", "dem0")
    assert wrong == CommandStatus.ESME_RINVPASWD
    gateway.stop()
