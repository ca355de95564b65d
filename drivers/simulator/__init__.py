"""The simulated GSM modem: an AT responder on a stream or pseudo-terminal, and its network.

Drives like real hardware (ITU-T V.250, 3GPP TS 27.007 and TS 27.005 in PDU mode); the AT driver
must need nothing from it that a real modem would not give. Never imports `edgegw`.
"""

from drivers.simulator.engine import Incoming, ModemEngine, Reply
from drivers.simulator.mobile import deliver_tpdus, mobile_parts
from drivers.simulator.network import SimulatedNetwork
from drivers.simulator.options import SimulatorOptions
from drivers.simulator.profiles import PROFILES, QuirkProfile, profile_named
from drivers.simulator.sent import SentSms
from drivers.simulator.shell import (
    Simulator,
    memory_opener,
    run_pty_simulator,
    serve_pty,
    serve_stream,
)
from drivers.simulator.storage import MessageStatus, MessageStorage, StoredSms

__all__ = [
    "PROFILES",
    "Incoming",
    "MessageStatus",
    "MessageStorage",
    "ModemEngine",
    "QuirkProfile",
    "Reply",
    "SentSms",
    "SimulatedNetwork",
    "Simulator",
    "SimulatorOptions",
    "StoredSms",
    "deliver_tpdus",
    "memory_opener",
    "mobile_parts",
    "profile_named",
    "run_pty_simulator",
    "serve_pty",
    "serve_stream",
]
