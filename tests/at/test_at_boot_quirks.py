"""Boot quirks of cheap modems: each initialises on the first open, without a reopen.

A modem deaf to commands until its boot URCs (RDY ... SMS Ready), one that answers SMS commands
with +CMS ERROR: 314 for a while after boot, one that powers on in text mode, one that numbers
its phone memory from 0, and all of them at once on a lossy link. Virtual time.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from drivers.at import AtModem, AtOptions
from drivers.events import InboundSms
from drivers.gsm import encode_message
from drivers.modem import OutgoingPart
from drivers.simulator import Simulator, SimulatorOptions, memory_opener

QUIRKS: dict[str, dict[str, Any]] = {
    "deaf_until_rdy": {"boot_deaf": 6.0},
    "sms_not_ready": {"boot_deaf": 3.0, "sms_not_ready": 8.0},
    "text_mode": {"text_mode": True},
    "me_from_zero": {"me_from_zero": True},
    "all_on_a_lossy_link": {
        "boot_deaf": 5.0,
        "sms_not_ready": 5.0,
        "text_mode": True,
        "me_from_zero": True,
        "periodic_urc": 2.0,
        "drop_final": 0.05,
        "noise": 0.02,
        "duplicate_urc": 0.2,
        "urc_in_response": 0.1,
        "fragment": True,
    },
}


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
async def test_boot_quirk_initialises_without_a_reopen(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, quirk: str
) -> None:
    sim = Simulator(SimulatorOptions(seed=4, **QUIRKS[quirk]))
    ports, open_stream = memory_opener(nursery, sim)
    storage = ["ME"] if sim.options.me_from_zero else ["SM", "ME"]
    modem = AtModem(
        "boot", AtOptions(health_interval=0.0, storage=storage), open_stream=open_stream
    )
    await nursery.start(modem.run)
    assert len(ports) == 1
    assert sim.engine.cmgf == 0
    assert modem.health().storage == storage[0]
    if sim.options.sms_not_ready:
        # Indications were set once the SMS layer was ready, not given up on.
        assert sim.engine.cnmi[1] == 1
    (part,) = encode_message("after boot").parts
    await modem.send(OutgoingPart(recipient="+4799999999", part=part))
    assert [sms.text for sms in sim.network.sent] == ["after boot"]
    indexes = await sim.deliver_mo("+4791234567", "hello modem")
    event = await next_inbound(modem)
    assert event.index == indexes[0] == (0 if sim.options.me_from_zero else 1)
    await modem.acknowledge(event)
    assert sim.engine.storages[storage[0]].used == 0
    assert len(ports) == 1


async def next_inbound(modem: AtModem) -> InboundSms:
    async for event in modem.events:
        if isinstance(event, InboundSms):
            return event
    raise AssertionError("the event stream ended")
