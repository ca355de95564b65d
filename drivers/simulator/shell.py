"""The trio shell around the simulated modem: moves bytes between a stream and the engine.

Thin: it feeds what it reads to `ModemEngine`, writes each reply when it is due and fires the
engine's timers (trio time, so tests run on a virtual clock); it never decides what a modem
answers. A pseudo-terminal stands in for the USB serial port a real modem gives (POSIX openpty).
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import itertools
import math
import os
import time
import tty
from collections import deque
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from drivers.gsm import build_status_report, parse_deliver
from drivers.simulator.engine import MANUFACTURER, MODEL, ModemEngine, Reply
from drivers.simulator.kerneltimer import KernelTimer
from drivers.simulator.mobile import deliver_tpdus, mobile_parts
from drivers.simulator.network import SimulatedNetwork
from drivers.simulator.options import SimulatorOptions
from drivers.simulator.sent import SentSms

# Replies waiting for their time; a client that floods the modem waits for it, like a UART.
REPLY_QUEUE_DEPTH = 64
READ_SIZE = 4096


class _Alarm:
    """Wakes tasks at their due times, for every simulated modem of a trio run: one task
    sleeps until the earliest, its wake-up moved when an earlier one comes, and wakes every
    task due by then. A reply due later thus costs no cancel scope of its own (a trio sleep is
    one, entered, expired and left), and modems answering at the same moment share one
    wake-up, as 32 modems given a burst of sends at once do. Nobody wakes before their due
    time; a task cancelled while it sleeps leaves at once, its entry dropped when due.

    On trio's real clock the alarm waits on a kernel timer (`KernelTimer`), so a reply leaves
    when due rather than up to a millisecond after, as epoll's timeout would have it; on a
    virtual clock (tests, `trio.testing.MockClock`) it keeps to trio's deadlines."""

    def __init__(self, timer: KernelTimer | None) -> None:
        self._sleepers: list[tuple[float, int, list[trio.lowlevel.Task | None]]] = []
        self._order = itertools.count()
        self._timer = timer
        self._scope: trio.CancelScope | None = None
        self._wakes_at = math.inf

    def _wake_at(self, when: float) -> None:
        self._wakes_at = when
        if self._timer is not None:
            self._timer.set(when - trio.current_time())
        elif self._scope is not None:
            self._scope.deadline = when

    async def sleep_until(self, due: float) -> None:
        sleeper: list[trio.lowlevel.Task | None] = [trio.lowlevel.current_task()]
        heapq.heappush(self._sleepers, (due, next(self._order), sleeper))
        if due < self._wakes_at:
            self._wake_at(due)

        def abort(_raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            sleeper[0] = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def run(self) -> None:
        try:
            while True:
                earliest = self._sleepers[0][0] if self._sleepers else math.inf
                if self._timer is None:
                    # The deadline of this scope is what `_wake_at` moves.
                    with trio.CancelScope() as self._scope:
                        self._wake_at(earliest)
                        await trio.sleep_forever()
                    self._scope = None
                else:
                    self._wake_at(earliest)
                    await self._timer.wait()
                now = trio.current_time()
                while self._sleepers and self._sleepers[0][0] <= now:
                    task = heapq.heappop(self._sleepers)[2][0]
                    if task is not None:
                        trio.lowlevel.reschedule(task)
        finally:
            if self._timer is not None:
                self._timer.close()


_ALARM: trio.lowlevel.RunVar[_Alarm] = trio.lowlevel.RunVar("simulator_alarm")


def _alarm() -> _Alarm:
    """The trio run's alarm, its task started (as a system task) on first use."""
    try:
        return _ALARM.get()
    except LookupError:
        virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        alarm = _Alarm(None if virtual else KernelTimer.open())
        _ALARM.set(alarm)
        trio.lowlevel.spawn_system_task(alarm.run, name="simulated modems' alarm")
        return alarm


class _Line:
    """One terminal connected to the modem: the replies still to write to it, in order."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.replies: deque[Reply] = deque()
        self.changed = trio.Event()
        self.reading = True
        self.connected = True

    def push(self, replies: list[Reply]) -> None:
        if replies:
            self.replies.extend(replies)
            self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class Simulator:
    """One simulated modem: its state (SIM, registration, MR counter, storage, profile), its
    network, and whether it is plugged in; `port_path` is its current pty, if served on one."""

    def __init__(
        self, options: SimulatorOptions | None = None, network: SimulatedNetwork | None = None
    ) -> None:
        self.options = options if options is not None else SimulatorOptions()
        self.engine = ModemEngine(self.options)
        self.network = network if network is not None else SimulatedNetwork()
        self.port_path: str | None = None
        vanish_after = self.options.vanish_after
        if vanish_after is None:
            vanish_after = self.engine.profile.vanish_after
        self.vanish_after = vanish_after
        self._line: _Line | None = None
        self._sessions: set[trio.CancelScope] = set()
        self._kicked = trio.Event()
        # The engine deadline the timer task sleeps until (inf: none); None while not known.
        self._timers_asleep_until: float | None = None
        self._present = trio.Event()
        self._present.set()
        self._gone = trio.Event()
        self._present_since: float | None = None
        self._back_at = 0.0
        self._port_changed = trio.Event()
        self._appearances = 0
        self._concat_reference = 0

    # ---- the network side, for tests -----------------------------------------------------------

    async def deliver_mo(
        self,
        originator: str,
        text: str,
        *,
        concat_16bit: bool = False,
        reference: int | None = None,
        pid: int = 0,
        interval: float = 0.0,
    ) -> list[int]:
        """A phone sends `text` to this modem: one SMS-DELIVER a part (concatenated with an 8- or
        16-bit reference when long), stamped with the current time, `interval` seconds apart
        (networks space the parts of a message; back to back, a +CMTI meets the +CMGR of the
        one before, which some AT software cannot take).

        Returns the indexes the parts were stored at; a part delivered directly (+CMT) or held
        by the network (storage full, not registered) has none. Waits while the modem is away.
        """
        if reference is None:
            self._concat_reference = (self._concat_reference + 1) % (65536 if concat_16bit else 256)
            reference = self._concat_reference
        parts = mobile_parts(text, reference=reference, concat_16bit=concat_16bit)
        stamp = _wall_clock()
        indexes: list[int] = []
        for number, tpdu in enumerate(deliver_tpdus(originator, parts, timestamp=stamp, pid=pid)):
            if number:
                await trio.sleep(interval)
            indexes += await self.deliver_mo_pdu(tpdu)
        return indexes

    async def deliver_mo_pdu(self, tpdu: bytes) -> list[int]:
        """Deliver one SMS-DELIVER TPDU as given (no SMSC address); GsmError if it is none."""
        parse_deliver(tpdu)
        await self._wait_present()
        replies, index = self.engine.receive_sms(tpdu, trio.current_time())
        self._unsolicited(replies)
        return [] if index is None else [index]

    async def vanish(self, for_seconds: float) -> str | None:
        """Unplug the modem for `for_seconds`, then plug it back in: every connection is cut, a
        pty server opens a new pty. Returns the new `port_path` once the modem is back."""
        appearances = self._appearances
        self.unplug(for_seconds)
        await self._wait_present()
        if self._appearances or self.port_path is not None:
            while self._appearances == appearances:
                await self._port_changed.wait()
        return self.port_path

    async def wait_port_change(self) -> str | None:
        """Wait until the pty vanishes or appears; the new `port_path` (None while away)."""
        await self._port_changed.wait()
        return self.port_path

    def unplug(self, for_seconds: float) -> None:
        """Cut every connection now; the modem is back (power-cycled) after `for_seconds`.

        Replies not yet written are lost with the power, among them a slow +CMGS: the network
        never got that SMS, and a client cannot tell, as with a real stick pulled mid-send.
        """
        if for_seconds < 0:
            raise ValueError("for_seconds must not be negative")
        self._back_at = trio.current_time() + for_seconds
        if self._present.is_set():
            self._present = trio.Event()
        self._gone.set()
        for session in self._sessions:
            session.cancel()

    # ---- plumbing ---------------------------------------------------------------------------

    async def _wait_present(self) -> None:
        while not self._present.is_set():
            await trio.sleep_until(self._back_at)
            if not self._present.is_set() and trio.current_time() >= self._back_at:
                self.engine.power_cycle(trio.current_time())
                self._present_since = trio.current_time()
                self._gone = trio.Event()
                self._present.set()

    async def _wait_unplugged(self) -> None:
        await self._gone.wait()

    def _unsolicited(self, replies: list[Reply]) -> None:
        """Output the modem makes on its own: to the terminal connected last, if any."""
        if self._line is not None:
            self._line.push(replies)
        self._kick()

    def _kick(self) -> None:
        """The engine's timers may have changed: wake the timer tasks if they now have work
        before the time they sleep until (most input adds no timer, or a later one)."""
        asleep_until = self._timers_asleep_until
        if asleep_until is not None:
            deadline = self.engine.next_deadline()
            if deadline is None or deadline >= asleep_until:
                return
        self._timers_asleep_until = None
        self._kicked.set()
        self._kicked = trio.Event()

    def _schedule_report(self, sms: SentSms) -> None:
        """The network will answer an SMS-SUBMIT with TP-SRR by a status report."""
        if not sms.status_report:
            return
        status, delay = self.network.outcome(
            sms.recipient, status=self.options.report_status, delay=self.options.report_delay
        )
        if delay is None or not math.isfinite(delay):
            return
        # Whole seconds of the wall clock now, the report itself built when it is due.
        submitted = int(time.time())
        build = functools.partial(
            _status_report, sms.message_reference, sms.recipient, submitted, delay, status
        )
        self.engine.schedule_status_report(build, trio.current_time() + delay)
        self._kick()

    def _appear(self, path: str) -> None:
        self.port_path = path
        self._appearances += 1
        self._port_changed.set()
        self._port_changed = trio.Event()

    def _disappear(self) -> None:
        self.port_path = None
        self._port_changed.set()
        self._port_changed = trio.Event()

    @property
    def link_name(self) -> str:
        """The /dev/serial/by-id style name of the modem's port (vendor, model, serial number)."""
        return f"usb-{MANUFACTURER}_{MODEL}_{self.options.imei}-if00-port0"


def _wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _status_report(
    message_reference: int, recipient: str, submitted: int, delay: float, status: int
) -> bytes:
    """The SMS-STATUS-REPORT for an SMS the network took at `submitted` (POSIX seconds) and
    settled `delay` seconds later with TP-ST `status`."""
    sc_timestamp = dt.datetime.fromtimestamp(submitted, dt.UTC)
    return build_status_report(
        message_reference,
        recipient,
        sc_timestamp=sc_timestamp,
        discharge_time=sc_timestamp + dt.timedelta(seconds=delay),
        status=status,
    )


async def serve_stream(sim: Simulator, stream: trio.abc.Stream) -> None:
    """Serve AT commands over `stream` until the other side closes it (EOF) or the modem is
    unplugged (then the stream is closed, as a vanished USB port is)."""
    await sim._wait_present()
    line = _Line(stream)
    with trio.CancelScope() as session:
        sim._sessions.add(session)
        sim._line = line
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_replies, sim, line)
                nursery.start_soon(_run_timers, sim)
                if sim.vanish_after:
                    nursery.start_soon(_vanish_on_schedule, sim)
                while data := await _receive(stream):
                    while len(line.replies) > REPLY_QUEUE_DEPTH:
                        await line.changed.wait()
                    line.push(sim.engine.receive_data(data, trio.current_time()))
                    sim._kick()
                line.reading = False
                line.notify()
                # SMS the client already handed over still reach the network after it left.
                while line.replies:
                    await line.changed.wait()
                nursery.cancel_scope.cancel()
        finally:
            # This session's timer task is gone: the next change wakes any other session's.
            sim._timers_asleep_until = None
            sim._sessions.discard(session)
            if sim._line is line:
                sim._line = None
    if session.cancelled_caught:
        await trio.aclose_forcefully(stream)


def memory_opener(
    nursery: trio.Nursery, sim: Simulator
) -> tuple[list[trio.abc.Stream], Callable[[], Awaitable[trio.abc.Stream]]]:
    """A driver's port opener that serves `sim` over a fresh in-memory stream per open (the
    same modem each time, as a USB stick is when its port is reopened), and the modem ends of
    every port opened so far."""
    ports: list[trio.abc.Stream] = []

    async def open_stream() -> trio.abc.Stream:
        driver_end, modem_end = trio.testing.memory_stream_pair()
        ports.append(modem_end)
        nursery.start_soon(serve_stream, sim, modem_end)
        return driver_end

    return ports, open_stream


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(READ_SIZE))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


async def _write_replies(sim: Simulator, line: _Line) -> None:
    while True:
        while not line.replies:
            await line.changed.wait()
        due = line.replies[0].due
        if due > trio.current_time():
            await _alarm().sleep_until(due)
        # A reply due already (the "> " prompt, an OK) goes out at once: sleeping until a past
        # time would only wait one more turn of the scheduler, time a real modem does not take.
        reply = line.replies.popleft()
        line.notify()
        if reply.sent is not None:
            # The network has the SMS before the modem says so: a test that saw +CMGS
            # finds it in network.sent and in the record file.
            await sim.network.accept(reply.sent, sim.options.record)
            sim._schedule_report(reply.sent)
        if line.connected:
            try:
                await line.stream.send_all(reply.data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The client went away; SMS already handed to the network still arrive.
                line.connected = False


async def _run_timers(sim: Simulator) -> None:
    while True:
        kicked = sim._kicked
        deadline = sim.engine.next_deadline()
        sim._timers_asleep_until = math.inf if deadline is None else deadline
        with trio.move_on_at(sim._timers_asleep_until):
            await kicked.wait()
        sim._timers_asleep_until = None
        replies = sim.engine.advance(trio.current_time())
        if replies and sim._line is not None:
            sim._line.push(replies)


async def _vanish_on_schedule(sim: Simulator) -> None:
    since = sim._present_since
    if since is None:
        since = sim._present_since = trio.current_time()
    await trio.sleep_until(since + sim.vanish_after)
    sim.unplug(sim.options.vanish_for)


async def serve_pty(
    sim: Simulator,
    *,
    announce: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve AT on a new pseudo-terminal until cancelled; `started()` with the slave's path.

    The slave is raw (no echo, no line editing: the modem does its own echo). We keep the slave
    open ourselves so that a client closing it does not hang up the master, and can reopen it.
    When the modem is unplugged the pty is closed (its client reads EOF or EIO) and a new one,
    under another path, opens once it is back; `announce` hears every path, `sim.port_path` and
    the by-id symlink in `options.link_dir` follow it.
    """
    previous: str | None = None
    try:
        while True:
            await sim._wait_present()
            master, slave, path = _open_pty(avoid=previous)
            try:
                # FdStream makes the master non-blocking and waits with wait_readable.
                async with trio.lowlevel.FdStream(master) as stream:
                    _link(sim, path)
                    sim._appear(path)
                    if previous is None:
                        task_status.started(path)
                    if announce is not None:
                        announce(path)
                    await serve_stream(sim, stream)
                    # The master only reaches EOF if the slave is gone for good; keep the port
                    # alive as a modem that is still plugged in would be, until unplugged.
                    await sim._wait_unplugged()
            finally:
                os.close(slave)
                _unlink(sim)
                sim._disappear()
            previous = path
    finally:
        _unlink(sim)


def _open_pty(avoid: str | None) -> tuple[int, int, str]:
    """A raw pty whose slave path is not `avoid` (the kernel would hand the freed one back)."""
    spares: list[int] = []
    try:
        while True:
            master, slave = os.openpty()
            try:
                tty.setraw(slave)
                path = os.ttyname(slave)
            except BaseException:
                os.close(master)
                os.close(slave)
                raise
            if path != avoid:
                return master, slave, path
            spares += [master, slave]
    finally:
        for fd in spares:
            os.close(fd)


def _link(sim: Simulator, path: str) -> None:
    if sim.options.link_dir is None:
        return
    link = os.path.join(sim.options.link_dir, sim.link_name)
    fresh = link + ".new"
    if os.path.lexists(fresh):
        os.unlink(fresh)
    os.symlink(path, fresh)
    # A rename replaces the old link in one step: a reader never finds it missing or half made.
    os.replace(fresh, link)


def _unlink(sim: Simulator) -> None:
    if sim.options.link_dir is None:
        return
    link = os.path.join(sim.options.link_dir, sim.link_name)
    if os.path.lexists(link):
        os.unlink(link)


async def run_pty_simulator(options: SimulatorOptions, *, announce: Callable[[str], None]) -> None:
    """Run one simulated modem on a pseudo-terminal until cancelled; `announce(path)` each time
    its port appears (at start and after every reappearance)."""
    sim = Simulator(options)
    await serve_pty(sim, announce=announce)
