"""Hashed passwords under hostile input (found by a hostile-input probe): the scrypt check of a
wrong password runs in a worker thread, a few at once, so the event loop keeps serving; and an
unknown account is checked against a dummy hash of the same parameters, so its refusal takes as
long as a wrong password's and reads the same. Real scrypt hashes from `hash_password`."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from support.gateway import example_config
from support.smpp import bind_status

from edgegw import passwords
from edgegw.config import load_config
from edgegw.gateway import Gateway
from edgegw.passwords import DUMMY_HASH, PasswordChecker, hash_password, stand_in_for
from edgegw.smpp.constants import CommandStatus
from edgegw.smtp.config import SmtpConfig
from edgegw.throttle import AuthThrottleConfig

ROOT = Path(__file__).resolve().parent.parent.parent
HASHED = hash_password("demo", salt=b"0123456789abcdef")
ADMIN_HASHED = hash_password("s3cret", salt=b"fedcba9876543210")
JSON = {"Accept": "application/json"}
# HTTP Basic doors: the receive API, the Management API, the status page.
BASIC_PATHS = ["/api/modems", "/mgmt/rs/service/1000/batch", "/status"]


class Checks:
    """Every `verify_password` call (the real one runs): the stored password it was given and
    whether it ran on the event loop's thread; and the most that ran at once."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.on_loop_thread = 0
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()

    def verify(self, stored: str, presented: str) -> bool:
        with self._lock:
            self.stored.append(stored)
            self.on_loop_thread += threading.current_thread() is threading.main_thread()
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        try:
            return real_verify(stored, presented)
        finally:
            with self._lock:
                self._running -= 1


real_verify = passwords.verify_password


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Checks]:
    recorder = Checks()
    monkeypatch.setattr(passwords, "verify_password", recorder.verify)
    yield recorder


async def test_the_loop_keeps_running_while_a_wrong_hash_is_checked(checks: Checks) -> None:
    checker = PasswordChecker()
    turns = 0
    checking = True

    async def other_task() -> None:
        nonlocal turns
        while checking:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()  # let it start, so its turns count only from now
        before = turns
        refused = not await checker.verify(HASHED, "wrong")
        during = turns - before
        checking = False
    assert refused
    # Checked on the loop, the scrypt would give the other task no turn until it was done.
    assert during > 0
    assert checks.stored == [HASHED] and checks.on_loop_thread == 0


async def test_a_flood_of_wrong_passwords_runs_a_few_checks_at_once(checks: Checks) -> None:
    checker = PasswordChecker(at_once=2)
    answers: list[bool] = []

    async def wrong() -> None:
        answers.append(await checker.verify(HASHED, "wrong"))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(wrong)
    assert answers == [False] * 6
    assert len(checks.stored) == 6 and checks.most_at_once <= 2


async def test_an_unknown_account_pays_a_scrypt_against_the_dummy_hash(checks: Checks) -> None:
    checker = PasswordChecker()
    assert not await checker.verify(None, "demo")
    assert checks.stored == [DUMMY_HASH] and checks.on_loop_thread == 0
    # The dummy costs what `edgegw hash-password` hashes cost, and nothing matches it.
    assert DUMMY_HASH.split("$")[2] == HASHED.split("$")[2] == "ln=14,r=8,p=1"
    assert not real_verify(DUMMY_HASH, "")
    # A door of plaintext passwords answers a wrong one at once, so its unknown account too.
    assert stand_in_for(["plain", HASHED]) == DUMMY_HASH
    stand_in = stand_in_for(["plain"])
    assert not stand_in.startswith("$scrypt$")
    await checker.verify(None, stand_in, stand_in=stand_in)
    assert checks.stored == [DUMMY_HASH, stand_in]


async def test_every_door_checks_off_the_loop_and_answers_an_unknown_account_alike(
    tmp_path: Path, nursery: trio.Nursery, checks: Checks
) -> None:
    example = load_config(ROOT / "config.example.toml")
    assert example.smpp is not None
    account = msgspec.structs.replace(example.smpp.accounts[0], password=HASHED)
    base = example_config(tmp_path, password=HASHED)
    config = msgspec.structs.replace(
        base,
        smpp=msgspec.structs.replace(example.smpp, port=0, accounts=[account]),
        smtp=SmtpConfig(port=0, domain="sms.test"),
        monitoring=msgspec.structs.replace(
            base.monitoring, admin_username="ops", admin_password=ADMIN_HASHED
        ),
        # Every refusal here is answered at once, so the throttle's delays stay out of it.
        security=msgspec.structs.replace(
            base.security, auth=AuthThrottleConfig(free_failures=100, lockout_failures=200)
        ),
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)

    def send(username: str, password: str) -> dict[str, object]:
        return {
            "serviceId": 1000,
            "username": username,
            "password": password,
            "message": [{"recipient": "+4741000000", "content": "probe"}],
        }

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:
        basic = [
            (await client.get(path, auth=credentials)).status_code
            for path in BASIC_PATHS
            for credentials in (("demo", "wrong"), ("nosuch", "x"))
        ]
        sends = [
            (await client.post("/gw/rs/sendMessages", json=send(*credentials), headers=JSON)).json()
            for credentials in (("demo", "wrong"), ("nosuch", "x"))
        ]
        # The admin is checked first: the status page's polls pay no dummy scrypt, and its
        # password's scrypt once (then it is remembered).
        operator = [
            (await client.get("/status/data", auth=("ops", "s3cret"))).status_code for _ in range(3)
        ]
    assert operator == [200] * 3
    assert basic == [401] * 2 * len(BASIC_PATHS)
    assert [answer["messageStatus"][0]["statusCode"] for answer in sends] == [2, 2]

    port = bound.smpp_port
    binds = [
        await trio.to_thread.run_sync(bind_status, port, *credentials)
        for credentials in (("demo", "dem0"), ("nosuch", "x"))
    ]
    assert binds == [CommandStatus.ESME_RINVPASWD] * 2

    def smtp_login(username: str, password: str) -> int:
        with smtplib.SMTP("127.0.0.1", bound.smtp_port, timeout=10) as client:
            client.ehlo("tests.local")
            client.user, client.password = username, password
            try:  # one mechanism, where `login` would try the next after a 535
                code, _ = client.auth("PLAIN", client.auth_plain)
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code
        return code

    logins = [
        await trio.to_thread.run_sync(smtp_login, *credentials)
        for credentials in (("demo", "wrong"), ("nosuch", "x"))
    ]
    assert logins == [535, 535]
    gateway.stop()

    assert checks.on_loop_thread == 0
    # Per door, the wrong password against the account's hash and the unknown account against
    # the dummy (HTTP Basic: demo/wrong, then nosuch/x); a send names a service that exists, so
    # its hash is checked either way.
    assert checks.stored == [HASHED, DUMMY_HASH] * len(BASIC_PATHS) + [
        HASHED,  # send, demo/wrong
        HASHED,  # send, nosuch/x
        ADMIN_HASHED,  # the admin's first login; the next two are remembered
        HASHED,  # SMPP bind, demo/dem0
        DUMMY_HASH,  # SMPP bind, nosuch/x
        HASHED,  # SMTP AUTH, demo/wrong
        DUMMY_HASH,  # SMTP AUTH, nosuch/x
    ]
