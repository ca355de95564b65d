"""The simulated modem as a driver's port: a fresh in-memory stream per open, each served by
the same `Simulator`, as a USB stick is the same modem each time its port is reopened."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from drivers.simulator import Simulator, serve_stream


def memory_opener(
    nursery: trio.Nursery, sim: Simulator
) -> tuple[list[trio.abc.Stream], Callable[[], Awaitable[trio.abc.Stream]]]:
    """The modem ends of every port opened so far (one per open), and the opener."""
    ports: list[trio.abc.Stream] = []

    async def open_stream() -> trio.abc.Stream:
        driver_end, modem_end = trio.testing.memory_stream_pair()
        ports.append(modem_end)
        nursery.start_soon(serve_stream, sim, modem_end)
        return driver_end

    return ports, open_stream
