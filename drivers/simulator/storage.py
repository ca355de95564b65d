"""A modem's message storage ("SM" on the SIM, "ME" in the phone): indexed slots with a status.

Pure, no I/O. 3GPP TS 27.005 section 3.1 (<index>, <stat> values 0..3 in PDU mode, 4 = all for
+CMGL) and section 3.5.4 (+CMGD <delflag>); indexes count from 1 as on SIM800 and Quectel, or
from 0 as some modems number their phone memory.
"""

from __future__ import annotations

import enum

import msgspec


class MessageStatus(enum.IntEnum):
    """PDU-mode <stat> (TS 27.005 section 3.1)."""

    REC_UNREAD = 0
    REC_READ = 1
    STO_UNSENT = 2
    STO_SENT = 3


# +CMGL <stat> 4 lists every message (TS 27.005 section 3.1).
STAT_ALL = 4

# +CMGD <delflag> (TS 27.005 section 3.5.4) -> the statuses it deletes; 0 deletes <index> only.
DELETED_BY_FLAG: dict[int, frozenset[MessageStatus]] = {
    1: frozenset({MessageStatus.REC_READ}),
    2: frozenset({MessageStatus.REC_READ, MessageStatus.STO_SENT}),
    3: frozenset({MessageStatus.REC_READ, MessageStatus.STO_SENT, MessageStatus.STO_UNSENT}),
    4: frozenset(MessageStatus),
}


class StoredSms(msgspec.Struct, frozen=True):
    """One occupied slot: the PDU as +CMGR shows it (SMSC address then TPDU)."""

    status: MessageStatus
    pdu: bytes
    tpdu_length: int  # the <length> of +CMGR/+CMGL: TPDU octets, the SMSC address not counted


class MessageStorage:
    """Slots first..first+capacity-1 (`first` 1, or 0 on some modems' "ME"); a new message
    takes the lowest free index, so deleted ones are reused."""

    def __init__(self, name: str, capacity: int, first: int = 1) -> None:
        self.name = name
        self.capacity = capacity
        self.first = first
        self._slots: dict[int, StoredSms] = {}

    @property
    def used(self) -> int:
        return len(self._slots)

    @property
    def full(self) -> bool:
        return self.used >= self.capacity

    def valid(self, index: int) -> bool:
        return self.first <= index < self.first + self.capacity

    def store(self, sms: StoredSms) -> int | None:
        """The index `sms` went to, or None when every slot is taken."""
        for index in range(self.first, self.first + self.capacity):
            if index not in self._slots:
                self._slots[index] = sms
                return index
        return None

    def get(self, index: int) -> StoredSms | None:
        return self._slots.get(index)

    def mark_read(self, index: int) -> None:
        """Reading a received message makes it REC READ (TS 27.005 section 3.4.3)."""
        sms = self._slots.get(index)
        if sms is not None and sms.status is MessageStatus.REC_UNREAD:
            self._slots[index] = msgspec.structs.replace(sms, status=MessageStatus.REC_READ)

    def listing(self, stat: int) -> list[tuple[int, StoredSms]]:
        """The messages with <stat> (4: all), by index."""
        return [
            (index, sms)
            for index, sms in sorted(self._slots.items())
            if stat == STAT_ALL or sms.status == stat
        ]

    def indexes(self) -> list[int]:
        return sorted(self._slots)

    def delete(self, index: int) -> bool:
        """Empty one slot; True if it held a message."""
        return self._slots.pop(index, None) is not None

    def delete_flagged(self, delflag: int) -> int:
        """Delete every message whose status `delflag` (1..4) names; how many went."""
        statuses = DELETED_BY_FLAG[delflag]
        doomed = [index for index, sms in self._slots.items() if sms.status in statuses]
        for index in doomed:
            del self._slots[index]
        return len(doomed)
