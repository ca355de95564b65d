"""Arbitrary input never breaks the simulated modem, and how bytes are chunked never matters.

Properties (STYLE.md "Tests", h11's fuzz rule): the engine answers any bytes without raising,
its replies keep their order in time, and feeding a stream whole or one byte at a time gives the
same output. The V.250 line splitter either parses or raises its one error type.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.simulator import PROFILES, ModemEngine, SimulatorOptions
from drivers.simulator.commandline import Command, CommandSyntaxError, Form, split_commands

# Pieces a terminal might send, so the fuzzer reaches deep states (prompt, PIN, settings).
FRAGMENTS = [
    b"AT",
    b"at",
    b"\r",
    b"\n",
    b"\x1a",
    b"\x1b",
    b"\x08",
    b";",
    b"+CMGS=23",
    b"+CMGS=",
    b"+CPIN=1234",
    b'+CPIN="0000"',
    b"+CMEE=2",
    b"E0",
    b"Z",
    b"S3=",
    b"S4=33",
    b"+CMGF=1",
    b'+CPMS="SM","ME"',
    b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37",
    b'"',
    b"=?",
    b"?",
]
stream = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=8)), max_size=40).map(
    b"".join
)
profiles = st.sampled_from(sorted(PROFILES))


def engine_for(profile: str) -> ModemEngine:
    return ModemEngine(SimulatorOptions(profile=profile, register_delay=1.0))


@settings(max_examples=300, deadline=None)
@given(data=stream, profile=profiles, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_any_input_is_answered_in_time_order(data: bytes, profile: str, cuts: list[int]) -> None:
    engine = engine_for(profile)
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    last_due = 0.0
    for step, (start, end) in enumerate(itertools.pairwise(bounds)):
        now = float(step)
        for reply in engine.receive_data(data[start:end], now):
            assert reply.data
            assert reply.due >= max(now, last_due)
            last_due = reply.due


@settings(max_examples=300, deadline=None)
@given(data=stream, profile=profiles)
def test_one_byte_at_a_time_gives_the_same_output_as_whole(data: bytes, profile: str) -> None:
    whole = b"".join(reply.data for reply in engine_for(profile).receive_data(data, 0.0))
    engine = engine_for(profile)
    piecewise = b"".join(
        reply.data for octet in data for reply in engine.receive_data(bytes([octet]), 0.0)
    )
    assert piecewise == whole


@settings(max_examples=300, deadline=None)
@given(data=stream, profile=profiles, cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_chunking_gives_the_same_output_as_whole(
    data: bytes, profile: str, cuts: list[int]
) -> None:
    # The engine takes a chunk up to its next terminator at once: a terminator at either edge
    # of a chunk, or several in one, must not change what it answers.
    whole = b"".join(reply.data for reply in engine_for(profile).receive_data(data, 0.0))
    engine = engine_for(profile)
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    chunked = b"".join(
        reply.data
        for start, end in itertools.pairwise(bounds)
        for reply in engine.receive_data(data[start:end], 0.0)
    )
    assert chunked == whole


@given(st.text(alphabet=st.sampled_from('AT+CMGS=,;?" \u00dfa1'), max_size=40))
def test_a_line_without_quotes_splits_as_one_with_a_harmless_quoted_string(body: str) -> None:
    # Lines without a quote take a faster path; a trailing `;+X=""` sends them down the other.
    try:
        plain = split_commands(body)
    except CommandSyntaxError:
        plain = None
    if '"' in body or plain is None:
        return
    quoted = split_commands(body + ';+X=""')
    assert quoted[:-1] == plain
    assert quoted[-1] == Command("+X", Form.SET, '""')


@given(st.text(max_size=60))
def test_a_command_line_parses_or_raises_its_one_error(body: str) -> None:
    try:
        commands = split_commands(body)
    except CommandSyntaxError:
        return
    assert all(command.name for command in commands)
