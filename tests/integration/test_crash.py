"""Crash safety: `kill -9` the gateway process at random moments while clients submit.

The simulated modem runs as its own process (as a USB modem outlives the gateway), recording
what reaches its network. After the last restart every acknowledged message must be in the store
and sent at least once (the default at-least-once policy); none may be silently dropped.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from support.db import read_only
from support.process import CONFIG_HEAD, start_gateway

ROUNDS = 4
CLIENTS = 4

CONFIG = (
    CONFIG_HEAD
    + """
[[modems]]
name = "m0"
driver = "at"

[modems.at]
port = "{tty}"
"""
)


class Submitter:
    """Clients that submit single messages, each to its own recipient, until the line dies.

    They use httpx's blocking client in worker threads: an async client's request generators
    would be left half-consumed by the kill, which is not what this test is about."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)  # next() on a count is atomic across threads
        self.acknowledged: dict[str, str] = {}  # messageId -> recipient

    async def run(self, port: int) -> None:
        await trio.to_thread.run_sync(self._submit_until_refused, port)

    def _submit_until_refused(self, port: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                number = next(self.numbers)
                recipient = f"+4741{number:06d}"
                body = {
                    "serviceId": 1000,
                    "username": "demo",
                    "password": "demo",
                    "message": [{"recipient": recipient, "content": f"crash {number}"}],
                }
                try:
                    answer = client.post(
                        "/gw/rs/sendMessages", json=body, headers={"Accept": "application/json"}
                    )
                except httpx.TransportError:
                    return
                (status,) = answer.json()["messageStatus"]
                assert status["statusCode"] == 1, status
                self.acknowledged[status["messageId"]] = recipient


async def crash_repeatedly(tmp_path: Path, tty: str, chance: random.Random, seed: int) -> Submitter:
    """Kill the gateway ROUNDS times under load, restart it, and wait until every message it
    acknowledged is sent; return the submitter with what was acknowledged. Each start may
    find its port taken since the last, and serve on another."""

    def write_config(ports: dict[str, int]) -> Path:
        config = tmp_path / "crash.toml"
        config.write_text(CONFIG.format(port=ports["http"], tty=tty))
        return config

    start = functools.partial(trio.to_thread.run_sync, start_gateway, write_config)
    submitter = Submitter()
    for _ in range(ROUNDS):
        gateway = await start()
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    nursery.start_soon(submitter.run, gateway.port)
                await trio.sleep(chance.uniform(0.05, 0.6))
                gateway.process.send_signal(signal.SIGKILL)
        finally:
            await trio.to_thread.run_sync(gateway.stop)

    gateway = await start()
    try:
        assert submitter.acknowledged, f"seed {seed}: nothing was acknowledged"
        with trio.fail_after(60):
            while True:
                states = stored_states(tmp_path / "crash.db")
                pending = [
                    message_id
                    for message_id in submitter.acknowledged
                    if states.get(message_id) not in ("sent", "delivered")
                ]
                if not pending:
                    return submitter
                await trio.sleep(0.1)
    finally:
        await trio.to_thread.run_sync(gateway.stop)


@pytest.mark.slow
async def test_kill_9_loses_no_acknowledged_message(tmp_path: Path) -> None:
    chance = random.Random()
    seed = chance.randrange(1 << 32)
    chance.seed(seed)
    record = tmp_path / "network.jsonl"
    simulator = await trio.lowlevel.open_process(
        [sys.executable, "-m", "edgegw", "simulate-modem", "--record", str(record)],
        stdout=subprocess.PIPE,
    )
    try:
        assert simulator.stdout is not None
        announced = b""
        while not announced.endswith(b"\n"):
            chunk = await simulator.stdout.receive_some(1)
            assert chunk, "the simulator exited before announcing its port"
            announced += chunk
        tty = announced.decode().strip()
        assert tty.startswith("/dev/"), tty
        submitter = await crash_repeatedly(tmp_path, tty, chance, seed)
    finally:
        simulator.terminate()
        await simulator.wait()
        if simulator.stdout is not None:
            await simulator.stdout.aclose()

    sent_to = {json.loads(line)["recipient"] for line in record.read_text().splitlines()}
    missing = {
        message_id: recipient
        for message_id, recipient in submitter.acknowledged.items()
        if recipient not in sent_to
    }
    assert missing == {}, f"seed {seed}: acknowledged but never sent"


def stored_states(path: Path) -> dict[str, str]:
    with read_only(path) as db:
        return dict(db.execute("SELECT id, state FROM messages").fetchall())
