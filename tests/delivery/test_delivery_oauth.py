"""OAuth2 client credentials towards customer endpoints (spec 3.5, item 4), the pure parts: the
token request's form, the token response, when a token is renewed, and the config checks."""

from __future__ import annotations

import base64

import msgspec
import pytest

from edgegw.config import check_config
from edgegw.delivery.config import CallbackEndpoint, OAuth2Config, check_endpoint
from edgegw.delivery.oauth import (
    ERROR_TEXT_LIMIT,
    OAuth2Error,
    read_token_error,
    read_token_response,
    token_request_form,
    token_request_headers,
)


def test_the_form_has_the_grant_and_only_the_extras_that_are_set() -> None:
    config = OAuth2Config(
        authorize_uri="https://idp/token", client_id="c", client_secret="s", audience="a"
    )
    assert token_request_form(config) == {
        "grant_type": "client_credentials",
        "client_id": "c",
        "client_secret": "s",
        "audience": "a",
    }


def test_client_secret_basic_takes_the_id_and_secret_out_of_the_form() -> None:
    config = OAuth2Config(
        authorize_uri="https://idp/token",
        client_id="c d",
        client_secret="s:\u00e6",
        token_endpoint_auth_method="client_secret_basic",
    )
    assert token_request_form(config) == {"grant_type": "client_credentials"}
    assert token_request_headers(config) == {
        "accept": "application/json",
        "authorization": "Basic " + base64.b64encode(b"c+d:s%3A%C3%A6").decode(),
    }
    body = msgspec.structs.replace(config, token_endpoint_auth_method="client_secret_post")
    assert token_request_headers(body) == {"accept": "application/json"}


def test_a_client_authentication_method_of_neither_kind_is_a_config_problem() -> None:
    service = {"id": 1, "name": "a", "username": "u", "password": "p"}
    service["dr"] = {
        "url": "https://customer.example/dr",
        "oauth2": {
            "authorize_uri": "https://idp.example/token",
            "client_id": "c",
            "client_secret": "s",
            "token_endpoint_auth_method": "basic",
        },
    }
    problems = check_config(
        {"services": [service], "modems": [{"name": "m", "driver": "simulated"}]}
    )
    assert problems == [
        "services[0].dr.oauth2.token_endpoint_auth_method: 'basic' is neither client_secret_post"
        " (id and secret in the form body) nor client_secret_basic (HTTP Basic)"
    ]


def test_a_token_is_renewed_a_minute_before_it_expires_or_at_half_its_life() -> None:
    long = read_token_response(b'{"access_token":"t","token_type":"bearer","expires_in":3600}', 0)
    assert (long.value, long.fresh(3539.0), long.fresh(3540.0)) == ("t", True, False)
    short = read_token_response(b'{"access_token":"t","expires_in":60}', 100.0)
    assert (short.fresh(129.0), short.fresh(130.0)) == (True, False)
    endless = read_token_response(b'{"access_token":"t"}', 0)
    assert endless.fresh(1e12)
    # Azure AD's v1 endpoint sends the lifetime as a string.
    azure = read_token_response(
        b'{"token_type":"Bearer","expires_in":"3599","access_token":"t"}', 0
    )
    assert (azure.fresh(3538.0), azure.fresh(3539.0)) == (True, False)


# JSON nested deeper than the decoder recurses, on Python 3.11 and 3.13 alike (3.13 takes
# 3,000 levels): some 40 kB, within an answer's 64 KiB.
NESTED = b'{"error":"e","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"access_token":""}',
        b'{"access_token":"t","token_type":"mac"}',
        b"[1]",
        NESTED,
    ],
)
def test_an_unusable_token_response_is_an_oauth2_error(body: bytes) -> None:
    with pytest.raises(OAuth2Error):
        read_token_response(body, 0)


@pytest.mark.parametrize("lifetime", [b'"NaN"', b'"Infinity"', b'"-inf"'])
def test_an_expires_in_that_is_no_number_of_seconds_is_an_oauth2_error(lifetime: bytes) -> None:
    with pytest.raises(OAuth2Error, match="expires_in"):
        read_token_response(b'{"access_token":"t","expires_in":%s}' % lifetime, 0)


def endpoint(**changes: object) -> CallbackEndpoint:
    fields: dict[str, object] = {
        "url": "https://customer.example/dr",
        "oauth2": {
            "authorize_uri": "https://idp.example/token",
            "client_id": "c",
            "client_secret": "s",
        },
    }
    fields.update(changes)
    return msgspec.convert(fields, CallbackEndpoint)


def test_config_checks_of_oauth2() -> None:
    assert check_endpoint("dr", endpoint()) == []
    bad = endpoint(
        oauth2={
            "authorize_uri": "idp/token",
            "client_id": "",
            "client_secret": "",
            "grant_type": "password",
        },
        username="u",
        headers={"authorization": "Bearer x"},
    )
    assert check_endpoint("dr", bad) == [
        "dr.oauth2.authorize_uri: must be an http:// or https:// URL",
        "dr.oauth2.grant_type: only client_credentials is supported",
        "dr.oauth2.client_id: must not be empty",
        "dr.oauth2.client_secret: must not be empty",
        "dr.oauth2: takes the place of username and password, set only one",
        "dr.oauth2: sets Authorization itself, remove it from headers",
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"error":"invalid_grant"}', "invalid_grant"),
        (
            b'{"error":"invalid_scope","error_description":"no such\\u00a0scope","error_uri":"x"}',
            "invalid_scope (no such scope)",
        ),
        (b'{"error":"invalid_client","error_description":null}', "invalid_client"),
        (b"<html>Bad Gateway</html>", None),
        (NESTED, None),
        (b'{"error":""}', None),
        (b'{"error":7}', None),
    ],
)
def test_a_token_error_answer_gives_its_error_and_description(
    body: bytes, reason: str | None
) -> None:
    assert read_token_error(body) == reason


def test_a_token_error_is_cut_to_a_log_line() -> None:
    body = b'{"error":"unauthorized_client","error_description":"%s"}' % (b"x" * 1000)
    reason = read_token_error(body)
    assert reason is not None
    assert (reason[:21], len(reason)) == ("unauthorized_client (", ERROR_TEXT_LIMIT)
