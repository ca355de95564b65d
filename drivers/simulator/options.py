"""Configuration of one simulated modem; the gateway's config embeds this struct.

Pure data, no I/O. Identity values follow 3GPP TS 27.007 (IMEI +CGSN, IMSI +CIMI, +CSQ rssi);
storage and reports TS 27.005 section 3 and TS 23.040 section 9.2.3.15 (TP-ST).
"""

from __future__ import annotations

import msgspec

from drivers.simulator.profiles import profile_named


class SimulatorOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Quirk profile name (drivers.simulator.profiles.PROFILES); unknown names are refused.
    profile: str = "default"
    # Answer to AT+CGSN.
    imei: str = "356938035643809"
    # Answer to AT+CCID / AT+ICCID; readable without the PIN, as on real SIMs.
    iccid: str = "8947080012345678901"
    # Answer to AT+CIMI; its first five digits (MCC+MNC) are the operator's numeric name.
    imsi: str = "242011234567890"
    # Long alphanumeric operator name in AT+COPS?.
    operator: str = "Simulated Network"
    # Service centre address in AT+CSCA?.
    smsc: str = "+4790002100"
    # AT+CSQ rssi: 0..31, or 99 for "not known or not detectable".
    signal: int = 20
    # The SIM starts in "SIM PIN" when set; None takes the profile's PIN (sim_pin: "1234").
    pin: str | None = None
    # PUK that unblocks the SIM after three wrong PINs: AT+CPIN="<puk>","<new pin>".
    puk: str = "12345678"
    # Seconds from the SIM being ready to the modem being registered (+CREG stat 2, then 1).
    register_delay: float = 0.0
    # Seconds between the Ctrl-Z and the +CMGS answer (network latency); None takes the
    # profile's delay (slow_cmgs: 5 s, others 0).
    send_delay: float | None = None
    # Every Nth SMS-SUBMIT fails with +CMS ERROR: 500; None takes the profile's (cms_500: 3),
    # 0 never fails.
    cms_fail_every: int | None = None
    # Append every SMS "sent to the network" as one JSON line (a SentSms) to this file, written
    # and flushed before +CMGS is answered, so a test in another process can inspect it.
    record: str | None = None
    # Seed of the noise of the garbage profile and of every link fault below, so a failing run
    # can be repeated.
    seed: int = 0
    # Slots of the SIM message storage "SM" (AT+CPMS); the phone memory "ME" has 100.
    storage_capacity: int = 30
    # Seconds from the network accepting an SMS-SUBMIT with TP-SRR to its status report reaching
    # the modem; None: no report ever comes. SimulatedNetwork.set_outcome overrides per recipient.
    report_delay: float | None = 5.0
    # TP-ST of the status reports (TS 23.040 9.2.3.15): 0 delivered, 0x20.. temporary,
    # 0x40.. permanent failures; per recipient through SimulatedNetwork.set_outcome.
    report_status: int = 0
    # With AT+CSMS=1, seconds the modem waits for AT+CNMA after +CMT or +CDS; then it does what
    # TS 27.005 section 3.4.1 says: <mt> and <ds> drop to 0 and the network's retry is stored.
    ack_timeout: float = 15.0
    # Seconds the SIM stays busy (+CME ERROR: 14) after power-on; None takes the profile's.
    sim_busy: float | None = None
    # Seconds the pty stays up before it vanishes (unplugged), repeatedly; None takes the
    # profile's (vanishing: 30 s), 0 never vanishes on its own.
    vanish_after: float | None = None
    # Seconds the port stays away before it reappears under a new path.
    vanish_for: float = 5.0
    # Directory where the pty server keeps a /dev/serial/by-id style symlink to the current pty.
    link_dir: str | None = None
    # A lossy link (cheap sticks, long cables, unpowered hubs); combinable with every profile.
    # Probability that a final result code (OK, ERROR, +CMS ERROR) is lost on the way.
    drop_final: float = 0.0
    # Probability of a burst of noise bytes (0x00, 0xFF and other non-text octets) after a reply.
    noise: float = 0.0
    # Probability that an unsolicited result code is sent twice.
    duplicate_urc: float = 0.0
    # Probability that an unsolicited result code waits for the next response and lands between
    # its information text and its final result code.
    urc_in_response: float = 0.0
    # Output in random fragments of 1 to 12 bytes, as a USB serial adaptor hands it over.
    fragment: bool = False
    # Seconds after power-on during which input is ignored; then RDY, +CPIN: READY and
    # Call Ready come unsolicited.
    boot_deaf: float = 0.0
    # Seconds after that during which SMS commands answer +CMS ERROR: 314 (not ready) though
    # the SIM is READY; SMS Ready ends them.
    sms_not_ready: float = 0.0
    # The modem powers on in text mode (+CMGF=1) instead of PDU mode.
    text_mode: bool = False
    # The phone memory "ME" numbers its slots from 0 instead of 1.
    me_from_zero: bool = False
    # Seconds between unsolicited ^RSSI: reports; 0 never.
    periodic_urc: float = 0.0
    # Seconds from power-on to a restart without a word (a watchdog, a brown-out, a hub that
    # resets the stick), and again as long after each: factory settings (echo on, text mode if
    # `text_mode`, no indications, +CMEE=0), the PIN asked again, no RDY; 0 never.
    silent_restart: float = 0.0

    def __post_init__(self) -> None:
        profile_named(self.profile)
        if not (0 <= self.signal <= 31 or self.signal == 99):
            raise ValueError(f"signal must be 0..31 or 99, not {self.signal}")
        if self.send_delay is not None and self.send_delay < 0:
            raise ValueError("send_delay must not be negative")
        if self.register_delay < 0:
            raise ValueError("register_delay must not be negative")
        if self.cms_fail_every is not None and self.cms_fail_every < 0:
            raise ValueError("cms_fail_every must not be negative")
        if not 1 <= self.storage_capacity <= 255:
            raise ValueError("storage_capacity must be 1..255")
        if self.report_delay is not None and self.report_delay < 0:
            raise ValueError("report_delay must not be negative")
        if not 0 <= self.report_status <= 255:
            raise ValueError("report_status is one octet (TP-ST), 0..255")
        for name in ("drop_final", "noise", "duplicate_urc", "urc_in_response"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability, 0..1")
        for name in (
            "ack_timeout",
            "sim_busy",
            "vanish_after",
            "vanish_for",
            "boot_deaf",
            "sms_not_ready",
            "periodic_urc",
            "silent_restart",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
