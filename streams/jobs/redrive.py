"""Redrive dead letters: send chosen DLQ records back to the topic they failed on.

The choice is a plain function over records (:func:`plan_redrive`), so `dlq replay
--dry-run` shows exactly what a real run sends. Three rules keep a redrive from looping:

- a DLQ record that a later one names as its ``redriven.from`` is *superseded*: the message
  was redriven already and failed again, and only its newest dead letter is eligible;
- a record whose ``attempt`` reached ``max_attempts`` is *exhausted* and stays in the DLQ;
- a run reads the DLQ only up to its end as it was when the run started, so what fails
  again during the run waits for the next one.

A redrive that succeeded leaves its dead letter in place (Kafka records are immutable);
running the same replay again sends it once more, which the stages absorb: every write is an
idempotent upsert keyed by content IDs (the replay invariant of the pipeline tests).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streams.kafka.clients import OutgoingMessage
from streams.kafka.dlq import REDRIVE_PREFIX, DeadLetterRecord

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class InvalidTime(ValueError):
    """A --since/--until value that is neither ISO 8601 nor a duration such as 90m."""


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC) or a duration ago: ``45s``, ``90m``, ``2h``, ``7d``."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidTime(f"{text!r} is not an ISO 8601 time (2026-12-01T10:00) or a duration ago "
                          f"(45s, 90m, 2h, 7d)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RedriveFilter:
    """Which dead letters to redrive; an empty set means any."""

    stages: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    videos: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: DeadLetterRecord) -> bool:
        h = record.headers
        if self.stages and h.get("stage") not in self.stages:
            return False
        if self.reasons and h.get("reason") not in self.reasons:
            return False
        if self.videos and video_of(record) not in self.videos:
            return False
        if self.since is not None or self.until is not None:
            failed_at = failed_at_of(record)
            if failed_at is None:
                return False  # a time window was asked for and this record has no time
            if self.since is not None and failed_at < self.since:
                return False
            if self.until is not None and failed_at > self.until:
                return False
        return True


def video_of(record: DeadLetterRecord) -> str | None:
    """The video a dead letter belongs to: the JSON value's ``video_id``, else the message key."""
    try:
        data = json.loads(record.value)
    except (ValueError, UnicodeDecodeError):
        data = None
    video_id = data.get("video_id") if isinstance(data, dict) else None
    if isinstance(video_id, str):
        return video_id
    return record.key.decode("utf-8", "replace") if record.key else None


def failed_at_of(record: DeadLetterRecord) -> datetime | None:
    try:
        when = datetime.fromisoformat(record.headers.get("failed.at", ""))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def attempt_of(record: DeadLetterRecord) -> int:
    """How often the message has failed (records written before attempts were counted: 1)."""
    try:
        return max(1, int(record.headers.get("attempt", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Redrive:
    record: DeadLetterRecord
    message: OutgoingMessage


@dataclass
class RedrivePlan:
    send: list[Redrive] = field(default_factory=list)
    exhausted: list[DeadLetterRecord] = field(default_factory=list)
    unroutable: list[tuple[DeadLetterRecord, str]] = field(default_factory=list)
    superseded: int = 0
    not_matching: int = 0


def plan_redrive(records: Iterable[DeadLetterRecord], wanted: RedriveFilter, *, dlq_topic: str,
                 allowed_topics: Sequence[str], max_attempts: int,
                 now: datetime | None = None) -> RedrivePlan:
    """What a replay sends, and what it leaves in the DLQ and why."""
    now = now or datetime.now(UTC)
    records = list(records)
    superseded = {(int(r.headers["redriven.from.partition"]), int(r.headers["redriven.from.offset"]))
                  for r in records if _has_int(r, "redriven.from.partition") and _has_int(r, "redriven.from.offset")}
    plan = RedrivePlan()
    for r in records:
        if (r.partition, r.offset) in superseded:
            plan.superseded += 1
        elif not wanted.matches(r):
            plan.not_matching += 1
        elif attempt_of(r) >= max_attempts:
            plan.exhausted.append(r)
        elif (topic := r.headers.get("original.topic", "")) not in allowed_topics:
            why = "no original.topic header" if not topic else f"{topic!r} is not a topic of this deployment"
            plan.unroutable.append((r, why))
        else:
            plan.send.append(Redrive(r, OutgoingMessage(topic, r.key, r.value,
                                                        redrive_headers(r, dlq_topic=dlq_topic, now=now))))
    return plan


def redrive_headers(record: DeadLetterRecord, *, dlq_topic: str, now: datetime) -> list[tuple[str, bytes]]:
    """Where the redriven message comes from, so its next dead letter counts one more attempt."""
    items = {
        "dlq.topic": dlq_topic,
        "dlq.partition": str(record.partition),
        "dlq.offset": str(record.offset),
        "attempt": str(attempt_of(record)),
        "reason": record.headers.get("reason", ""),
        "at": now.isoformat(),
    }
    return [(REDRIVE_PREFIX + k, v.encode("utf-8")) for k, v in items.items()]


def _has_int(record: DeadLetterRecord, name: str) -> bool:
    return record.headers.get(name, "").isdigit()
