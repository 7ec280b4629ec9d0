"""Read the dead-letter topic from the beginning without joining a consumer group: records, counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from streams.kafka.dlq import DeadLetterRecord, parse_headers
from streams.kafka.from_beginning import read_from_beginning
from streams.kafka.topics import topics_for
from streams.settings import Settings


def iter_dead_letters(settings: Settings, *, timeout: float = 10.0,
                      with_values: bool = True) -> Iterator[DeadLetterRecord]:
    """Every DLQ record up to the end of the topic as it was when reading started.

    Without values, ``key`` and ``value`` are empty (the broker still sends them; we only
    skip keeping them).
    """
    for msg in read_from_beginning(settings, topics_for(settings).dlq, group_id="graphrag-dlq-reader",
                                   timeout=timeout):
        key, value = (msg.key(), msg.value()) if with_values else (None, b"")
        yield DeadLetterRecord(msg.partition() or 0, msg.offset() or 0, _as_bytes(key), _as_bytes(value) or b"",
                               parse_headers(_header_list(msg.headers())))


def read_dead_letters(settings: Settings, *, limit: int = 1000, timeout: float = 10.0) -> list[DeadLetterRecord]:
    """Every DLQ record up to the current end of the topic (at most ``limit``)."""
    return list(islice(iter_dead_letters(settings, timeout=timeout), limit))


@dataclass(frozen=True)
class DeadLetterCounts:
    total: int
    by_stage: dict[str, int]
    by_reason: dict[str, int]


def count_dead_letters(settings: Settings, *, timeout: float = 10.0) -> DeadLetterCounts:
    """How many dead letters, per stage and per reason, reading only their headers."""
    stages: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for r in iter_dead_letters(settings, timeout=timeout, with_values=False):
        stages[r.headers.get("stage", "?")] += 1
        reasons[r.headers.get("reason", "?")] += 1
    return DeadLetterCounts(sum(stages.values()), dict(stages), dict(reasons))


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def _header_list(headers: Any) -> list[tuple[str, bytes | None]]:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items]
