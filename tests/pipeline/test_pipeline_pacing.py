"""Per-SIM pacing, prefix routing, least-recently-used choice and failover, through the real
dispatcher, workers and store with a modem double, in virtual time."""

from __future__ import annotations

import itertools
import random
import sqlite3
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from support.pipeline import stored_record, submit_one

from drivers.events import InboundSms, ModemEvent, ModemState, StatusReportReceived
from drivers.modem import Health, ModemUnavailable, OutgoingPart
from edgegw.clock import Clock
from edgegw.config import DispatchConfig, ServiceConfig
from edgegw.model import Claim, MessageRequest, MessageState, SendRequest, SendWindow, Settings
from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.modems import queues, recent_sends, sends_since
from edgegw.pipeline.pacing import DAY, HOUR, Pacer, PacingRule
from edgegw.pipeline.router import choose_modem
from edgegw.pipeline.submit import Submitter
from edgegw.pipeline.worker import ModemWorker
from edgegw.store import Store, Topic, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z
SEND_TIME = 1.0


class PacedModem:
    """Sends in one virtual second and notes when each send began; raises on demand."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.state = ModemState.READY
        self.sent: list[tuple[float, OutgoingPart]] = []
        self.fail_next = 0
        self._reference = 0
        self._events = trio.open_memory_channel[ModemEvent](1)[1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, outgoing: OutgoingPart) -> int:
        began = self.clock.now()
        await trio.sleep(SEND_TIME)
        if self.fail_next:
            self.fail_next -= 1
            self.state = ModemState.FAILED
            raise ModemUnavailable("the port vanished")
        self.sent.append((began, outgoing))
        self._reference = (self._reference + 1) % 256
        return self._reference

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        return None

    def health(self) -> Health:
        return Health(state=self.state)

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events


SERVICE = msgspec.convert(
    {"id": 1, "name": "s", "username": "user", "password": "secret"}, ServiceConfig
)


class Rig:
    def __init__(self, store: Store, submitter: Submitter, dispatcher: Dispatcher) -> None:
        self.store = store
        self.submitter = submitter
        self.dispatcher = dispatcher

    async def send(self, recipient: str = "+4741000000", content: str = "Hi") -> str:
        return await submit_one(self.submitter, recipient, content)

    async def send_batch(self, count: int, settings: Settings, content: str = "Hi") -> list[str]:
        """One request of `count` messages to +4741000000, +4741000001...; their ids."""
        return await self.send_to([f"+474100000{n}" for n in range(count)], settings, content)

    async def send_to(
        self, recipients: list[str], settings: Settings, content: str = "Hi"
    ) -> list[str]:
        """One request of a message to each of `recipients`, in their order; their ids."""
        response = await self.submitter.submit(
            SendRequest(
                serviceId=1,
                username="user",
                password="secret",
                message=[
                    MessageRequest(recipient=recipient, content=content, settings=settings)
                    for recipient in recipients
                ],
            )
        )
        ids = [status.messageId for status in response.messageStatus]
        assert None not in ids, response
        return [message_id for message_id in ids if message_id is not None]

    async def state(self, message_id: str) -> MessageState:
        return (await stored_record(self.store, message_id)).state


async def start_rig(
    nursery: trio.Nursery,
    path: Path,
    modems: list[PacedModem],
    clock: Clock,
    rules: dict[str, PacingRule],
    *,
    prefixes: dict[str, list[str]] | None = None,
    dispatch: DispatchConfig | None = None,
) -> Rig:
    store = Store(path, clock=clock, offload=run_inline)
    await nursery.start(store.run)
    pacer = Pacer(rules, random.Random(5))
    now = clock.now()
    names = [modem.name for modem in modems]
    for modem, times in (await recent_sends(store, now - DAY, names)).items():
        pacer.load(modem, times, now)
    dispatcher = Dispatcher(
        store,
        {modem.name: modem for modem in modems},
        [SERVICE],
        dispatch or DispatchConfig(),
        clock,
        rng=random.Random(1),
        pacer=pacer,
        prefixes=prefixes,
    )
    await nursery.start(dispatcher.run)
    store.subscribe(Topic.QUEUE, dispatcher.wake)
    return Rig(store, Submitter([SERVICE], store, clock), dispatcher)


async def one_paced_modem(
    nursery: trio.Nursery, tmp_path: Path, rule: PacingRule, *, start: float = START
) -> tuple[PacedModem, Rig]:
    """A rig of one modem, "m1", paced by `rule`, on a clock that starts at `start`."""
    clock = Clock(start)
    modem = PacedModem("m1", clock)
    return modem, await start_rig(nursery, tmp_path / "db", [modem], clock, {"m1": rule})


def test_the_pacer_spaces_sends_and_counts_rolling_caps() -> None:
    pacer = Pacer({"m": PacingRule(min_interval=10, jitter=5, hourly_cap=3, daily_cap=5)})
    assert pacer.next_send_at("m", 100.0) == 100.0
    pacer.record("m", 100.0)
    assert 110.0 <= pacer.next_send_at("m", 101.0) <= 115.0
    pacer.record("m", 200.0)
    pacer.record("m", 300.0)
    assert pacer.counts("m", 300.0) == (3, 3)
    assert pacer.capped_until("m", 300.0) == 100.0 + HOUR  # the oldest send leaves the hour
    assert pacer.capped_until("m", 100.0 + HOUR) is None
    for at in (4000.0, 4100.0):
        pacer.record("m", at)
    assert pacer.counts("m", 4100.0) == (2, 5)
    assert pacer.capped_until("m", 4100.0) == 100.0 + DAY  # the daily cap now holds
    assert pacer.next_send_at("m", 4100.0) == 100.0 + DAY
    assert pacer.counts("m", 100.0 + DAY) == (0, 4)
    assert pacer.capped_until("other", 0.0) is None


def test_an_uncapped_sim_remembers_only_the_sends_of_the_last_day() -> None:
    # Months of sends with nobody asking for the counts (no /api/modems, no status page): the
    # dispatcher and the worker only record sends and ask when the next may go.
    pacer = Pacer({"m": PacingRule()})
    for at in range(0, int(3 * DAY), 60):
        pacer.record("m", float(at))
        assert pacer.next_send_at("m", float(at)) == at
    assert pacer.last_used("m") == 3 * DAY - 60
    assert len(pacer._modems["m"].sent) == DAY // 60  # the table itself, not what counts shows
    assert pacer.counts("m", 3 * DAY - 60) == (HOUR // 60, DAY // 60)


def test_sends_dated_days_ahead_count_only_the_day_before_the_newest() -> None:
    # A clock two days ahead, set back since: the store holds two days of sends dated after
    # now. The newest went out before this start, so those more than a day before it went out
    # more than a day ago, and only the day before the newest counts towards the daily cap.
    pacer = Pacer({"m": PacingRule(daily_cap=30)})
    sends = [START + DAY + k * HOUR for k in range(48)]
    pacer.load("m", sends, START)
    assert pacer.counts("m", START) == (1, 24)
    assert pacer.capped_until("m", START) is None
    assert pacer.last_used("m") == START


def test_a_sim_may_hold_one_message_once_its_rest_is_over_and_none_while_capped() -> None:
    pacer = Pacer({"rests": PacingRule(min_interval=10), "capped": PacingRule(hourly_cap=1)})
    assert [pacer.slots(name, 100.0, 4) for name in ("rests", "capped", "other")] == [1, 4, 4]
    for name in ("rests", "capped", "other"):
        pacer.record(name, 100.0)
    assert [pacer.slots(name, 105.0, 4) for name in ("rests", "capped", "other")] == [0, 0, 4]
    assert pacer.slots("rests", 110.0, 4) == 1
    assert pacer.slots("capped", 100.0 + HOUR, 4) == 4


def test_the_router_prefers_prefix_then_load_then_least_recently_used() -> None:
    free = {"a": 1, "b": 1, "c": 1}
    load = {"a": 0, "b": 0, "c": 1}
    prefixes = {"a": ["+46"], "b": [], "c": []}
    last_used = {"a": 0.0, "b": 50.0, "c": 10.0}
    pick = dict(free=free, load=load, prefixes=prefixes, last_used=last_used, pool=(), sticky=None)
    assert choose_modem(recipient="+4741000000", **pick) == "b"  # type: ignore[arg-type]
    assert choose_modem(recipient="+4670000000", **pick) == "a"  # type: ignore[arg-type]
    assert choose_modem(recipient="+4741000000", **{**pick, "load": {}}) == "c"  # type: ignore[arg-type]


async def test_min_interval_spaces_the_sends_of_one_sim(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem, rig = await one_paced_modem(nursery, tmp_path, PacingRule(min_interval=10, jitter=4))
    ids = [await rig.send() for _ in range(4)]
    await trio.sleep(120)
    assert {await rig.state(message_id) for message_id in ids} == {MessageState.SENT}
    starts = [began for began, _ in modem.sent]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Ten seconds plus up to four of jitter after the previous send finished (one second).
    assert all(10 + SEND_TIME <= gap <= 14 + SEND_TIME + 0.1 for gap in gaps), gaps
    assert len(set(gaps)) > 1  # the jitter varies


async def test_a_message_whose_validity_runs_out_while_it_waits_out_min_interval_expires(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem, rig = await one_paced_modem(nursery, tmp_path, PacingRule(min_interval=600))
    _, second = await rig.send_batch(2, Settings(validity=0))
    await trio.sleep(HOUR)
    # The second's five minutes ran out during the ten minutes the SIM must rest after the
    # first (the dispatcher does not hand it over before the rest is over; the worker's own
    # check is test_a_claim_taken_before_its_sims_rest_is_checked_again_once_the_rest_is_over).
    assert [part.recipient for _, part in modem.sent] == ["+4741000000"]
    record = await stored_record(rig.store, second)
    assert (record.state, record.dr_status) == (MessageState.EXPIRED, 361)
    assert record.done_at is not None
    assert START + 300 <= record.done_at <= START + 300 + SEND_TIME + 600


async def test_a_message_begun_goes_on_after_its_sims_interval_though_its_validity_ran_out(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem, rig = await one_paced_modem(nursery, tmp_path, PacingRule(min_interval=600))
    (message_id,) = await rig.send_batch(1, Settings(validity=0), content="w" * 200)
    await trio.sleep(HOUR)
    # Its second part waits ten minutes for the SIM, past the five of validity, and still goes
    # (the handset joins the two), with the shortest TP-VP.
    assert await rig.state(message_id) is MessageState.SENT
    assert [part.validity_minutes for _, part in modem.sent] == [5, 5]
    assert START + SEND_TIME + 600 <= modem.sent[1][0] <= START + SEND_TIME + 601


async def test_a_daily_window_closing_while_min_interval_is_waited_out_holds_to_the_next_day(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    nine_twenty = START - 40 * 60  # in Oslo
    modem, rig = await one_paced_modem(
        nursery, tmp_path, PacingRule(min_interval=600), start=nine_twenty
    )
    window = SendWindow(
        startDate="2025-08-05", startTime="09:00:00", stopDate="2025-08-06", stopTime="09:30:00"
    )
    _, second = await rig.send_batch(2, Settings(sendWindow=window))
    # The SIM rests until 09:30:01, past today's window: the second goes at tomorrow's 09:00.
    await modem.clock.sleep_until(START + 23 * HOUR - 60)
    assert [part.recipient for _, part in modem.sent] == ["+4741000000"]
    assert await rig.state(second) is MessageState.QUEUED
    await trio.sleep(120)
    assert [part.recipient for _, part in modem.sent] == ["+4741000000", "+4741000001"]
    assert START + 23 * HOUR <= modem.sent[1][0] <= START + 23 * HOUR + 1


@pytest.mark.parametrize("held", ["validity", "window"])
async def test_a_claim_taken_before_its_sims_rest_is_checked_again_once_the_rest_is_over(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock, held: str
) -> None:
    """The worker's own guard, below the dispatcher's: two claims handed to one worker at once
    (no dispatcher now hands a resting SIM a second), the second taken out of its validity or
    its day's window by the ten-minute rest after the first: it expires (DR 361), or goes back
    to the queue until tomorrow's 09:00, and is not sent."""
    clock = Clock(START - 40 * 60)  # 09:20 in Oslo
    rig = await start_rig(nursery, tmp_path / "db", [], clock, {})
    window = SendWindow(
        startDate="2025-08-05", startTime="09:00:00", stopDate="2025-08-06", stopTime="09:30:00"
    )
    settings = Settings(validity=0) if held == "validity" else Settings(sendWindow=window)
    ids = await rig.send_batch(2, settings)
    claims = await rig.store.claim([(message_id, "m1") for message_id in ids])
    modem = PacedModem("m1", clock)
    worker = ModemWorker(
        modem,
        rig.store,
        clock,
        DispatchConfig(),
        rng=random.Random(1),
        on_done=lambda _: None,
        pacer=Pacer({"m1": PacingRule(min_interval=600)}),
    )
    send, receive = trio.open_memory_channel[Claim](len(claims))
    for claim in claims:
        send.send_nowait(claim)
    send.close()
    await worker.run(receive)
    assert [part.recipient for _, part in modem.sent] == ["+4741000000"]
    record = await stored_record(rig.store, ids[1])
    if held == "validity":
        assert (record.state, record.dr_status) == (MessageState.EXPIRED, 361)
    else:
        assert record.state is MessageState.QUEUED
        assert record.next_attempt_at == START + 23 * HOUR


async def test_a_sim_resting_between_sends_holds_one_message_the_others_go_to_a_free_sim(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(START)
    slow, fast = PacedModem("slow", clock), PacedModem("fast", clock)
    rig = await start_rig(
        nursery, tmp_path / "db", [slow, fast], clock, {"slow": PacingRule(min_interval=600)}
    )
    ids = await rig.send_batch(8, Settings())
    await trio.sleep(60)
    # Not four messages queued behind the slow SIM's ten-minute rests.
    assert [await rig.state(message_id) for message_id in ids] == [MessageState.SENT] * 8
    assert (len(slow.sent), len(fast.sent)) == (1, 7)


async def test_an_hourly_cap_holds_messages_until_the_hour_has_passed(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    modem, rig = await one_paced_modem(nursery, tmp_path, PacingRule(hourly_cap=2))
    ids = [await rig.send() for _ in range(3)]
    await trio.sleep(600)
    assert [await rig.state(i) for i in ids] == [MessageState.SENT] * 2 + [MessageState.QUEUED]
    first_done = modem.sent[0][0] + SEND_TIME
    await trio.sleep(first_done + HOUR - modem.clock.now() - 1)
    assert await rig.state(ids[2]) is MessageState.QUEUED
    await trio.sleep(10)  # the dispatcher looks at least every HEALTH_POLL seconds
    assert await rig.state(ids[2]) is MessageState.SENT
    assert first_done + HOUR <= modem.sent[2][0] <= first_done + HOUR + 6


async def test_caps_are_counted_from_the_store_across_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "edgegw.db"
    clock = Clock(START)
    rules = {"m1": PacingRule(daily_cap=2)}
    async with trio.open_nursery() as nursery:
        modem = PacedModem("m1", clock)
        rig = await start_rig(nursery, path, [modem], clock, rules)
        for _ in range(2):
            await rig.send()
        await trio.sleep(60)
        assert len(modem.sent) == 2
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        modem = PacedModem("m1", clock)
        rig = await start_rig(nursery, path, [modem], clock, rules)
        message_id = await rig.send()
        await trio.sleep(HOUR)
        assert modem.sent == [] and await rig.state(message_id) is MessageState.QUEUED
        await trio.sleep(DAY)
        assert await rig.state(message_id) is MessageState.SENT
        nursery.cancel_scope.cancel()


async def test_the_sends_loaded_at_a_start_are_read_within_each_modems_last_day(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The store keeps 30 days of sent parts (a million on a busy box): the pacer's load at a
    start reads only each configured modem's sends of the last day off parts_modem_sent, not
    every sent part of every modem."""
    clock = Clock(START)
    async with trio.open_nursery() as nursery:
        m1, m2 = PacedModem("m1", clock), PacedModem("m2", clock)
        rig = await start_rig(nursery, tmp_path / "edgegw.db", [m1, m2], clock, {})
        for _ in range(3):
            await rig.send()
        await trio.sleep(DAY + 60)
        await rig.send()
        await trio.sleep(60)

        def traced(conn: sqlite3.Connection) -> tuple[dict[str, list[float]], list[str]]:
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            try:
                sends = sends_since(conn, clock.now() - DAY, ["m1", "m2", "gone"])
            finally:
                conn.set_trace_callback(None)
            steps = [
                row[3]
                for sql in statements
                if sql.lstrip().upper().startswith("SELECT")
                for row in conn.execute("EXPLAIN QUERY PLAN " + sql)
            ]
            return sends, steps

        sends, steps = await rig.store.read(traced)
        nursery.cancel_scope.cancel()
    # Four sends, three of them more than a day ago; the sends' times are when each began.
    began = {name: [at for at, _ in modem.sent] for name, modem in (("m1", m1), ("m2", m2))}
    assert sum(map(len, began.values())) == 4
    recent = {name: [at for at in times if at >= START + DAY] for name, times in began.items()}
    assert (
        {name: len(times) for name, times in sends.items()}
        == {name: len(times) for name, times in recent.items() if times}
        == {"m1" if recent["m1"] else "m2": 1}
    )
    assert steps and all("(modem=? AND sent_at>?)" in step for step in steps), steps


async def test_sends_dated_ahead_by_a_clock_set_back_since_hold_the_sim_only_as_its_rules_say(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "edgegw.db"
    rules = {"m1": PacingRule(min_interval=60, hourly_cap=2)}
    ahead = Clock(START + DAY)  # the box's clock a day ahead
    async with trio.open_nursery() as nursery:
        modem = PacedModem("m1", ahead)
        rig = await start_rig(nursery, path, [modem], ahead, rules)
        for _ in range(2):
            await rig.send()
        await trio.sleep(120)
        assert len(modem.sent) == 2
        nursery.cancel_scope.cancel()
    clock = Clock(START)  # the clock set right, then the gateway started again
    async with trio.open_nursery() as nursery:
        modem = PacedModem("m1", clock)
        rig = await start_rig(nursery, path, [modem], clock, rules)
        message_id = await rig.send()
        await trio.sleep(HOUR + 60)
        assert await rig.state(message_id) is MessageState.SENT
        assert modem.sent[0][0] <= START + HOUR  # the cap held an hour from the start, no more
        nursery.cancel_scope.cancel()


async def test_a_capped_sim_leaves_the_traffic_to_the_others_least_recently_used_first(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(START)
    modems = [PacedModem(name, clock) for name in ("m1", "m2", "m3")]
    rig = await start_rig(
        nursery,
        tmp_path / "db",
        modems,
        clock,
        {"m1": PacingRule(hourly_cap=1), "m2": PacingRule(), "m3": PacingRule()},
        dispatch=DispatchConfig(queue_per_modem=1),
    )
    for _ in range(7):
        await rig.send()
        await trio.sleep(5)
    await trio.sleep(60)
    assert [len(modem.sent) for modem in modems] == [1, 3, 3]
    order = sorted((began, modem.name) for modem in modems for began, _ in modem.sent)
    assert [name for _, name in order] == ["m1", "m2", "m3", "m2", "m3", "m2", "m3"]


async def norway_and_sweden(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    norway_modem: type[PacedModem] = PacedModem,
    rules: dict[str, PacingRule] | None = None,
) -> tuple[PacedModem, PacedModem, Rig]:
    """A rig of modem "no" for +47 and modem "se" for +46, paced by `rules`."""
    clock = Clock(START)
    norway, sweden = norway_modem("no", clock), PacedModem("se", clock)
    rig = await start_rig(
        nursery,
        tmp_path / "db",
        [norway, sweden],
        clock,
        rules or {},
        prefixes={"no": ["+47"], "se": ["+46"]},
    )
    return norway, sweden, rig


async def test_recipient_prefixes_route_to_their_modems(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    norway, sweden, rig = await norway_and_sweden(nursery, tmp_path)
    for recipient in ("+4741000001", "+46701234567", "+4741000002", "+4512345678"):
        await rig.send(recipient)
    await trio.sleep(60)
    assert [part.recipient for _, part in norway.sent] == ["+4741000001", "+4741000002"]
    assert [part.recipient for _, part in sweden.sent] == ["+46701234567"]
    per_modem, unbound = await queues(rig.store)
    assert (per_modem, unbound) == ({}, 1)  # +45 has no modem: it waits


class LongSendModem(PacedModem):
    """A send takes 100 virtual seconds more: a slow network, or a modem that will time out."""

    async def send(self, outgoing: OutgoingPart) -> int:
        await trio.sleep(100)
        return await super().send(outgoing)


async def test_a_message_passed_over_for_its_resting_sim_goes_when_the_rest_ends(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The Swedish SIM rests 30 s between sends. A message for it, queued behind its first
    send, is passed over by the round that hands the message after it to the Norwegian modem;
    it still goes once the rest is over, not once that modem's long send has ended."""
    norway, sweden, rig = await norway_and_sweden(
        nursery, tmp_path, norway_modem=LongSendModem, rules={"se": PacingRule(min_interval=30)}
    )
    await rig.send("+46701234501")
    await trio.sleep(2)
    await rig.send_to(["+46701234502", "+4741000001"], Settings())
    await trio.sleep(60)
    assert [round(began - START) for began, _ in sweden.sent] == [0, 31]
    assert norway.sent == []  # its send is still going


async def test_a_message_stuck_on_a_dead_modem_is_resent_whole_after_failover_after(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(START)
    first, second = PacedModem("m1", clock), PacedModem("m2", clock)
    second.state = ModemState.STARTING  # only m1 is ready when the message arrives
    rig = await start_rig(
        nursery,
        tmp_path / "db",
        [first, second],
        clock,
        {},
        dispatch=DispatchConfig(failover_after=600.0),
    )
    message_id = await rig.send(content="w" * 400)  # three parts
    await trio.sleep(SEND_TIME + 0.5)  # part 1 is out on m1
    first.fail_next = 1  # part 2 fails and m1 goes down for good
    second.state = ModemState.READY
    await trio.sleep(60)
    record = await rig.store.message(message_id)
    assert record is not None
    assert (record.state, record.modem) == (MessageState.QUEUED, "m1")  # bound to m1
    failed_at = START + 2 * SEND_TIME
    await trio.sleep(failed_at + 600 - clock.now() - 5)
    assert second.sent == []
    await trio.sleep(30)
    assert await rig.state(message_id) is MessageState.SENT
    assert [part.part.udh[-1] for _, part in second.sent] == [1, 2, 3]
    assert second.sent[0][0] - failed_at >= 600
    details = [detail for _, _, _, detail in await rig.store.events(message_id)]
    assert "modem m1 is down; the whole message will be resent on another modem" in details


async def test_failover_after_counts_from_when_the_modem_went_down_not_from_the_next_retry(
    nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = Clock(START)
    first, second = PacedModem("m1", clock), PacedModem("m2", clock)
    second.state = ModemState.STARTING
    rig = await start_rig(
        nursery,
        tmp_path / "db",
        [first, second],
        clock,
        {},
        dispatch=DispatchConfig(failover_after=600.0, retry_initial=300.0, retry_max=300.0),
    )
    message_id = await rig.send(content="w" * 400)  # three parts
    await trio.sleep(SEND_TIME + 0.5)
    first.fail_next = 1  # part 2 fails, m1 goes down; the retry is due 240-300 s later
    second.state = ModemState.READY
    failed_at = START + 2 * SEND_TIME
    await trio.sleep(HOUR)
    assert await rig.state(message_id) is MessageState.SENT
    assert [part.part.udh[-1] for _, part in second.sent] == [1, 2, 3]
    assert failed_at + 600 <= second.sent[0][0] <= failed_at + 600 + 10


@pytest.mark.parametrize("retry", [5.0, 1200.0], ids=["due-before-restart", "due-long-after"])
async def test_a_message_bound_to_a_modem_no_longer_configured_fails_over_after_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, retry: float
) -> None:
    """The gone modem has been down since the restart: the message goes on the new one
    failover_after after the restart, or when its retry is due if that is later (not
    failover_after after that retry)."""
    path = tmp_path / "edgegw.db"
    clock = Clock(START)
    dispatch = DispatchConfig(failover_after=600.0, retry_initial=retry, retry_max=max(retry, 300))
    async with trio.open_nursery() as nursery:
        old = PacedModem("old", clock)
        rig = await start_rig(nursery, path, [old], clock, {}, dispatch=dispatch)
        message_id = await rig.send(content="w" * 400)  # three parts
        await trio.sleep(SEND_TIME + 0.5)  # part 1 is out on the old modem
        old.fail_next = 1  # part 2 fails: its retry is due 80-100% of `retry` later
        await trio.sleep(60)
        record = await stored_record(rig.store, message_id)
        assert (record.state, record.modem) == (MessageState.QUEUED, "old")
        nursery.cancel_scope.cancel()
    # The old modem is replaced by a new one in the config.
    restarted_at = clock.now()
    goes_at = max(restarted_at + 600, record.next_attempt_at)
    async with trio.open_nursery() as nursery:
        new = PacedModem("new", clock)
        rig = await start_rig(nursery, path, [new], clock, {}, dispatch=dispatch)
        await trio.sleep(HOUR)
        assert await rig.state(message_id) is MessageState.SENT
        assert [part.part.udh[-1] for _, part in new.sent] == [1, 2, 3]
        assert goes_at <= new.sent[0][0] <= goes_at + 10
        nursery.cancel_scope.cancel()
