"""What the pipeline logs of a modem's health changes: each once, in words that read."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import cast

import pytest

from drivers.events import HealthChanged, ModemState
from drivers.modem import Modem
from edgegw.pipeline.inbound import InboundReceiver
from edgegw.pipeline.modems import forward_events
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.storagereads import StorageReads


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
    )
    assert len(woken) == 5  # every change wakes the dispatcher
    assert [record.getMessage() for record in caplog.records] == [
        "modem usb0: starting (opening the port)",
        "modem usb0: starting (opening the port)",
        "modem usb0: ready (signal -73 dBm, home)",
    ]
