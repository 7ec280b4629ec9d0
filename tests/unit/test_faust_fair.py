"""The stream buffer that hands out partitions in turn (agents/faust_fair.py).

Faust's own buffer is one FIFO in fetch order: a partition fetched after a backlog of
another waits behind all of it (the LLM chaos test's stall: chunks[2] at offset 0 behind
200 messages of partitions 0 and 1)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from agents.faust_fair import PartitionFairQueue, RoundRobin, partition_of


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    tp: TP
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message


def events(partition: int, n: int, start: int = 0) -> list[Event]:
    return [Event(Message(TP("chunks", partition), o)) for o in range(start, start + n)]


def where(e: Event) -> tuple[int, int]:
    return e.message.tp.partition, e.message.offset


def drain(q: ThrowableQueue) -> list[tuple[int, int]]:
    out = []
    while not q.empty():
        out.append(where(q.get_nowait()))
    return out


def backlog(q: ThrowableQueue) -> None:
    """What aiokafka hands over after a backlog: a run of partition 0, then 1, then 2."""
    for e in events(0, 4) + events(1, 3) + events(2, 2):
        q.put_nowait(e)


def test_a_partition_fetched_last_is_served_in_turn() -> None:
    q = PartitionFairQueue(maxsize=100, flow_control=FlowControlEvent())
    backlog(q)
    assert q.qsize() == 9
    assert drain(q) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (0, 3)]


def test_faust_s_own_buffer_serves_it_last() -> None:
    """What the fix replaces: the head of partition 2 behind every message fetched before it."""
    q = ThrowableQueue(maxsize=100, flow_control=FlowControlEvent())
    backlog(q)
    assert drain(q)[7] == (2, 0)


def test_order_within_a_partition_is_kept() -> None:
    q = PartitionFairQueue(maxsize=100, flow_control=FlowControlEvent())
    for e in events(0, 3) + events(1, 1) + events(0, 3, start=3):
        q.put_nowait(e)
    got = drain(q)
    assert [o for p, o in got if p == 0] == list(range(6))
    assert got[:2] == [(0, 0), (1, 0)]


def test_a_new_partition_waits_for_one_message_of_each_waiting_one() -> None:
    q = PartitionFairQueue(maxsize=100, flow_control=FlowControlEvent())
    for e in events(0, 5) + events(1, 5):
        q.put_nowait(e)
    assert where(q.get_nowait()) == (0, 0)
    q.put_nowait(events(2, 1)[0])
    assert drain(q)[:3] == [(1, 0), (0, 1), (2, 0)]


def test_items_without_a_partition_share_one_lane() -> None:
    rr: RoundRobin[object] = RoundRobin(partition_of)
    for item in ("a", events(0, 1)[0], "b"):
        rr.append(item)
    assert partition_of("a") is None
    assert len(rr) == 3 and len(list(rr)) == 3  # iterable, for Queue's repr
    assert [rr.popleft() for _ in range(3)][::2] == ["a", "b"]
    with pytest.raises(IndexError):
        rr.popleft()


def test_flow_control_sees_the_same_queue() -> None:
    """Size, fullness, clear on resume and errors behave as in Faust's own buffer."""
    async def run() -> None:
        flow = FlowControlEvent()
        q = PartitionFairQueue(maxsize=4, flow_control=flow, clear_on_resume=True)
        for e in events(0, 2) + events(1, 2):
            q.put_nowait(e)
        assert q.full() and q.qsize() == 4
        assert where(await q.get()) == (0, 0)
        flow.suspend()
        flow.resume()  # Faust clears its buffers when flow resumes after a rebalance
        assert q.empty() and q.qsize() == 0
        q.put_nowait(events(1, 1)[0])
        await q.throw(ValueError("decode"))
        with pytest.raises(ValueError):
            await q.get()
        assert where(await q.get()) == (1, 0)
    asyncio.run(run())


def test_the_apps_buffer_their_streams_in_the_fair_queue() -> None:
    from agents.runtime import make_app
    from streams.kafka.topics import Stage
    from streams.settings import load_settings
    from tests.support import ROOT

    app = make_app(Stage.EXTRACT, load_settings(ROOT / "config" / "development.yaml", env={}))
    topic = app.topic("chunks", key_type=bytes, value_type=bytes)
    assert isinstance(topic.clone(is_iterator=True).queue, PartitionFairQueue)
