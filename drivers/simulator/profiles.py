"""Quirk profiles: named ways in which the simulated modem misbehaves like real hardware does.

Pure data, no I/O. Each profile reproduces one habit seen on real modems (SIM800, Huawei E173,
Quectel EC25) so that the AT driver can be tested against it; see STYLE.md "Tests".
"""

from __future__ import annotations

import msgspec


class QuirkProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What a profile changes; every field's default is the well-behaved modem."""

    name: str
    description: str
    # ATE0 answers OK but echo stays on (modems whose firmware ignores it).
    echo_locked_on: bool = False
    # Seconds between the Ctrl-Z and the +CMGS answer unless SimulatorOptions.send_delay is set.
    send_delay: float = 0.0
    # A URC line put between the first information line of a response and its final result
    # code, as modems do when an unsolicited event races a command. Never inserted into a
    # response whose own lines share its prefix, so the interleaving stays decidable.
    urc_in_response: str | None = None
    # Every Nth accepted SMS-SUBMIT fails with +CMS ERROR: 500 (0 = never) unless
    # SimulatorOptions.cms_fail_every is set.
    cms_fail_every: int = 0
    # Plain ERROR wherever a +CMS ERROR: <n> would be given (modems that ignore +CMEE for SMS).
    bare_cms_error: bool = False
    # Random noise bytes after every final result code (a noisy serial line or a chatty modem).
    garbage: bool = False
    # The SIM needs this PIN at start-up unless SimulatorOptions.pin is set.
    pin: str | None = None
    # Seconds a real URC (+CMTI, +CDSI, ...) is held back so that it lands between the first
    # information line of the next response and its final result code; 0 sends it at once.
    urc_hold: float = 0.0
    # Seconds the SIM answers +CME ERROR: 14 (SIM busy) after power-on, as while it boots.
    sim_busy: float = 0.0
    # The SIM storage starts full of read messages, so nothing new is stored until some go.
    storage_full: bool = False
    # Seconds the pty stays up before it vanishes (USB re-enumeration); 0 never.
    vanish_after: float = 0.0


PROFILES: dict[str, QuirkProfile] = {
    profile.name: profile
    for profile in (
        QuirkProfile(name="default", description="a well-behaved modem"),
        QuirkProfile(name="echo_on", description="ignores ATE0", echo_locked_on=True),
        QuirkProfile(name="slow_cmgs", description="+CMGS answers after 5 s", send_delay=5.0),
        QuirkProfile(
            name="urc_in_response",
            description="a +CREG: 1 URC between a response's information and its OK",
            # +CREG: 1 ("registered, home network") is harmless: it asks for no action and
            # repeats what the modem already says. Real URCs (+CMTI, +CDSI) wait up to 1 s for
            # a response to land in.
            urc_in_response="+CREG: 1",
            urc_hold=1.0,
        ),
        QuirkProfile(
            name="cms_500",
            description="every 3rd SMS-SUBMIT fails with +CMS ERROR: 500",
            cms_fail_every=3,
        ),
        QuirkProfile(
            name="bare_error",
            description="plain ERROR where a +CMS ERROR code would be",
            bare_cms_error=True,
        ),
        QuirkProfile(
            name="garbage",
            description="random noise bytes between responses",
            garbage=True,
        ),
        QuirkProfile(name="sim_pin", description="the SIM needs PIN 1234", pin="1234"),
        QuirkProfile(
            name="sim_not_ready",
            description="the SIM is busy for 3 s after power-on (+CME ERROR: 14)",
            sim_busy=3.0,
        ),
        QuirkProfile(
            name="storage_full",
            description="the SIM storage is full of read messages; new ones wait in the network",
            storage_full=True,
        ),
        QuirkProfile(
            name="vanishing",
            description="the port vanishes every 30 s and reappears under another path",
            vanish_after=30.0,
        ),
    )
}


def profile_named(name: str) -> QuirkProfile:
    """The profile called `name`; ValueError naming the known ones if there is none."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown simulator profile {name!r}; known profiles: {known}") from None
