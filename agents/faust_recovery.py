"""A fix for a start-up race in faust-streaming 0.15's table recovery.

Symptoms (seen here with the resolve app's tables, reproduced by
tests/test_entity_resolution.py::test_resolve_stage_survives_a_restart): after a restart,
a partition keeps a lag for good. Causes:

1. ``Recovery.on_recovery_completed`` resumes the stream partitions *before* it seeks them
   to their committed offsets, while message flow is already on (recovery turned it on to
   read the changelogs). Messages delivered in that window are redelivered after the seek
   and one can end up dropped and never acknowledged. Upstream fixed this ordering for
   apps without tables (faust-streaming#216, PR #217), not for this path.
2. The seek only moves partitions with a committed offset above 0 (aiokafka's
   ``seek_to_committed``); a partition that never had a commit keeps whatever position it
   got while paused, and messages written before the worker was ready were skipped.

The fix seeks while the stream partitions are still paused, moves partitions without a
committed offset to their beginning (the configured ``earliest``), and resumes them
afterwards; everything else is upstream's ``on_recovery_completed`` as of 0.15.3. It is installed
through Faust's documented ``TableManager`` setting (see ``agents/runtime.make_app``).

That fix narrows the window but did not close it: in about one restart in four the
tests still saw a partition whose fetch position had moved past records that never
reached an agent (Faust's fetch loop drops records it fetched while the flow was
changing, and the consumer thread's fetch can straddle the resume). Nothing then
moves that partition again until the next rebalance, so ``PartitionWatchdog`` checks
every few seconds for exactly that state (fetched past the committed offset, nothing of
the partition in flight or waiting for its commit, no progress across checks) and
seeks the partition back to its committed offset. The redelivered messages are handled
again, which every stage tolerates (they are idempotent); each rewind is logged and
counted (``graphrag_partition_rewinds``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.metrics import PARTITION_REWINDS

log = logging.getLogger("graphrag.agents")


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


@dataclass(frozen=True)
class PartitionState:
    """What the watchdog sees of one input partition at one check."""

    position: int           # the consumer's next fetch offset
    committed: int          # the group's committed offset (the next message to handle)
    in_flight: bool         # a message of this partition is delivered and not yet acked


def stalled_partitions(now: Mapping[TP, PartitionState], before: Mapping[TP, PartitionState]) -> list[TP]:
    """Partitions fetched past their commit with nothing in flight and no progress since the last check.

    Commits happen every second, so a healthy partition never keeps ``position >
    committed`` with nothing in flight across two checks seconds apart; if it does, the
    records between them were fetched and lost on the way to the agent.
    """
    return sorted((tp for tp, st in now.items()
                   if st.position > st.committed and not st.in_flight and before.get(tp) == st),
                  key=lambda tp: (tp.topic, tp.partition))


class PartitionWatchdog:
    """Rewinds input partitions whose fetched records never reached an agent (see module doc)."""

    def __init__(self, app: Any, stage: str, interval: float = 5.0) -> None:
        self.app, self.stage, self.interval = app, stage, interval
        self._before: dict[TP, PartitionState] = {}

    def install(self) -> None:
        self.app.timer(self.interval, name=f"{self.stage}-partition-watchdog")(self.check)

    async def observe(self) -> dict[TP, PartitionState]:
        consumer: Any = self.app.consumer
        in_flight = {m.tp for m in list(consumer.unacked) if not m.acked}
        states: dict[TP, PartitionState] = {}
        for tp in self._inputs(consumer.assignment(), consumer):
            position = await consumer.position(tp)
            if position is None:
                continue
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                if position == 0:
                    continue
                committed = (await consumer.earliest_offsets(tp)).get(tp) or 0
            states[tp] = PartitionState(position, committed, tp in in_flight)
        return states

    def _inputs(self, assignment: Iterable[TP], consumer: Any) -> list[TP]:
        return [tp for tp in assignment
                if not consumer._is_changelog_tp(tp) and tp not in consumer._paused_partitions]

    async def check(self) -> list[TP]:
        app: Any = self.app
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            self._before = {}
            return []
        try:
            now = await self.observe()
        except Exception as exc:  # a rebalance between two calls, a broker hiccup: check again later
            log.info("partition watchdog skipped a check: %r", exc)
            self._before = {}
            return []
        stalled = stalled_partitions(now, self._before)
        for tp in stalled:
            st = now[tp]
            log.warning("partition %s[%d] fetched up to offset %d but messages from %d on never reached "
                        "the agent; rewinding to %d", tp.topic, tp.partition, st.position, st.committed,
                        st.committed)
            await app.consumer.seek(tp, st.committed)
            PARTITION_REWINDS.labels(self.stage, tp.topic).inc()
            now.pop(tp)
        self._before = now
        return stalled
