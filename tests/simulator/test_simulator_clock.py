"""The simulators' precise clock: the event loop never blocks past a deadline, given a poll
that waits whole milliseconds rounded up, and blocks for all but the last millisecond."""

from __future__ import annotations

import math

import trio
from hypothesis import given
from hypothesis import strategies as st

from drivers.simulator import PreciseClock
from drivers.simulator.shell import POLL_GRAIN, precise_sleep_time


def polled(seconds: float) -> float:
    """What epoll makes of a wait: whole milliseconds, rounded up."""
    return math.ceil(seconds / POLL_GRAIN) * POLL_GRAIN


def test_within_the_last_millisecond_the_loop_does_not_block() -> None:
    assert precise_sleep_time(0.0) == 0.0
    assert precise_sleep_time(0.000999) == 0.0
    assert precise_sleep_time(-0.5) == 0.0


def test_far_and_no_deadlines_block_as_long_as_trio_would() -> None:
    assert precise_sleep_time(math.inf) == math.inf
    assert polled(precise_sleep_time(0.0053)) == 0.005


@given(st.floats(min_value=0.0, max_value=100.0))
def test_a_poll_never_wakes_past_the_deadline_nor_a_millisecond_before_it(
    remaining: float,
) -> None:
    waited = polled(precise_sleep_time(remaining))
    assert waited <= remaining + 1e-9
    assert remaining - waited < POLL_GRAIN + 1e-9


def test_timers_run_on_the_precise_clock() -> None:
    async def sleep_briefly() -> tuple[float, float]:
        start = trio.current_time()
        await trio.sleep(0.002)
        return start, trio.current_time()

    start, end = trio.run(sleep_briefly, clock=PreciseClock())
    assert end - start >= 0.002
