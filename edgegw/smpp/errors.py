"""The SMPP codec's one error type and its kinds, each carrying the `command_status` to answer.

Pure; no I/O. The kind decides the session's fate (SMPP 3.4 sections 2.8 and 4.3): a bad field is
answered with the request's own response and the bind stays; a broken header is nacked and closes.
"""

from __future__ import annotations

from edgegw.smpp.constants import CommandStatus


class SmppError(ValueError):
    """Anything the SMPP codec refuses. `command_id` and `sequence_number` name the offending
    PDU when its header was readable (0 otherwise)."""

    def __init__(
        self,
        command_status: CommandStatus,
        message: str,
        *,
        command_id: int = 0,
        sequence_number: int = 0,
    ) -> None:
        super().__init__(message)
        self.command_status = command_status
        self.command_id = command_id
        self.sequence_number = sequence_number


class InvalidField(SmppError):
    """A well-framed request with a bad field: answer it with its own response carrying
    `command_status`; the session goes on."""


class InvalidPdu(SmppError):
    """A well-framed PDU that cannot be read as its command (unknown command id, body shorter or
    longer than its fields): answer with generic_nack; the framing is intact, so the session
    goes on."""


class BrokenFrame(SmppError):
    """The header cannot be trusted (command_length below 16 or past the limit, a stream ending
    inside a PDU): answer with generic_nack if possible, then close the session."""


class EncodeError(SmppError):
    """Our own PDU cannot be put on the wire (a string too long for its field, a value out of
    range): a local mistake, never the peer's."""
