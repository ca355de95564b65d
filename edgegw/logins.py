"""The steps every door takes around a login, by the one policy of `edgegw.throttle`: before the
credentials are checked, wait what the address has earned, or learn that it is refused; after a
failure, count it, log it once per window (and when a lockout begins) and wait the delay it
earned. Only the caller's task waits. The HTTP guard, SMPP binds and SMTP AUTH use these.
"""

from __future__ import annotations

import logging

import trio

from edgegw.throttle import AuthThrottle

__all__ = ["admit", "login_failed"]


async def admit(throttle: AuthThrottle, door: str, address: str | None) -> float:
    """The seconds `address` stays refused at `door` (more than 0: answer the refusal without
    checking the credentials), or 0 once the delay it has earned is waited."""
    now = trio.current_time()
    admission = throttle.admit(door, address, now)
    if admission.refused_until > now:
        return admission.refused_until - now
    if admission.delay:
        await trio.sleep(admission.delay)
    return 0.0


async def login_failed(
    throttle: AuthThrottle,
    door: str,
    label: str,
    address: str | None,
    account: str,
    log: logging.Logger,
    detail: str = "",
) -> None:
    """Count a failed login of `account` from `address` at `door`, log it on `log` when the
    throttle says so (`label` names the door, `detail` says why), and wait its delay."""
    failure = throttle.failed(door, address, account, trio.current_time())
    line = throttle.failure_line(label, address, account, failure)
    if line is not None:
        log.warning("%s%s", line, f" ({detail})" if detail else "")
    if failure.delay:
        await trio.sleep(failure.delay)
