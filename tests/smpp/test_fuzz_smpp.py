"""An SMPP fuzzer: hypothesis-made PDUs (every command id, real ones more often, arbitrary
bodies, now and then raw garbage) sent to a bound and to an unbound session over a real socket.
The session answers enquire_link, was closed after a broken frame, or waits for the rest of a
frame left incomplete; whatever it does, the listener still takes a bind, and nothing is logged
at ERROR or with a traceback (issue 10, item 2). Settings: tests/support/fuzz.py."""

from __future__ import annotations

import functools
import logging

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import FUZZ
from support.smpp import AcceptingBackend, raw_bind, receive_pdu

from edgegw.smpp import CommandId, SmppAccount, SmppConfig, serve_smpp
from edgegw.smpp.pdu import (
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SmppDecoder,
    encode,
)
from edgegw.throttle import AuthThrottle, AuthThrottleConfig

ACCOUNTS = [SmppAccount(system_id="demo", password="demo", service=1000, max_binds=10)]
COMMAND_ID = st.one_of(
    st.sampled_from([c.value for c in CommandId if c not in (CommandId.UNBIND,)]),
    st.integers(0, 0xFFFFFFFF),
)


def frame(command_id: int, status: int, sequence: int, body: bytes) -> bytes:
    header = (16 + len(body), command_id, status, sequence)
    return b"".join(n.to_bytes(4, "big") for n in header) + body


FRAME = st.one_of(
    st.builds(
        frame,
        COMMAND_ID,
        st.sampled_from([0, 0, 1, 0xFFFFFFFF]),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=80),
    ),
    st.binary(min_size=1, max_size=40),  # not even a header, or a lying command_length
)


@pytest.mark.parametrize("bound", [True, False], ids=["bound", "unbound"])
@FUZZ
@given(frames=st.lists(FRAME, min_size=1, max_size=8))
async def test_fuzz_smpp_sessions_survive_or_close_cleanly(
    caplog: pytest.LogCaptureFixture, bound: bool, frames: list[bytes]
) -> None:
    caplog.clear()
    # Random binds fail often; the login throttle is not what this test is about.
    throttle = AuthThrottle(AuthThrottleConfig(free_failures=10**6, lockout_failures=10**6))
    config = SmppConfig(port=0, accounts=ACCOUNTS, response_timeout=2.0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            functools.partial(serve_smpp, config, AcceptingBackend(ACCOUNTS), throttle=throttle)
        )
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            decoder = SmppDecoder()
            if bound:
                assert await raw_bind(stream, decoder) == 0
            try:
                for data in frames:
                    await stream.send_all(data)
                await stream.send_all(encode(EnquireLink(sequence_number=0x7FFFFFF0)))
            except trio.BrokenResourceError:
                pass  # closed after a broken frame: allowed
            # A frame left incomplete keeps the session waiting for its rest (until the
            # inactivity timer), which is allowed too: the answers are read for a second.
            with trio.move_on_after(1.0):
                while (answer := await receive_pdu(stream, decoder)) is not None:
                    if isinstance(answer, EnquireLinkResp) and answer.sequence_number == 0x7FFFFFF0:
                        break
                    assert not isinstance(answer, GenericNack) or answer.command_status != 0x08
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", port) as fresh:
                assert await raw_bind(fresh) == 0
        nursery.cancel_scope.cancel()
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
