"""The serial transport over a real pseudo-terminal and pyserial URL ports."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from drivers.modem import ModemUnavailable
from drivers.transport import (
    SerialStream,
    TransportError,
    map_serial_errors,
    open_serial,
    uucp_lock_holder,
)


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)  # pyserial opens its own descriptor on the path
    try:
        yield master, path
    finally:
        # A test may have closed the master itself to make the port vanish.
        with contextlib.suppress(OSError):
            os.close(master)


async def read_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk
        data += chunk
    return data


async def test_pty_both_ways_without_blocking_the_loop(pty: tuple[int, str]) -> None:
    master, path = pty
    port = await open_serial(path)
    modem_side = trio.lowlevel.FdStream(os.dup(master))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.001)

    async with port, modem_side, trio.open_nursery() as nursery:
        assert port.uses_fd
        nursery.start_soon(ticker)
        # Nothing to read yet: the reader waits on the fd while the ticker keeps running.
        with trio.move_on_after(0.05):
            await port.receive_some()
        assert ticks >= 10
        await port.send_all(b"AT\r")
        assert await read_exactly(modem_side, 3) == b"AT\r"
        await modem_side.send_all(b"\r\nOK\r\n")
        assert await read_exactly(port, 6) == b"\r\nOK\r\n"
        big = bytes(range(256)) * 256  # more than a pty buffer holds: send_all must wait
        async with trio.open_nursery() as inner:
            inner.start_soon(port.send_all, big)
            assert await read_exactly(modem_side, len(big)) == big
        nursery.cancel_scope.cancel()


class TaskSteps(trio.abc.Instrument):
    """Counts the scheduler's steps of the task named `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == self.name:
            self.steps += 1


async def test_bytes_waited_for_are_returned_without_one_more_turn(pty: tuple[int, str]) -> None:
    master, path = pty
    port = await open_serial(path)
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await port.receive_some())

    steps = TaskSteps("reader")
    trio.lowlevel.add_instrument(steps)
    try:
        async with port, trio.open_nursery() as nursery:
            nursery.start_soon(reader, name="reader")
            await trio.testing.wait_all_tasks_blocked()
            os.write(master, b"\r\n> ")
        # One step up to the wait for the fd, one to read and return: no third.
        assert received == [b"\r\n> "]
        assert steps.steps == 2
    finally:
        trio.lowlevel.remove_instrument(steps)


async def test_bytes_already_waiting_are_still_a_checkpoint(pty: tuple[int, str]) -> None:
    master, path = pty
    async with await open_serial(path) as port:
        os.write(master, b"OK\r\n")
        with trio.testing.assert_checkpoints():
            assert await read_exactly(port, 4) == b"OK\r\n"


async def test_pty_vanishing_maps_to_transport_error(pty: tuple[int, str]) -> None:
    master, path = pty
    port = await open_serial(path)
    async with port:
        os.close(master)
        with pytest.raises(TransportError) as caught:
            while await port.receive_some():
                pass
            raise TransportError("end of stream")  # either way the caller sees one error type
        assert isinstance(caught.value, ModemUnavailable)
        with pytest.raises(TransportError):
            await port.send_all(b"AT\r")


async def test_closing_wakes_a_blocked_reader(pty: tuple[int, str]) -> None:
    _, path = pty
    port = await open_serial(path)
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await port.receive_some()

        nursery.start_soon(reader)
        await trio.sleep(0.01)
        await port.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await port.send_all(b"AT\r")


async def test_loop_url_uses_a_worker_thread() -> None:
    port = await open_serial("loop://")
    async with port:
        assert not port.uses_fd
        await port.send_all(b"AT+CSQ\r")
        assert await read_exactly(port, 7) == b"AT+CSQ\r"
        with trio.move_on_after(0.2) as scope:
            await port.receive_some()
        assert scope.cancelled_caught


async def test_socket_url_reaches_a_tcp_modem() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port_number = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:

        async def modem(stream: trio.SocketStream) -> None:
            assert await read_exactly(stream, 3) == b"AT\r"
            await stream.send_all(b"\r\nOK\r\n")

        nursery.start_soon(trio.serve_listeners, modem, listeners)
        port = await open_serial(f"socket://127.0.0.1:{port_number}")
        async with port:
            await port.send_all(b"AT\r")
            assert await read_exactly(port, 6) == b"\r\nOK\r\n"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("url", ["", "/dev/does-not-exist-edgegw", "nosuchscheme://x"])
async def test_open_errors_are_transport_errors(url: str) -> None:
    with pytest.raises(TransportError):
        await open_serial(url)


def test_map_serial_errors_keeps_the_cause() -> None:
    import serial

    with pytest.raises(TransportError) as caught, map_serial_errors("/dev/ttyUSB9"):
        raise serial.SerialException("device reports readiness to read but returned no data")
    assert isinstance(caught.value.__cause__, serial.SerialException)
    assert "/dev/ttyUSB9" in str(caught.value)


def test_serial_stream_is_a_trio_stream() -> None:
    assert issubclass(SerialStream, trio.abc.Stream)


# -- one program per port (issue 9, item 1) ----------------------------------------------------


async def test_a_port_another_program_holds_is_refused_by_name(pty: tuple[int, str]) -> None:
    _, path = pty
    other = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as ModemManager or minicom would
        with pytest.raises(TransportError, match="in use by another program") as caught:
            await open_serial(path)
        assert path in str(caught.value)
    finally:
        os.close(other)
    port = await open_serial(path)  # free again once the other program let go
    await port.aclose()


async def test_our_open_port_locks_out_a_second_opener(pty: tuple[int, str]) -> None:
    _, path = pty
    async with await open_serial(path):
        with pytest.raises(TransportError, match="in use by another program"):
            await open_serial(path)
        other = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)


def test_uucp_lock_files_name_a_live_holder_and_ignore_stale_ones(
    tmp_path: Path, pty: tuple[int, str]
) -> None:
    _, path = pty
    lock = tmp_path / f"LCK..{os.path.basename(path)}"
    assert uucp_lock_holder(path, [str(tmp_path)]) is None
    lock.write_text(f"{os.getppid():>10}\n")  # the HDB format: the pid in ASCII
    assert uucp_lock_holder(path, [str(tmp_path)]) == f"{lock} (pid {os.getppid()})"
    lock.write_text(f"{os.getpid():>10}\n")  # our own lock is no obstacle
    assert uucp_lock_holder(path, [str(tmp_path)]) is None
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    lock.write_text(f"{gone.pid:>10}\n")
    assert uucp_lock_holder(path, [str(tmp_path)]) is None
