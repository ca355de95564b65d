"""The failed-login policy as a pure object under a hand-moved `now`: free failures, a doubling
delay, a lockout of the address only, the sliding window, and the counters (issue 10, item 6)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from edgegw.throttle import Admission, AuthThrottle, AuthThrottleConfig, Failure, client_key

CONFIG = AuthThrottleConfig(
    window=60.0, free_failures=3, base_delay=0.5, max_delay=4.0, lockout_failures=8, cooldown=600.0
)


def test_failures_past_the_free_ones_are_slowed_more_and_more() -> None:
    throttle = AuthThrottle(CONFIG)
    delays = [throttle.failed("http", "10.0.0.1", f"user{i}", float(i)).delay for i in range(7)]
    assert delays == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 4.0]
    assert throttle.admit("http", "10.0.0.1", 7.0).delay == 4.0  # the next attempt waits too
    assert throttle.admit("http", "10.0.0.2", 7.0).delay == 0.0  # another address does not


def test_an_address_is_refused_for_the_cooldown_after_too_many_failures() -> None:
    throttle = AuthThrottle(CONFIG)
    outcomes = [throttle.failed("smpp", "10.0.0.1", "demo", float(i)) for i in range(8)]
    assert [o.locked_until for o in outcomes] == [0.0] * 7 + [607.0]
    refused = throttle.admit("smpp", "10.0.0.1", 100.0)
    assert refused.refused_until == 607.0
    assert throttle.admit("smpp", "10.0.0.1", 607.0).refused_until == 0.0
    assert throttle.refusals_total == {"smpp": 1}
    assert throttle.failures_total == {"smpp": 8}


def test_an_attacked_account_is_slowed_but_never_locked_for_another_address() -> None:
    throttle = AuthThrottle(CONFIG)
    for i in range(30):
        throttle.failed("http", f"10.0.1.{i}", "demo", float(i))  # one guess per address
    owner = throttle.admit("http", "192.168.1.5", 30.0)
    assert owner.refused_until == 0.0 and owner.delay == 0.0
    # Another failure for the account is answered slowly, wherever it comes from.
    assert throttle.failed("http", "192.168.1.5", "demo", 31.0).delay == 4.0


def test_failures_leave_the_window() -> None:
    throttle = AuthThrottle(CONFIG)
    for i in range(6):
        throttle.failed("http", "10.0.0.1", "demo", float(i))
    assert throttle.admit("http", "10.0.0.1", 10.0).delay == 2.0
    assert throttle.admit("http", "10.0.0.1", 65.5).delay == 0.0  # all six are older than 60 s
    assert throttle.failed("http", "10.0.0.1", "demo", 66.0).first_in_window


def test_a_connection_without_an_address_is_never_refused() -> None:
    throttle = AuthThrottle(CONFIG)
    for i in range(20):
        throttle.failed("http", None, "demo", float(i))
    assert throttle.admit("http", None, 20.0) == Admission()


def test_memory_is_bounded() -> None:
    throttle = AuthThrottle(CONFIG)
    for i in range(20_000):
        throttle.failed("http", f"a{i}", f"u{i}", 1.0)
    assert len(throttle._addresses) <= 10_000
    assert len(throttle._accounts) <= 10_000


def _bytes_held(failures: Callable[[AuthThrottle], None]) -> int:
    """What a throttle holds (traced) after `failures` were counted on it."""
    tracemalloc.start()
    try:
        throttle = AuthThrottle(CONFIG)
        failures(throttle)
        held: int = tracemalloc.get_traced_memory()[0]
        return held
    finally:
        tracemalloc.stop()


def test_an_accounts_memory_depends_neither_on_its_names_length_nor_on_its_failures() -> None:
    def names(length: int) -> Callable[[AuthThrottle], None]:
        def fail(throttle: AuthThrottle) -> None:
            for i in range(2000):  # a send's username may be as long as the body allows
                throttle.failed("http", None, f"u{i}".ljust(length, "x"), 1.0)

        return fail

    def one_account(throttle: AuthThrottle) -> None:
        for i in range(50_000):  # within one window, from as many addresses as it takes
            throttle.failed("http", None, "demo", 1.0 + i / 1000)

    short = _bytes_held(names(8))
    assert _bytes_held(names(4096)) < 1.5 * short
    assert _bytes_held(one_account) < 20_000
    throttle = AuthThrottle(CONFIG)
    for i in range(50_000):
        throttle.failed("http", None, "demo", 1.0 + i / 1000)
    assert throttle.failed("http", None, "demo", 51.0).delay == 4.0  # saturated all the same


def test_an_ipv6_client_is_counted_by_its_64_and_an_ipv4_one_by_its_address() -> None:
    assert client_key("2001:db8:1:2::5") == client_key("2001:DB8:1:2:ffff::1")
    assert client_key("2001:db8:1:2::5") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.2") != client_key("192.0.2.1")
    assert client_key("not an address") == "not an address"
    throttle = AuthThrottle(AuthThrottleConfig(lockout_failures=3, free_failures=0))
    for n in range(3):
        throttle.failed("http", f"2001:db8::{n}", f"account{n}", now=10.0)
    assert throttle.admit("http", "2001:db8::ffff", now=11.0).refused_until > 11.0
    assert throttle.admit("http", "2001:db8:0:1::1", now=11.0).refused_until == 0.0


class _EveryFailure:
    """The policy as written in AuthThrottleConfig, keeping every failure time of the window
    under the account's own name: what AuthThrottle must answer, whatever it keeps."""

    def __init__(self, config: AuthThrottleConfig) -> None:
        self.config = config
        self.times: dict[tuple[str, str], list[float]] = {}
        self.locked_until: dict[str, float] = {}

    def _delay(self, failures: int) -> float:
        over = failures - self.config.free_failures
        if over <= 0:
            return 0.0
        return min(self.config.base_delay * 2.0 ** min(over - 1, 32), self.config.max_delay)

    def _in_window(self, key: tuple[str, str], now: float) -> list[float]:
        times = [at for at in self.times.get(key, []) if at > now - self.config.window]
        self.times[key] = times
        return times

    def admit(self, address: str, now: float) -> Admission:
        key = ("address", client_key(address))
        if key not in self.times:
            return Admission()
        locked_until = self.locked_until.get(key[1], 0.0)
        if locked_until > now:
            return Admission(refused_until=locked_until)
        return Admission(delay=self._delay(len(self._in_window(key, now))))

    def failed(self, address: str, account: str, now: float) -> Failure:
        config = self.config
        first, delay, locked_until = False, 0.0, 0.0
        for key in (("address", client_key(address)), ("account", account)):
            times = self._in_window(key, now)
            count = len(times)
            first = first or count == 0
            times.append(now)
            delay = max(delay, self._delay(count + 1))
            if (
                key[0] == "address"
                and count + 1 >= config.lockout_failures
                and self.locked_until.get(key[1], 0.0) <= now
            ):
                locked_until = self.locked_until[key[1]] = now + config.cooldown
        return Failure(delay=delay, first_in_window=first, locked_until=locked_until)


# Runs of attempts alike, so that keys go past the failures AuthThrottle keeps of them.
_ATTEMPTS = st.lists(
    st.tuples(
        st.booleans(),  # failures, else admissions
        st.sampled_from(["10.0.0.1", "2001:db8::1", "2001:db8::2"]),
        st.sampled_from(["demo", "Demo", " demo", "x" * 300]),
        st.sampled_from([0.0, 0.01, 0.5, 3.0, 30.0, 400.0]),  # seconds between two of the run
        st.integers(1, 80),  # how many
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    attempts=_ATTEMPTS,
    free_failures=st.integers(0, 6),
    lockout_failures=st.integers(1, 60),
    max_delay=st.sampled_from([0.0, 8.0, 1e12]),
    cooldown=st.sampled_from([0.0, 5.0, 900.0]),
)
def test_the_delay_and_the_lockout_are_those_of_every_failure_kept(
    attempts: list[tuple[bool, str, str, float, int]],
    free_failures: int,
    lockout_failures: int,
    max_delay: float,
    cooldown: float,
) -> None:
    """AuthThrottle keeps a digest of each account and its newest failures only; for every
    sequence of failures and admissions it answers what keeping them all would answer."""
    config = AuthThrottleConfig(
        window=300.0,
        free_failures=free_failures,
        base_delay=0.5,
        max_delay=max_delay,
        lockout_failures=lockout_failures,
        cooldown=cooldown,
    )
    throttle, model = AuthThrottle(config), _EveryFailure(config)
    now = 0.0
    for failures, address, account, elapsed, count in attempts:
        for _ in range(count):
            now += elapsed
            if failures:
                assert throttle.failed("http", address, account, now) == model.failed(
                    address, account, now
                )
            else:
                assert throttle.admit("http", address, now) == model.admit(address, now)
