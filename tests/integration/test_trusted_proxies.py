"""A reverse proxy on the box in front of the whole running gateway: every request reaches it from
127.0.0.1. With `[http] trusted_proxies = ["127.0.0.1"]` the login throttle locks out the
forwarded client that guessed, not the others behind the same proxy; without it the proxy's
address is the one locked out, whatever X-Forwarded-For says."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import msgspec
import pytest
import trio

from edgegw.config import Config
from edgegw.gateway import Gateway
from edgegw.throttle import AuthThrottleConfig

SEND = "/gw/rs/sendMessages"
GUESSER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"
# No delays, so the test waits for nothing; the third failure locks an address out.
POLICY = AuthThrottleConfig(free_failures=1, base_delay=0.0, max_delay=0.0, lockout_failures=3)


def send(password: str) -> dict[str, Any]:
    return {
        "serviceId": 1000,
        "username": "demo",
        "password": password,
        "message": [{"recipient": "+4741000000", "content": "Hello"}],
    }


async def post(client: httpx.AsyncClient, password: str, forwarded_for: str | None) -> Any:
    """A send as the proxy passes it on: X-Forwarded-For naming the client, or none for a
    request made on the box itself. The HTTP status, and the message's statusCode if any."""
    headers = {"Accept": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    answer = await client.post(SEND, json=send(password), headers=headers)
    if answer.status_code != 200:
        return answer.status_code
    (status,) = answer.json()["messageStatus"]
    return answer.status_code, status["statusCode"]


async def guess_then_try_both(config: Config, trusted_proxies: list[str]) -> dict[str, Any]:
    """Three wrong passwords from the guesser, then what the guesser, its neighbour behind the
    same proxy and the box itself get with the right one."""
    http = msgspec.structs.replace(config.http, trusted_proxies=trusted_proxies)
    security = msgspec.structs.replace(config.security, auth=POLICY)
    gateway = Gateway(msgspec.structs.replace(config, http=http, security=security))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(gateway.run)
        url = f"http://127.0.0.1:{bound.http_port}"
        async with httpx.AsyncClient(base_url=url) as client:
            guesses = [await post(client, "guess", GUESSER) for _ in range(3)]
            assert guesses == [(200, 2)] * 3  # Access denied, each answered at once
            outcome = {
                "guesser": await post(client, "demo", GUESSER),
                # The guesser writing another's address first: the proxy appends its own.
                "guesser posing": await post(client, "demo", f"{NEIGHBOUR}, {GUESSER}"),
                "neighbour": await post(client, "demo", NEIGHBOUR),
                "the box": await post(client, "demo", None),
                "refusals": dict(gateway.throttle.refusals_total),
            }
        gateway.stop()
    return outcome


async def test_behind_a_trusted_proxy_only_the_forwarded_guesser_is_locked_out(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = await guess_then_try_both(config, ["127.0.0.1"])
    assert outcome == {
        "guesser": 429,
        "guesser posing": 429,
        "neighbour": (200, 1),
        "the box": (200, 1),
        "refusals": {"http": 2},
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "HTTP login" in w] == [
        f"HTTP login failed from {GUESSER} for account 'demo' (more within 300 s are counted,"
        " not logged)",
        f"HTTP logins from {GUESSER} refused for 900 s: too many failures",
    ]


async def test_without_trusted_proxies_everyone_behind_the_proxy_shares_one_lockout(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = await guess_then_try_both(config, [])
    assert outcome == {
        "guesser": 429,
        "guesser posing": 429,
        "neighbour": 429,
        "the box": 429,
        "refusals": {"http": 4},
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "HTTP logins from 127.0.0.1 refused for 900 s: too many failures" in warnings


async def test_an_ipv6_guesser_rotating_through_its_64_is_locked_out(config: Config) -> None:
    """A client with an IPv6 /64 may use another of its 2**64 addresses for each guess: its
    failures count together, and its next address in that /64 is refused too; a client in
    another /64 is not."""
    http = msgspec.structs.replace(config.http, trusted_proxies=["127.0.0.1"])
    security = msgspec.structs.replace(config.security, auth=POLICY)
    gateway = Gateway(msgspec.structs.replace(config, http=http, security=security))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(gateway.run)
        url = f"http://127.0.0.1:{bound.http_port}"
        async with httpx.AsyncClient(base_url=url) as client:
            guesses = [await post(client, "guess", f"2001:db8:1:2::{n}") for n in (1, 2, 3)]
            assert guesses == [(200, 2)] * 3
            assert await post(client, "demo", "2001:db8:1:2:abcd::4") == 429
            assert await post(client, "demo", "2001:db8:1:3::1") == (200, 1)
        gateway.stop()
