"""Passwords in the config: plaintext, or an scrypt hash printed by `edgegw hash-password`
(`$scrypt$ln=14,r=8,p=1$<salt>$<key>`, base64 without padding; stdlib `hashlib.scrypt`).

Checking an scrypt hash costs tens of milliseconds, too much for every HTTP request, so a
`PasswordChecker` remembers a salted SHA-256 of each password it verified and compares that
(constant time) on the next request; a wrong password always pays the full scrypt, in a worker
thread (a few at once), never on the event loop. An unknown account pays the same scrypt against
a stand-in, so its answer takes as long as a wrong password's and accounts cannot be enumerated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

import trio

__all__ = [
    "DUMMY_HASH",
    "PasswordChecker",
    "check_hash_format",
    "hash_password",
    "is_hashed",
    "stand_in_for",
    "verify_password",
]

_PREFIX = "$scrypt$"
_LOG2_N, _R, _P = 14, 8, 1  # 16 MiB and ~50 ms per check on a small box
_KEY_BYTES = 32
_MAX_LOG2_N = 20  # refuse hashes that would take a gigabyte to check
# scrypt checks running at once, each in its own worker thread holding 16 MiB: a flood of wrong
# passwords queues here instead of starting a thread per request.
SCRYPT_CHECKS_AT_ONCE = 2


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    key = _scrypt(password, salt, _LOG2_N, _R, _P, _KEY_BYTES)
    return f"{_PREFIX}ln={_LOG2_N},r={_R},p={_P}${_b64(salt)}${_b64(key)}"


def is_hashed(stored: str) -> bool:
    return stored.startswith(_PREFIX)


def check_hash_format(stored: str) -> str | None:
    """Why `stored` (which starts like a hash) is not a usable one, or None."""
    try:
        _parse(stored)
    except ValueError as exc:
        return str(exc)
    return None


# What an unknown account's password is checked against: the parameters of `hash_password`, so
# it costs the same; its key is no password's scrypt (all zero bytes), so nothing matches it.
DUMMY_HASH = f"{_PREFIX}ln={_LOG2_N},r={_R},p={_P}${_b64(bytes(16))}${_b64(bytes(_KEY_BYTES))}"


def stand_in_for(passwords: Iterable[str]) -> str:
    """What a door checks an unknown account's password against, so that answer takes as long
    as a known account's wrong one: the dummy hash if any of the door's passwords is hashed,
    else a random plaintext (a wrong plaintext is answered at once)."""
    if any(is_hashed(password) for password in passwords):
        return DUMMY_HASH
    return secrets.token_urlsafe(16)


def verify_password(stored: str, presented: str) -> bool:
    """Whether `presented` matches `stored` (plaintext or hash), in constant time."""
    if not is_hashed(stored):
        return hmac.compare_digest(stored.encode("utf-8"), presented.encode("utf-8"))
    try:
        log2_n, r, p, salt, key = _parse(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(presented, salt, log2_n, r, p, len(key)), key)


class PasswordChecker:
    """`verify_password` off the event loop, with a memory of passwords already verified against
    a hash. One per gateway, shared by every door, so its limiter bounds them all."""

    def __init__(self, *, at_once: int = SCRYPT_CHECKS_AT_ONCE) -> None:
        self._pepper = secrets.token_bytes(16)
        self._verified: dict[str, bytes] = {}  # stored hash -> digest of its password
        self._limiter = trio.CapacityLimiter(at_once)

    async def verify(
        self, stored: str | None, presented: str, *, stand_in: str = DUMMY_HASH
    ) -> bool:
        """Whether `presented` is the password `stored`; None is an unknown account, whose
        answer (always False) costs what a wrong password against `stand_in` costs."""
        if stored is None:
            await self._check(stand_in, presented)
            return False
        if not is_hashed(stored):
            return verify_password(stored, presented)
        digest = hashlib.sha256(self._pepper + presented.encode("utf-8")).digest()
        known = self._verified.get(stored)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        if not await self._check(stored, presented):
            return False
        self._verified[stored] = digest
        return True

    async def _check(self, stored: str, presented: str) -> bool:
        if not is_hashed(stored):
            return verify_password(stored, presented)
        return await trio.to_thread.run_sync(
            verify_password, stored, presented, limiter=self._limiter
        )


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        params, salt, key = stored[len(_PREFIX) :].split("$")
        fields = dict(item.split("=", 1) for item in params.split(","))
        log2_n, r, p = int(fields["ln"]), int(fields["r"]), int(fields["p"])
        salt_bytes, key_bytes = _unb64(salt), _unb64(key)
    except (ValueError, KeyError) as exc:
        raise ValueError("not an scrypt hash from `edgegw hash-password`") from exc
    if not (
        1 <= log2_n <= _MAX_LOG2_N
        and 1 <= r <= 32
        and 1 <= p <= 16
        and len(key_bytes) == _KEY_BYTES
    ):
        raise ValueError("scrypt parameters out of range")
    return log2_n, r, p, salt_bytes, key_bytes


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=2 * 128 * r * n + 1024 * 1024,
        dklen=length,
    )
