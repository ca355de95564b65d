"""Fixtures of the integration tests: the example config (which proves it parses) and a gateway
started from it, ready, with its store in tmp_path and HTTP, SMPP and SMTP on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import trio

from edgegw.config import Config, load_config
from edgegw.gateway import Gateway

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Config:
    example = load_config(ROOT / "config.example.toml")
    return msgspec.structs.replace(
        example,
        gateway=msgspec.structs.replace(example.gateway, store=str(tmp_path / "edgegw.db")),
        http=msgspec.structs.replace(example.http, port=0),
        smpp=msgspec.structs.replace(example.smpp, port=0) if example.smpp else None,
        smtp=msgspec.structs.replace(example.smtp, port=0) if example.smtp else None,
    )


@pytest.fixture
async def gateway(config: Config, nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    """The running gateway; `gateway.bound.http_port` is its HTTP port. Stopped afterwards."""
    gateway = Gateway(config)
    await nursery.start(gateway.run)
    yield gateway
    gateway.stop()
