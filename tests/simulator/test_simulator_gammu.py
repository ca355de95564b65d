"""Independent AT software against the simulated modem: Gammu initialises it over a real pty,
sends through it and reads what it received, unchanged. Gammu comes from Debian's package,
installed by the test setup when missing (`support.tools.require_tool`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from support.tools import require_tool

from drivers.simulator import Simulator, SimulatorOptions, serve_pty


@pytest.fixture(scope="module")
def gammu_command() -> str:
    return require_tool("gammu", "gammu")


async def test_gammu_identifies_sends_and_reads(
    nursery: trio.Nursery, tmp_path: Path, gammu_command: str
) -> None:
    async def gammu(config: Path, *args: str) -> str:
        with trio.fail_after(60):
            done = await trio.run_process(
                [gammu_command, "-c", str(config), *args], capture_stdout=True, capture_stderr=True
            )
        return bytes(done.stdout).decode()

    sim = Simulator(SimulatorOptions())
    path: str = await nursery.start(serve_pty, sim)
    config = tmp_path / "gammurc"
    config.write_text(f"[gammu]\nport = {path}\nconnection = at115200\n", encoding="utf-8")

    identity = await gammu(config, "identify")
    assert "356938035643809" in identity  # IMEI
    assert "242011234567890" in identity  # IMSI

    sent = await gammu(config, "sendsms", "TEXT", "+4712345678", "-text", "Hello from Gammu")
    assert "message reference=0" in sent
    (sms,) = sim.network.sent
    assert (sms.recipient, sms.text) == ("+4712345678", "Hello from Gammu")

    await sim.deliver_mo("+4799887766", "Hello Gammu")
    await sim.deliver_mo("+4799887766", "Ünïcödé 😀 " * 10)
    inbox = await gammu(config, "getallsms")
    assert inbox.count('Remote number        : "+4799887766"') == 3
    assert "Hello Gammu" in inbox
    assert "part 2 of 2" in inbox
    assert "Ünïcödé 😀 Ünïcödé" in inbox
