"""Never fetch past a record that is not delivered: a fix for a lost-record race in
faust-streaming 0.15.3 on aiokafka.

Faust hands aiokafka its *live* set of active partitions for every fetch, and the fetch
runs in the consumer thread while the event loop keeps changing that set. aiokafka reads
an empty set as "every partition", and Faust, back on the event loop, silently skips the
records of partitions that are not active (``faust/transport/consumer.py``, ``getmany``).
aiokafka has advanced the position past them by then, and nothing seeks back.

That is what happens at the end of table recovery: Faust pauses the changelog partitions
while the stream partitions are still paused, the set is empty for a moment, and a fetch
that is waiting in the consumer thread returns the records that aiokafka fetched in the
background for the (aiokafka-unpaused) stream partitions. They are dropped, the group's
committed offset stays at the first of them, and the partition never moves again: a
table app (resolve, assemble) kept lag 1 after every restart, because a restart recovers
the table again and repeats the race. Caught in the act by logging Faust's skip:
``resolve.mentions[0] 5 active=[]``, with aiokafka's position at 6 and committed 5.

The fix: each fetch gets a frozen copy of the set (an empty one fetches nothing), and the
records of a partition that stopped being active while the fetch ran are not dropped but
rewound to, with Faust's own ``seek`` (so its read offset agrees), to be fetched again when
the partition is resumed.

Also here, as it is the same consumer: the broker holds an empty fetch for
``FETCH_MAX_WAIT_MS``, not Faust's fixed 1.5 s, which delayed records between stages.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as aiokafka_driver

TP = TypeVar("TP")


def split_fetched(records: Mapping[TP, Sequence[Any]], deliverable: Collection[TP]
                  ) -> tuple[dict[TP, Sequence[Any]], dict[TP, int]]:
    """The records Faust will deliver, and where to rewind every other partition to
    (its first fetched offset) so that none of its records is skipped."""
    keep: dict[TP, Sequence[Any]] = {}
    rewind: dict[TP, int] = {}
    for tp, batch in records.items():
        if tp in deliverable:
            keep[tp] = batch
        elif batch:
            rewind[tp] = min(r.offset for r in batch)
    return keep, rewind


#: How long the broker may hold a fetch that found no new records (aiokafka's
#: ``fetch_max_wait_ms``). Faust fixes it at 1,500 ms, and aiokafka has one fetch in flight per
#: broker, for the partitions whose fetched records were all handed out when it was sent: a
#: record that arrives meanwhile on another partition of that broker waits until the held fetch
#: returns. Traced in benchmarks/pipeline.py (--trace): transcripts produced 0.9 s after the
#: requests were chunked only at 2.5 s, in about one run of two; every stage is such a hop.
#: Kafka's own consumer waits 500 ms. The price is idle fetches: the 8 apps of an idle worker and
#: the broker used 7.5 % of a core at 1,500 ms, 9.8 % at 250 ms, 13.7 % at 100 ms.
FETCH_MAX_WAIT_MS = 250


class ShortFetchWaitThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread with ``FETCH_MAX_WAIT_MS`` instead of its fixed 1,500 ms."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka (0.14) keeps the setting here until it starts its fetcher; a version that
        # does not would silently keep Faust's 1.5 s, so it stops the stage instead.
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka's consumer has no _fetch_max_wait_ms: agents/faust_fetch.py "
                               "cannot set the fetch wait on this aiokafka version")
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class ActiveOnlyFetchConsumer(aiokafka_driver.Consumer):
    """aiokafka Consumer whose fetches return only records that Faust will deliver."""

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        if active_partitions is None:  # a client-only app: every partition, as upstream
            return await self._thread.getmany(None, timeout)
        snapshot = frozenset(active_partitions)
        if not snapshot:  # aiokafka would read an empty set as "every partition"
            return {}
        records = await self._thread.getmany(snapshot, timeout)  # type: ignore[arg-type]
        deliverable = self._get_active_partitions() | self._buffered_partitions
        keep, rewind = split_fetched(records, deliverable)
        if rewind:
            assigned = self.assignment()
            for tp, offset in rewind.items():
                if tp not in assigned:  # revoked meanwhile: its next owner starts at the commit
                    continue
                self.log.info("Rewinding %r to %r: fetched while it was paused", tp, offset)
                try:
                    await self.seek(tp, offset)
                except IllegalStateError:  # revoked while seeking: the same
                    self.log.info("Not rewinding %r: no longer assigned", tp)
        return keep
