"""Every partition gets its turn: a stream buffer that hands out the fetched messages of its
partitions in rotation instead of in fetch order (a fix for faust-streaming 0.15.3).

Faust keeps one FIFO buffer per agent, shared by all of the agent's ``concurrency``
handlers (``faust/agents/agent.py`` ``_on_start_supervisor``), and fills it as fast as it
fetches: up to ``stream_buffer_maxsize`` (4,096) messages, whatever the handlers can get
through. aiokafka hands over the records of one partition's fetch response before those of
the next (``aiokafka/consumer/fetcher.py`` ``fetched_records``), so a backlog arrives as a
run of one partition, then a run of the next. When the handlers are slower than the
fetches (the extract stage: calls of seconds, bound by the call slots or the token
budget), the first message of the partition fetched last waits behind every message
fetched before it, minutes of work. It is neither handled nor committed meanwhile, so the
stall check (``agents/stall.py``) rightly reports the partition: lag and no progress for
``stall_seconds`` while its head message is not being handled. Caught in the LLM chaos
test's clean run (token budget bound, three partitions): ``chunks[2] (lag 102 at offset
0)``, with partition 2's 102 records buffered behind 96 of partition 0 and 104 of 1.

The fix is at that buffer: one FIFO per partition, taken from in turn (round robin over
the partitions that have buffered messages). The order within a partition is kept (what
Kafka promises and the commit bookkeeping assumes); a partition's head waits for at most
one message of each other partition. Items without a partition (values a stream sends to
itself, an outbox) share one FIFO of their own. Faust's flow control sees the same queue
(its size, ``clear`` on resume, the pressure callbacks).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from mode.utils.queues import ThrowableQueue

T = TypeVar("T")


def partition_of(item: Any) -> Hashable:
    """The topic partition an event came from (None for anything that has none)."""
    message = getattr(item, "message", None)
    return getattr(message, "tp", None)


class RoundRobin(Generic[T]):
    """A FIFO per key, taken from in turn; the ``deque`` methods ``asyncio.Queue`` uses."""

    def __init__(self, key: Callable[[T], Hashable]) -> None:
        self._key = key
        self._lanes: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._size = 0

    def append(self, item: T) -> None:
        key = self._key(item)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()  # a new key takes its turn after those waiting
        lane.append(item)
        self._size += 1

    def popleft(self) -> T:
        if not self._lanes:
            raise IndexError("pop from an empty RoundRobin")
        key, lane = next(iter(self._lanes.items()))
        item = lane.popleft()
        self._size -= 1
        if lane:
            self._lanes.move_to_end(key)  # its next item after one of every other key
        else:
            del self._lanes[key]
        return item

    def clear(self) -> None:
        self._lanes.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[T]:
        """Every item, lane by lane (for repr and inspection; not the order they are taken in)."""
        for lane in self._lanes.values():
            yield from lane


class PartitionFairQueue(ThrowableQueue[Any]):
    """Faust's stream buffer (``ThrowableQueue``) that hands out partitions in turn."""

    def _init(self, maxsize: int) -> None:  # asyncio.Queue's hook for its container
        self._queue = RoundRobin(partition_of)
