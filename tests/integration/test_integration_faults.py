"""Every quirk profile of the simulated modem against the running gateway (HTTP, store, AT driver,
real pty): each accepted message ends sent, delivered, failed or expired, none is lost, none goes
out more often than the at-least-once policy allows, and the modem is ready again, no restart."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from drivers.events import ModemState
from drivers.simulator import PROFILES
from edgegw.config import Config, load_config
from edgegw.gateway import Gateway
from edgegw.model import MessageState

ROOT = Path(__file__).resolve().parent.parent.parent
SERVICE = 1000
MODEM = "sim0"
MESSAGES = 12
SETTLED = frozenset(
    {MessageState.SENT, MessageState.DELIVERED, MessageState.FAILED, MessageState.EXPIRED}
)

# Per profile, the simulator and AT options that keep its misbehaviour but squeeze it into a few
# seconds of real time.
SIMULATOR_OVERRIDES: dict[str, dict[str, Any]] = {
    "slow_cmgs": {"send_delay": 0.3},
    # The profile alone never errs on sends: every 4th SMS-SUBMIT fails, answered by a bare ERROR.
    "bare_error": {"cms_fail_every": 4},
    "sim_not_ready": {"sim_busy": 1.5},
    "vanishing": {"vanish_after": 1.5, "vanish_for": 0.5},
}
AT_OVERRIDES: dict[str, dict[str, Any]] = {
    "sim_pin": {"pin": PROFILES["sim_pin"].pin},
    "vanishing": {"reopen_backoff_initial": 0.2, "reopen_backoff_max": 0.5},
}
# A part handed to the modem just before its port vanished can reach the network while its
# +CMGS answer is lost with the power; the driver cannot tell, so the part goes back to the
# queue and may go out once more (the documented at-least-once policy, README "After a crash").
EXTRA_COPIES_ALLOWED = {"vanishing": 1}


def fault_config(
    tmp_path: Path,
    profile: str,
    *,
    simulator: dict[str, Any] | None = None,
    retry_initial: float = 0.2,
) -> Config:
    example = load_config(ROOT / "config.example.toml")
    (modem,) = example.modems
    modem = msgspec.structs.replace(
        modem,
        simulator=msgspec.structs.replace(
            modem.simulator,
            profile=profile,
            **{
                # Status reports come quickly, so some land between a part's failure and
                # its message's retry (test_a_part_reported_delivered_is_not_sent_again).
                "report_delay": 0.3,
                **SIMULATOR_OVERRIDES.get(profile, {}),
                **(simulator or {}),
            },
        ),
        at=msgspec.structs.replace(modem.at, **AT_OVERRIDES.get(profile, {})),
    )
    return msgspec.structs.replace(
        example,
        gateway=msgspec.structs.replace(example.gateway, store=str(tmp_path / "edgegw.db")),
        http=msgspec.structs.replace(example.http, port=0),
        smpp=None,
        smtp=None,
        dispatch=msgspec.structs.replace(
            example.dispatch, retry_initial=retry_initial, retry_max=max(1.0, retry_initial)
        ),
        modems=[modem],
    )


def content(n: int) -> str:
    # Every fourth message is long (two concatenated GSM 7-bit parts).
    return f"fault {n} " + ("x" * 200 if n % 4 == 3 else "")


async def submit(client: httpx.AsyncClient, n: int) -> tuple[str, str]:
    recipient = f"+47410001{n:02d}"
    answer = await client.post(
        "/gw/rs/sendMessages",
        json={
            "serviceId": SERVICE,
            "username": "demo",
            "password": "demo",
            "message": [{"recipient": recipient, "content": content(n)}],
        },
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    (status,) = answer.json()["messageStatus"]
    assert status["statusCode"] == 1, status
    message_id: str = status["messageId"]
    return message_id, recipient


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_every_accepted_message_settles_under_each_fault_profile(
    profile: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = Gateway(fault_config(tmp_path, profile))
    bound = await nursery.start(gateway.run)
    simulator = gateway.simulators[MODEM]
    accepted: dict[str, str] = {}  # message id -> recipient
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:
        # Half at once, while the driver is still initialising (SIM busy, PIN, first vanish
        # ahead), half spread over the next three seconds of faults.
        for n in range(MESSAGES):
            message_id, recipient = await submit(client, n)
            accepted[message_id] = recipient
            if n >= MESSAGES // 2:
                await trio.sleep(0.5)

    states: dict[str, MessageState] = {}
    with trio.fail_after(30):
        while True:
            for message_id in accepted:
                record = await gateway.store.message(message_id)
                assert record is not None, f"message {message_id} was acknowledged but is lost"
                states[message_id] = record.state
            if all(state in SETTLED for state in states.values()):
                break
            await trio.sleep(0.05)

    # None of these faults is permanent: every message gets through.
    undelivered = {
        message_id: state
        for message_id, state in states.items()
        if state not in (MessageState.SENT, MessageState.DELIVERED)
    }
    assert undelivered == {}
    copies = collections.Counter(sms.recipient for sms in simulator.network.sent)
    allowed = EXTRA_COPIES_ALLOWED.get(profile, 0)
    for message_id, recipient in accepted.items():
        view = await gateway.store.message_view(SERVICE, message_id)
        assert view is not None
        parts = len(view.parts)
        assert parts == (2 if recipient.endswith(("03", "07", "11")) else 1)
        assert parts <= copies[recipient] <= parts + allowed, (message_id, recipient, copies)

    modem = gateway.modems[MODEM]
    with trio.fail_after(10):
        while modem.health().state is not ModemState.READY:  # noqa: ASYNC110
            await trio.sleep(0.05)
    if profile == "vanishing":
        assert modem.health().recoveries >= 1
    gateway.stop()


async def test_a_part_reported_delivered_is_not_sent_again(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # The third SMS-SUBMIT fails: the second part of the second message. The first part's
    # report (after 0.05 s) is in before the retry (after 0.8 to 1 s).
    config = fault_config(
        tmp_path, "default", simulator={"cms_fail_every": 3, "report_delay": 0.05}, retry_initial=1
    )
    gateway = Gateway(config)
    bound = await nursery.start(gateway.run)
    network = gateway.simulators[MODEM].network
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client:
        await submit(client, 0)
        with trio.fail_after(10):
            await network.wait_sent(1)
        message_id, recipient = await submit(client, 3)  # two parts
    with trio.fail_after(10):
        while True:
            record = await gateway.store.message(message_id)
            assert record is not None
            if record.state in SETTLED - {MessageState.SENT}:
                break
            await trio.sleep(0.05)
    assert record.state is MessageState.DELIVERED
    parts = [sms.concat for sms in network.sent if sms.recipient == recipient]
    assert [None if concat is None else concat[1:] for concat in parts] == [(2, 1), (2, 2)]
    gateway.stop()
