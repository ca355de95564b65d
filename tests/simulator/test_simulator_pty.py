"""The simulated modem on a real pseudo-terminal, driven by pyserial as a real modem would be.

Integration test: a POSIX pty stands in for the modem's USB serial port (STYLE.md "Tests").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import serial
import trio

from drivers.simulator import Simulator, SimulatorOptions, run_pty_simulator, serve_pty

HELLO_PDU = b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37"


def exchange(path: str, data: bytes, until: bytes) -> bytes:
    """Open the port, write, read up to `until` (or the timeout), close."""
    with serial.Serial(path, baudrate=115200, timeout=5) as port:
        port.write(data)
        answer: bytes = port.read_until(until)
        return answer


async def test_serve_pty_answers_pyserial_and_survives_a_reopen(nursery: trio.Nursery) -> None:
    sim = Simulator()
    path: str = await nursery.start(serve_pty, sim)
    assert await trio.Path(path).exists()
    answer = await trio.to_thread.run_sync(exchange, path, b"AT\r", b"OK\r\n")
    assert answer == b"AT\r\r\nOK\r\n"
    # A client that closes and reopens the port finds the same modem, settings kept.
    answer = await trio.to_thread.run_sync(exchange, path, b"ATE0\r", b"OK\r\n")
    assert answer == b"ATE0\r\r\nOK\r\n"
    answer = await trio.to_thread.run_sync(exchange, path, b"AT+CSQ\r", b"OK\r\n")
    assert answer == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


async def test_a_pdu_send_over_the_pty_reaches_the_network(nursery: trio.Nursery) -> None:
    sim = Simulator()
    path: str = await nursery.start(serve_pty, sim)

    def send() -> bytes:
        with serial.Serial(path, baudrate=115200, timeout=5) as port:
            port.write(b"ATE0\r")
            assert port.read_until(b"OK\r\n") == b"ATE0\r\r\nOK\r\n"
            port.write(b"AT+CMGS=23\r")
            assert port.read_until(b"> ") == b"\r\n> "
            port.write(HELLO_PDU + b"\x1a")
            answer: bytes = port.read_until(b"OK\r\n")
            return answer

    assert await trio.to_thread.run_sync(send) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    (sent,) = await sim.network.wait_sent(1)
    assert (sent.recipient, sent.text) == ("+46708251358", "hellohello")


async def test_run_pty_simulator_announces_the_path_and_closes_it_when_cancelled() -> None:
    announced: list[str] = []
    ready = trio.Event()

    def announce(path: str) -> None:
        announced.append(path)
        ready.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            options = SimulatorOptions(profile="sim_pin")
            nursery.start_soon(lambda: run_pty_simulator(options, announce=announce))
            await ready.wait()
            answer = await trio.to_thread.run_sync(exchange, announced[0], b"AT+CPIN?\r", b"OK\r\n")
            assert answer == b"AT+CPIN?\r\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
            nursery.cancel_scope.cancel()
    assert len(announced) == 1
    # Both ends were closed: the pseudo-terminal is gone.
    assert not await trio.Path(announced[0]).exists()


def hangs_up(path: str, ready: Callable[[], None]) -> bytes:
    """Hold the port open until the modem goes away; what the last read gave."""
    with serial.Serial(path, baudrate=115200, timeout=None) as port:
        port.write(b"ATE0\r")
        assert port.read_until(b"OK\r\n") == b"ATE0\r\r\nOK\r\n"
        trio.from_thread.run_sync(ready)
        try:
            # Blocks until data or a hang-up: nothing more is said on this line.
            return bytes(port.read(1))
        except serial.SerialException as exc:
            # pyserial reports the EIO of a hung-up tty as "device reports readiness to read
            # but returned no data", as with an unplugged USB modem.
            return str(exc).encode()


async def test_vanish_closes_the_pty_and_reappears_under_a_new_path_with_the_link_moving(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sim = Simulator(SimulatorOptions(link_dir=str(tmp_path)))
    first: str = await nursery.start(serve_pty, sim)
    link = tmp_path / "usb-edgegw_SIM-GSM1_356938035643809-if00-port0"
    assert os.readlink(link) == first == sim.port_path
    assert await sim.deliver_mo("+4799999999", "survives") == [1]
    connected = trio.Event()
    hang_ups: list[bytes] = []
    while_away: list[tuple[bool, str | None]] = []

    async def hold_the_port() -> None:
        hang_ups.append(
            await trio.to_thread.run_sync(hangs_up, first, connected.set, abandon_on_cancel=True)
        )

    async def look_while_away() -> None:
        assert await sim.wait_port_change() is None
        while_away.append((await trio.Path(link).is_symlink(), sim.port_path))

    with trio.fail_after(20):
        async with trio.open_nursery() as inner:
            inner.start_soon(hold_the_port)
            await connected.wait()
            inner.start_soon(look_while_away)
            second = await sim.vanish(0.5)
    # The client holding the old port saw it hang up (EIO), as with an unplugged USB modem.
    assert len(hang_ups) == 1
    assert hang_ups[0].startswith(b"device reports readiness to read but returned no data")
    # While it was away there was no link and no path.
    assert while_away == [(False, None)]
    assert second is not None and second != first
    assert sim.port_path == second
    assert os.readlink(link) == second
    # The modem restarted (echo on again) and kept its storage.
    answer = await trio.to_thread.run_sync(exchange, second, b"AT+CPMS?\r", b"OK\r\n")
    assert answer == b'AT+CPMS?\r\r\n+CPMS: "SM",1,30,"SM",1,30,"SM",1,30\r\n\r\nOK\r\n'


async def test_the_link_goes_when_the_server_stops(tmp_path: Path) -> None:
    sim = Simulator(SimulatorOptions(link_dir=str(tmp_path)))
    async with trio.open_nursery() as nursery:
        path: str = await nursery.start(serve_pty, sim)
        assert os.readlink(tmp_path / sim.link_name) == path
        nursery.cancel_scope.cancel()
    assert os.listdir(tmp_path) == []
