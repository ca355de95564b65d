"""Finding one modem's port: the configured path, the last one found, else a scan by identity.

A USB stick re-enumerates under another /dev/ttyUSB* after a reset; configured with its IMEI
(AT+CGSN, TS 27.007 section 5.4) or its SIM's ICCID, the modem is found again by probing the
ports of a scan. Never probes a port another driver holds (`drivers.ports.CLAIMS`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
import trio

from drivers.modem import ModemError, ModemUnavailable
from drivers.ports import CLAIMS, candidate_ports, device_key, port_exists
from drivers.transport import TransportError

log = logging.getLogger("drivers.at")


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """The configured identity of a modem; empty fields are not checked."""

    imei: str | None = None
    iccid: str | None = None

    @property
    def wanted(self) -> bool:
        return bool(self.imei or self.iccid)

    def mismatch(self, imei: str, iccid: str) -> str:
        """Why a modem answering `imei` and `iccid` is not this one; "" when it is."""
        if self.imei and imei != self.imei:
            return f"IMEI {imei or 'unknown'} is not the configured {self.imei}"
        if self.iccid and iccid != self.iccid.upper().rstrip("F"):
            return f"ICCID {iccid or 'unknown'} is not the configured {self.iccid}"
        return ""

    def __str__(self) -> str:
        wanted = [
            f"IMEI {self.imei}" if self.imei else "",
            f"ICCID {self.iccid}" if self.iccid else "",
        ]
        return " and ".join(w for w in wanted if w)


# Opens a port for the probe and asks the modem on it for (IMEI, ICCID), "" where unknown.
Identify = Callable[[trio.abc.Stream], Awaitable[tuple[str, str]]]


class ModemLocator:
    """Where the modem `name` is now. `refuse(path)` marks a device found holding another
    modem or SIM, skipped until a scan finds nothing (devices may have moved since)."""

    def __init__(
        self,
        name: str,
        *,
        port: str,
        identity: Identity,
        scan: list[str],
        probe_timeout: float,
        open_path: Callable[[str], Awaitable[trio.abc.Stream]],
        identify: Identify,
    ) -> None:
        self.name = name
        self.port = port
        self.identity = identity
        self.scan = scan
        self.probe_timeout = probe_timeout
        self._open_path = open_path
        self._identify = identify
        self.last_path = ""
        self._refused: set[str] = set()

    def refuse(self, path: str) -> None:
        self._refused.add(device_key(path))

    async def open(self) -> tuple[str, trio.abc.Stream]:
        """Locate the port, claim it and open it; the claim is released if opening fails.

        A configured or last path that cannot be opened may be another device now (a stick
        re-enumerated, and its old name given to one another program holds): with an identity
        to find it by, the modem is looked for by a scan before giving up.
        """
        path = await self.locate()
        try:
            return path, await self._claimed_open(path)
        except ModemError as exc:
            if not self.identity.wanted:
                raise
            self.refuse(path)
            try:
                path = await self.locate()
            except ModemError as scan_exc:
                raise ModemUnavailable(f"{exc}; {scan_exc}") from scan_exc
        return path, await self._claimed_open(path)

    async def _claimed_open(self, path: str) -> trio.abc.Stream:
        try:
            stream = await self._open_path(path)
        except BaseException:
            CLAIMS.release_all(self.name)
            raise
        self.last_path = path
        return stream

    async def locate(self) -> str:
        """The configured port if it is there, else the last one found, else a scan by identity."""
        for path in (self.port, self.last_path):
            if path and port_exists(path) and device_key(path) not in self._refused:
                if CLAIMS.claim(path, self.name):
                    return path
                raise ModemUnavailable(f"{path} is held by modem {CLAIMS.holder(path)}")
        if not self.identity.wanted:
            if self.port:
                raise TransportError(f"{self.port}: no such device")
            raise TransportError("no port configured, and no IMEI or ICCID to find one by")
        for path in candidate_ports(self.scan):
            if device_key(path) in self._refused or not CLAIMS.claim(path, self.name):
                continue
            if await self._probe(path):
                log.info("modem %s found on %s", self.name, path)
                return path
            CLAIMS.release(path, self.name)
        # Nothing matched: the refusals may be stale once devices have moved.
        self._refused.clear()
        raise ModemUnavailable(f"no port in {self.scan} holds {self.identity}")

    async def _probe(self, path: str) -> bool:
        """Open `path` briefly and ask for the IMEI and ICCID; True when they are ours."""
        with trio.move_on_after(self.probe_timeout):
            try:
                stream = await self._open_path(path)
            except ModemError as exc:
                log.debug("modem %s: probing %s: %s", self.name, path, exc)
                return False
            try:
                imei, iccid = await self._identify(stream)
            except ModemError as exc:
                log.debug("modem %s: probing %s: %s", self.name, path, exc)
                return False
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                    await close_quietly(stream)
            return not self.identity.mismatch(imei, iccid)
        log.debug("modem %s: %s did not answer the probe in time", self.name, path)
        return False


async def close_quietly(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.info("closing the port failed: %s", exc)
