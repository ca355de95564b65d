"""The trio shell around the simulated modem: moves bytes between a stream and the engine.

Thin: it feeds what it reads to `ModemEngine` and writes each reply when it is due (trio time, so
tests run on a virtual clock); it never decides what a modem answers. A pseudo-terminal stands in
for the USB serial port a real modem gives (POSIX openpty).
"""

from __future__ import annotations

import math
import os
import tty
from collections.abc import Callable

import trio

from drivers.simulator.engine import ModemEngine, Reply
from drivers.simulator.network import SimulatedNetwork
from drivers.simulator.options import SimulatorOptions

# Replies waiting for their time; a client that floods the modem waits for it, like a UART.
REPLY_QUEUE_DEPTH = 64
READ_SIZE = 4096


class Simulator:
    """One simulated modem: its state (SIM, registration, MR counter, profile) and its network."""

    def __init__(
        self, options: SimulatorOptions | None = None, network: SimulatedNetwork | None = None
    ) -> None:
        self.options = options if options is not None else SimulatorOptions()
        self.engine = ModemEngine(self.options)
        self.network = network if network is not None else SimulatedNetwork()


async def serve_stream(sim: Simulator, stream: trio.abc.Stream) -> None:
    """Serve AT commands over `stream` until the other side closes it (EOF)."""
    send_replies, receive_replies = trio.open_memory_channel[Reply](REPLY_QUEUE_DEPTH)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_write_replies, sim, stream, receive_replies)
        async with send_replies:
            while data := await _receive(stream):
                for reply in sim.engine.receive_data(data, trio.current_time()):
                    await send_replies.send(reply)


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(READ_SIZE))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


async def _write_replies(
    sim: Simulator, stream: trio.abc.Stream, replies: trio.MemoryReceiveChannel[Reply]
) -> None:
    connected = True
    async with replies:
        async for reply in replies:
            await trio.sleep_until(reply.due)
            if reply.sent is not None:
                # The network has the SMS before the modem says so: a test that saw +CMGS
                # finds it in network.sent and in the record file.
                await sim.network.accept(reply.sent, sim.options.record)
            if connected:
                try:
                    await stream.send_all(reply.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    # The client went away; SMS already handed to the network still arrive.
                    connected = False


async def serve_pty(
    sim: Simulator, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve AT on a new pseudo-terminal until cancelled; `started()` with the slave's path.

    The slave is raw (no echo, no line editing: the modem does its own echo). We keep the slave
    open ourselves so that a client closing it does not hang up the master, and can reopen it.
    """
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    try:
        # FdStream makes the master non-blocking and waits with trio.lowlevel.wait_readable.
        async with trio.lowlevel.FdStream(master) as stream:
            task_status.started(path)
            await serve_stream(sim, stream)
            # The master only reaches EOF if the slave is gone for good; keep the port alive
            # until cancelled, as a modem that is still plugged in would be.
            await trio.sleep(math.inf)
    finally:
        os.close(slave)


async def run_pty_simulator(options: SimulatorOptions, *, announce: Callable[[str], None]) -> None:
    """Run one simulated modem on a pseudo-terminal until cancelled; `announce(path)` once up."""
    sim = Simulator(options)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve_pty, sim)
        announce(path)
