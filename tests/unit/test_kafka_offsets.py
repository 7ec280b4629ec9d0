"""Offsets read while a partition's leader is not ready: asked again, within the timeout."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.kafka.offsets import watermarks, worth_asking_again


class AnswersAfter:
    """A consumer whose watermark request fails with ``errors`` in turn, then answers."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.asked = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.asked += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 3, 17


TP = TopicPartition("graphrag.dlq", 0)


def test_a_partition_without_a_leader_yet_is_asked_again() -> None:
    c = AnswersAfter(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert watermarks(c, TP, timeout=5) == (3, 17)  # type: ignore[arg-type]
    assert c.asked == 3


def test_an_error_that_no_second_request_mends_is_raised_at_once() -> None:
    c = AnswersAfter(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException) as raised:
        watermarks(c, TP, timeout=5)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert c.asked == 1


def test_a_partition_that_never_gets_a_leader_fails_after_the_timeout() -> None:
    c: Any = AnswersAfter(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    started = time.monotonic()
    with pytest.raises(KafkaException):
        watermarks(c, TP, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert 2 <= c.asked < 1000


@pytest.mark.parametrize("code", [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT])
def test_leadership_answers_are_worth_asking_again(code: int) -> None:
    assert worth_asking_again(KafkaError(code))


def test_a_refusal_is_not_worth_asking_again() -> None:
    assert not worth_asking_again(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
