"""Table recovery that seeks before it resumes: a fix for a start-up race in faust-streaming 0.15.

``Recovery.on_recovery_completed`` resumes the stream partitions *before* it seeks them to
their committed offsets, while message flow is still off. Records fetched in that window
reach the stream while flow control is inactive and are skipped, and the drain loop's read
offset has already moved past them, so the re-fetched copies are dropped as well ("DROPPED
MESSAGE ROFF"). Upstream fixed this ordering for apps without tables (faust-streaming#216,
PR #217), not for this path. Seen here: after the restarts of a replay, the assemble app's
partitions kept a head message that never reached the agent (with agents/faust_commit.py
that is a stall and a restart instead of a loss; this made it rare). The main cause of
that symptom turned out to be elsewhere, in the fetch (agents/faust_fetch.py). This still
matters for a partition without a committed offset: records Faust dropped there (a batch
cut short by a new rebalance generation) have moved aiokafka's position, and only a seek
to the beginning brings them back.

The fix seeks while the stream partitions are still paused, moves partitions without a
committed offset to their beginning (the configured ``earliest``: aiokafka's
``seek_to_committed`` skips them), and resumes them afterwards; everything else is
upstream's ``on_recovery_completed`` as of 0.15.3. These are Faust's own seeks, done while
nothing is fetched, through its own bookkeeping (``consumer.seek`` sets the read offset):
not a seek behind Faust's read offset. Installed through Faust's documented
``TableManager`` setting (``agents/runtime.make_app``).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables import TableManager
from faust.tables.recovery import Recovery


class SeekBeforeResumeRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        consumer: Any = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callback_coros = [
            asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                              self.standbys_for_table[table]))
            for table in self.tables.values()
        ]
        if callback_coros:
            await asyncio.wait(callback_coros)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} "
                             f"param {generation_id}")
            return
        if assignment:
            # The fix: seek first, while the stream partitions are still paused ...
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
            # ... including those without a committed offset (or 0): aiokafka's
            # seek_to_committed skips them and they would keep a stale position.
            fresh = [tp for tp in assignment if not self._is_changelog_tp(tp)
                     and not consumer._committed_offset.get(tp)]
            if fresh:
                earliest = await consumer.earliest_offsets(*fresh)
                for tp in fresh:
                    await consumer.seek(tp, earliest.get(tp) or 0)
        # ... and only then let them be fetched.
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        self.app.flow_control.resume()
        consumer.resume_flow()
        await cast(Any, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


class FixedTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekBeforeResumeRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
