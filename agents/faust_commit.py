"""Never commit past a message that was not handled: a fix for faust-streaming 0.15.3's
commit bookkeeping (upstream issue faust-streaming#606, fix PR #707 not released).

Faust commits the end of the first run of consecutive acknowledged offsets, and guards
the head of that run only against gaps of *more than one*: with the committed offset at
34 and offsets 35, 36 acknowledged it commits 37, although 34 was never handled. That is
what happens to a message still in flight under ``concurrency`` (the extract stage), and
to one Faust fetched but never delivered or skipped during a rebalance (an event of an
older generation). After the next restart that message is gone: the chaos test lost a
chunk exactly so (kill -9 of the assemble app: the chunk's extraction never reached its
table, its video never finished, every lag 0).

The one-offset slack exists because Faust records a gap in the fetched offsets (a
compacted or retention-trimmed topic) from one past the committed offset, not from it;
:func:`committable_offset` keeps that case and refuses the others. A refused head stays
uncommitted: the partition keeps its lag, the stall check (``agents/stall.py``) sees no
progress and restarts the app, and the message is redelivered. Loud, never lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from agents.faust_fair import PartitionFairQueue
from agents.faust_fetch import ActiveOnlyFetchConsumer


def committable_offset(acked: Sequence[int], committed: int | None, gap_starts: Iterable[int],
                       in_flight: Iterable[int]) -> tuple[int | None, int]:
    """The offset to commit for one partition, and how many of ``acked`` (sorted, recorded
    gaps already merged in) it covers.

    ``committed`` is the next offset to handle (None: nothing committed yet),
    ``gap_starts`` where Faust's recorded gaps begin, ``in_flight`` the offsets delivered
    and not yet acknowledged.
    """
    if not acked:
        return None, 0
    # A head after the committed offset: only a gap Faust recorded from committed + 1 (its
    # off-by-one) may skip it.
    if committed is not None and acked[0] > committed and not (
            acked[0] == committed + 1 and committed + 1 in set(gap_starts)):
        return None, 0
    cap = min(in_flight, default=None)
    run = 1
    while run < len(acked) and acked[run] == acked[run - 1] + 1:
        run += 1
    if cap is not None:
        run = sum(1 for o in acked[:run] if o < cap)
        if run == 0:
            return None, 0
    return acked[run - 1] + 1, run


class SafeCommitConsumer(ActiveOnlyFetchConsumer):
    """aiokafka Consumer whose commit bookkeeping never skips an unhandled offset (and whose
    fetches never skip a record: :mod:`agents.faust_fetch`)."""

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        gap_for_tp = self._gap[tp]
        gap_starts = [iv.begin for iv in gap_for_tp]
        max_offset = max(acked)
        if gap_for_tp:  # as upstream: fill recorded gaps up to the highest acked offset
            candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda iv: iv.begin)
            if candidates:
                filled = [o for iv in candidates for o in range(iv.begin, iv.end)]
                acked.extend(filled)
                gap_for_tp.chop(0, max(filled[-1], max_offset + 1))
        acked.sort()
        in_flight = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]
        offset, used = committable_offset(acked, self._committed_offset[tp], gap_starts, in_flight)
        if offset is None:
            return None
        done = acked[:used]
        acked[:used] = []
        self._acked_index[tp].difference_update(done)
        return offset


class SafeCommitTransport(aiokafka_driver.Transport):
    Consumer = SafeCommitConsumer


class SafeCommitApp(faust.App):
    """faust.App on the aiokafka transport with :class:`SafeCommitConsumer`, whose stream
    buffers hand out their partitions in turn (:mod:`agents.faust_fair`)."""

    def _new_transport(self) -> Any:
        return SafeCommitTransport(self.conf.broker_consumer, self)

    def FlowControlQueue(self, maxsize: int | None = None, *,
                         clear_on_resume: bool = False) -> PartitionFairQueue:
        return PartitionFairQueue(maxsize=maxsize, flow_control=self.flow_control, clear_on_resume=clear_on_resume)
