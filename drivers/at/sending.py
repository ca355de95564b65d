"""What the answer to AT+CMGS says about a part: sent with its TP-MR, refused, or unknown.

Pure: no trio, no I/O. A lost final result is never a reason to send again: a `+CMGS: <mr>` that
got through says the network took the part; with nothing at all whether it went out is unknown,
and the gateway's `in_flight_after_crash` rule decides. TS 27.005 section 3.5.1, and 3.2.5 for
which +CMS ERRORs are for good.
"""

from __future__ import annotations

import msgspec

from drivers.at.commands import cms_is_permanent, parse_cmgs
from drivers.at.errors import AtProtocolError
from drivers.at.framer import FinalKind, FinalResult, Response


class Sent(msgspec.Struct, frozen=True):
    """The network took the part. `final_lost`: its OK never came (the line needs a resync)."""

    mr: int
    final_lost: bool = False


class Refused(msgspec.Struct, frozen=True):
    """The modem or the network refused the part; `permanent` when trying again cannot help."""

    reason: str
    cms: int | None
    permanent: bool


class Unknown(msgspec.Struct, frozen=True):
    """No answer at all after the PDU: the part may or may not have gone out."""


class Unreadable(msgspec.Struct, frozen=True):
    """An OK whose +CMGS line cannot be read: the link is not to be trusted."""

    reason: str


Outcome = Sent | Refused | Unknown | Unreadable


def refused(final: FinalResult) -> Refused:
    """An error answer to AT+CMGS, before or after the PDU."""
    if final.kind is FinalKind.CMS_ERROR:
        code = final.code
        permanent = code is not None and cms_is_permanent(code)
        return Refused(f"+CMS ERROR: {final.text}", cms=code, permanent=permanent)
    return Refused(f"AT+CMGS answered {final.kind.value} {final.text}", None, permanent=False)


def pdu_answered(reply: Response | None, partial: tuple[str, ...]) -> Outcome:
    """The outcome of the PDU from its answer, or, when none came in time (`reply` None), from
    the text that did come (`partial`)."""
    if reply is None:
        try:
            return Sent(parse_cmgs(partial), final_lost=True)
        except AtProtocolError:
            return Unknown()
    if not reply.final.ok:
        return refused(reply.final)
    try:
        return Sent(parse_cmgs(reply.lines))
    except AtProtocolError as exc:
        return Unreadable(f"unreadable AT+CMGS answer: {exc}")
