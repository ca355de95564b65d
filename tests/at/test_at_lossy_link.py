"""Proof under a lossy link: the AT driver against a simulated cheap stick on a bad cable.

5 % of final result codes lost, noise after 2 % of replies, 20 % of URCs sent twice, every reply
in 1-12 byte fragments. 200 messages (some multi-part, some UCS-2) each reach the network exactly
once, 50 MOs (some in 3 parts) each arrive exactly once and leave the SIM, every status report
is matched once, and the port is reopened at most `MAX_REOPENS` times. Virtual time.
"""

from __future__ import annotations

from collections import Counter

import msgspec
import trio
import trio.testing

from drivers.at import AtModem, AtOptions
from drivers.events import InboundSms, ModemState, StatusReportReceived
from drivers.gsm import ParsingType, concat_info, decode_text, encode_message
from drivers.modem import ModemUnavailable, OutgoingPart
from drivers.simulator import Simulator, SimulatorOptions, memory_opener

LOSSY = {"drop_final": 0.05, "noise": 0.02, "duplicate_urc": 0.2, "fragment": True}
MESSAGES = 200
MOS = 50
# Losses cost resyncs on the open port; a reopen needs every one of `sync_attempts` bare ATs
# to lose its OK (0.05 ** 5), or three lost answers of one command in a row.
MAX_REOPENS = 2


def message_text(number: int) -> str:
    if number % 10 == 3:  # three parts, GSM 7-bit
        return f"Long message {number}: " + "the quick brown fox jumps over the lazy dog " * 8
    if number % 7 == 1:  # UCS-2, two parts every other time
        return f"Сообщение {number} ❄️ " + ("из тундры " * 8 if number % 2 else "")
    return f"Message {number}"


def mo_text(number: int) -> str:
    if number % 5 == 0:  # three parts, UCS-2
        return f"MO {number} Привет из тундры 🙂 " * 6
    return f"MO {number} hello"


def recipient(number: int) -> str:
    return f"+4790{number:06d}"


async def send_all(modem: AtModem, parts: list[OutgoingPart], sent: list[tuple[str, int]]) -> None:
    """The modem worker's part: each part once, again only when the modem said it was not
    sent (not ready), which a send whose outcome is unknown (SendOutcomeUnknown) is not."""
    for part in parts:
        while True:
            try:
                reference = await modem.send(part)
            except ModemUnavailable as exc:
                assert "sent or not is unknown" not in str(exc)
                await trio.sleep(1.0)
                continue
            sent.append((part.recipient, reference))
            break


async def test_lossy_link_costs_retries_not_messages(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    seed = 1
    sim = Simulator(SimulatorOptions(seed=seed, report_delay=3.0, **LOSSY))  # type: ignore[arg-type]
    ports, open_stream = memory_opener(nursery, sim)
    modem = AtModem(
        "lossy", AtOptions(health_interval=30.0, sweep_interval=20.0), open_stream=open_stream
    )
    await nursery.start(modem.run)

    parts = [
        OutgoingPart(recipient=recipient(number), part=part, status_report=True)
        for number in range(MESSAGES)
        for part in encode_message(message_text(number), parsing=ParsingType.AUTO_DETECT).parts
    ]
    assert sum(1 for part in parts if part.part.dcs == 8) > 20
    mo_counts = [
        len(encode_message(mo_text(n), parsing=ParsingType.AUTO_DETECT).parts) for n in range(MOS)
    ]
    assert mo_counts.count(3) == MOS // 5
    mo_parts = sum(mo_counts)
    inbound: list[InboundSms] = []
    reports: list[StatusReportReceived] = []
    everything_in = trio.Event()

    async def gateway() -> None:
        # What the gateway does with each event: commit it, then acknowledge it.
        async for event in modem.events:
            if isinstance(event, InboundSms):
                inbound.append(event)
            elif isinstance(event, StatusReportReceived):
                reports.append(event)
            else:
                continue
            await modem.acknowledge(event)
            if len(inbound) >= mo_parts and len(reports) >= len(parts):
                everything_in.set()

    async def phones() -> None:
        for number in range(MOS):
            await sim.deliver_mo(f"+4791{number:06d}", mo_text(number), interval=0.5)
            await trio.sleep(0.7)

    nursery.start_soon(gateway)
    nursery.start_soon(phones)
    sent: list[tuple[str, int]] = []
    await send_all(modem, parts, sent)
    with trio.fail_after(600):
        await everything_in.wait()
    await trio.sleep(60.0)  # deferred deletes done by the sweeps, late duplicates had their go

    # Each part reached the network exactly once, with the reference the driver returned.
    network = [(sms.recipient, sms.message_reference) for sms in sim.network.sent]
    assert sorted(network) == sorted(sent)
    assert len(network) == len(parts)
    # Each MO part arrived exactly once, and the MOs reassemble.
    keys = Counter((event.deliver.originator, event.pdu) for event in inbound)
    assert len(keys) == mo_parts and set(keys.values()) == {1}
    for number in range(MOS):
        mine = [e for e in inbound if e.deliver.originator == f"+4791{number:06d}"]
        mine.sort(key=lambda e: (concat_info(e.deliver.udh) or (0, 0, 1))[2])
        assert "".join(decode_text(e.deliver.part) for e in mine) == mo_text(number)
    # Each status report matched once to a part sent.
    matched = Counter((r.report.recipient, r.report.message_reference) for r in reports)
    assert set(matched) == set(sent) and set(matched.values()) == {1}
    # Nothing left on the SIM, and the losses cost resyncs, not reopens.
    assert sim.engine.storages["SM"].used == 0
    health = modem.health()
    assert health.state is ModemState.READY
    assert len(ports) - 1 <= MAX_REOPENS
    assert health.resyncs > 10
    assert modem.garbage_lines > 0
    print(
        f"seed {seed}: {len(parts)} parts, {mo_parts} MO parts, {len(reports)} reports, "
        f"{health.resyncs} resyncs, {len(ports) - 1} reopens, {trio.current_time():.0f} s virtual"
    )


def test_lossy_options_are_the_issue_s() -> None:
    options = msgspec.convert(LOSSY, SimulatorOptions)
    assert (options.drop_final, options.noise, options.duplicate_urc) == (0.05, 0.02, 0.2)
    assert options.fragment
