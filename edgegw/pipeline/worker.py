"""The per-modem worker: sends the parts of each claimed message through its modem and records
every outcome in the store as it goes (TP-MR per part, retry with backoff, permanent failure).

Never holds the only copy of a message: the store says what is in flight. README, Design
rules (the flow, the store is the queue); DR codes of spec section 4.4.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Callable

import trio

from drivers.events import ModemState
from drivers.gsm import relative_validity, validity_period_minutes
from drivers.modem import Modem, ModemError, OutgoingPart, SendOutcomeUnknown, SendRejected
from edgegw.clock import Clock
from edgegw.config import CrashPolicy, DispatchConfig
from edgegw.model import EXPIRY, Claim, ClaimedPart, DrStatus
from edgegw.pipeline.pacing import Pacer
from edgegw.pipeline.sendwindow import next_open
from edgegw.store import Store, StoreUnwritable

log = logging.getLogger(__name__)

JITTER = 0.2  # a retry waits between 80% and 100% of its backoff, so retries spread out
MIN_VALIDITY_MINUTES = 5  # the shortest TP-VP relative period (TS 23.040 9.2.3.12.1)
CMS_UNASSIGNED_NUMBER = 1  # TS 24.011 RP-cause 1, "unassigned (unallocated) number"


def backoff(attempt: int, dispatch: DispatchConfig, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling from
    retry_initial, capped at retry_max, less up to JITTER of it."""
    delay: float = min(dispatch.retry_max, dispatch.retry_initial * 2.0 ** (attempt - 1))
    return delay * (1 - JITTER * rng.random())


def _smsc_validity(minutes: int) -> float:
    """Seconds the SMSC keeps a part sent with a validity of `minutes`: the period its relative
    TP-VP stands for, which the encoding rounds up to a step of TS 23.040 9.2.3.12.1 (5
    minutes, half an hour, a day, a week)."""
    return 60.0 * validity_period_minutes(relative_validity(minutes))


def _window_opening(claim: Claim, now: float) -> float | None:
    """`now` when the claim's daily send window (if any) is open, else when it opens again;
    None once it never will."""
    return now if claim.window is None else next_open(claim.window, now)


class ModemWorker:
    """Sends claimed messages through one modem, one message at a time."""

    def __init__(
        self,
        modem: Modem,
        store: Store,
        clock: Clock,
        dispatch: DispatchConfig,
        *,
        rng: random.Random,
        on_done: Callable[[str], None],
        pacer: Pacer | None = None,
        policy: CrashPolicy = CrashPolicy.RESEND,
    ) -> None:
        self.modem = modem
        # A part whose answer the modem lost (sent or not unknown) is in flight as after a
        # crash: in_flight_after_crash decides.
        self._policy = policy
        self._store = store
        self._clock = clock
        self._dispatch = dispatch
        self._rng = rng
        self._on_done = on_done
        self._pacer = pacer
        self.errors = 0  # messages whose handling raised something unexpected
        self._part: int | None = None  # the part being sent, for the error boundary
        self._claims: trio.MemoryReceiveChannel[Claim] | None = None
        self._following: Claim | None = None  # taken from the channel during the last send
        self._following_marked = False  # its first part is `sending` already

    async def run(self, claims: trio.MemoryReceiveChannel[Claim]) -> None:
        self._claims = claims
        # A claim taken from the channel before the worker was restarted is still its own.
        await self._chain(None)
        async for claim in claims:
            await self._chain(claim)

    async def _chain(self, claim: Claim | None) -> None:
        """Handle `claim`, then each claim taken from the channel while the last part of the
        one before went out (its first part possibly marked `sending` by that commit)."""
        marked = False
        if claim is None:
            claim, self._following = self._following, None
            marked, self._following_marked = self._following_marked, False
        while claim is not None:
            await self._handle(claim, first_marked=marked)
            claim, self._following = self._following, None
            marked, self._following_marked = self._following_marked, False

    async def _handle(self, claim: Claim, *, first_marked: bool) -> None:
        self._part = None
        try:
            await self.send(claim, first_marked=first_marked)
        except StoreUnwritable as exc:
            # A write before a part went out (its mark `sending`, a hold, the last mark `sent`)
            # found the disk full; every write after one is waited out in `send`. Not this
            # message's fault: back to the queue without spending an attempt, once there is room.
            requeue = functools.partial(
                self._store.requeue,
                claim.id,
                next_attempt_at=self._clock.now(),
                error=str(exc),
                counts_as_attempt=False,
            )
            await self._store.once_writable(requeue)
        except Exception as exc:
            # One message's surprise must not stop this modem: count it, log it, and give
            # the message back to the queue as a failed attempt.
            self.errors += 1
            log.exception("modem %s: sending message %s failed", self.modem.name, claim.id)
            await self._after_error(claim, self._part, f"internal error: {exc!r}", cms=None)
        finally:
            self._on_done(self.modem.name)

    async def send(self, claim: Claim, *, first_marked: bool = False) -> None:
        """Send every unsent part of `claim`, then mark the message sent. With `first_marked`,
        the commit of the previous send marked its first unsent part `sending` already (after
        the checks below)."""
        store = self._store
        now = self._clock.now()
        unsent = [part for part in claim.parts if not part.sent]
        if not first_marked:
            if await self._held(claim, now):
                return
            if self.modem.health().state is not ModemState.READY:
                # Not this message's fault: back to the queue, no attempt spent.
                await store.requeue(
                    claim.id,
                    next_attempt_at=now,
                    error=f"modem {self.modem.name} not ready",
                    counts_as_attempt=False,
                    now=now,
                )
                return
            if not unsent:
                await store.mark_sent(claim.id, now)
                return
        marked = first_marked
        for position, part in enumerate(unsent, 1):
            self._part = part.index
            if not marked:
                bound = position > 1 or len(unsent) < len(claim.parts)
                if self._pacer is not None:
                    if not await self._paced(claim, bound=bound):
                        return
                    # The wait for the SIM's interval may have outlasted the validity or the
                    # day's send window. A message begun goes on, so that its parts reach the
                    # handset together.
                    now = self._clock.now()
                    if not bound and await self._held(claim, now):
                        return
                await store.mark_part_sending(claim.id, part.index, self.modem.name)
            validity = max(MIN_VALIDITY_MINUTES, math.ceil((claim.expires_at - now) / 60))
            outgoing = OutgoingPart(
                recipient=claim.recipient,
                part=part.part,
                status_report=claim.status_report,
                validity_minutes=validity,
                pid=claim.pid,
            )
            try:
                reference = await self.modem.send(outgoing)
            except SendRejected as exc:
                if not exc.permanent:
                    await self._after_error(claim, part.index, str(exc), cms=exc.cms)
                    return
                dr_status = (
                    DrStatus.UNKNOWN_RECIPIENT
                    if exc.cms == CMS_UNASSIGNED_NUMBER
                    else DrStatus.SMSC_FAILED
                )
                # Only this worker knows the try ended for good: a full disk is waited out,
                # or the message would be queued again as an internal error and sent again.
                rejected = functools.partial(
                    store.fail,
                    claim.id,
                    error=f"rejected by the network: {exc}",
                    dr_status=dr_status,
                    ext_status=None if exc.cms is None else str(exc.cms),
                    part_index=part.index,
                    now=self._clock.now(),
                )
                await store.once_writable(rejected)
                return
            except SendOutcomeUnknown as exc:
                if self._policy is CrashPolicy.RESEND:
                    await self._after_error(claim, part.index, str(exc), cms=None)
                    return
                # At most once: waited out through a full disk as above.
                unknown = functools.partial(
                    store.fail,
                    claim.id,
                    error=f"{exc}; not resent (policy: fail)",
                    dr_status=DrStatus.UNSPECIFIED,
                    ext_status=None,
                    part_index=part.index,
                    now=self._clock.now(),
                )
                await store.once_writable(unknown)
                return
            except ModemError as exc:
                await self._after_error(claim, part.index, str(exc), cms=exc.cms)
                return
            now = self._clock.now()
            if self._pacer is not None:
                self._pacer.record(self.modem.name, now)
            last = position == len(unsent)
            following = self._next_part(claim, unsent, position, now)
            sent = await store.mark_part_sent(
                claim.id,
                part.index,
                reference,
                last=last,
                next_part=following,
                smsc_expires_at=now + _smsc_validity(validity),
                now=now,
            )
            marked = sent.next_sending
            if last:
                self._following_marked = sent.next_sending
            if not sent.more:
                break
        self._part = None

    def _next_part(
        self, claim: Claim, unsent: list[ClaimedPart], position: int, now: float
    ) -> tuple[str, int, str] | None:
        """The part this worker sends next, to be marked `sending` in the commit of the part
        that just went out: the message's next part, or after its last one the first part of
        the next claim waiting in the channel. None when a pacing wait or a cap stands before
        it, or the next claim needs the ordinary checks (expired, the modem not ready, nothing
        left to send): a part is `sending` only once nothing but the modem holds it back."""
        name = self.modem.name
        pacer = self._pacer
        if pacer is not None and (
            pacer.capped_until(name, now) is not None or pacer.next_send_at(name, now) > now
        ):
            return None
        if position < len(unsent):
            return claim.id, unsent[position].index, name
        if self._claims is None:
            return None
        try:
            following = self._claims.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None
        self._following = following
        first = next((part for part in following.parts if not part.sent), None)
        if (
            first is None
            or EXPIRY.reached(following.expires_at, now)
            or _window_opening(following, now) != now
            or self.modem.health().state is not ModemState.READY
        ):
            return None
        return following.id, first.index, name

    async def _held(self, claim: Claim, now: float) -> bool:
        """Hold back `claim` when it may not go at `now`: expired (DR 361) once its validity is
        over, back to the queue until its daily send window opens again; True if held."""
        if EXPIRY.reached(claim.expires_at, now):
            await self._store.expire(claim.id, "validity period expired before sending", now)
            return True
        opening = _window_opening(claim, now)
        if opening == now:
            return False
        if opening is None:
            await self._store.expire(claim.id, "send window closed before sending", now)
            return True
        await self._store.requeue(
            claim.id,
            next_attempt_at=opening,
            error="send window closed",
            counts_as_attempt=False,
            now=now,
        )
        return True

    async def _paced(self, claim: Claim, *, bound: bool) -> bool:
        """Wait out the modem's minimum interval; False (the message went back to the queue,
        due when the cap lifts) when an hourly or daily cap holds the modem back."""
        assert self._pacer is not None
        name = self.modem.name
        now = self._clock.now()
        capped_until = self._pacer.capped_until(name, now)
        if capped_until is not None:
            # Bound to this modem (a part went out on it), the message waits for the cap to
            # lift; otherwise it is due at once, for another modem.
            await self._store.requeue(
                claim.id,
                next_attempt_at=capped_until if bound else now,
                error=f"modem {name} reached its sending cap",
                counts_as_attempt=False,
                now=now,
            )
            return False
        await self._clock.sleep_until(self._pacer.next_send_at(name, now))
        return True

    async def _after_error(
        self, claim: Claim, part_index: int | None, error: str, *, cms: int | None
    ) -> None:
        """A try that may work later: queue again with backoff, or fail once attempts run out."""
        attempts = claim.attempts + 1
        now = self._clock.now()

        async def record() -> None:
            if attempts >= self._dispatch.max_attempts:
                await self._store.fail(
                    claim.id,
                    error=f"{error} (gave up after {attempts} attempts)",
                    dr_status=DrStatus.TRANSMIT_ERROR if cms is None else DrStatus.SMSC_FAILED,
                    ext_status=None if cms is None else str(cms),
                    part_index=part_index,
                    now=now,
                )
                return
            await self._store.requeue(
                claim.id,
                next_attempt_at=now + backoff(attempts, self._dispatch, self._rng),
                error=error,
                counts_as_attempt=True,
                part_index=part_index,
                now=now,
            )

        try:
            # Until it is recorded the message stays `sending`, held by no one: a full disk
            # is waited out.
            await self._store.once_writable(record)
        except Exception:
            # The store refused otherwise; the message stays `sending` and the next start's
            # crash recovery resolves it.
            log.exception("modem %s: could not record the failure of %s", self.modem.name, claim.id)
