"""The simulated modem on a real pseudo-terminal, driven by pyserial as a real modem would be.

Integration test: a POSIX pty stands in for the modem's USB serial port (STYLE.md "Tests").
"""

from __future__ import annotations

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
