"""HTTP Basic credentials as every route reads them (edgegw.http.inputs.basic_credentials):
RFC 7617's header, and anything a client might send instead, without a server."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegw.http.inputs import basic_credentials


def basic(text: bytes) -> str:
    return "Basic " + base64.b64encode(text).decode("ascii")


@pytest.mark.parametrize(
    ("header", "credentials"),
    [
        (basic(b"demo:demo"), ("demo", "demo")),
        (basic(b"demo:pass:with:colons"), ("demo", "pass:with:colons")),  # only the first splits
        (basic(b":"), ("", "")),
        (basic("åse:søt".encode()), ("åse", "søt")),
        ("basic " + basic(b"a:b")[6:], ("a", "b")),  # the scheme is case-insensitive
        ("  Basic   " + basic(b"a:b")[6:] + "  ", ("a", "b")),
    ],
)
def test_a_basic_header_gives_its_user_and_password(
    header: str, credentials: tuple[str, str]
) -> None:
    assert basic_credentials(header) == credentials


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        basic(b"no colon"),
        "Basic !!!",  # not base64
        "Basic ZGVtbzpkZW1",  # cut short: bad padding
        basic(b"\xff\xfe:x"),  # not UTF-8
        "Basic ZGVtbzpkZW1v\u00e9",  # a non-ASCII character in the token
        "Bearer ZGVtbzpkZW1v",
        "Digest username=demo",
    ],
)
def test_anything_else_is_no_credentials(header: str | None) -> None:
    assert basic_credentials(header) is None


@given(st.one_of(st.none(), st.text()))
def test_any_header_gives_credentials_or_none_and_never_raises(header: str | None) -> None:
    credentials = basic_credentials(header)
    assert credentials is None or all(isinstance(part, str) for part in credentials)
