"""The fetch rule that replaces faust-streaming 0.15.3's (agents/faust_fetch.py).

Upstream passes its live set of active partitions to aiokafka; when the set is empty for a
moment (the end of table recovery) aiokafka returns every partition's buffered records,
Faust skips them because their partitions are paused, and they are never fetched again.
The restart tests in tests/integration/test_entity_resolution.py show it on the real
broker; these show the rule itself, with a stand-in for the consumer thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from agents.faust_fetch import ActiveOnlyFetchConsumer, split_fetched


@dataclass(frozen=True)
class Record:
    offset: int


MENTIONS = TP("resolve.mentions", 0)
CHANGELOG = TP("resolve-blocks-changelog", 0)


def test_records_of_partitions_that_will_be_delivered_are_kept() -> None:
    keep, rewind = split_fetched({MENTIONS: [Record(5), Record(6)]}, {MENTIONS})
    assert keep == {MENTIONS: [Record(5), Record(6)]} and rewind == {}


def test_records_of_a_paused_partition_are_rewound_to_their_first_offset() -> None:
    keep, rewind = split_fetched({MENTIONS: [Record(6), Record(5)], CHANGELOG: [Record(2)]}, {CHANGELOG})
    assert keep == {CHANGELOG: [Record(2)]}
    assert rewind == {MENTIONS: 5}


class StandInThread:
    """The consumer thread: fetches run while the event loop changes the live set."""

    def __init__(self, buffered: dict[TP, list[Record]], during_fetch: Callable[[], None]) -> None:
        self.buffered, self.during_fetch = buffered, during_fetch
        self.fetched_with: list[Any] = []
        self.seeks: list[tuple[TP, int]] = []

    async def getmany(self, partitions: Any, timeout: float) -> dict[TP, list[Record]]:
        self.during_fetch()
        self.fetched_with.append(partitions)
        # aiokafka's rule: an empty (falsy) set means every partition.
        return {tp: rs for tp, rs in self.buffered.items() if not partitions or tp in partitions}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TP]:
        return {MENTIONS, CHANGELOG}


def _consumer(thread: StandInThread) -> ActiveOnlyFetchConsumer:
    from agents.runtime import make_app
    from streams.kafka.topics import Stage
    from streams.settings import load_settings
    from tests.support import ROOT

    app = make_app(Stage.RESOLVE, load_settings(ROOT / "config" / "development.yaml", env={}))
    consumer = app.consumer
    assert isinstance(consumer, ActiveOnlyFetchConsumer)
    consumer._thread = thread  # type: ignore[assignment]
    return consumer


def test_a_partition_paused_during_the_fetch_is_rewound_not_skipped() -> None:
    # Recovery is ending: only the changelog is active, and it is paused while the fetch
    # waits in the consumer thread. Upstream's fetch then sees an empty set and returns the
    # stream partition's records, which Faust skips: offset 5 was lost exactly so.
    holder: dict[str, Any] = {}

    def pause_changelog() -> None:
        holder["consumer"].pause_partitions({CHANGELOG})

    thread = StandInThread({MENTIONS: [Record(5)], CHANGELOG: [Record(2)]}, pause_changelog)
    consumer = holder["consumer"] = _consumer(thread)
    consumer._set_active_tps({CHANGELOG})
    consumer._paused_partitions = {MENTIONS}
    records = asyncio.run(consumer._getmany(consumer._get_active_partitions(), 1.0))
    assert thread.fetched_with == [frozenset({CHANGELOG})]  # a frozen copy, not the live set
    assert MENTIONS not in records  # never handed to Faust's skip
    assert (CHANGELOG, 2) in thread.seeks  # paused meanwhile: fetched again after resume
    assert consumer._read_offset[CHANGELOG] == 2


def test_an_empty_set_fetches_nothing() -> None:
    thread = StandInThread({MENTIONS: [Record(5)]}, lambda: None)
    consumer = _consumer(thread)
    assert asyncio.run(consumer._getmany(set(), 1.0)) == {}
    assert thread.fetched_with == [] and thread.seeks == []


def test_the_broker_holds_an_empty_fetch_for_a_tenth_of_a_second_not_faust_s_one_and_a_half() -> None:
    """A record on a partition left out of the fetch in flight waits for it to return."""
    from aiokafka import AIOKafkaConsumer

    from agents.faust_fetch import FETCH_MAX_WAIT_MS
    from agents.runtime import make_app
    from streams.kafka.topics import Stage
    from streams.settings import load_settings
    from tests.support import ROOT

    app = make_app(Stage.CHUNK, load_settings(ROOT / "config" / "development.yaml", env={}))

    async def fetch_wait() -> int:
        thread = app.consumer._new_consumer_thread()
        consumer: AIOKafkaConsumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert FETCH_MAX_WAIT_MS <= 500  # Kafka's own consumer's default; Faust fixes 1,500
    assert asyncio.run(fetch_wait()) == FETCH_MAX_WAIT_MS
