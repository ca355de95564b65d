"""Dispatcher, router and workers against a test double of the Modem protocol, in virtual time:
priority, expiry, send windows, retry with backoff, permanent failure, same-modem stickiness,
crash recovery under both policies and worker isolation."""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from drivers.events import InboundSms, ModemEvent, ModemState, StatusReportReceived
from drivers.modem import Health, ModemUnavailable, OutgoingPart, SendOutcomeUnknown, SendRejected
from edgegw.clock import Clock
from edgegw.config import CrashPolicy, DispatchConfig, ServiceConfig
from edgegw.model import (
    DueMessage,
    MessageRequest,
    MessageState,
    SendRequest,
    SendWindow,
    Settings,
)
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.router import choose_modem
from edgegw.pipeline.submit import Submitter
from edgegw.store import (
    Claim,
    DrStatus,
    MessageRecord,
    Store,
    StoreUnwritable,
    Topic,
    run_inline,
    transactions,
)

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z = 10:00 in Oslo (CEST)
HOUR = 3600.0


class FakeModem:
    """Records every part it is given; returns TP-MRs 1, 2, 3...; fails on demand."""

    def __init__(self, name: str, clock: Clock, *, ready: bool = True) -> None:
        self.name = name
        self.clock = clock
        self.state = ModemState.READY if ready else ModemState.STARTING
        self.sent: list[OutgoingPart] = []
        self.send_times: list[float] = []  # epoch at which each send began
        # Outcomes of the next sends in order: an exception to raise, or None to succeed.
        self.script: list[BaseException | None] = []
        self.acknowledged: list[InboundSms | StatusReportReceived] = []
        self._reference = 0
        self._events = trio.open_memory_channel[ModemEvent](1)[1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, outgoing: OutgoingPart) -> int:
        self.send_times.append(self.clock.now())
        await trio.sleep(1.0)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append(outgoing)
        self._reference = (self._reference + 1) % 256
        return self._reference

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        self.acknowledged.append(event)

    def health(self) -> Health:
        return Health(state=self.state)

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events


def service(service_id: int = 1, **overrides: object) -> ServiceConfig:
    fields: dict[str, object] = {
        "id": service_id,
        "name": f"service-{service_id}",
        "username": f"user{service_id}",
        "password": f"secret{service_id}",
    }
    fields.update(overrides)
    return msgspec.convert(fields, ServiceConfig)


class Rig:
    def __init__(self, store: Store, clock: Clock, submitter: Submitter, dispatcher: Dispatcher):
        self.store = store
        self.clock = clock
        self.submitter = submitter
        self.dispatcher = dispatcher

    async def send(
        self,
        content: str = "Hello",
        recipient: str = "+4741000000",
        service_id: int = 1,
        **settings: object,
    ) -> str:
        (message_id,) = await self.submit(service_id, [(recipient, content)], settings)
        return message_id

    async def send_campaign(
        self, count: int, *, service_id: int = 1, first: int = 0, **settings: object
    ) -> list[str]:
        """`count` messages in one request, to +4743000000 + first, + first + 1 ..."""
        messages = [(f"+47{43000000 + first + n}", "Campaign") for n in range(count)]
        return await self.submit(service_id, messages, settings)

    async def submit(
        self, service_id: int, messages: list[tuple[str, str]], settings: dict[str, object]
    ) -> list[str]:
        """One request of the service's messages (recipient, content), all with `settings`;
        their message ids."""
        response = await self.submitter.submit(
            SendRequest(
                serviceId=service_id,
                username=f"user{service_id}",
                password=f"secret{service_id}",
                message=[
                    MessageRequest(
                        recipient=recipient,
                        content=content,
                        settings=Settings(**settings),  # type: ignore[arg-type]
                    )
                    for recipient, content in messages
                ],
            )
        )
        ids = [status.messageId for status in response.messageStatus]
        assert all(ids), response.messageStatus[0].statusMessage
        return [message_id for message_id in ids if message_id is not None]

    async def record(self, message_id: str) -> MessageRecord:
        record = await self.store.message(message_id)
        assert record is not None
        return record

    async def wait_for(self, message_id: str, state: MessageState) -> MessageRecord:
        with trio.fail_after(7 * 24 * HOUR):
            while True:
                record = await self.record(message_id)
                if record.state is state:
                    return record
                await trio.sleep(1)


async def start_rig(
    nursery: trio.Nursery,
    path: Path,
    make_modems: Callable[[Clock], list[FakeModem]],
    *,
    services: list[ServiceConfig] | None = None,
    dispatch: DispatchConfig | None = None,
    policy: CrashPolicy = CrashPolicy.RESEND,
    start: float = START,
    prefixes: dict[str, list[str]] | None = None,
) -> tuple[Rig, list[FakeModem]]:
    clock = Clock(start_epoch=start)
    modems = make_modems(clock)
    services = services or [service(1)]
    # SQL inline on the event loop: the autojump clock would count thread time as idle.
    store = Store(path, clock=clock, offload=run_inline)
    await nursery.start(store.run)
    dispatcher = Dispatcher(
        store,
        {modem.name: modem for modem in modems},
        services,
        dispatch or DispatchConfig(),
        clock,
        policy=policy,
        rng=random.Random(7),
        prefixes=prefixes,
    )
    await nursery.start(dispatcher.run)
    store.subscribe(Topic.QUEUE, dispatcher.wake)
    submitter = Submitter(services, store, clock)
    return Rig(store, clock, submitter, dispatcher), modems


async def test_a_message_goes_out_part_by_part_and_every_reference_is_kept(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)])
    message_id = await rig.send("x" * 200)
    record = await rig.wait_for(message_id, MessageState.SENT)
    assert record.modem == "m1"
    assert [part.recipient for part in modem.sent] == ["+4741000000"] * 2
    assert all(part.status_report for part in modem.sent)
    assert [part.part.udh[-1] for part in modem.sent] == [1, 2]  # concatenation sequence
    view = await rig.store.message_view(1, message_id)
    assert view is not None
    assert [(p.state, p.modem, p.reference, p.attempts) for p in view.parts] == [
        (MessageState.SENT, "m1", 1, 1),
        (MessageState.SENT, "m1", 2, 1),
    ]
    assert view.sentAt is not None
    states = [state for _, state, _, _ in await rig.store.events(message_id)]
    assert states[0] is MessageState.SENDING and states[-1] is MessageState.SENT


async def sent_in_order(
    nursery: trio.Nursery, path: Path, messages: list[tuple[str, int, int]]
) -> list[str]:
    """The recipients in the order one modem of one slot sent `messages` (recipient, priority,
    service id), each queued a second after the one before while the modem was not ready."""
    rig, (modem,) = await start_rig(
        nursery,
        path,
        lambda c: [FakeModem("m1", c, ready=False)],
        services=[service(1), service(2)],
        dispatch=DispatchConfig(queue_per_modem=1),
    )
    ids = []
    for recipient, priority, service_id in messages:
        ids.append(await rig.send(recipient=recipient, priority=priority, service_id=service_id))
        await trio.sleep(1)
    modem.state = ModemState.READY
    rig.dispatcher.wake()
    for message_id in ids:
        await rig.wait_for(message_id, MessageState.SENT)
    return [part.recipient for part in modem.sent]


async def test_priority_three_goes_first_then_the_oldest(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sent = await sent_in_order(
        nursery,
        tmp_path / "db",
        [
            ("+4741000001", 1, 1),
            ("+4741000002", 2, 1),
            ("+4741000003", 3, 1),
            ("+4741000004", 2, 1),
            ("+4741000005", 3, 1),
        ],
    )
    assert [recipient[-1] for recipient in sent] == ["3", "5", "2", "4", "1"]


async def test_one_services_campaign_does_not_hold_back_anothers_one_time_password(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Service 1 queues a campaign of 2,000 at priority 3 on the two modems both services
    share; service 2's one-time password, submitted once the campaign is going, goes out within
    the next few sends, not after the campaign (spec 7.7: priority orders within a service)."""
    rig, modems = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("a", c), FakeModem("b", c)],
        services=[service(1), service(2)],
    )
    campaign = await rig.send_campaign(2000, priority=3)
    await trio.sleep(10.5)
    sent_before = sum(len(modem.sent) for modem in modems)
    otp = await rig.send("Your code is 123456", recipient="+4798765432", service_id=2)
    await rig.wait_for(otp, MessageState.SENT)
    sends = sorted(
        (at, part.recipient)
        for modem in modems
        for part, at in zip(modem.sent, modem.send_times, strict=False)
    )
    after = [recipient for _, recipient in sends[sent_before:]]
    # The two modems' queues (4 claims each) go first, then the password.
    assert after.index("+4798765432") < 2 * 4 + 2, after[:12]
    assert (await rig.record(campaign[-1])).state is MessageState.QUEUED


async def test_priority_orders_each_services_messages_and_the_services_take_turns(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sent = await sent_in_order(
        nursery,
        tmp_path / "db",
        [
            ("+4741000011", 1, 1),
            ("+4741000012", 3, 1),
            ("+4741000013", 2, 1),
            ("+4741000014", 3, 1),
            ("+4741000021", 1, 2),
            ("+4741000022", 2, 2),
        ],
    )
    # One of service 1's, one of service 2's, in turn; each service's by priority, then age.
    assert [recipient[-2:] for recipient in sent] == ["12", "22", "14", "21", "13", "11"]


async def test_two_services_with_restricted_modems_do_not_starve_each_other(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Service 2 may use modems a and b and queued its campaign first; service 1 may use only
    a. Both campaigns go at once: service 1 gets its turns on a, service 2 has b and its turns
    on a; neither waits for the other's campaign to end."""
    rig, (modem_a, modem_b) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("a", c), FakeModem("b", c)],
        services=[service(1, modems=["a"]), service(2, modems=["a", "b"])],
    )
    await rig.send_campaign(200, service_id=2, first=2000)
    await rig.send_campaign(200, service_id=1, first=1000)
    await trio.sleep(60.5)
    on_a = [part.recipient[7] for part in modem_a.sent]
    on_b = [part.recipient[7] for part in modem_b.sent]
    assert set(on_b) == {"2"}
    # a: service 2's first claims, then service 1 at least every other send.
    assert on_a.count("1") >= 25, on_a
    assert len(on_b) >= 55


async def test_the_services_sharing_a_modem_take_turns_on_it_whatever_another_modem_serves(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Services 1 and 2 may use only modem a, service 3 only modem b; every round hands out a
    message on each. The turns on a go 1, 2, 1, 2: service 3 taking b's slot in between does
    not start a's turns over at service 1 each round."""
    rig, (modem_a, modem_b) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("a", c), FakeModem("b", c)],
        services=[service(1, modems=["a"]), service(2, modems=["a"]), service(3, modems=["b"])],
        dispatch=DispatchConfig(queue_per_modem=1),
    )
    for service_id in (1, 2, 3):
        await rig.send_campaign(20, service_id=service_id, first=1000 * service_id)
    await trio.sleep(20.5)
    on_a = [part.recipient[7] for part in modem_a.sent]
    assert {part.recipient[7] for part in modem_b.sent} == {"3"}
    assert on_a.count("2") >= len(on_a) // 2 >= 8, on_a


async def test_a_message_expires_after_its_validity_without_a_ready_modem(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(
        nursery, tmp_path / "db", lambda c: [FakeModem("m1", c, ready=False)]
    )
    message_id = await rig.send(validity=0)  # 5 minutes
    await trio.sleep(299)
    assert (await rig.record(message_id)).state is MessageState.QUEUED
    record = await rig.wait_for(message_id, MessageState.EXPIRED)
    assert record.dr_status == DrStatus.VALIDITY_EXPIRED
    assert record.dr_status == 361
    assert record.done_at is not None
    assert START + 300 <= record.done_at <= START + 301
    assert modem.send_times == []
    modem.state = ModemState.READY
    rig.dispatcher.wake()
    await trio.sleep(60)
    assert modem.sent == []


async def test_send_window_holds_the_message_until_it_opens(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)])
    # 11:00-11:30 Oslo time today; the clock starts at 10:00 Oslo.
    window = SendWindow(startDate="2025-08-05", startTime="11:00:00", stopTime="11:30:00")
    message_id = await rig.send(sendWindow=window)
    await trio.sleep(HOUR - 5)
    assert modem.send_times == []
    record = await rig.wait_for(message_id, MessageState.SENT)
    assert START + HOUR <= modem.send_times[0] <= START + HOUR + 1
    assert record.sent_at is not None


async def test_send_window_discards_what_it_could_not_send(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, _ = await start_rig(nursery, tmp_path / "db", lambda c: [FakeModem("m1", c, ready=False)])
    window = SendWindow(startDate="2025-08-05", startTime="11:00:00", stopTime="11:30:00")
    message_id = await rig.send(sendWindow=window)
    record = await rig.wait_for(message_id, MessageState.EXPIRED)
    assert record.dr_status == 361
    assert record.done_at is not None
    assert START + 1.5 * HOUR <= record.done_at <= START + 1.5 * HOUR + 1


async def test_daily_send_window_waits_for_the_next_day(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)])
    # 09:00-09:30 Oslo on the 5th and 6th: today's window has passed at 10:00.
    window = SendWindow(
        startDate="2025-08-05", startTime="09:00:00", stopDate="2025-08-06", stopTime="09:30:00"
    )
    message_id = await rig.send(sendWindow=window, validity=173)
    await rig.clock.sleep_until(START + 23 * HOUR - 10)
    assert modem.send_times == []
    await rig.wait_for(message_id, MessageState.SENT)
    assert START + 23 * HOUR <= modem.send_times[0] <= START + 23 * HOUR + 1


async def test_validity_of_a_daily_window_runs_from_its_next_opening(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)])
    # Submitted at 10:00 Oslo, after today's 09:00-09:30: five minutes of validity count from
    # tomorrow's 09:00, not from now.
    window = SendWindow(
        startDate="2025-08-05", startTime="09:00:00", stopDate="2025-08-06", stopTime="09:30:00"
    )
    message_id = await rig.send(sendWindow=window, validity=0)
    record = await rig.record(message_id)
    assert record.not_before == START + 23 * HOUR
    assert record.expires_at == START + 23 * HOUR + 300
    await rig.wait_for(message_id, MessageState.SENT)
    assert START + 23 * HOUR <= modem.send_times[0] <= START + 23 * HOUR + 1


async def test_transient_errors_retry_with_exponential_backoff(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("m1", c)],
        dispatch=DispatchConfig(retry_initial=10, retry_max=300, max_attempts=5),
    )
    modem.script = [ModemUnavailable("no network"), ModemUnavailable("timeout"), None]
    message_id = await rig.send()
    record = await rig.wait_for(message_id, MessageState.SENT)
    first, second, third = modem.send_times
    # Each send takes 1 s; then the wait is 80-100% of 10 s, then of 20 s.
    assert 8 <= second - first - 1 <= 10.5
    assert 16 <= third - second - 1 <= 20.5
    assert record.attempts == 2
    view = await rig.store.message_view(1, message_id)
    assert view is not None and view.parts[0].attempts == 3


async def test_backoff_is_capped_and_attempts_run_out(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem,) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("m1", c)],
        dispatch=DispatchConfig(retry_initial=10, retry_max=15, max_attempts=4),
    )
    modem.script = [ModemUnavailable("no network")] * 4
    message_id = await rig.send()
    record = await rig.wait_for(message_id, MessageState.FAILED)
    gaps = [b - a - 1 for a, b in zip(modem.send_times, modem.send_times[1:], strict=False)]
    assert len(modem.send_times) == 4
    assert 8 <= gaps[0] <= 10.5
    assert all(12 <= gap <= 15.5 for gap in gaps[1:])  # 20 and 40 capped at 15
    assert record.dr_status == DrStatus.TRANSMIT_ERROR
    assert record.error == "no network (gave up after 4 attempts)"
    assert record.attempts == 4


async def test_a_clock_set_back_between_runs_does_not_hold_the_queue_for_the_step(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "db"
    dispatch = DispatchConfig(retry_initial=60, retry_max=300)
    # 12:00-12:30 Oslo time today, in the clock's terms ("now" is 10:00 Oslo for the gateway).
    window = SendWindow(startDate="2025-08-05", startTime="12:00:00", stopTime="12:30:00")
    async with trio.open_nursery() as first_run:
        # The box's clock an hour ahead: 11:00 Oslo.
        rig, (modem,) = await start_rig(
            first_run, path, lambda c: [FakeModem("m1", c)], dispatch=dispatch, start=START + HOUR
        )
        modem.script = [ModemUnavailable("no network")]
        retried = await rig.send()
        await trio.sleep(2)  # tried once, due again 48-60 s later
        modem.state = ModemState.STARTING
        waiting = await rig.send()  # never tried
        in_flight = await rig.send()
        await rig.store.claim([(in_flight, "m1")])  # stopped while it was being sent
        scheduled = await rig.send(sendWindow=window)
        first_run.cancel_scope.cancel()
    restarted = trio.current_time()
    rig, (modem,) = await start_rig(  # the clock set right, then the gateway started again
        nursery, path, lambda c: [FakeModem("m1", c)], dispatch=dispatch
    )
    await rig.wait_for(retried, MessageState.SENT)
    await rig.wait_for(waiting, MessageState.SENT)
    await rig.wait_for(in_flight, MessageState.SENT)
    assert max(modem.send_times) <= START + 61  # not an hour later
    await rig.wait_for(scheduled, MessageState.SENT)
    # The window's opening is a time of day, which the step does not move.
    assert START + 2 * HOUR <= modem.send_times[-1] <= START + 2 * HOUR + 60
    assert trio.current_time() - restarted < 2 * HOUR + 60


async def test_a_clock_set_back_between_runs_sends_no_scheduled_message_before_its_time(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "db"
    dispatch = DispatchConfig(retry_initial=60, retry_max=300)
    # The client asks for 12:30 Oslo time (10:30Z), two and a half hours after START.
    window = SendWindow(startDate="2025-08-05", startTime="12:30:00", stopTime="20:00:00")
    async with trio.open_nursery() as first_run:
        # The box's clock two hours ahead: 12:00 Oslo when it is 10:00.
        rig, (modem,) = await start_rig(
            first_run,
            path,
            lambda c: [FakeModem("m1", c)],
            dispatch=dispatch,
            start=START + 2 * HOUR,
        )
        modem.script = [ModemUnavailable("no network")]
        scheduled = await rig.send(sendWindow=window)
        await trio.sleep(HOUR / 2 + 10)  # tried at "12:30" by the clock that is ahead; failed
        assert len(modem.send_times) == 1
        first_run.cancel_scope.cancel()
    # The clock set right, then the gateway started again: 10:40 Oslo.
    rig, (modem,) = await start_rig(
        nursery, path, lambda c: [FakeModem("m1", c)], dispatch=dispatch, start=START + 2400
    )
    await rig.wait_for(scheduled, MessageState.SENT)
    assert modem.send_times[0] >= START + 2.5 * HOUR  # the client's 12:30, not at the start


@pytest.mark.parametrize(("cms", "dr_status"), [(1, 351), (500, 363)])
async def test_a_permanent_rejection_fails_the_message_at_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    cms: int,
    dr_status: int,
) -> None:
    rig, (modem,) = await start_rig(nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)])
    modem.script = [SendRejected("+CMS ERROR", cms=cms, permanent=True)]
    message_id = await rig.send()
    record = await rig.wait_for(message_id, MessageState.FAILED)
    assert record.dr_status == dr_status
    assert record.ext_status == str(cms)
    assert record.error == "rejected by the network: +CMS ERROR"
    await trio.sleep(600)
    assert len(modem.send_times) == 1


async def test_every_part_of_a_message_stays_on_the_modem_that_sent_the_first(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rig, (modem_a, modem_b) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("a", c, ready=False), FakeModem("b", c)],
        dispatch=DispatchConfig(retry_initial=10, retry_max=10),
    )
    modem_b.script = [None, ModemUnavailable("lost network")]
    message_id = await rig.send("y" * 200)  # two parts
    with trio.fail_after(60):
        while True:
            if len(modem_b.send_times) >= 2:
                break
            await trio.sleep(0.5)
    # Part 1 went out on b, part 2 failed. Now a is ready and idle, b is down: wait for b.
    modem_a.state = ModemState.READY
    modem_b.state = ModemState.FAILED
    rig.dispatcher.wake()
    await trio.sleep(120)
    record = await rig.record(message_id)
    assert (record.state, record.modem) == (MessageState.QUEUED, "b")
    assert modem_a.send_times == []
    modem_b.state = ModemState.READY
    rig.dispatcher.wake()
    await rig.wait_for(message_id, MessageState.SENT)
    assert modem_a.send_times == []
    assert [part.part.udh[-1] for part in modem_b.sent] == [1, 2]
    view = await rig.store.message_view(1, message_id)
    assert view is not None
    assert [(p.modem, p.reference) for p in view.parts] == [("b", 1), ("b", 2)]


async def test_a_new_message_goes_to_the_least_busy_modem_of_its_pool(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    services = [service(1, modems=["a", "b"]), service(2, modems=["c"])]
    rig, modems = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem(name, c) for name in ("a", "b", "c")],
        services=services,
    )
    ids = [await rig.send(recipient=f"+474100000{n}") for n in range(4)]
    ids.append(await rig.send(service_id=2))
    for message_id in ids:
        await rig.wait_for(message_id, MessageState.SENT)
    assert [len(modem.sent) for modem in modems] == [2, 2, 1]


async def test_workers_holding_claims_are_topped_up_together_and_never_run_dry(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Messages finishing 0.1 s apart on two modems that still hold claims are claimed for
    in one round of the dispatcher (within TOP_UP_DELAY), not one round each, and neither
    modem ever waits between two sends."""
    rig, modems = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("m1", c), FakeModem("m2", c, ready=False)],
        dispatch=DispatchConfig(queue_per_modem=4),
    )
    rounds: list[float] = []
    claim = rig.store.claim

    async def counted_claim(
        assignments: Sequence[tuple[str, str]], now: float | None = None
    ) -> list[Claim]:
        rounds.append(rig.clock.now())
        return await claim(assignments, now)

    rig.store.claim = counted_claim  # type: ignore[method-assign]
    ids = [await rig.send(recipient=f"+47410000{index:02d}") for index in range(24)]
    await trio.sleep(0.1)
    modems[1].state = ModemState.READY
    rig.dispatcher.wake()
    for message_id in ids:
        await rig.wait_for(message_id, MessageState.SENT)
    for modem in modems:
        assert len(modem.send_times) == 12
        assert {round(b - a, 6) for a, b in itertools.pairwise(modem.send_times)} == {1.0}
    # A first round for each modem as it came up, then one for both modems' messages finished
    # 0.1 s apart (the 16 left, 2 a round), where a round for each message would make 18.
    assert len(rounds) <= 2 + 16 // 2, rounds


async def test_a_round_reads_what_it_can_hand_out_of_each_service_and_reads_on_for_an_idle_modem(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A hundred messages queued for modem a, one of another service for b: a round for a
    reads its 4 slots' worth and a few more of each service, not the hundred, and b's message
    is in that first read. Modem c, which serves +4742 only, reads on through service 1's
    queue as far as its message to +4742, behind the hundred; a service whose modems have no
    free slot is not read on."""
    services = [service(1, modems=["a", "c"]), service(2, modems=["b"])]
    rig, (modem_a, modem_b, modem_c) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem(name, c, ready=False) for name in ("a", "b", "c")],
        services=services,
        dispatch=DispatchConfig(queue_per_modem=4),
        prefixes={"c": ["+4742"]},
    )
    reads: list[tuple[int, list[int]]] = []
    due = rig.store.due

    async def recorded_due(
        services: Sequence[int], now: float | None = None, limit: int = 0
    ) -> dict[int, list[DueMessage]]:
        found = await due(services, now, limit)
        reads.append((limit, list(services)))
        return found

    rig.store.due = recorded_due  # type: ignore[method-assign]
    await rig.send_campaign(100, first=1000)
    late = await rig.send(recipient="+4742000000", service_id=2)
    deep = await rig.send(recipient="+4742000001", service_id=1)
    await trio.sleep(0.1)
    reads.clear()
    modem_a.state = ModemState.READY
    rig.dispatcher.wake()
    await trio.sleep(0.1)
    # a's four slots filled from the first read, of service 1 only: service 2's modem is not
    # ready, nor service 1's other modem (c), so its queue is not read on for a's sake.
    assert reads == [(4 + 4, [1])]
    assert len(modem_a.send_times) == 1
    reads.clear()
    modem_b.state = ModemState.READY
    woken_at = rig.clock.now()
    rig.dispatcher.wake()
    await rig.wait_for(late, MessageState.SENT)
    assert modem_b.send_times[0] - woken_at < 1.5
    assert reads[0][1] == [2]  # service 1's modems are both busy or not ready
    reads.clear()
    modem_c.state = ModemState.READY
    woken_at = rig.clock.now()
    rig.dispatcher.wake()
    await rig.wait_for(deep, MessageState.SENT)
    assert modem_c.send_times[0] - woken_at < 1.5
    (first, read), (wider, read_on) = reads[:2]  # a's slots freed meanwhile count too
    assert (read, wider, read_on) == ([1], 16 * (first - 4) + 64, [1])


def test_router_rules() -> None:
    free = {"a": 1, "b": 3}
    load = {"a": 3, "b": 1, "c": 0}
    assert choose_modem(pool=[], sticky=None, free=free, load=load) == "b"
    assert choose_modem(pool=["a"], sticky=None, free=free, load=load) == "a"
    assert choose_modem(pool=["c"], sticky=None, free=free, load=load) is None  # c not ready
    assert choose_modem(pool=[], sticky="a", free=free, load=load) == "a"
    assert choose_modem(pool=[], sticky="c", free=free, load=load) is None


async def test_a_worker_error_is_contained(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    services = [service(1, modems=["x"]), service(2, modems=["y"])]
    rig, (modem_x, _) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("x", c), FakeModem("y", c)],
        services=services,
        dispatch=DispatchConfig(retry_initial=5, retry_max=5),
    )
    modem_x.script = [RuntimeError("driver bug")]
    on_x = await rig.send(service_id=1)
    on_y = await rig.send(service_id=2)
    await rig.wait_for(on_y, MessageState.SENT)
    record = await rig.wait_for(on_x, MessageState.SENT)
    assert record.attempts == 1
    assert rig.dispatcher.workers["x"].errors == 1
    assert rig.dispatcher.workers["y"].errors == 0
    events = await rig.store.events(on_x)
    assert any("internal error: RuntimeError('driver bug')" in detail for *_, detail in events)
    # The dispatcher is still at work afterwards.
    later = await rig.send(service_id=1)
    await rig.wait_for(later, MessageState.SENT)


async def _leave_in_flight(path: Path, part_sending: bool) -> str:
    """A gateway that stops after claiming a message (and maybe handing part 1 to a modem)."""
    clock = Clock(start_epoch=START)
    async with trio.open_nursery() as nursery:
        store = Store(path, clock=clock, offload=run_inline)
        await nursery.start(store.run)
        submitter = Submitter([service(1)], store, clock)
        response = await submitter.submit(
            SendRequest(
                serviceId=1,
                username="user1",
                password="secret1",
                message=[MessageRequest(recipient="+4741000000", content="z" * 200)],
            )
        )
        message_id = response.messageStatus[0].messageId
        assert message_id is not None
        await store.claim([(message_id, "m1")])
        if part_sending:
            await store.mark_part_sending(message_id, 1, "m1")
        nursery.cancel_scope.cancel()
    return message_id


async def test_after_a_crash_resend_policy_sends_the_part_in_flight_again(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    message_id = await _leave_in_flight(tmp_path / "db", part_sending=True)
    rig, (modem,) = await start_rig(
        nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)], policy=CrashPolicy.RESEND
    )
    await rig.wait_for(message_id, MessageState.SENT)
    assert [part.part.udh[-1] for part in modem.sent] == [1, 2]
    view = await rig.store.message_view(1, message_id)
    assert view is not None and view.parts[0].attempts == 2  # once before the crash, once after
    events = await rig.store.events(message_id)
    assert any("policy resend" in detail for *_, detail in events)


async def test_after_a_crash_fail_policy_fails_the_part_in_flight(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    message_id = await _leave_in_flight(tmp_path / "db", part_sending=True)
    rig, (modem,) = await start_rig(
        nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)], policy=CrashPolicy.FAIL
    )
    record = await rig.record(message_id)
    assert record.state is MessageState.FAILED
    assert record.dr_status == DrStatus.UNSPECIFIED
    assert record.error is not None and "not resent (policy: fail)" in record.error
    await trio.sleep(60)
    assert modem.send_times == []


@pytest.mark.parametrize("policy", list(CrashPolicy))
async def test_a_send_whose_answer_was_lost_follows_the_in_flight_policy(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    policy: CrashPolicy,
) -> None:
    rig, (modem,) = await start_rig(
        nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)], policy=policy
    )
    modem.script = [SendOutcomeUnknown("no answer to the PDU; sent or not is unknown"), None]
    message_id = await rig.send()
    if policy is CrashPolicy.RESEND:
        await rig.wait_for(message_id, MessageState.SENT)  # at-least-once: sent again
        assert len(modem.send_times) == 2
        return
    record = await rig.wait_for(message_id, MessageState.FAILED)  # at-most-once
    assert record.dr_status == DrStatus.UNSPECIFIED
    assert record.error is not None and "not resent (policy: fail)" in record.error
    await trio.sleep(600)
    assert len(modem.send_times) == 1


class DiskFillingModem(FakeModem):
    """Its disk fills up while a send is under way: the store refuses every write from the
    network's answer on (the end of the try included) until `free` is set."""

    def __init__(self, name: str, clock: Clock) -> None:
        super().__init__(name, clock)
        self.full = False
        self.free = trio.Event()

    async def send(self, outgoing: OutgoingPart) -> int:
        self.full = not self.free.is_set()
        return await super().send(outgoing)


@pytest.mark.parametrize(
    ("outcome", "policy", "error"),
    [
        (SendRejected("+CMS ERROR", cms=1, permanent=True), CrashPolicy.RESEND, "rejected"),
        (SendOutcomeUnknown("no answer to the PDU"), CrashPolicy.FAIL, "not resent"),
    ],
)
async def test_a_try_that_ended_for_good_while_the_disk_was_full_is_not_sent_again(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    outcome: BaseException,
    policy: CrashPolicy,
    error: str,
) -> None:
    """The network refuses the SMS for good, or (at-most-once) its answer is lost, while the
    store's disk is full: the message fails once there is room. It was queued again as an
    internal error and sent a second time (to a number that does not exist, or against the
    operator's at-most-once)."""
    modem = DiskFillingModem("m1", Clock(start_epoch=START))
    rig, _ = await start_rig(nursery, tmp_path / "db", lambda clock: [modem], policy=policy)
    modem.clock = rig.clock
    modem.script = [outcome]
    write = rig.store.write

    async def refused_while_full(fn: Callable[[sqlite3.Connection], object]) -> object:
        if modem.full and not modem.free.is_set():
            raise StoreUnwritable(rig.store.path, "database or disk is full")
        return await write(fn)

    monkeypatch.setattr(rig.store, "write", refused_while_full)
    message_id = await rig.send()
    await trio.sleep(60)
    assert (await rig.record(message_id)).state is MessageState.SENDING
    modem.free.set()
    await trio.sleep(600)
    record = await rig.record(message_id)
    assert (record.state, len(modem.send_times)) == (MessageState.FAILED, 1)
    assert record.error is not None and error in record.error


async def test_a_claim_the_full_disk_would_not_mark_sending_spends_no_attempt(
    nursery: trio.Nursery,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up between a message's claim and the mark of its part `sending`: nothing
    went to the network, so the message waits for room without spending an attempt. It was
    taken for an internal error and, at its last attempt, failed unsent."""
    rig, (modem,) = await start_rig(
        nursery,
        tmp_path / "db",
        lambda c: [FakeModem("m1", c)],
        dispatch=DispatchConfig(max_attempts=1),
    )
    write = rig.store.write
    full = freed = False

    async def refused_while_full(fn: Callable[[sqlite3.Connection], object]) -> object:
        nonlocal full
        # Full from the mark `sending` of the claimed message's part on, every write refused.
        full = full or (not freed and getattr(fn, "func", None) is transactions.part_sending)
        if full:
            raise StoreUnwritable(rig.store.path, "database or disk is full")
        return await write(fn)

    monkeypatch.setattr(rig.store, "write", refused_while_full)
    message_id = await rig.send()
    await trio.sleep(60)
    assert full and modem.send_times == []
    full, freed = False, True
    record = await rig.wait_for(message_id, MessageState.SENT)
    assert record.attempts == 0  # failed attempts: none
    assert len(modem.send_times) == 1


async def test_after_a_crash_a_claim_never_handed_to_a_modem_is_queued_under_either_policy(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    message_id = await _leave_in_flight(tmp_path / "db", part_sending=False)
    rig, (modem,) = await start_rig(
        nursery, tmp_path / "db", lambda c: [FakeModem("m1", c)], policy=CrashPolicy.FAIL
    )
    await rig.wait_for(message_id, MessageState.SENT)
    assert len(modem.sent) == 2
