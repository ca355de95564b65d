"""The dispatcher: resolves what a crash left in flight, expires stale messages, and hands due
messages to the per-modem workers, persisting each claim before the hand-over.

Never keeps a message only in memory: the store is the queue, the channels only wake workers.
README, Design rules (the flow, the store is the queue); spec sections 7.4, 7.5 and 7.7.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import trio

from drivers.events import ModemState
from drivers.modem import Modem
from edgegw.clock import Clock
from edgegw.config import CrashPolicy, DispatchConfig, ServiceConfig
from edgegw.model import DUE, EXPIRY, DueMessage
from edgegw.pipeline.pacing import Pacer
from edgegw.pipeline.router import choose_modem
from edgegw.pipeline.sendwindow import next_open
from edgegw.pipeline.worker import ModemWorker
from edgegw.store import DUE_SCAN_LIMIT, Claim, Store, StoreUnwritable

log = logging.getLogger(__name__)

# Seconds between looks at modem health while due messages wait for one; a fallback, since the
# gateway also wakes the dispatcher on every modem health event.
HEALTH_POLL = 5.0
# Seconds a round waits after a wake-up so that a burst of wake-ups (a client submitting
# thousands of messages a second) costs one look at the store, not one each. A modem takes
# seconds per SMS and its worker holds queue_per_modem claims, so this delay never idles it.
WAKE_COALESCE = 0.01
# Seconds a worker that still holds a claim behind the message it is sending may wait for the
# dispatcher to top its queue up, so that the messages finished meanwhile on every modem cost
# one look at the store, not one each. That claim alone keeps the modem busy for a whole send
# (seconds on a real modem); a worker left with none wakes the dispatcher at once.
TOP_UP_DELAY = 0.25
WORKER_RESTART_DELAY = 1.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        modems: dict[str, Modem],
        services: list[ServiceConfig],
        dispatch: DispatchConfig,
        clock: Clock,
        *,
        policy: CrashPolicy = CrashPolicy.RESEND,
        rng: random.Random | None = None,
        health_poll: float = HEALTH_POLL,
        pacer: Pacer | None = None,
        prefixes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._store = store
        self._modems = modems
        self._pools = {service.id: tuple(service.modems) for service in services}
        self._pacer = pacer
        self._prefixes = dict(prefixes or {})
        self._down_since: dict[str, float] = {}  # modems not ready, since when (failover)
        # The time of the first round: a modem gone from the config is down since then.
        self._first_round_at: float | None = None
        self._dispatch = dispatch
        self._clock = clock
        self._policy = policy
        self._rng = rng or random.Random()
        self._health_poll = health_poll
        self._wakeup = trio.Event()
        self._top_up_at = math.inf  # trio time by which a worker wants its queue topped up
        self._waiting: trio.CancelScope | None = None  # the wait for a wake-up, if waiting
        self._in_flight = dict.fromkeys(modems, 0)
        # When each service last took a message (a count of the messages handed out): a round's
        # turns go to the least recently served first, so that one free slot a round still goes
        # round the services, and the turns on a modem go round the services that may use it
        # whatever the other modems' services took in between.
        self._served = itertools.count(1)
        self._last_served: dict[int, int] = {}
        self._channels: dict[str, trio.MemorySendChannel[Claim]] = {}
        self.workers: dict[str, ModemWorker] = {}

    def wake(self) -> None:
        """Look at the queue now (new messages, a modem became ready, a worker is free)."""
        self._wakeup.set()

    def in_flight(self, modem: str) -> int:
        return self._in_flight[modem]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        recovery = await self._store.recover_in_flight(resend=self._policy is CrashPolicy.RESEND)
        if recovery.requeued or recovery.failed:
            log.warning(
                "after a stop: %d messages in flight queued again, %d failed (policy %s)",
                len(recovery.requeued),
                len(recovery.failed),
                self._policy,
            )
        if recovery.brought_forward:
            log.warning(
                "the clock was set back since %d messages waiting to go were written;"
                " they are due as much sooner",
                len(recovery.brought_forward),
            )
        async with trio.open_nursery() as nursery:
            for name, modem in self._modems.items():
                send, receive = trio.open_memory_channel[Claim](self._dispatch.queue_per_modem)
                self._channels[name] = send
                worker = ModemWorker(
                    modem,
                    self._store,
                    self._clock,
                    self._dispatch,
                    rng=self._rng,
                    on_done=self._done,
                    pacer=self._pacer,
                    policy=self._policy,
                )
                self.workers[name] = worker
                nursery.start_soon(self._supervise, worker, receive)
            task_status.started()
            while True:
                self._wakeup = trio.Event()
                self._top_up_at = math.inf
                try:
                    wake_at = await self.dispatch_once()
                except StoreUnwritable:
                    # A full disk (the store logs it): what is due stays queued, and the next
                    # round tries again, as it would for a modem not ready.
                    wake_at = self._clock.now() + self._health_poll
                deadline = math.inf if wake_at is None else self._clock.trio_deadline(wake_at)
                with trio.move_on_at(min(deadline, self._top_up_at)) as self._waiting:
                    await self._wakeup.wait()
                    await trio.sleep(WAKE_COALESCE)
                self._waiting = None

    async def _supervise(
        self, worker: ModemWorker, claims: trio.MemoryReceiveChannel[Claim]
    ) -> None:
        """The worker's error boundary: whatever escapes it is logged and the worker starts
        again; neither the dispatcher nor another modem's worker notices."""
        while True:
            try:
                await worker.run(claims)
                return
            except Exception:
                log.exception("worker of modem %s crashed; restarting", worker.modem.name)
            await trio.sleep(WORKER_RESTART_DELAY)

    def _done(self, modem: str) -> None:
        self._in_flight[modem] -= 1
        if self._in_flight[modem] < 2:
            self.wake()
            return
        # The message being sent and one more wait: a round within TOP_UP_DELAY will do.
        self._top_up_at = min(self._top_up_at, trio.current_time() + TOP_UP_DELAY)
        if self._waiting is not None:
            self._waiting.deadline = min(self._waiting.deadline, self._top_up_at)

    async def dispatch_once(self) -> float | None:
        """One round: expire, claim and hand over what is due. Returns when to look again
        (None: only a wake-up can bring new work)."""
        store = self._store
        now = self._clock.now()
        if self._first_round_at is None:
            self._first_round_at = now
        # Every round, due messages or not, so that failover_after counts from the round that
        # first saw the modem down (the gateway wakes the dispatcher on each health change).
        for name, driver in self._modems.items():
            if driver.health().state is ModemState.READY:
                self._down_since.pop(name, None)
            else:
                self._down_since.setdefault(name, now)
        heads, expires_at = await store.queue_times()
        if expires_at is not None and EXPIRY.reached(expires_at, now):
            expired = await store.expire_due(now)
            log.info("%d messages expired before they could be sent", len(expired))
            heads, expires_at = await store.queue_times()
        if not heads:
            return expires_at
        due = [service for service, due_at in heads.items() if DUE.reached(due_at, now)]
        waiting = bool(due)
        if waiting:
            waiting = await self._claim_due(now, due)
            heads, expires_at = await store.queue_times()
        times = [t for t in (*heads.values(), expires_at) if t is not None and t > now]
        if waiting:
            # Due messages wait for a ready modem: look at modem health again soon, and when a
            # SIM's rest between sends ends.
            times.append(now + self._health_poll)
            if self._pacer is not None:
                rests = (self._pacer.next_send_at(name, now) for name in self._modems)
                times += [at for at in rests if at > now]
        return min(times, default=None)

    async def _claim_due(self, now: float, services: Sequence[int]) -> bool:
        """Claim due messages of `services` (those with some due) up to the spare capacity of
        ready modems, the services taking turns, one message a turn; True if some are left
        waiting for a modem."""
        per_modem = self._dispatch.queue_per_modem
        pacer = self._pacer
        free: dict[str, int] = {}
        for name in self._modems:
            slots = per_modem if pacer is None else pacer.slots(name, now, per_modem)
            if name not in self._down_since and self._in_flight[name] < slots:
                free[name] = slots - self._in_flight[name]
        if not free:
            return True
        wanted = sum(free.values())
        assignments: list[tuple[str, str]] = []
        load = dict(self._in_flight)
        last_used = {name: pacer.last_used(name) for name in free} if pacer is not None else {}
        # A service none of whose modems is free waits, unread.
        usable = [service for service in services if self._may_use(service, free)]
        waiting = len(usable) < len(services)
        # A round reads the services its free slots' turns reach, each as many messages as it
        # can hand out and a few more; only for a service whose messages read were all looked
        # at, none of which a free modem of its own takes (stickiness, prefixes), does it read
        # on, up to 16 a free slot: a thousand queued messages are not read to hand out three,
        # nor every service to hand out one.
        limit = wanted + 4
        widest = min(DUE_SCAN_LIMIT, 16 * wanted + 64)
        turns = self._turns(usable)
        queues: dict[int, deque[DueMessage]] = {}
        read: dict[int, list[DueMessage]] = {}  # each service's messages read, in its order
        widened: set[int] = set()
        while turns and free:
            service = turns.popleft()
            if service not in queues:
                # This and the next unread services whose turns the free slots may reach, in
                # one look at the store.
                unread = [service, *(other for other in turns if other not in queues)]
                unread = unread[: sum(free.values())]
                found = await self._store.due(unread, now, limit)
                for other in unread:
                    read[other] = found.get(other, [])
                    queues[other] = deque(read[other])
            placed, passed_over = await self._turn(
                service, queues[service], free, load, last_used, assignments, now
            )
            waiting = waiting or passed_over
            if placed:
                self._last_served[service] = next(self._served)
                turns.append(service)
                continue
            if (
                service not in widened
                and len(read[service]) == limit
                and self._may_use(service, free)
            ):
                widened.add(service)
                seen = {message.id for message in read[service]}
                read[service] = (await self._store.due([service], now, widest)).get(service, [])
                queues[service].extend(m for m in read[service] if m.id not in seen)
                turns.appendleft(service)
        # Due messages left to services whose turn did not come: unread, or not all read.
        waiting = waiting or any(
            service not in queues or queues[service] or len(read[service]) == limit
            for service in turns
        )
        if not assignments:
            return waiting
        # The claim checks each message as it is when the claim runs, not as it was read.
        for claim in await self._store.claim(assignments, self._clock.now()):
            self._in_flight[claim.modem] += 1
            self._channels[claim.modem].send_nowait(claim)
        return waiting

    def _may_use(self, service: int, free: Mapping[str, int]) -> bool:
        """True when the service's pool holds a modem with a free slot."""
        pool = self._pools.get(service, ())
        return not pool or any(name in free for name in pool)

    def _turns(self, services: Iterable[int]) -> deque[int]:
        """The services in round-robin order: the least recently served first (then by id)."""
        last = self._last_served
        return deque(sorted(services, key=lambda service: (last.get(service, 0), service)))

    async def _turn(
        self,
        service: int,
        queue: deque[DueMessage],
        free: dict[str, int],
        load: dict[str, int],
        last_used: dict[str, float],
        assignments: list[tuple[str, str]],
        now: float,
    ) -> tuple[bool, bool]:
        """The service's turn: its first message in `queue` that a free modem may take goes
        to `assignments`, taking the modem's slot from `free` and adding to its `load`; those
        before it are taken off the queue. Returns whether one was placed, and whether one
        was passed over for want of a free modem it may use (it is left waiting). Candidates
        outside their send window are rescheduled or expired instead."""
        passed_over = False
        while queue:
            message = queue.popleft()
            if message.window is not None:
                opening = next_open(message.window, now)
                if opening is None:
                    await self._store.expire(message.id, "send window closed before sending", now)
                    continue
                if opening > now:
                    await self._store.reschedule(message.id, opening, now)
                    continue
            sticky = message.modem
            if sticky is not None and await self._failed_over(message.id, sticky, now):
                sticky = None
            modem = choose_modem(
                pool=self._pools.get(service, ()),
                sticky=sticky,
                free=free,
                load=load,
                recipient=message.recipient,
                prefixes=self._prefixes,
                last_used=last_used,
            )
            if modem is None:
                passed_over = True
                continue
            assignments.append((message.id, modem))
            load[modem] += 1
            free[modem] -= 1
            if free[modem] == 0:
                del free[modem]
            return True, passed_over
        return False, passed_over

    async def _failed_over(self, message_id: str, modem: str, now: float) -> bool:
        """Release a message bound to `modem` once that modem has been down longer than
        `failover_after`: it is then resent whole elsewhere."""
        if modem not in self._modems:
            # Gone from the config: down for good, since the first round after the start (not
            # since the message's next retry, which may come long after).
            gone_since = self._first_round_at
            self._down_since.setdefault(modem, now if gone_since is None else gone_since)
        down_since = self._down_since.get(modem)
        if down_since is None or now - down_since < self._dispatch.failover_after:
            return False
        released = await self._store.release_from_modem(message_id, modem, now)
        if released:
            log.warning(
                "message %s: modem %s down since %.0f s; resending it whole on another modem",
                message_id,
                modem,
                now - down_since,
            )
        return released
