"""Read a whole topic from its first offset with a consumer that joins no group.

Two readers need every record of a topic rather than a share of its partitions: the DLQ
tools (up to the end the topic had when reading started) and every resolver's alias table
(to the end, then following it). Assigning every partition directly, with no group and no
committed offsets, keeps them out of rebalances and leaves no state behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.kafka.clients import client_config
from streams.kafka.offsets import watermarks
from streams.settings import Settings

log = logging.getLogger(__name__)


def read_from_beginning(settings: Settings, topic: str, *, group_id: str, timeout: float = 10.0,
                        follow: bool = False, stop: threading.Event | None = None,
                        on_caught_up: Callable[[], None] | None = None) -> Iterator[Any]:
    """Every message of ``topic`` (confluent-kafka ``Message`` objects), oldest first per partition.

    Without ``follow``: up to the end offsets at the start, then return; a topic that does
    not exist reads as empty. With ``follow``: wait for the topic to exist, then keep
    reading until ``stop`` is set. Either way ``on_caught_up`` is called once, when every
    partition has reached the end it had at the start (an empty topic: at once), so a
    reader that returns without it was cut short. ``group_id`` only names the client to the broker.
    """
    stop = stop or threading.Event()
    consumer = Consumer({**client_config(settings.kafka), "group.id": group_id,
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        md = _topic_metadata(consumer, topic, timeout, wait=follow, stop=stop)
        if md is None:
            return
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions]
        pending: dict[int, int] = {}  # partition -> end offset at the start
        for tp in parts:
            low, high = watermarks(consumer, tp, timeout)
            if high > low:
                pending[tp.partition] = high
        caught_up = _Once(on_caught_up)
        if not pending:
            caught_up()
        if not follow:
            parts = [tp for tp in parts if tp.partition in pending]
            if not parts:
                return
        consumer.assign(parts)
        while not stop.is_set() and (follow or pending):
            msg = consumer.poll(0.5 if follow else timeout)
            if msg is None:
                if follow:
                    continue
                return  # nothing within the timeout: the broker went away, or nothing is left
            partition = msg.partition() or 0
            err = msg.error()
            if err is None:
                yield msg
            elif err.code() != KafkaError._PARTITION_EOF:
                continue
            if err is not None or (msg.offset() or 0) + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
                if not pending:
                    caught_up()
    finally:
        consumer.close()


def _topic_metadata(consumer: Consumer, topic: str, timeout: float, *, wait: bool, stop: threading.Event) -> Any:
    while not stop.is_set():
        md = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is not None and md.error is None:
            return md
        if not wait:
            return None
        log.warning("topic %s not found yet", topic)
        time.sleep(2)
    return None


class _Once:
    def __init__(self, fn: Callable[[], None] | None) -> None:
        self.fn = fn

    def __call__(self) -> None:
        if self.fn is not None:
            fn, self.fn = self.fn, None
            fn()
