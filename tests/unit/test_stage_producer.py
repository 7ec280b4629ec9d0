"""The stages' Kafka producer (agents/runtime.make_app): a burst of output goes out in one
produce request, not in Faust's 16 KiB batches, and records sent a few milliseconds apart
share a request instead of one request each.

aiokafka keeps one produce request in flight per broker, and a request holds one batch per
partition: with 16 KiB batches, 300 messages of 5 KB to 3 partitions took 47 requests one
after the other (0.03-0.06 s), with batches as large as a request may be 1 (0.01-0.02 s)
(measured with aiokafka alone on the local broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from agents.runtime import make_app
from streams.kafka.topics import Stage
from streams.settings import load_settings
from tests.support import ROOT

T = TypeVar("T")
SETTINGS = load_settings(ROOT / "config" / "development.yaml", env={})


def _of_producer(stage: Stage, read: Callable[[Any], T]) -> T:
    """``read`` applied to the aiokafka producer that the stage's app creates."""
    app = make_app(stage, SETTINGS)

    async def made() -> T:
        producer = app.producer._new_producer()
        try:
            return read(producer)
        finally:
            await producer.stop()

    return asyncio.run(made())


def test_a_batch_may_fill_a_whole_produce_request() -> None:
    batch, request = _of_producer(Stage.ASSEMBLE, lambda p: (p._message_accumulator._batch_size, p._max_request_size))
    assert request >= SETTINGS.security.max_message_bytes  # a message of the largest size fits
    assert batch == request  # Faust's default is 16,384


def test_a_batch_lingers_for_the_records_that_follow_it() -> None:
    linger = _of_producer(Stage.ROUTE, lambda p: float(p._message_accumulator._linger_time))
    assert linger == 0.02  # Faust's default is 0: a request per send
