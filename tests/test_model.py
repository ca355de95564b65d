"""What a send's answer says of its login (edgegw.model.SendResponse.login_refusal): the
status every door turns into a 401 or a failed login for the throttle."""

from __future__ import annotations

import pytest

from edgegw.model import MessageStatus, SendResponse, StatusCode


def answer(*codes: StatusCode) -> SendResponse:
    return SendResponse(
        batchReference="b",
        messageStatus=[
            MessageStatus(
                statusCode=code,
                statusMessage="",
                clientReference=None,
                recipient=None,
                messageId=None,
                sessionId=None,
                sequenceIndex=index,
            )
            for index, code in enumerate(codes, start=1)
        ],
    )


_ACCESS, _SERVICE, _OK, _SYNTAX = (
    StatusCode.ACCESS_ERROR,
    StatusCode.ILLEGAL_SERVICE,
    StatusCode.OK,
    StatusCode.SYNTAX_ERROR,
)


@pytest.mark.parametrize(
    ("codes", "refusal"),
    [
        ((_ACCESS, _ACCESS), _ACCESS),
        ((_SERVICE,), _SERVICE),
        ((_ACCESS, _SERVICE), _SERVICE),  # a failed login, but no 401
        ((_ACCESS, _OK), None),
        ((_SYNTAX,), None),
        ((), None),
    ],
)
def test_a_login_refusal_is_every_message_refused_for_the_login(
    codes: tuple[StatusCode, ...], refusal: StatusCode | None
) -> None:
    response = answer(*codes)
    assert response.login_refusal() == refusal
    assert response.failed_login() == (refusal is not None)
