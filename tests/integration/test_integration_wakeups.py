"""Commits wake what waits on them: on the running gateway (config.example.toml, the simulated
modem), a DR reaches the customer's HTTP endpoint, and a receipt a bound SMPP receiver, within
100 ms of the status report's commit, and an MO the customer's endpoint within 100 ms of its
own, not at the delivery workers' next poll (1 s, 0.5 s).

Real time, by necessity: the latency of sockets and threads is what is measured. Three
messages each, so that a poll that happens to fall right after a commit cannot pass the test
for a gateway that is not woken (all three would have to be that lucky), after one more that
warms the path up: the first callback opens its connection and pays first-use costs (170 ms
seen on Python 3.13), which are not a wake-up's."""

from __future__ import annotations

import functools
import gc
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import smpplib.smpp
import trio
from support.gateway import Customer, example_config
from support.smpp import connect, submit_all

from edgegw.__main__ import freeze_start_up_heap
from edgegw.config import Config
from edgegw.delivery.config import CallbackEndpoint
from edgegw.gateway import Gateway
from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.model import MessageRequest, MessageState, SendRequest
from edgegw.pipeline.inbound import inbound_record

WITHIN = 0.1  # seconds from the report's commit to the customer
RECIPIENTS = ("+4741000030", "+4741000031", "+4741000032", "+4741000033")
# Reports spaced wider than the DR endpoint's interval (one request per second, spec 4.3), by
# enough that a slow warm-up request does not hold the next DR back (its interval counts from
# when that request went out).
DELAYS = (0.2, 1.8, 3.2, 4.6)
MEASURED = slice(1, None)  # all but the first, which warms the path up


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """The heap frozen as `edgegw serve` freezes it once up: in a process that has run the
    suite so far, a full collection walking every earlier test's objects would stall the loop
    by itself (up to 120 ms seen on Python 3.13), which is no wake-up's latency."""
    freeze_start_up_heap()
    yield
    gc.unfreeze()


async def committed_at(gateway: Gateway, message_id: str) -> float:
    """When the report that delivered the message was committed (at the latest: the time is
    taken before the commit)."""
    return min(
        at
        for at, state, _, detail in await gateway.store.events(message_id)
        if state is MessageState.DELIVERED
    )


async def customer_endpoint(
    nursery: trio.Nursery, kind: str, now: Callable[[], float]
) -> tuple[CallbackEndpoint, dict[str, float]]:
    """A customer's HTTP endpoint for `kind` callbacks on 127.0.0.1, and when (by `now`) each
    message's first callback reached it, by message id."""
    customer = Customer(kind)
    arrivals: dict[str, float] = {}

    async def app(request: Request) -> Response:
        response = await customer.app(request)
        for callback in customer.received:
            arrivals.setdefault(str(callback["messageid"]), now())
        return response

    port = await nursery.start(serve_http, app, "127.0.0.1", 0, HttpLimits())
    endpoint = msgspec.convert({"url": f"http://127.0.0.1:{port}/{kind}"}, CallbackEndpoint)
    return endpoint, arrivals


def expect_reports(gateway: Gateway) -> None:
    network = gateway.simulators["sim0"].network
    for recipient, delay in zip(RECIPIENTS, DELAYS, strict=True):
        network.set_outcome(recipient, 0x00, delay=delay)


async def test_a_dr_reaches_the_customer_within_100_ms_of_its_report(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    endpoint, arrivals = await customer_endpoint(nursery, "dr", lambda: gateway.clock.now())
    gateway = Gateway(example_config(tmp_path, dr=endpoint, delivery_reports=True))
    await nursery.start(gateway.run)
    expect_reports(gateway)
    response = await gateway.submit(
        SendRequest(
            serviceId=1000,
            username="demo",
            password="demo",
            message=[MessageRequest(recipient=r, content="Wake up") for r in RECIPIENTS],
        )
    )
    ids = [status.messageId for status in response.messageStatus if status.messageId]
    assert len(ids) == len(RECIPIENTS), response
    with trio.fail_after(20):
        while len(arrivals) < len(ids):  # noqa: ASYNC110
            await trio.sleep(0.01)
    latencies = [arrivals[mid] - await committed_at(gateway, mid) for mid in ids[MEASURED]]
    assert all(0 <= latency < WITHIN for latency in latencies), latencies
    gateway.stop()


def receive_receipts(port: int, count: int, now: Callable[[], float]) -> dict[str, float]:
    """Bound as a receiver, note when each of `count` receipts arrives (by `now`)."""
    client = connect(port)
    arrivals: dict[str, float] = {}
    try:
        client.bind_receiver(system_id="demo", password="demo")
        BOUND.set()
        while len(arrivals) < count:
            pdu = client.read_pdu()
            if pdu.command != "deliver_sm":
                continue
            arrivals[pdu.receipted_message_id.decode()] = now()
            answer = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
            answer.sequence = pdu.sequence
            client.send_pdu(answer)
        client.unbind()
        return arrivals
    finally:
        client.disconnect()


BOUND = threading.Event()


async def test_a_receipt_reaches_a_bound_receiver_within_100_ms_of_its_report(
    config: Config, nursery: trio.Nursery
) -> None:
    gateway = Gateway(config)
    await nursery.start(gateway.run)
    assert gateway.bound is not None and gateway.bound.smpp_port is not None
    port = gateway.bound.smpp_port
    expect_reports(gateway)
    BOUND.clear()
    arrivals: dict[str, float] = {}

    # The gateway's clock in the receiver's thread: trio's clock runs with perf_counter.
    offset = gateway.clock.now() - time.perf_counter()

    async def receiver() -> None:
        receive = functools.partial(
            receive_receipts, port, len(RECIPIENTS), lambda: offset + time.perf_counter()
        )
        arrivals.update(await trio.to_thread.run_sync(receive))

    async with trio.open_nursery() as inner:
        inner.start_soon(receiver)
        with trio.fail_after(10):
            while not BOUND.is_set():  # noqa: ASYNC110
                await trio.sleep(0.01)
        submits = [
            {
                "source_addr_ton": 5,
                "source_addr": "EdgeGW",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": recipient.removeprefix("+"),
                "short_message": b"Wake up",
                "registered_delivery": 1,
            }
            for recipient in RECIPIENTS
        ]
        results = await trio.to_thread.run_sync(submit_all, port, submits)
        assert [status for status, _ in results] == [0] * len(RECIPIENTS)
        with trio.fail_after(20):
            while len(arrivals) < len(RECIPIENTS):  # noqa: ASYNC110
                await trio.sleep(0.01)
    latencies = [arrivals[mid] - await committed_at(gateway, mid) for _, mid in results[MEASURED]]
    assert all(0 <= latency < WITHIN for latency in latencies), latencies
    gateway.stop()


async def test_an_mo_reaches_the_customer_within_100_ms_of_its_commit(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    endpoint, arrivals = await customer_endpoint(nursery, "mo", lambda: gateway.clock.now())
    gateway = Gateway(example_config(tmp_path, mo=endpoint))
    await nursery.start(gateway.run)
    simulator = gateway.simulators["sim0"]
    # As far apart as the reports of the DR test: one request a second to the endpoint.
    for number, pause in enumerate(itertools.pairwise((0.0, *DELAYS))):
        await trio.sleep(pause[1] - pause[0])
        await simulator.deliver_mo(f"+479999999{number}", "Wake up")
    with trio.fail_after(20):
        while len(arrivals) < len(DELAYS):  # noqa: ASYNC110
            await trio.sleep(0.01)
    ordered = sorted(arrivals, key=arrivals.__getitem__)
    latencies = []
    for message_id in ordered[MEASURED]:
        record = await inbound_record(gateway.store, message_id)
        assert record is not None
        # When the MO was committed, at the latest: the time is taken before the commit.
        latencies.append(arrivals[message_id] - record.received_at)
    assert all(0 <= latency < WITHIN for latency in latencies), latencies
    gateway.stop()
