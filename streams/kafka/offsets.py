"""Reading a partition's offsets while its leader may not be serving it yet.

Just after a topic is created, or while leadership moves (a broker restart), the broker
answers a ListOffsets request with "not leader for partition" or "leader not available"
until the partition is ready. librdkafka does not flag every such answer retriable (the
first failed a lag reading and a test's read of a new DLQ topic), so every reader of
offsets here asks again on them, within its timeout.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

#: Answers about a partition whose leader is moving or not elected yet.
LEADERSHIP_ERRORS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                               KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT,
                               KafkaError._TIMED_OUT})


def worth_asking_again(err: KafkaError) -> bool:
    """Whether an offsets request that failed with ``err`` may succeed if sent again."""
    return bool(err.retriable()) or err.code() in LEADERSHIP_ERRORS


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """A partition's low and high offsets, asked again while the partition is not ready,
    until ``timeout`` seconds have passed (then the last error is raised)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            if not worth_asking_again(exc.args[0]) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
