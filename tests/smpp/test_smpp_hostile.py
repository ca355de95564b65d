"""The SMPP door against hostile or broken ESMEs over real sockets on 127.0.0.1, under the
virtual clock: sessions that stop reading, connections that never bind (issue 10, item 4)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from support.smpp import AcceptingBackend, raw_bind, receive_pdu
from support.sockets import open_from

from edgegw.smpp import SmppAccount, SmppConfig, serve_smpp
from edgegw.smpp.pdu import (
    BindTransmitter,
    EnquireLink,
    EnquireLinkResp,
    SmppDecoder,
    encode,
)

ACCOUNTS = [SmppAccount(system_id="demo", password="demo", service=1000, max_binds=4)]


async def flood_without_reading(stream: trio.SocketStream) -> None:
    """Pipeline enquire_link until the server stops taking them, never reading an answer."""
    burst = encode(EnquireLink(sequence_number=2)) * 1000
    try:
        while True:
            await stream.send_all(burst)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


@pytest.fixture
async def smpp_port(nursery: trio.Nursery) -> AsyncIterator[int]:
    config = SmppConfig(port=0, accounts=ACCOUNTS, inactivity_timeout=120.0, response_timeout=10.0)
    port: int = await nursery.start(serve_smpp, config, AcceptingBackend(ACCOUNTS))
    yield port


async def test_sessions_that_stop_reading_are_closed_and_free_their_binds(
    autojump_clock: trio.testing.MockClock, smpp_port: int, nursery: trio.Nursery
) -> None:
    start = trio.current_time()
    hogs = []
    for _ in range(4):
        hog = await open_from(smpp_port, receive_buffer=4096)
        assert await raw_bind(hog) == 0
        hogs.append(hog)
        nursery.start_soon(flood_without_reading, hog)
    refused = await open_from(smpp_port)
    assert (
        await raw_bind(refused, cls=BindTransmitter) != 0
    )  # all four binds of the account are taken
    await refused.aclose()
    # Gone within the inactivity and response timers, however full their buffers are.
    with trio.fail_after(120.0 + 10.0):
        while True:
            fifth = await open_from(smpp_port)
            status = await raw_bind(fifth, cls=BindTransmitter)
            if status == 0:
                break
            await fifth.aclose()
            await trio.sleep(1.0)
    assert trio.current_time() - start <= 130.0
    await fifth.aclose()
    for hog in hogs:
        await hog.aclose()


async def keep_probing(stream: trio.SocketStream) -> None:
    """Send our own enquire_link every 4 seconds, as a client that never binds might."""
    try:
        for sequence in itertools.count(100):
            await stream.send_all(encode(EnquireLink(sequence_number=sequence)))
            await trio.sleep(4.0)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


@pytest.mark.parametrize("peer", ["silent", "answers our probes", "probes us"])
async def test_an_unbound_connection_closes_at_bind_timeout_whatever_the_probes(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, peer: str
) -> None:
    config = SmppConfig(port=0, accounts=ACCOUNTS, enquire_link_interval=5.0, bind_timeout=30.0)
    port = await nursery.start(serve_smpp, config, AcceptingBackend(ACCOUNTS))
    stream = await open_from(port)
    if peer == "probes us":
        nursery.start_soon(keep_probing, stream)
    decoder = SmppDecoder()
    start = trio.current_time()
    while (pdu := await receive_pdu(stream, decoder)) is not None:
        if isinstance(pdu, EnquireLink) and peer == "answers our probes":
            await stream.send_all(encode(EnquireLinkResp(sequence_number=pdu.sequence_number)))
    assert trio.current_time() - start <= 30.0
    await stream.aclose()


async def test_a_peer_repeating_a_broken_pdu_then_stopping_gets_one_line_and_its_count(
    autojump_clock: trio.testing.MockClock, smpp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgegw.smpp.server")
    for _ in range(20):
        stream = await open_from(smpp_port)
        await stream.send_all(bytes.fromhex("00000008 00000004 00000000 00000007"))
        decoder = SmppDecoder()
        while await receive_pdu(stream, decoder) is not None:
            continue
        await stream.aclose()
    await trio.sleep(121.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "edgegw.smpp.server"]
    assert len(lines) == 2, lines
    assert lines[1] == f"{lines[0]} (19 more like it since the last one, not logged)"


@pytest.mark.parametrize("bound", [False, True])
async def test_a_session_log_line_names_its_peer_and_account(
    smpp_port: int, caplog: pytest.LogCaptureFixture, bound: bool
) -> None:
    caplog.set_level(logging.INFO, logger="edgegw.smpp.server")
    stream = await open_from(smpp_port, "127.0.0.3")
    decoder = SmppDecoder()
    if bound:
        assert await raw_bind(stream, decoder) == 0
    await stream.send_all(bytes.fromhex("00000008 00000004 00000000 00000007"))
    while await receive_pdu(stream, decoder) is not None:
        continue
    await stream.aclose()
    (record,) = [r for r in caplog.records if "broken" in r.getMessage()]
    who = "peer 127.0.0.3, system_id 'demo'" if bound else "peer 127.0.0.3"
    assert record.getMessage() == (
        f"SMPP frame broken: command_length 8 is shorter than a header ({who})"
    )
    assert record.funcName == "_read_loop"  # the session's line, not a logging helper
