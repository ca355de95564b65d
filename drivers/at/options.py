"""How to reach and drive one AT modem: the options the gateway's modem config embeds.

Pure data with its checks (no trio, no serial), so the configuration can hold them without
importing the driver. 3GPP TS 27.005 (storages, AT+CNMI settings).
"""

from __future__ import annotations

import msgspec

from drivers.at.commands import cpms, parse_cnmi_setting
from drivers.at.framer import AtFramer

# Where a modem is looked for by IMEI/ICCID when no port is configured (or it is gone).
DEFAULT_SCAN = ["/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*"]


class AtOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How to reach and drive one AT modem; embedded in the gateway's modem config."""

    # Device path, /dev/serial/by-id/... link, pty path or pyserial URL (socket://, loop://).
    # Empty, or a path that is gone, with `imei` or `iccid` set: the modem is found by scanning.
    port: str = ""
    # The modem's IMEI (AT+CGSN); when set, a modem answering with another IMEI is refused.
    imei: str | None = None
    # The SIM's ICCID (AT+CCID and fallbacks); when set, another SIM is refused.
    iccid: str | None = None
    # Glob patterns of the ports scanned for `imei`/`iccid`. /dev/pts/* (where users' terminals
    # are) is only scanned by a pattern that starts with /dev/pts/.
    scan: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SCAN))
    # Longest time one port may take to answer the identity probe of a scan.
    probe_timeout: float = 5.0
    # Line speed; ignored by USB modems that emulate a serial port, needed by real UARTs.
    baudrate: int = 115200
    # SIM PIN, entered once when the modem asks for it; a wrong PIN is never retried.
    pin: str | None = None
    # Longest wait for the final result of a command other than AT+CMGS (queries, settings,
    # reads, deletes); a lost one costs this, a resync and a retry.
    query_timeout: float = 2.0
    # Lost answers of one command resynchronised and retried before the driver re-initialises
    # (or, while initialising, reopens the port).
    command_retries: int = 2
    # Longest a command keeps answering "not ready" (+CMS ERROR: 314, +CME ERROR: 14, as before
    # "SMS Ready") while it is asked again every `sim_poll_interval`.
    not_ready_timeout: float = 30.0
    # Longest wait for the final result code once a command's information text has come (a
    # modem writes it right after); a longer silence means it was lost.
    final_grace: float = 0.3
    # Longest wait for the "> " of AT+CMGS.
    command_timeout: float = 10.0
    # Longest wait for +CMGS after the PDU: TS 27.005 allows the network up to 120 s.
    send_timeout: float = 120.0
    # Longest the whole initialisation may take, including waiting for the SIM to get ready.
    init_timeout: float = 60.0
    # Wait for each bare "AT" while synchronising with a modem that may still be booting, and
    # for each resync (ATS7=<nonce>;S7?) after a lost answer.
    sync_timeout: float = 2.0
    # Unanswered attempts of those before the port is declared dead and reopened.
    sync_attempts: int = 5
    # Pause between +CPIN? polls while the SIM is busy or initialising.
    sim_poll_interval: float = 1.0
    # First pause before reopening a failed port; doubles per failure up to the maximum.
    reopen_backoff_initial: float = 1.0
    reopen_backoff_max: float = 60.0
    # Failed recoveries in a row (open and initialise never reaching READY) before the modem
    # is quarantined; 0 never quarantines.
    quarantine_after: int = 20
    # How long a quarantined modem rests before the recovery starts over.
    quarantine_seconds: float = 900.0
    # Transient +CMS ERRORs in a row, on sends of different messages, before the modem is
    # re-initialised: one failing message is the message, five are the modem; 0 never.
    cms_reinit_after: int = 5
    # Seconds between health polls (AT+CSQ, AT+CREG?, AT+CMEE?) while idle; 0 disables them.
    # A poll that times out is how a hung modem is noticed, its commands echoed after ATE0 took
    # or an AT+CMEE? answered with its factory setting how one that restarted without a word is.
    health_interval: float = 60.0
    # Message storages in order of preference (AT+CPMS); the first one the modem accepts for
    # reading, writing and receiving alike is used for all three.
    storage: list[str] = msgspec.field(default_factory=lambda: ["SM", "ME"])
    # AT+CNMI settings "<mode>,<mt>,<bm>,<ds>,<bfr>" tried in order until one is accepted.
    # Stored delivery (+CMTI, +CDSI) comes first: a stored message waits for the gateway's
    # commit, a directly delivered one (+CMT, +CDS) must be acknowledged at once.
    cnmi: list[str] = msgspec.field(
        default_factory=lambda: [
            "2,1,0,2,0",
            "1,1,0,2,0",
            "2,1,0,1,0",
            "1,1,0,1,0",
            "2,1,0,0,0",
            "1,1,0,0,0",
            "2,2,0,1,0",
            "1,2,0,1,0",
        ]
    )
    # Ask for AT+CSMS=1 when a direct setting was chosen, so that +CMT/+CDS wait for our
    # AT+CNMA and a message the gateway has no room for goes back to the network.
    csms_for_direct: bool = True
    # Seconds between sweeps of the storage (AT+CMGL=4) for messages not yet acknowledged;
    # one sweep always runs at start-up; 0 disables the periodic ones.
    sweep_interval: float = 300.0
    # Seconds an emitted stored message may wait for `acknowledge` before a sweep emits it
    # again: the gateway may have failed to store it. It also comes again after a reconnect.
    reemit_after: float = 1800.0
    # Delete stored PDUs that do not decode. Off by default: they stay for a person to read.
    delete_undecodable: bool = False
    # Unrecognised lines in a row (with nothing pending, or no part of the pending command's
    # answer) before the link counts as garbled.
    garbage_limit: int = 32
    # Longest line read from the modem, in bytes; a longer one is an unrecognised line.
    max_line: int = 4096
    # Events kept for a slow reader. A HealthChanged that finds it full drops the oldest
    # HealthChanged (never an inbound event); see `AtModem` for inbound events.
    event_buffer: int = 64

    def __post_init__(self) -> None:
        for storage in self.storage:
            cpms(storage.upper())
        for setting in self.cnmi:
            parse_cnmi_setting(setting)
        AtFramer(self.max_line)  # refuses a line too short for the modem's answers
        # Each is a wait given to trio: a negative one is a ValueError from every try, and 0
        # gives up at once (never a prompt, a send, a probe) or polls and reopens in a spin.
        for name in (
            "query_timeout",
            "final_grace",
            "sync_timeout",
            "probe_timeout",
            "command_timeout",
            "send_timeout",
            "init_timeout",
            "sim_poll_interval",
            "reopen_backoff_initial",
            "reopen_backoff_max",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0 seconds")
        for name in ("command_retries", "not_ready_timeout", "quarantine_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
