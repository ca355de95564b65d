"""What the pipeline logs of a modem's health changes: each once, in words that read; and when
it takes a modem's storage as read."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import cast

import pytest
from support.reports import report_event

from drivers.events import (
    HealthChanged,
    ModemEvent,
    ModemState,
    RegistrationChanged,
    StorageRead,
)
from drivers.modem import Modem
from edgegw.clock import Clock
from edgegw.pipeline.inbound import InboundReceiver
from edgegw.pipeline.modems import forward_events
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.storagereads import SETTLE, StorageReads
from edgegw.store import StoreError


class UnpluggedModem:
    """The health changes of a modem whose port is gone, as the AT driver emits them."""

    name = "usb0"

    @property
    async def events(self) -> AsyncIterator[HealthChanged]:
        gone = "cannot open the port: /dev/ttyUSB0: no such device"
        for state, detail in [
            (ModemState.STARTING, "opening the port"),
            (ModemState.FAILED, f"{gone}; reopening in 1 s"),
            (ModemState.STARTING, "opening the port"),
            (ModemState.QUARANTINED, f"{gone}; 20 recoveries failed in a row, resting 900 s"),
            (ModemState.READY, "signal -73 dBm, home"),
        ]:
            yield HealthChanged(modem=self.name, state=state, detail=detail)


async def test_a_failure_is_left_to_the_driver_log_and_the_rest_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    woken = []
    caplog.set_level(logging.INFO, logger="edgegw.pipeline.modems")
    await forward_events(
        cast(Modem, UnpluggedModem()),
        cast(InboundReceiver, None),  # only health changes come: nothing is received
        cast(ReportCorrelator, None),
        lambda: woken.append(True),
        StorageReads(),
        Clock(),
    )
    assert len(woken) == 5  # every change wakes the dispatcher
    assert [record.getMessage() for record in caplog.records] == [
        "modem usb0: starting (opening the port)",
        "modem usb0: starting (opening the port)",
        "modem usb0: ready (signal -73 dBm, home)",
    ]


class ReportOnTheSim:
    """A modem whose first read of its storage found one status report."""

    name = "m1"

    @property
    async def events(self) -> AsyncIterator[ModemEvent]:
        yield RegistrationChanged(modem=self.name, registered=True)
        yield report_event(self.name, 200, "+4741234567", 0)
        yield StorageRead(modem=self.name)

    async def acknowledge(self, event: ModemEvent) -> None:
        pass


class Reports:
    def __init__(self, *, store_up: bool) -> None:
        self.store_up = store_up

    async def receive(self, event: ModemEvent) -> None:
        if not self.store_up:
            raise StoreError("disk I/O error")


@pytest.mark.parametrize(("store_up", "released"), [(True, ("m1",)), (False, ())])
async def test_a_storage_read_counts_only_once_all_it_found_is_stored(
    store_up: bool, released: tuple[str, ...]
) -> None:
    """A report that could not be stored stays on the SIM until a later sweep: until then the
    report sweeper must not take the modem's storage as read and close its message with DR
    362."""
    reads = StorageReads()
    clock = Clock()
    await forward_events(
        cast(Modem, ReportOnTheSim()),
        cast(InboundReceiver, None),  # only a status report comes
        cast(ReportCorrelator, Reports(store_up=store_up)),
        lambda: None,
        reads,
        clock,
    )
    started = clock.now()
    assert reads.released(started, 3600.0, started + SETTLE) == released


def test_a_modem_that_loses_its_registration_waits_settle_after_it_registers_again() -> None:
    """The network holds what it has for a modem it cannot reach and delivers it once the
    modem is registered again: a modem that lost its registration is not released, nor until
    SETTLE after it registered again; one never registered only at the end of the wait."""
    reads = StorageReads()
    for modem in ("m1", "m2"):
        reads.read(modem)
    reads.registration("m1", True, 10.0)
    assert reads.released(0.0, 3600.0, 10.0 + SETTLE) == ("m1",)
    reads.registration("m1", False, 400.0)
    assert reads.released(0.0, 3600.0, 400.0) == ()
    reads.registration("m1", True, 450.0)
    assert reads.next_release(0.0, 3600.0, 450.0) == 450.0 + SETTLE
    assert reads.released(0.0, 3600.0, 449.0 + SETTLE) == ()
    assert reads.released(0.0, 3600.0, 450.0 + SETTLE) == ("m1",)
    assert reads.next_release(0.0, 3600.0, 450.0 + SETTLE) == 3600.0
    assert reads.released(0.0, 3600.0, 3600.0) is None
