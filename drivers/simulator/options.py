"""Configuration of one simulated modem; the gateway's config embeds this struct.

Pure data, no I/O. Identity values follow 3GPP TS 27.007 (IMEI +CGSN, IMSI +CIMI, +CSQ rssi).
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
    # Seed of the noise of the garbage profile, so a failing run can be repeated.
    seed: int = 0

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
