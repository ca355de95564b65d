"""Logs cannot be used to fill the disk (issue 10, item 3): the pure limiter, and a client that
keeps hitting a failing handler on one keep-alive connection under the virtual clock, also
when the clients come through a trusted reverse proxy."""

from __future__ import annotations

import functools
import logging

import httpx
import pytest
import trio
import trio.testing

from edgegw.http.server import HttpLimits, Request, Response, serve_http
from edgegw.loglimit import LogLimiter
from edgegw.networks import Networks


def test_the_first_is_written_then_one_a_period_with_the_count() -> None:
    limiter = LogLimiter(period=60.0)
    assert limiter.admit("broken", "10.0.0.1", 0.0) == 0
    assert [limiter.admit("broken", "10.0.0.1", float(t)) for t in range(1, 60)] == [None] * 59
    assert limiter.admit("broken", "10.0.0.2", 30.0) == 0  # another peer is its own key
    assert limiter.admit("refused", "10.0.0.1", 30.0) == 0  # and so is another kind
    assert limiter.admit("broken", "10.0.0.1", 60.0) == 59
    assert limiter.admit("broken", "10.0.0.1", 61.0) is None
    assert limiter.admit("broken", "10.0.0.1", 120.0) == 1  # the count starts again


async def failing(request: Request) -> Response:
    raise RuntimeError("a bug a client can reach")


async def test_a_client_repeating_a_failure_gets_one_traceback_and_a_summary(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    port = await nursery.start(serve_http, failing, "127.0.0.1", 0, HttpLimits())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(200):
            assert (await client.get("/boom")).status_code == 500
        await trio.sleep(61.0)
        assert (await client.get("/boom")).status_code == 500
    records = [r for r in caplog.records if r.name == "edgegw.http.server"]
    assert len(records) == 2
    first, summary = records
    assert first.levelno == logging.ERROR and first.exc_info is not None
    assert not summary.exc_info
    assert summary.getMessage() == (
        "HTTP handler failed for GET /boom from 127.0.0.1"
        " (199 more like it since the last one, not logged)"
    )


async def test_behind_a_trusted_proxy_each_forwarded_client_gets_its_own_traceback(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    port = await nursery.start(
        functools.partial(
            serve_http,
            failing,
            "127.0.0.1",
            0,
            HttpLimits(),
            trusted_proxies=Networks(["127.0.0.1"]),
        )
    )
    # One keep-alive connection from the proxy carries both clients' requests.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as proxy:
        for client in ("203.0.113.7", "203.0.113.7", "198.51.100.9", "203.0.113.7"):
            answer = await proxy.get("/boom", headers={"X-Forwarded-For": client})
            assert answer.status_code == 500
    records = [r for r in caplog.records if r.name == "edgegw.http.server"]
    assert len(records) == 2
    assert all(r.exc_info is not None for r in records)


def test_a_kind_and_peer_gone_quiet_is_summarised_once_its_period_is_over() -> None:
    limiter = LogLimiter(period=60.0)
    assert limiter.admit("broken", "10.0.0.1", 0.0, (logging.ERROR, "failed for %s", ("/a",))) == 0
    for t in (1.0, 2.0, 3.0):
        assert (
            limiter.admit("broken", "10.0.0.1", t, (logging.ERROR, "failed for %s", ("/b",)))
            is None
        )
    assert limiter.admit("quiet", "10.0.0.2", 5.0) == 0  # nothing left out: nothing to say
    assert limiter.overdue(59.0) == []
    (summary,) = limiter.overdue(60.0)
    assert summary == (logging.ERROR, "failed for %s", ("/b",), 3)
    assert limiter.overdue(200.0) == []  # said once
    # The summary counts as written: the next record within a period is left out again.
    assert (
        limiter.admit("broken", "10.0.0.1", 90.0, (logging.ERROR, "failed for %s", ("/c",))) is None
    )


async def test_a_client_that_stops_after_repeating_a_failure_still_gets_its_count_logged(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    port = await nursery.start(serve_http, failing, "127.0.0.1", 0, HttpLimits())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(50):
            assert (await client.get("/boom")).status_code == 500
    await trio.sleep(121.0)
    records = [r for r in caplog.records if r.name == "edgegw.http.server"]
    assert [r.getMessage() for r in records] == [
        "HTTP handler failed for GET /boom from 127.0.0.1",
        "HTTP handler failed for GET /boom from 127.0.0.1"
        " (49 more like it since the last one, not logged)",
    ]
    assert records[0].exc_info is not None and not records[1].exc_info
