"""The AT driver against the simulated modem, over memory streams and over a real pty."""

from __future__ import annotations

import logging

import msgspec
import pytest
import trio
import trio.testing

from drivers.at import AtModem, AtOptions
from drivers.events import HealthChanged, InboundSms, ModemState, StatusReportReceived
from drivers.gsm import (
    ParsingType,
    concat_info,
    decode_concatenated,
    decode_text,
    encode_message,
)
from drivers.modem import OutgoingPart, SendRejected
from drivers.simulator import PROFILES, Simulator, SimulatorOptions, memory_opener, serve_pty


def outgoing(text: str, recipient: str = "+4799999999") -> list[OutgoingPart]:
    message = encode_message(text)
    return [OutgoingPart(recipient=recipient, part=part) for part in message.parts]


async def wait_state(modem: AtModem, state: ModemState) -> HealthChanged:
    while True:
        event = await modem.events.receive()
        if isinstance(event, HealthChanged) and event.state is state:
            return event


async def test_a_signal_report_every_two_seconds_writes_no_log_line(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Huawei sticks report their signal (^RSSI) every few seconds: an INFO line each was
    tens of thousands of lines a day in the journal, about nothing the driver acts on."""
    caplog.set_level(logging.INFO, logger="drivers.at")
    sim = Simulator(SimulatorOptions(periodic_urc=2.0))
    _, open_stream = memory_opener(nursery, sim)
    modem = AtModem("sim", AtOptions(health_interval=0.0), open_stream=open_stream)
    await nursery.start(modem.run)
    await trio.sleep(60)
    assert modem.urc_counts["^RSSI"] >= 29
    assert [r.getMessage() for r in caplog.records if "^RSSI" in r.getMessage()] == []


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_send_through_every_profile(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, profile: str
) -> None:
    sim = Simulator(SimulatorOptions(profile=profile))
    _, open_stream = memory_opener(nursery, sim)
    pin = "1234" if PROFILES[profile].pin else None
    modem = AtModem(
        "sim",
        AtOptions(pin=pin, health_interval=0.0),
        open_stream=open_stream,
    )
    await nursery.start(modem.run)
    sent: list[int] = []
    rejected: list[SendRejected] = []
    for part in outgoing("Hello from edgegw, " * 20):  # three concatenated parts
        for _attempt in range(4):
            try:
                sent.append(await modem.send(part))
                break
            except SendRejected as exc:
                assert not exc.permanent
                rejected.append(exc)
    assert len(sent) == 3
    received = list(sim.network.sent)
    assert [sms.message_reference for sms in received] == sent
    assert "".join(sms.text for sms in received) == "Hello from edgegw, " * 20
    assert all(sms.recipient == "+4799999999" for sms in received)
    assert modem.health().state is ModemState.READY
    assert modem.health().sent == 3
    # Only the cms_500 profile refuses submits, and then with the transient code 500.
    assert {exc.cms for exc in rejected} == ({500} if profile == "cms_500" else set())


async def test_send_over_a_real_pty(nursery: trio.Nursery) -> None:
    sim = Simulator(SimulatorOptions())
    path = await nursery.start(serve_pty, sim)
    modem = AtModem("pty", AtOptions(port=path, health_interval=0.0))
    await nursery.start(modem.run)
    (part,) = outgoing("Over a pseudo-terminal", recipient="12345")
    reference = await modem.send(part)
    (sms,) = sim.network.sent
    assert (sms.recipient, sms.text, sms.message_reference) == (
        "12345",
        "Over a pseudo-terminal",
        reference,
    )
    assert modem.health().sim == "READY"


async def test_recovery_against_the_simulator(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Simulator(SimulatorOptions())
    ports, open_stream = memory_opener(nursery, sim)
    modem = AtModem("sim", AtOptions(health_interval=0.0), open_stream=open_stream)
    await nursery.start(modem.run)
    await ports[0].aclose()
    await wait_state(modem, ModemState.FAILED)
    await wait_state(modem, ModemState.READY)
    (part,) = outgoing("after recovery")
    await modem.send(part)
    assert [sms.text for sms in sim.network.sent] == ["after recovery"]
    assert modem.health().recoveries == 1


async def test_three_part_ucs2_mo_arrives_as_three_inbound_sms(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Simulator(SimulatorOptions())
    _, open_stream = memory_opener(nursery, sim)
    modem = AtModem("sim", AtOptions(health_interval=0.0), open_stream=open_stream)
    await nursery.start(modem.run)
    text = "Hilsen fra Tromsø ❄️ · Привет из тундры 🙂 " * 4
    assert len(encode_message(text, parsing=ParsingType.AUTO_DETECT).parts) == 3
    indexes = await sim.deliver_mo("+4791234567", text, interval=2.0)
    assert len(indexes) == 3
    events: list[InboundSms] = []
    while len(events) < 3:
        event = await modem.events.receive()
        if isinstance(event, InboundSms):
            events.append(event)
    assert sorted(event.index or 0 for event in events) == sorted(indexes)
    assert all(event.deliver.originator == "+4791234567" for event in events)
    ordered = sorted(events, key=lambda e: (concat_info(e.deliver.udh) or (0, 0, 0))[2])
    assert decode_concatenated([event.deliver.part for event in ordered]) == text
    for event in events:
        await modem.acknowledge(event)
    assert sim.engine.storages[modem.health().storage].used == 0
    assert modem.health().received == 3


async def test_status_report_matches_the_message_reference(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = Simulator(SimulatorOptions(report_delay=5.0))
    _, open_stream = memory_opener(nursery, sim)
    modem = AtModem("sim", AtOptions(health_interval=0.0), open_stream=open_stream)
    await nursery.start(modem.run)
    references = []
    for text in ("first with a report", "second with a report"):
        (part,) = outgoing(text, recipient="+4798765432")
        references.append(await modem.send(msgspec.structs.replace(part, status_report=True)))
    assert [sms.status_report for sms in sim.network.sent] == [True, True]
    start = trio.current_time()
    reports: list[StatusReportReceived] = []
    while len(reports) < 2:
        event = await modem.events.receive()
        if isinstance(event, StatusReportReceived):
            reports.append(event)
    assert trio.current_time() - start == pytest.approx(5.0, abs=0.5)
    assert sorted(r.report.message_reference for r in reports) == sorted(references)
    assert all(r.report.recipient == "+4798765432" and r.report.status == 0 for r in reports)
    for report in reports:
        await modem.acknowledge(report)
    assert modem.health().reports == 2


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_receive_through_every_profile(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, profile: str
) -> None:
    sim = Simulator(SimulatorOptions(profile=profile))
    _, open_stream = memory_opener(nursery, sim)
    pin = "1234" if PROFILES[profile].pin else None
    modem = AtModem("sim", AtOptions(pin=pin, health_interval=0.0), open_stream=open_stream)
    await nursery.start(modem.run)
    await trio.sleep(1.0)
    texts = ["first from a phone", "second from a phone"]
    for text in texts:
        await sim.deliver_mo("+4791234567", text)
    received: dict[tuple[str, int | None], str] = {}
    with trio.fail_after(600):
        # storage_full starts with old messages in every slot: they come first, and the new
        # ones only once the acknowledgements have made room.
        while not set(texts) <= set(received.values()):
            event = await modem.events.receive()
            if isinstance(event, InboundSms):
                # The same stored message may come again after a reconnect, never as another.
                received[(event.storage, event.index)] = decode_text(event.deliver.part)
                await modem.acknowledge(event)
    assert sorted(received.values()).count(texts[0]) == 1
    assert sorted(received.values()).count(texts[1]) == 1
