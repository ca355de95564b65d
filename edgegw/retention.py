"""Retention: every `interval` seconds, delete what has been final for more than
`keep_final_days` (messages with their parts and events, delivered callbacks, settled status
reports, inbound SMS), one small batch per write job so the writer and the loop never stall,
then hand the freed pages back with incremental_vacuum. The deleting is the store's
(edgegw.store); this task only decides when."""

from __future__ import annotations

import functools
import logging

import trio

from edgegw.clock import Clock
from edgegw.store import PRUNED_TABLES, Store, StoreClosed, prune_batch, release_free_pages

__all__ = ["DAY", "Pruner"]

log = logging.getLogger(__name__)

DAY = 86400.0
PRUNE_INTERVAL = 600.0


class Pruner:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        keep_final_days: float,
        interval: float = PRUNE_INTERVAL,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.clock = clock
        self.keep = keep_final_days * DAY
        self.interval = interval
        self.batch = batch

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.keep <= 0:
            return  # keep_final_days = 0: keep everything
        while True:
            try:
                await self.prune_once()
            except StoreClosed:
                return  # the gateway is stopping
            except Exception:
                # A round that fails (a lock an operator's sqlite3 holds past the busy timeout,
                # say) is tried again at the next interval: pruning never stops the gateway.
                log.exception("pruning failed; trying again in %g s", self.interval)
            await trio.sleep(self.interval)

    async def prune_once(self) -> dict[str, int]:
        """One round over every table; the rows deleted per table."""
        before = self.clock.now() - self.keep
        deleted = dict.fromkeys(PRUNED_TABLES, 0)
        for table in PRUNED_TABLES:
            cursor = 0
            while True:
                step = await self.store.write(
                    functools.partial(
                        prune_batch, table=table, before=before, after=cursor, limit=self.batch
                    )
                )
                deleted[table] += step.deleted
                cursor = step.cursor
                if step.finished:
                    break
        free = await self.store.write(release_free_pages)
        while free:  # a write job a step, so that writes wait for one step at most
            left = await self.store.write(release_free_pages)
            if left >= free:
                break  # a file made before auto-vacuum was on gives none back
            free = left
        if any(deleted.values()):
            counts = ", ".join(f"{count} {table}" for table, count in deleted.items() if count)
            log.info("pruned what was final before the retention: %s; %d pages free", counts, free)
        return deleted
