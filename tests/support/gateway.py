"""The running gateway's surroundings for end-to-end tests: config.example.toml pointed at a
temporary store and a free HTTP port, and a customer endpoint that collects callbacks (spec
section 5, MO and DR callbacks). Never starts the gateway itself; the test does."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import trio

from edgegw.config import Config, load_config
from edgegw.gateway import Gateway
from edgegw.http.server import HttpLimits, Request, Response, serve_http
from support.db import read_only

ROOT = Path(__file__).resolve().parent.parent.parent


def example_config(tmp_path: Path, **service_changes: Any) -> Config:
    """config.example.toml with its store in `tmp_path`, HTTP on a free port, no SMPP or SMTP,
    and only its first service, changed by `service_changes`."""
    example = load_config(ROOT / "config.example.toml")
    return msgspec.structs.replace(
        example,
        gateway=msgspec.structs.replace(example.gateway, store=str(tmp_path / "edgegw.db")),
        http=msgspec.structs.replace(example.http, port=0),
        smpp=None,
        smtp=None,
        services=[msgspec.structs.replace(example.services[0], **service_changes)],
    )


def store_file(gateway: Gateway) -> Path:
    return Path(gateway.config.gateway.store)


def alter_store(gateway: Gateway, statement: str) -> None:
    """A schema change made beside the running gateway, as another process would."""
    conn = sqlite3.connect(store_file(gateway), isolation_level=None)
    try:
        conn.execute(statement)
    finally:
        conn.close()


def count_messages(gateway: Gateway) -> int:
    with read_only(store_file(gateway)) as conn:
        count: int = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        return count


class Customer:
    """The customer's callback endpoint: keeps the items of every JSON body's `kind` list ("mo"
    or "dr") and sets `arrived` when one comes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.received: list[dict[str, object]] = []
        self.arrived = trio.Event()

    async def app(self, request: Request) -> Response:
        self.received.extend(json.loads(request.body)[self.kind])
        self.arrived.set()
        return Response(status=200)

    async def start(self, nursery: trio.Nursery) -> int:
        """Serves on a free local port and returns it."""
        port: int = await nursery.start(serve_http, self.app, "127.0.0.1", 0, HttpLimits())
        return port


async def start_behind_proxy(config: Config, nursery: trio.Nursery, *, trusted: bool) -> Gateway:
    """The gateway of `config` with the tests' own address, 127.0.0.1, as its one trusted
    reverse proxy, or with none; started, `bound.http_port` its HTTP port."""
    http = msgspec.structs.replace(config.http, trusted_proxies=["127.0.0.1"] if trusted else [])
    gateway = Gateway(msgspec.structs.replace(config, http=http))
    await nursery.start(gateway.run)
    return gateway
