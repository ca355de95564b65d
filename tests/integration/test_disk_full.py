"""A full disk under the running gateway, and room again: `edgegw serve` as its own process
whose file-size limit (RLIMIT_FSIZE, set from outside with prlimit; SIGXFSZ ignored, as
SQLite then sees the write fail with EFBIG) lets the store's WAL take no more frames, so every
commit fails as on a full SD card, until the limit is lifted. The gateway must stay up, lose
nothing it acknowledged and take writes again by itself."""

from __future__ import annotations

import functools
import resource
import smtplib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import smpplib.client
import smpplib.smpp
import trio
from support.db import read_only
from support.process import CONFIG_HEAD, GatewayProcess, start_gateway
from support.smpp import submit_all

from edgegw.http.server import HttpLimits, Request, Response, serve_http

CONFIG = (
    CONFIG_HEAD
    + """{dr}
[services.smtp]
allow = ["127.0.0.1"]

[[modems]]
name = "sim0"
driver = "simulated"
service = 1000

[modems.simulator]
report_delay = 0.5
send_delay = {send_delay}
cms_fail_every = {cms_fail_every}
record = "network.jsonl"

[smpp]
port = {smpp}
redeliver_interval = 2.0

[[smpp.accounts]]
system_id = "demo"
password = "demo"
service = 1000

[smtp]
port = {smtp}
domain = "sms.localhost"

[dispatch]
retry_initial = 1.0
"""
)
# `edgegw serve` with SIGXFSZ ignored (an ignored signal stays ignored across exec).
SERVE = (
    "import runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
    " sys.argv = ['edgegw', 'serve', '--config', sys.argv[1]];"
    " runpy.run_module('edgegw', run_name='__main__')"
)
FULL = 4096  # bytes: below the WAL's first frame, so no commit gets through
pytestmark = pytest.mark.skipif(
    not hasattr(resource, "prlimit"),
    reason="filling the gateway's disk needs resource.prlimit (Linux) to set its RLIMIT_FSIZE",
)


class HeldCustomer:
    """A DR endpoint that holds its first request until `answer` is set, then answers 200 to
    every request; counts the requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.first = trio.Event()
        self.answer = trio.Event()

    async def app(self, request: Request) -> Response:
        self.requests += 1
        self.first.set()
        await self.answer.wait()
        return Response(status=200)


class Served:
    """The gateway's process, its HTTP client, what it logged and its disk's room."""

    def __init__(self, tmp_path: Path, gateway: GatewayProcess, customer: HeldCustomer) -> None:
        self.tmp_path = tmp_path
        self.process = gateway.process
        self.smpp_port = gateway.ports["smpp"]
        self.smtp_port = gateway.ports["smtp"]
        self.customer = customer
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}")
        self.log = gateway.log

    def fill_disk(self) -> None:
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (FULL, resource.RLIM_INFINITY))

    def free_disk(self) -> None:
        infinity = resource.RLIM_INFINITY
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (infinity, infinity))

    def states(self) -> dict[str, tuple[str, int | None]]:
        """message id -> (state, TP-MR of its first part)."""
        with read_only(self.tmp_path / "crash.db") as db:
            rows = db.execute(
                "SELECT m.id, m.state, p.reference FROM messages m"
                " JOIN parts p ON p.message_id = m.id AND p.idx = 1"
            ).fetchall()
        return {message_id: (state, reference) for message_id, state, reference in rows}

    def sent_to_network(self) -> int:
        """SMS the simulated network took."""
        record = self.tmp_path / "network.jsonl"
        return len(record.read_text().splitlines()) if record.exists() else 0

    async def send(self, recipient: str) -> dict[str, Any]:
        body = {
            "serviceId": 1000,
            "username": "demo",
            "password": "demo",
            "message": [{"recipient": recipient, "content": "disk full"}],
        }
        answer = await self.client.post(
            "/gw/rs/sendMessages", json=body, headers={"Accept": "application/json"}
        )
        assert answer.status_code == 200, answer.text
        (status,) = answer.json()["messageStatus"]
        return dict(status)

    async def wait_for(self, states: set[str], message_ids: list[str]) -> None:
        await self.until(lambda: all(self.states()[m][0] in states for m in message_ids))

    async def refused(self) -> None:
        """Once the store has logged that its disk refused a commit."""
        await self.until(lambda: any("the store cannot take writes" in line for line in self.log))

    async def until(self, done: Callable[[], bool]) -> None:
        with trio.fail_after(30):
            while not done():
                assert self.process.poll() is None, "".join(self.log)
                await trio.sleep(0.05)


@pytest.fixture
def send_delay() -> float:
    return 0.0


@pytest.fixture
def cms_fail_every() -> int:
    return 0


@pytest.fixture
def dr() -> bool:
    """The service sends its DRs (POST) to the test's HeldCustomer."""
    return False


@pytest.fixture
async def served(
    tmp_path: Path, nursery: trio.Nursery, send_delay: float, cms_fail_every: int, dr: bool
) -> AsyncIterator[Served]:
    customer = HeldCustomer()
    customer_port = await nursery.start(serve_http, customer.app, "127.0.0.1", 0, HttpLimits())
    dr_url = f"http://127.0.0.1:{customer_port}/dr"

    def write_config(ports: dict[str, int]) -> Path:
        config = tmp_path / "gateway.toml"
        config.write_text(
            CONFIG.format(
                port=ports["http"],
                smpp=ports["smpp"],
                smtp=ports["smtp"],
                send_delay=send_delay,
                cms_fail_every=cms_fail_every,
                dr=f'delivery_reports = true\n[services.dr]\nurl = "{dr_url}"\n' if dr else "",
            )
        )
        return config

    started = await trio.to_thread.run_sync(
        functools.partial(
            start_gateway,
            write_config,
            ("http", "smpp", "smtp"),
            command=(sys.executable, "-c", SERVE),
        )
    )
    gateway = Served(tmp_path, started, customer)
    try:
        with trio.fail_after(30):
            while True:
                assert started.process.poll() is None, started.output()
                try:
                    if (await gateway.client.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        yield gateway
    finally:
        await gateway.client.aclose()
        await trio.to_thread.run_sync(started.stop)


async def test_messages_due_while_the_disk_is_full_go_once_it_has_room(served: Served) -> None:
    """Messages that come due while no claim can be committed wait in the queue: the gateway
    stays up, and sends them once the disk has room, without a restart."""
    # Scheduled 1 s ahead (SMPP relative time), so that they come due with the disk full.
    submits = [
        {
            "source_addr_ton": 5,
            "source_addr": "EdgeGW",
            "dest_addr_ton": 1,
            "destination_addr": f"+474100000{n}",
            "short_message": b"due while full",
            "schedule_delivery_time": "000000000001000R",
        }
        for n in range(3)
    ]
    answers = await trio.to_thread.run_sync(submit_all, served.smpp_port, submits)
    message_ids = [message_id for _, message_id in answers]
    assert len(message_ids) == 3
    served.fill_disk()
    await served.refused()
    await trio.sleep(0.5)
    assert served.process.poll() is None, "".join(served.log)
    assert (await served.client.get("/health")).status_code == 200
    assert {served.states()[m][0] for m in message_ids} == {"queued"}
    served.free_disk()
    await served.wait_for({"sent", "delivered"}, message_ids)
    assert served.sent_to_network() == 3


@pytest.mark.parametrize("send_delay", [1.0])
async def test_a_part_the_network_took_while_the_disk_was_full_is_recorded_once(
    served: Served,
) -> None:
    """The worker learns the part's TP-MR while no commit gets through: it keeps it until the
    disk has room and records it then, so the message is `sent` (and its status report
    matches it) instead of staying `sending` and going out a second time."""
    status = await served.send("+4741000010")
    message_id = status["messageId"]
    await served.wait_for({"sending"}, [message_id])
    served.fill_disk()
    await served.until(lambda: served.sent_to_network() > 0)
    await served.refused()
    assert served.states()[message_id] == ("sending", None)
    served.free_disk()
    await served.wait_for({"sent", "delivered"}, [message_id])
    assert served.states()[message_id][1] is not None
    assert served.sent_to_network() == 1


@pytest.mark.parametrize(("send_delay", "cms_fail_every"), [(1.0, 2)])
async def test_a_try_that_failed_while_the_disk_was_full_is_recorded_and_tried_again(
    served: Served,
) -> None:
    """The modem refuses the first try (+CMS ERROR: 500) while no commit gets through: the
    worker records the failed try once the disk has room, so the message is queued again and
    goes out, instead of staying `sending` until a restart."""
    status = await served.send("+4741000011")
    message_id = status["messageId"]
    await served.wait_for({"sending"}, [message_id])
    served.fill_disk()
    await served.refused()
    assert served.states()[message_id] == ("sending", None)
    served.free_disk()
    await served.wait_for({"sent", "delivered"}, [message_id])
    assert served.sent_to_network() == 1


def mail(port: int) -> tuple[int, bytes]:
    """One mail for one recipient: the reply to its DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("tests.local")
        client.mail("alarm@panel.test")
        client.rcpt("+4741000012-1000@sms.localhost")
        return client.data(b"Subject: alarm\r\n\r\nZone 3 open\r\n")


async def test_every_door_refuses_for_now_and_the_log_says_why_once(served: Served) -> None:
    """While the disk is full each door answers that nothing was taken, in its way of saying
    "try again" (REST status 6, SMTP 452 4.3.1, SMPP ESME_RSYSERR with the bind kept), an MO
    stays on the SIM, and the log has one line naming the store and the cause, not a traceback a
    request; one more says when it takes writes again."""
    served.fill_disk()
    status = await served.send("+4741000012")
    assert (status["statusCode"], status["messageId"]) == (6, None)
    assert await trio.to_thread.run_sync(mail, served.smtp_port) == (
        452,
        b"4.3.1 insufficient system storage, try again later",
    )
    submit = {
        "source_addr_ton": 5,
        "source_addr": "EdgeGW",
        "dest_addr_ton": 1,
        "destination_addr": "+4741000012",
        "short_message": b"full",
    }
    answers = await trio.to_thread.run_sync(submit_all, served.smpp_port, [submit, submit])
    assert answers == [(0x08, ""), (0x08, "")]
    arrived = await served.client.post(
        "/status/simulate-mo",
        json={"from": "+4799999999", "text": "while full"},
        auth=("demo", "demo"),
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert arrived.status_code == 200
    await trio.sleep(1)
    served.free_disk()
    assert (await served.send("+4741000012"))["statusCode"] == 1
    await served.until(lambda: any("takes writes again" in line for line in served.log))
    store = served.tmp_path / "crash.db"
    problems = [line for line in served.log if " ERROR " in line or "Traceback" in line]
    assert [line.split(" ", 2)[2] for line in problems] == [
        f"ERROR edgegw.store.engine: {store}: the store cannot take writes (disk I/O error);"
        " nothing new is accepted and received SMS stay on the modems until there is room:"
        " free space on its disk\n"
    ]


async def test_a_cancel_or_a_stop_is_503_to_try_again_while_the_disk_is_full(
    served: Served,
) -> None:
    """DELETE of a queued message or of its batch while the disk is full: 503 problem+json
    with Retry-After (RFC 9110 15.6.4), not a 500; the same call works once there is room."""
    submit = {
        "source_addr_ton": 5,
        "source_addr": "EdgeGW",
        "dest_addr_ton": 1,
        "destination_addr": "+4741000013",
        "short_message": b"scheduled",
        "schedule_delivery_time": "000000010000000R",  # in an hour
    }
    ((_, message_id),) = await trio.to_thread.run_sync(submit_all, served.smpp_port, [submit])
    view = await served.client.get(f"/api/messages/{message_id}", auth=("demo", "demo"))
    batch = view.json()["batchReference"]
    served.fill_disk()
    for path in (f"/api/messages/{message_id}", f"/mgmt/rs/service/1000/batch/{batch}"):
        answer = await served.client.delete(path, auth=("demo", "demo"))
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["detail"] == (
            "the store cannot take writes now (its disk is full); try again later"
        )
    assert served.states()[message_id][0] == "queued"
    served.free_disk()
    answer = await served.client.delete(f"/api/messages/{message_id}", auth=("demo", "demo"))
    assert answer.status_code == 200, answer.text
    assert served.states()[message_id][0] == "cancelled"


@pytest.mark.parametrize("dr", [True])
async def test_a_callback_the_customer_took_while_the_disk_was_full_goes_once(
    served: Served,
) -> None:
    """The customer answers 200 to a DR while the disk is full: the delivery is recorded
    once there is room, and the DR is not sent again meanwhile (it was, every 5 s, by the
    worker restarted after each refused record)."""
    customer = served.customer
    status = await served.send("+4741000014")
    await customer.first.wait()
    served.fill_disk()
    customer.answer.set()
    await trio.sleep(6)  # more than the 5 s after which the worker used to start again
    assert customer.requests == 1
    served.free_disk()

    def delivered() -> bool:
        with read_only(served.tmp_path / "crash.db") as db:
            row = db.execute(
                "SELECT state FROM outbox WHERE message_id = ?", (status["messageId"],)
            ).fetchone()
        return bool(row == ("delivered",))

    await served.until(delivered)
    assert customer.requests == 1


def receipts_while_full(port: int, served: Served) -> list[int]:
    """As a transceiver: submit with a receipt asked for, fill the disk once the receipt came,
    acknowledge it, and collect for 3 s (more than a redeliver_interval) the sequence numbers
    of the deliver_sm that come, the first one included."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=0.5, allow_unknown_opt_params=True)
    client.connect()
    received: list[int] = []
    try:
        client.bind_transceiver(system_id="demo", password="demo")
        client.send_message(
            source_addr_ton=5,
            source_addr="EdgeGW",
            dest_addr_ton=1,
            destination_addr="+4741000015",
            short_message=b"receipt, please",
            registered_delivery=1,
        )
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            try:
                pdu = client.read_pdu()
            except TimeoutError:
                continue
            if pdu.command != "deliver_sm":
                continue
            received.append(pdu.sequence)
            if deadline is None:
                served.fill_disk()
                deadline = time.monotonic() + 3
            answer = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
            answer.sequence = pdu.sequence
            client.send_pdu(answer)
        return received
    finally:
        client.disconnect()


async def test_a_receipt_the_esme_took_while_the_disk_was_full_is_not_offered_again(
    served: Served,
) -> None:
    """The ESME acknowledges a receipt (deliver_sm_resp ESME_ROK) while the disk is full: it
    is recorded once there is room and offered to no session meanwhile (it was, every
    redeliver_interval)."""
    received = await trio.to_thread.run_sync(receipts_while_full, served.smpp_port, served)
    assert len(received) == 1
    served.free_disk()

    def settled() -> bool:
        with read_only(served.tmp_path / "crash.db") as db:
            states = db.execute("SELECT state FROM smpp_outbox").fetchall()
        return bool(states == [("delivered",)])

    await served.until(settled)


async def test_ready_and_the_metrics_say_while_the_store_takes_no_writes(served: Served) -> None:
    """Every send is refused while the disk is full, so the gateway is not ready for them:
    /ready is 503 saying why (and /health's `ready` false), `edgegw_store_writable` is 0;
    both come back once the disk has room, without a send to find it out."""

    async def writable() -> str:
        metrics = (await served.client.get("/metrics")).text
        (line,) = [line for line in metrics.splitlines() if line.startswith("edgegw_store_")]
        return line

    served.fill_disk()
    assert (await served.send("+4741000016"))["statusCode"] == 6
    ready = await served.client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["store"] == "cannot take writes (disk I/O error)"
    health = await served.client.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "ready": False})
    assert await writable() == "edgegw_store_writable 0.0"
    served.free_disk()
    # Nothing is sent: the store finds out by itself (within 5 s) that it takes writes again.
    with trio.fail_after(10):
        while True:
            ready = await served.client.get("/ready")
            if ready.status_code == 200:
                break
            await trio.sleep(0.2)
    assert "store" not in ready.json()
    assert await writable() == "edgegw_store_writable 1.0"
