"""Readiness: whether every service has at least one modem that can send now, and why the
others cannot, and whether the store takes writes. A pure decision over the modems' health, the
pacer's caps and the store's state; `/ready` and the `ready` field of `/health` show it
(edgegw.http.monitoring). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from drivers.events import ModemState
from drivers.modem import Health

__all__ = ["ModemProblem", "Readiness", "ServiceReadiness", "readiness"]


class ModemProblem(msgspec.Struct, kw_only=True):
    modem: str
    reason: str  # e.g. "failed: /dev/ttyUSB0: no such device", "capped until ..."


class ServiceReadiness(msgspec.Struct, kw_only=True):
    service: int
    ready: bool
    sendingModems: list[str]  # the service's modems that can send now


class Readiness(msgspec.Struct, kw_only=True, omit_defaults=True):
    ready: bool  # every service has at least one modem that can send, and the store takes writes
    services: list[ServiceReadiness]
    notReady: list[ModemProblem]  # every modem that cannot send, with why
    store: str | None = None  # why the store takes no writes, while it does not


def readiness(
    services: Sequence[tuple[int, Sequence[str]]],
    health: Mapping[str, Health],
    capped: Mapping[str, str],
    store: str | None = None,
) -> Readiness:
    """`services` are (id, modem names; empty for all) pairs; `health` every modem's health;
    `capped` the modems a pacing cap holds back, with until when (ISO 8601); `store` why the
    store takes no writes (a full disk), when it does not: then no send can be taken."""
    problems: dict[str, str] = {}
    for name, modem_health in health.items():
        if modem_health.state is not ModemState.READY:
            detail = modem_health.detail or modem_health.last_error
            state = modem_health.state.value
            problems[name] = f"{state}: {detail}" if detail else state
        elif name in capped:
            problems[name] = f"capped until {capped[name]}"
    verdicts = []
    for service_id, modems in services:
        usable = [name for name in (modems or health) if name in health and name not in problems]
        verdicts.append(
            ServiceReadiness(service=service_id, ready=bool(usable), sendingModems=usable)
        )
    return Readiness(
        ready=store is None and all(verdict.ready for verdict in verdicts),
        services=verdicts,
        notReady=[ModemProblem(modem=name, reason=reason) for name, reason in problems.items()],
        store=store,
    )
