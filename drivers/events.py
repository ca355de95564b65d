"""Events a modem driver emits, in the driver's own terms (the gateway maps them to its model)."""

from __future__ import annotations

import enum

import msgspec


class ModemState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"


class HealthChanged(msgspec.Struct, frozen=True, kw_only=True):
    modem: str
    state: ModemState
    detail: str


ModemEvent = HealthChanged
