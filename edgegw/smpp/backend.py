"""What the SMPP door needs from the gateway core: authentication, durable submit, query and
cancel, and the durable outbox of receipts and MO to ESMEs. The core implements `SmppBackend`.

Typed contract only; it holds no state and does no I/O itself (trio appears only for the wake-up
Event type). Spec section 2.7 and SMPP 3.4 sections 4.1, 4.4, 4.6, 4.8, 4.9, 4.10.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec
import trio

from edgegw.passwords import PasswordChecker, stand_in_for
from edgegw.smpp.config import SmppAccount
from edgegw.smpp.constants import CommandStatus, MessageState
from edgegw.smpp.outbound import Outbound
from edgegw.smpp.pdu import CancelSm, ReplaceSm, UnsuccessfulDelivery
from edgegw.smpp.submission import Submission

__all__ = [
    "Accepted",
    "Account",
    "AccountTable",
    "BindMode",
    "BindRefused",
    "QueryResult",
    "SmppBackend",
    "SubmitRefused",
]


class BindMode(enum.StrEnum):
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """A bound ESME's identity: which service its messages belong to and how many sessions of
    it may be bound at once (the server enforces `max_binds`)."""

    system_id: str
    service_id: int
    max_binds: int


class BindRefused(Exception):
    """Bind refused; `command_status` is ESME_RINVSYSID, ESME_RINVPASWD or ESME_RBINDFAIL."""

    def __init__(self, command_status: CommandStatus, reason: str) -> None:
        super().__init__(reason)
        self.command_status = command_status


class SubmitRefused(Exception):
    """The core refused a submit for a field it judges (destination, coding, length, ...);
    the ESME gets `command_status` and stays bound."""

    def __init__(self, command_status: CommandStatus, reason: str) -> None:
        super().__init__(reason)
        self.command_status = command_status
        self.reason = reason


class Accepted(msgspec.Struct, frozen=True):
    """A submission stored: the messageId its response names (its first stored destination's)
    and the destinations of a submit_multi the core refused one by one, for unsuccess_sme."""

    message_id: str
    refused: tuple[UnsuccessfulDelivery, ...] = ()


class QueryResult(msgspec.Struct, frozen=True, kw_only=True):
    """query_sm_resp content (SMPP 3.4 section 4.8.2): the state, when it became final and
    the network's error code, one octet (0 when the network gave none)."""

    message_state: MessageState
    final_date: dt.datetime | None = None
    error_code: int = 0


class SmppBackend(Protocol):
    async def authenticate(self, system_id: str, password: str, mode: BindMode) -> Account:
        """The account for these credentials, or BindRefused."""
        ...

    async def submit_many(
        self, account: Account, submissions: Sequence[Submission]
    ) -> list[Accepted | SubmitRefused]:
        """For each submission in order what was stored (Accepted) or its SubmitRefused,
        returned only once every accepted one is durably committed (in one write: the submit_sm
        of one read of the socket come together). A submit_multi is refused whole only when
        none of its destinations can be stored. Called concurrently, up to a window of submits
        per session at once; raises when the store fails, which refuses them all."""
        ...

    async def query(self, account: Account, message_id: str) -> QueryResult | None:
        """The state of one of the account's service's messages, or None if it has no such."""
        ...

    async def cancel(self, account: Account, pdu: CancelSm) -> CommandStatus:
        """Cancel the service's messages not sent yet that the cancel_sm names (SMPP 3.4
        4.9.1): the one of its message_id or, with none, those from its source_addr to its
        destination_addr. ESME_ROK, or ESME_RCANCELFAIL when there is none to cancel."""
        ...

    async def replace(self, account: Account, pdu: ReplaceSm) -> CommandStatus:
        """Give one of the service's messages, still queued and not handed to a modem, the
        replace_sm's text (and schedule, validity and receipt request where given): ESME_ROK,
        ESME_RINVMSGID when the service has no such message from that source, ESME_RREPLACEFAIL
        when it is past replacing, or the status of a field the core refuses."""
        ...

    async def pending(self, service_id: int, limit: int, exclude: frozenset[int]) -> list[Outbound]:
        """Up to `limit` undelivered outbox items of the service, oldest first, leaving out
        the ids in `exclude` (already in flight or waiting to be offered again)."""
        ...

    async def delivered(self, outbound_id: int) -> None:
        """The ESME acknowledged the item (deliver_sm_resp ESME_ROK for every part)."""
        ...

    async def failed(
        self, outbound_id: int, command_status: int, *, for_good: bool = False
    ) -> None:
        """The ESME refused the item, or (`for_good`) the gateway cannot offer it at all (it
        cannot be encoded); the backend decides whether it stays pending."""
        ...

    def outbound_signal(self, service_id: int) -> trio.Event:
        """An Event set when outbox items for the service arrive after this call."""
        ...


class AccountTable:
    """`authenticate` over the configured accounts, for backends that keep them in the config.
    Passwords (plaintext or scrypt hashes, edgegw.passwords) compare in constant time, and an
    unknown system_id takes as long to refuse as a wrong password."""

    def __init__(
        self, accounts: Iterable[SmppAccount], passwords: PasswordChecker | None = None
    ) -> None:
        self._accounts = {account.system_id: account for account in accounts}
        self._passwords = PasswordChecker() if passwords is None else passwords
        self._unknown = stand_in_for(account.password for account in self._accounts.values())

    async def authenticate(self, system_id: str, password: str) -> Account:
        account = self._accounts.get(system_id)
        if account is None:
            await self._passwords.verify(None, password, stand_in=self._unknown)
            raise BindRefused(CommandStatus.ESME_RINVSYSID, f"no account {system_id!r}")
        if not await self._passwords.verify(account.password, password):
            raise BindRefused(CommandStatus.ESME_RINVPASWD, f"wrong password for {system_id!r}")
        return Account(
            system_id=account.system_id, service_id=account.service, max_binds=account.max_binds
        )
