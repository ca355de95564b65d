"""A pyserial port as a `trio.abc.Stream`, without blocking the event loop.

Ports with a file descriptor (devices, ptys) are read with `trio.lowlevel.wait_readable`; URL
ports without one (`socket://`, `loop://`) in a worker thread with a short read timeout.
pyserial exceptions never leave this module: `map_serial_errors` turns them into
`TransportError`, a `ModemUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
import termios
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import serial

# pyserial finds URL handlers by a computed module name, which PyInstaller cannot follow;
# importing them here makes them part of the frozen program.
import serial.urlhandler.protocol_loop
import serial.urlhandler.protocol_socket
import trio

from drivers.modem import ModemUnavailable

# How long one worker-thread read waits before it looks again for cancellation or close.
THREAD_READ_TIMEOUT = 0.05
MAX_READ = 65536
# Where UUCP-style lock files of serial devices live (FHS 3.0, /var/lock is /run/lock).
UUCP_LOCK_DIRS = ("/run/lock", "/var/lock")


class TransportError(ModemUnavailable):
    """The port could not be opened, or failed or vanished while in use."""


@contextmanager
def map_serial_errors(port: str) -> Iterator[None]:
    """The one place where pyserial and OS errors become `TransportError`."""
    try:
        yield
    except (serial.SerialException, OSError, termios.error, ValueError) as exc:
        if "exclusively lock" in str(exc):  # pyserial's words for a flock another holds
            raise TransportError(
                f"{port}: in use by another program (it holds the port's lock); stop it, or "
                "keep ModemManager off the modem (udev ID_MM_DEVICE_IGNORE)"
            ) from exc
        raise TransportError(f"{port}: {exc}") from exc


class SerialStream(trio.abc.Stream):
    """One open pyserial port. `receive_some` returns b"" when the port reports end of file."""

    def __init__(self, port: Any, name: str) -> None:
        self._port = port
        self.name = name
        fd = getattr(port, "fd", None)
        self._fd: int | None = fd if isinstance(fd, int) and fd >= 0 else None
        if self._fd is not None:
            os.set_blocking(self._fd, False)
            if os.isatty(self._fd):
                _wait_for_one_byte(self._fd, name)
        self._closed = False
        self._receiving = False
        self._sending = False
        # The last read took less than it asked for: the port had nothing more waiting, so the
        # next read waits for bytes before it tries (a pty or serial device hands over all it
        # holds), instead of a read that fails with EAGAIN first.
        self._emptied = False

    @property
    def uses_fd(self) -> bool:
        """True when reads wait on the file descriptor, False when a worker thread polls."""
        return self._fd is not None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = MAX_READ if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is reading this port")
        self._receiving = True
        try:
            if self._fd is not None:
                return await self._receive_fd(self._fd, size)
            return await self._receive_thread(size)
        finally:
            self._receiving = False

    async def _receive_fd(self, fd: int, size: int) -> bytes:
        waited = self._emptied
        if waited:
            self._check_open()
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            self._check_open()
            with map_serial_errors(self.name):
                try:
                    data: bytes | None = os.read(fd, size)
                except BlockingIOError:
                    data = None
            if data is None:
                await trio.lowlevel.wait_readable(fd)
                waited = True
                continue
            self._emptied = len(data) < size
            if not waited:
                # Bytes were waiting: yield once all the same, as every receive must. After a
                # wait for them it has yielded already; one more turn would only delay them.
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def _receive_thread(self, size: int) -> bytes:
        while True:
            self._check_open()
            try:
                data = await trio.to_thread.run_sync(self._read_blocking, size)
            except TransportError:
                self._check_open()
                raise
            if data:
                return data

    def _read_blocking(self, size: int) -> bytes:
        with map_serial_errors(self.name):
            first: bytes = self._port.read(1)
            if not first:
                return b""
            waiting = min(int(self._port.in_waiting), size - 1)
            rest: bytes = self._port.read(waiting) if waiting > 0 else b""
            return first + rest

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is writing this port")
        self._sending = True
        try:
            if self._fd is not None:
                await self._send_fd(self._fd, memoryview(data))
            else:
                self._check_open()
                payload = bytes(data)
                await trio.to_thread.run_sync(self._write_blocking, payload)
                self._check_open()
        finally:
            self._sending = False

    async def _send_fd(self, fd: int, view: memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while view:
            self._check_open()
            with map_serial_errors(self.name):
                try:
                    written: int | None = os.write(fd, view)
                except BlockingIOError:
                    written = None
            if written is None:
                await trio.lowlevel.wait_writable(fd)
                continue
            view = view[written:]
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _write_blocking(self, payload: bytes) -> None:
        with map_serial_errors(self.name):
            self._port.write(payload)
            self._port.flush()

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        if self._fd is not None:
            await trio.lowlevel.wait_writable(self._fd)
        else:
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._fd is not None:
                # Wakes tasks blocked in wait_readable/wait_writable with ClosedResourceError.
                trio.lowlevel.notify_closing(self._fd)
            # An unplugged port may fail to close; it is gone either way.
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("port closed")


def _wait_for_one_byte(fd: int, name: str) -> None:
    """VMIN=1: pyserial leaves VMIN=0, where a read with nothing to read returns b"" as if at
    end of file; with VMIN=1 it raises EAGAIN instead, and b"" means the line hung up."""
    with map_serial_errors(name):
        attributes = termios.tcgetattr(fd)
        attributes[6][termios.VMIN] = 1
        attributes[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attributes)


def uucp_lock_holder(path: str, lock_dirs: Sequence[str] = UUCP_LOCK_DIRS) -> str | None:
    """The UUCP lock file (`LCK..ttyUSB0`, FHS) of a device path held by a live process other
    than this one, as "file (pid N)"; None when there is none or it is stale."""
    name = os.path.basename(os.path.realpath(path))
    for folder in lock_dirs:
        lock = os.path.join(folder, f"LCK..{name}")
        try:
            with open(lock, "rb") as file:
                fields = file.read(64).split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            continue
        if pid != os.getpid() and _alive(pid):
            return f"{lock} (pid {pid})"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


async def open_serial(url: str, *, baudrate: int = 115200) -> SerialStream:
    """Open a device path, `/dev/serial/by-id/...`, pty path or pyserial URL as a stream.

    A device is opened with an exclusive `flock` (as ModemManager, minicom and pyserial's own
    `exclusive` do), and not at all while another program's UUCP lock file names it, so two
    programs never share a modem unknowingly; either refusal names the port and the holder."""
    if not url:
        raise TransportError("no port configured")

    def open_port() -> Any:
        if "://" not in url:
            holder = uucp_lock_holder(url)
            if holder is not None:
                raise TransportError(f"{url}: locked by another program: {holder}")
        with map_serial_errors(url):
            return serial.serial_for_url(
                url,
                baudrate=baudrate,
                timeout=THREAD_READ_TIMEOUT,
                write_timeout=10.0,
                exclusive=True,
            )

    # Opening a USB serial device can take a noticeable time (the kernel resets the adaptor).
    port = await trio.to_thread.run_sync(open_port)
    try:
        return SerialStream(port, url)
    except TransportError:
        port.close()
        raise
