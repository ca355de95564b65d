"""Hashed passwords under hostile input (found by a hostile-input probe): the scrypt check of a
wrong password runs in a worker thread, a few at once, so the event loop keeps serving. Real
scrypt hashes from `hash_password`."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import trio

from edgegw import passwords
from edgegw.passwords import PasswordChecker, hash_password

HASHED = hash_password("demo", salt=b"0123456789abcdef")


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
