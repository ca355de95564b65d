"""Message ids (spec section 1: 12 chars of [0-9a-z]) and the trio-derived clock."""

from __future__ import annotations

import random
import re
import uuid

import pytest
import trio

from edgegw.clock import Clock
from edgegw.ids import ID_EPOCH, MessageIdGenerator, new_batch_reference

NOW = 1_754_380_800.0
SHAPE = re.compile(r"[0-9a-z]{12}")


def test_ids_have_the_puzzel_shape_and_grow() -> None:
    ids = MessageIdGenerator().next_ids(NOW, 100_000)
    assert all(SHAPE.fullmatch(message_id) for message_id in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


class _Start(random.Random):
    """A generator whose every second's counter starts at `start`."""

    def __init__(self, start: int) -> None:
        super().__init__(0)
        self.start = start

    def randrange(self, *_: object, **__: object) -> int:
        return self.start


@pytest.mark.parametrize("start", [0, 1296 - 2, 1296**2 - 3, 1296**2 * 5 - 1])
def test_an_id_is_its_second_and_a_counter_in_base_36(start: int) -> None:
    ids = MessageIdGenerator(_Start(start)).next_ids(NOW, 5)
    assert {int(message_id[:6], 36) for message_id in ids} == {int(NOW) - ID_EPOCH}
    assert [int(message_id[6:], 36) for message_id in ids] == list(range(start, start + 5))


def test_ids_never_repeat_when_the_wall_clock_steps_back() -> None:
    generator = MessageIdGenerator()
    later = generator.next_ids(NOW + 60, 10)
    earlier = generator.next_ids(NOW, 10)
    assert min(earlier) > max(later)


def test_a_restart_in_a_later_second_cannot_collide() -> None:
    # Same random draws in both "processes": only the time digits keep them apart.
    before = MessageIdGenerator(random.Random(1)).next_ids(NOW, 1000)
    after = MessageIdGenerator(random.Random(1)).next_ids(NOW + 1, 1000)
    assert not set(before) & set(after)
    assert max(before) < min(after)


def test_ids_outside_the_time_range_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        MessageIdGenerator().next_ids(1_000_000_000.0, 1)


def test_batch_references_are_uuid4() -> None:
    reference = new_batch_reference()
    assert uuid.UUID(reference).version == 4
    assert new_batch_reference() != reference


async def test_clock_follows_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(start_epoch=NOW)
    assert clock.now() == NOW
    await trio.sleep(90)
    assert clock.now() == pytest.approx(NOW + 90)
    await clock.sleep_until(NOW + 3600)
    assert clock.now() == pytest.approx(NOW + 3600)
