"""`dlq replay`: which dead letters go back, with what headers, and why a redrive cannot loop:
the pure rules (plan_redrive over hand-made records).

The command against the real broker: tests/integration/test_redrive.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.jobs.redrive import InvalidTime, RedriveFilter, parse_time, plan_redrive, redrive_headers
from streams.kafka.dlq import CONNECT_PREFIX, DeadLetter, DeadLetterRecord, Origin, parse_headers, parse_redrive_headers

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TOPICS = ["p.videos.requested", "p.transcripts.chunks"]


def _record(offset: int, *, stage: str = "fetch", reason: str = "transcript_not_found",
            topic: str = "p.videos.requested", key: bytes | None = b"dQw4w9WgXcQ",
            value: bytes = b'{"video_id": "dQw4w9WgXcQ"}', failed_at: datetime = NOW,
            attempt: int | None = None, redriven_from: tuple[int, int] | None = None) -> DeadLetterRecord:
    origin = None if redriven_from is None else parse_redrive_headers(
        [("graphrag.redrive.dlq.partition", str(redriven_from[0]).encode()),
         ("graphrag.redrive.dlq.offset", str(redriven_from[1]).encode()),
         ("graphrag.redrive.attempt", str(attempt - 1 if attempt else 1).encode())])
    letter = DeadLetter(stage=stage, reason=reason, error_class="BadMessage", message="m",
                        origin=Origin(topic, 0, 7, 1_700_000_000_000), key=key, value=value,
                        failed_at=failed_at, redriven_from=origin)
    return DeadLetterRecord(0, offset, key, value, parse_headers(letter.headers()))


def _plan(records: list[DeadLetterRecord], wanted: RedriveFilter | None = None, max_attempts: int = 3) -> Any:
    return plan_redrive(records, wanted or RedriveFilter(), dlq_topic="p.dlq", allowed_topics=TOPICS,
                        max_attempts=max_attempts, now=NOW)


def test_a_dead_letter_counts_its_attempts_and_names_the_record_it_was_redriven_from() -> None:
    first = _record(3)
    assert first.headers["attempt"] == "1" and "redriven.from.offset" not in first.headers
    # What a redrive of that record puts on the message, read back as a stage reads it.
    incoming = redrive_headers(first, dlq_topic="p.dlq", now=NOW)
    origin = parse_redrive_headers(incoming)
    assert origin is not None and (origin.dlq_partition, origin.dlq_offset, origin.attempt) == (0, 3, 1)
    again = DeadLetter(stage="fetch", reason="invalid_json", error_class="BadMessage", message="m",
                       origin=Origin("p.videos.requested", 1, 9), key=None, value=b"x", redriven_from=origin)
    h = parse_headers(again.headers())
    assert (h["attempt"], h["redriven.from.partition"], h["redriven.from.offset"]) == ("2", "0", "3")
    # A message that was never redriven, or whose headers are not ours, counts as a first failure.
    assert parse_redrive_headers(None) is None
    assert parse_redrive_headers([("graphrag.redrive.attempt", b"x")]) is None
    assert parse_redrive_headers({"graphrag.redrive.dlq.partition": b"0", "graphrag.redrive.dlq.offset": b"1",
                                  "graphrag.redrive.attempt": b"2"}) is not None


def test_dead_letter_headers_carry_kafka_connects_names_too() -> None:
    letter = DeadLetter(stage="extract", reason="invalid_json", error_class="BadMessage", message="bad",
                        origin=Origin("p.transcripts.chunks", 2, 41), key=b"k", value=b"{")
    connect = {k[len(CONNECT_PREFIX):]: v.decode() for k, v in letter.headers() if k.startswith(CONNECT_PREFIX)}
    assert connect["topic"] == "p.transcripts.chunks"
    assert (connect["partition"], connect["offset"]) == ("2", "41")
    assert connect["stage"] == "VALUE_CONVERTER"  # a decoding failure, as Connect's converters report it
    assert connect["exception.class.name"] == "BadMessage"
    assert connect["exception.message"] == "invalid_json: bad"
    assert connect["connector.name"] == "graphrag-streams-extract"
    other = DeadLetter(stage="fetch", reason="transcript_not_found", error_class="TranscriptError", message="m",
                       origin=Origin("t", 0, 0), key=None, value=b"")
    assert dict(other.headers())[CONNECT_PREFIX + "stage"] == b"TRANSFORMATION"


def test_filters_choose_by_stage_reason_video_and_time() -> None:
    a = _record(0)
    b = _record(1, stage="extract", reason="invalid_json", topic="p.transcripts.chunks",
                key=b"chunk-key", value=b'{"video_id": "Pw0IZg7_4mo", "index": 3', failed_at=NOW - timedelta(days=2))
    c = _record(2, key=b"Pw0IZg7_4mo", value=b'{"video_id": "Pw0IZg7_4mo"}', failed_at=NOW - timedelta(hours=1))

    def chosen(wanted: RedriveFilter) -> list[int]:
        return [r.record.offset for r in _plan([a, b, c], wanted).send]

    assert chosen(RedriveFilter()) == [0, 1, 2]
    assert chosen(RedriveFilter(stages=frozenset({"extract"}))) == [1]
    assert chosen(RedriveFilter(reasons=frozenset({"transcript_not_found"}))) == [0, 2]
    # The video is the value's video_id when the value is JSON, else the key.
    assert chosen(RedriveFilter(videos=frozenset({"Pw0IZg7_4mo"}))) == [2]
    assert chosen(RedriveFilter(videos=frozenset({"chunk-key"}))) == [1]
    assert chosen(RedriveFilter(since=NOW - timedelta(hours=2))) == [0, 2]
    assert chosen(RedriveFilter(until=NOW - timedelta(minutes=30))) == [1, 2]
    assert chosen(RedriveFilter(since=NOW - timedelta(days=3), until=NOW - timedelta(days=1))) == [1]
    plan = _plan([a, b, c], RedriveFilter(stages=frozenset({"sink"})))
    assert plan.send == [] and plan.not_matching == 3


def test_a_redrive_goes_to_the_original_topic_with_the_key_and_the_original_bytes() -> None:
    rec = _record(5, key=b"dQw4w9WgXcQ", value=b'{"video_id": "dQw4w9WgXcQ", "x": 1}')
    (only,) = _plan([rec]).send
    assert (only.message.topic, only.message.key, only.message.value) == (
        "p.videos.requested", b"dQw4w9WgXcQ", b'{"video_id": "dQw4w9WgXcQ", "x": 1}')
    h = {k: v.decode() for k, v in only.message.headers}
    assert h == {"graphrag.redrive.dlq.topic": "p.dlq", "graphrag.redrive.dlq.partition": "0",
                 "graphrag.redrive.dlq.offset": "5", "graphrag.redrive.attempt": "1",
                 "graphrag.redrive.reason": "transcript_not_found", "graphrag.redrive.at": NOW.isoformat()}


def test_superseded_exhausted_and_unroutable_records_stay_in_the_dlq() -> None:
    first = _record(0, reason="invalid_json")
    second = _record(1, reason="invalid_json", attempt=2, redriven_from=(0, 0))
    third = _record(2, reason="invalid_json", attempt=3, redriven_from=(0, 1))
    plan = _plan([first, second])
    assert [r.record.offset for r in plan.send] == [1] and plan.superseded == 1
    plan = _plan([first, second, third])
    assert plan.send == [] and [r.offset for r in plan.exhausted] == [2] and plan.superseded == 2
    assert [r.record.offset for r in _plan([first, second, third], max_attempts=4).send] == [2]
    # A header naming a topic outside the deployment is never followed.
    stray = _record(3, topic="someone.elses.topic")
    plan = _plan([stray])
    assert plan.send == [] and plan.unroutable[0][1] == "'someone.elses.topic' is not a topic of this deployment"


def test_times_are_iso_or_a_duration_ago() -> None:
    assert parse_time("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_time("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_time("1.5d", now=NOW) == NOW - timedelta(days=1.5)
    assert parse_time("2026-12-01T10:00") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert parse_time("2026-12-01T10:00+01:00") == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(InvalidTime, match="'yesterday' is not an ISO 8601 time"):
        parse_time("yesterday")
