"""Stored messages the driver emitted and has not deleted yet, and what a sweep does with each.

Pure: no trio, no I/O; time is the `now` argument. Keyed by (storage, index) and told apart by
TPDU, since an index is reused once its message is deleted. An entry the gateway has committed
stays across reconnects until its delete (AT+CMGD) succeeds, so a delete the modem could not do
at the time is done by a later sweep; an uncommitted one is forgotten on reconnect, so its
message is emitted again (TS 27.005 section 3.5.4). `DeleteTries` says when a failed delete is
tried again at once and when it is left to a sweep.
"""

from __future__ import annotations

import enum

import msgspec

Key = tuple[str, int]


class Offer(enum.Enum):
    EMIT = "emit"  # new here, or waited too long for its acknowledgement
    SKIP = "skip"  # emitted, the acknowledgement may still come
    DELETE = "delete"  # committed by the gateway; only its delete is missing


class _Entry(msgspec.Struct):
    tpdu: bytes
    emitted_at: float
    committed: bool = False


class AwaitingTable:
    """What was emitted from the modem's storage, and whether the gateway has committed it."""

    def __init__(self, reemit_after: float) -> None:
        self.reemit_after = reemit_after
        self._entries: dict[Key, _Entry] = {}

    def offer(self, key: Key, tpdu: bytes, now: float) -> Offer:
        """What to do with `tpdu` found at `key`."""
        entry = self._entries.get(key)
        if entry is None:
            return Offer.EMIT
        if entry.tpdu != tpdu:
            # The index holds another message: the one we knew is gone.
            del self._entries[key]
            return Offer.EMIT
        if entry.committed:
            return Offer.DELETE
        if now - entry.emitted_at < self.reemit_after:
            return Offer.SKIP
        return Offer.EMIT

    def awaited(self, key: Key, now: float) -> bool:
        """An indication for `key` (TPDU unknown yet) needs no read: the message there is
        emitted and waits for its acknowledgement. Not so once committed: the index may hold
        a newer message by now (if a delete whose answer was lost had worked), and reading it
        lets `offer` tell."""
        entry = self._entries.get(key)
        if entry is None or entry.committed:
            return False
        return now - entry.emitted_at < self.reemit_after

    def emitted(self, key: Key, tpdu: bytes, now: float) -> None:
        self._entries[key] = _Entry(tpdu, now)

    def committed(self, key: Key, tpdu: bytes, now: float) -> None:
        """The gateway has the message: it may be deleted, now or by a later sweep."""
        entry = self._entries.get(key)
        if entry is None or entry.tpdu != tpdu:
            entry = self._entries[key] = _Entry(tpdu, now)
        entry.committed = True

    def gone(self, key: Key) -> None:
        """Deleted, or no longer at its index."""
        self._entries.pop(key, None)

    def listed(self, storage: str, keys: set[Key]) -> None:
        """A full listing of `storage` holds `keys`: entries of that storage not among them
        are gone (deleted by a delete whose OK was lost, or by someone else)."""
        for key in [key for key in self._entries if key[0] == storage and key not in keys]:
            del self._entries[key]

    def reconnected(self) -> None:
        """A new connection: what was emitted and not committed comes again."""
        self._entries = {key: entry for key, entry in self._entries.items() if entry.committed}


class DeleteStep(enum.Enum):
    RETRY = "retry"  # its answer was lost and the line resynchronised: read, compare, delete
    DEFER = "defer"  # stays committed in the table; a sweep deletes it


class DeleteTries:
    """The delete of an acknowledged message: `attempts` tries when only answers are lost
    (after a resync, reading the index again and comparing is safe); any other failure (not
    ready, an error answer, a broken link) defers it at once."""

    def __init__(self, attempts: int = 2) -> None:
        self.left = attempts

    def failed(self, *, answer_lost: bool) -> DeleteStep:
        self.left -= 1
        return DeleteStep.RETRY if answer_lost and self.left > 0 else DeleteStep.DEFER
