"""Benchmark: DRs delivered per second from the durable outbox to a local customer endpoint.

Fills a scratch store's outbox with N DRs, starts a customer endpoint on 127.0.0.1 (edgegw's
own h11 listener, answering 200 at once) and the delivery workers, and prints DRs delivered
per second with batched POST (JSON, at the spec's pace of at most one request per `interval`)
and with one GET per DR. Checks that the store marks every DR delivered. Target: POST
batching >= 2,000 DRs/s.
"""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.delivery.config import SmtpRelayConfig
from edgegw.delivery.payload import DrReport
from edgegw.delivery.worker import Deliveries
from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.store import Store


class Endpoint:
    """Counts the DRs it receives and says when `expected` have come."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.requests = 0
        self.done = trio.Event()

    async def app(self, request: Request) -> Response:
        self.requests += 1
        self.received += len(json.loads(request.body)["dr"]) if request.body else 1
        if self.received >= self.expected:
            self.done.set()
        return Response(status=200, body=b"OK")


def fill_outbox(conn: sqlite3.Connection, count: int, now: float) -> None:
    rows = []
    for index in range(count):
        report = DrReport(
            messageid=f"{index:012d}",
            customerbatchreference="bench",
            customermessagereference=f"ref-{index}",
            serviceid=1,
            servicename="bench",
            mcc=242,
            mnc=1,
            statuscode=0,
            statusdescription="OK. Message processed successfully.",
            extstatuscode="0",
            extstatusdescription="Delivered",
        )
        rows.append(("dr", 1, "dr", report.messageid, msgspec.json.encode(report), now, now))
    conn.executemany(
        "INSERT INTO outbox (kind, service_id, endpoint, message_id, payload, created_at,"
        " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def delivered(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox WHERE state = 'delivered'").fetchone()[0])


async def run_once(folder: Path, count: int, dr: dict[str, Any]) -> tuple[float, int, int]:
    """Seconds until the endpoint had every DR, requests made, DRs the store marks delivered."""
    endpoint = Endpoint(count)
    clock = Clock()
    store = Store(folder / f"{dr['method']}.db", clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.write(functools.partial(fill_outbox, count=count, now=clock.now()))
        limits = HttpLimits(max_body_bytes=256 * 1024 * 1024)
        port = await nursery.start(serve_http, endpoint.app, "127.0.0.1", 0, limits)
        dr = dr | {"url": f"http://127.0.0.1:{port}/dr?id=[messageid]&status=[statuscode]"}
        service = msgspec.convert(
            {"id": 1, "name": "bench", "username": "b", "password": "b", "dr": dr},
            ServiceConfig,
        )
        deliveries = Deliveries(store, clock, [service], SmtpRelayConfig())
        started = time.perf_counter()
        await nursery.start(deliveries.run)
        await endpoint.done.wait()
        elapsed = time.perf_counter() - started
        # The last round's outcome is committed right after the endpoint answered.
        for _ in range(200):
            stored = await store.read(delivered)
            if stored >= count:
                break
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return elapsed, endpoint.requests, stored


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-") as scratch:
        folder = Path(scratch)
        post = {"method": "POST", "batch_max": args.batch_max, "interval": args.interval}
        elapsed, requests, stored = await run_once(folder, args.count, post)
        print(
            f"POST json, batch_max {args.batch_max}, interval {args.interval:g} s: "
            f"{args.count} DRs in {elapsed:.2f} s = {args.count / elapsed:,.0f} DRs/s "
            f"({requests} requests; store: {stored} delivered)"
        )
        elapsed, requests, stored = await run_once(folder, args.get_count, {"method": "GET"})
        rate = args.get_count / elapsed
        print(
            f"GET, one request per DR: {args.get_count} DRs in {elapsed:.2f} s = {rate:,.0f}"
            f" DRs/s ({requests} requests; store: {stored} delivered)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="DRs for the POST run")
    parser.add_argument("--batch-max", type=int, default=5_000, help="DRs per POST")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between POSTs")
    parser.add_argument("--get-count", type=int, default=2_000, help="DRs for the GET run")
    trio.run(main, parser.parse_args())
