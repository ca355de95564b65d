"""The simulated modems' alarm: on trio's real clock it waits on a kernel timer (timerfd), so
replies leave when due rather than up to a millisecond late; on a virtual clock it keeps to
trio's deadlines. These few tests run on the real clock by nature, for milliseconds."""

from __future__ import annotations

import math

import pytest
import trio
import trio.lowlevel

from drivers.simulator import shell
from drivers.simulator.kerneltimer import KernelTimer


def open_timer() -> KernelTimer:
    timer = KernelTimer.open()
    if timer is None:
        pytest.skip("this system has no timerfd (Linux only)")
    return timer


async def test_the_kernel_timer_fires_at_its_time_and_not_before() -> None:
    timer = open_timer()
    try:
        start = trio.current_time()
        timer.set(0.003)
        with trio.fail_after(5):
            await timer.wait()
        assert trio.current_time() - start >= 0.003
    finally:
        timer.close()


async def test_setting_the_timer_again_replaces_its_time() -> None:
    timer = open_timer()
    try:
        start = trio.current_time()
        timer.set(60.0)
        timer.set(0.002)
        with trio.fail_after(5):
            await timer.wait()
        assert trio.current_time() - start >= 0.002
        # A time already past fires at once.
        timer.set(-1.0)
        with trio.fail_after(5):
            await timer.wait()
    finally:
        timer.close()


async def test_an_unset_timer_does_not_fire() -> None:
    timer = open_timer()
    try:
        timer.set(0.001)
        timer.set(math.inf)
        with trio.move_on_after(0.02) as waited:
            await timer.wait()
        assert waited.cancelled_caught
    finally:
        timer.close()


async def test_on_the_real_clock_the_alarm_sets_the_kernel_timer_to_the_earliest_due_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_timer().close()
    delays: list[float] = []
    set_timer = KernelTimer.set

    def recorded(self: KernelTimer, delay: float) -> None:
        delays.append(delay)
        set_timer(self, delay)

    monkeypatch.setattr(KernelTimer, "set", recorded)
    woke: list[tuple[str, float, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        due = trio.current_time() + delay
        await shell._alarm().sleep_until(due)
        woke.append((name, due, trio.current_time()))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, "later", 0.03)
            await trio.lowlevel.checkpoint()
            nursery.start_soon(sleeper, "sooner", 0.004)
    assert [name for name, _, _ in woke] == ["sooner", "later"]
    assert all(at >= due for _, due, at in woke)
    # The sooner sleeper moved the timer forward; nothing waited on a trio deadline.
    assert any(0 < delay <= 0.004 for delay in delays)
    assert any(0.004 < delay <= 0.03 for delay in delays)


async def test_on_a_virtual_clock_the_alarm_keeps_to_trio_deadlines(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kernel_timer() -> None:
        raise AssertionError("a kernel timer on a virtual clock")

    monkeypatch.setattr(KernelTimer, "open", no_kernel_timer)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, due: float) -> None:
        await shell._alarm().sleep_until(due)
        woke.append((name, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper, "later", start + 5.0)
        await trio.lowlevel.checkpoint()
        nursery.start_soon(sleeper, "sooner", start + 1.0)
    assert woke == [("sooner", start + 1.0), ("later", start + 5.0)]
