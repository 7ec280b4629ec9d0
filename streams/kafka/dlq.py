"""Dead-letter records: the original message, unchanged, plus headers saying why.

The value and key are the original bytes, so a fixed record can be re-driven by
producing it back to the topic named in ``graphrag.dlq.original.topic`` (`dlq replay`,
streams/jobs/redrive.py). Headers follow Kafka Connect's DLQ convention (one header per fact,
UTF-8 strings) and are written twice: under our prefix, and under Connect's own
``__connect.errors.*`` names so tooling made for Connect's DLQs reads them as they are.

A redriven message carries ``graphrag.redrive.*`` headers. If it fails again, its new dead
letter counts one more ``attempt`` and names the DLQ record it was redriven from, so a
replay can skip records that are superseded and give up after a number of attempts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HEADER_PREFIX = "graphrag.dlq."
REDRIVE_PREFIX = "graphrag.redrive."
CONNECT_PREFIX = "__connect.errors."
MAX_HEADER_TEXT = 4000

# Reasons found while decoding the bytes: Connect's VALUE_CONVERTER stage; the rest failed
# in the stage's own work (TRANSFORMATION).
DECODE_REASONS = frozenset({"empty_message", "oversize", "invalid_encoding", "invalid_json", "schema_violation"})


@dataclass(frozen=True)
class Origin:
    """Where a message came from: enough to find it again in the source topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class RedriveOrigin:
    """The DLQ record a redriven message came from, and which attempt the redrive was."""

    dlq_partition: int
    dlq_offset: int
    attempt: int  # the attempt count of that DLQ record: the message has failed this often


def parse_redrive_headers(headers: Any) -> RedriveOrigin | None:
    """The ``graphrag.redrive.*`` headers of an incoming message, if it was redriven."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    found: dict[str, str] = {}
    for k, v in items:
        if isinstance(k, str) and k.startswith(REDRIVE_PREFIX):
            found[k[len(REDRIVE_PREFIX):]] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    try:
        return RedriveOrigin(int(found["dlq.partition"]), int(found["dlq.offset"]), max(1, int(found["attempt"])))
    except (KeyError, ValueError):
        return None  # not redriven, or headers we did not write: count it as a first failure


@dataclass(frozen=True)
class DeadLetter:
    stage: str
    reason: str  # stable code: invalid_json, schema_violation, invalid_video_id, oversize, ...
    error_class: str
    message: str
    origin: Origin
    key: bytes | None
    value: bytes
    extra: dict[str, str] = field(default_factory=dict)
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    redriven_from: RedriveOrigin | None = None

    @property
    def attempt(self) -> int:
        """How many times this message has been dead-lettered, this time included."""
        return 1 if self.redriven_from is None else self.redriven_from.attempt + 1

    def headers(self) -> list[tuple[str, bytes]]:
        items = {
            "stage": self.stage,
            "reason": self.reason,
            "error.class": self.error_class,
            "error.message": self.message,
            "original.topic": self.origin.topic,
            "original.partition": str(self.origin.partition),
            "original.offset": str(self.origin.offset),
            "failed.at": self.failed_at.isoformat(),
        }
        if self.origin.timestamp_ms is not None:
            items["original.timestamp"] = str(self.origin.timestamp_ms)
        items["attempt"] = str(self.attempt)
        if self.redriven_from is not None:
            items["redriven.from.partition"] = str(self.redriven_from.dlq_partition)
            items["redriven.from.offset"] = str(self.redriven_from.dlq_offset)
        items.update(self.extra)
        ours = [(HEADER_PREFIX + k, v[:MAX_HEADER_TEXT].encode("utf-8")) for k, v in items.items()]
        return ours + [(CONNECT_PREFIX + k, v[:MAX_HEADER_TEXT].encode("utf-8"))
                       for k, v in self.connect_headers().items()]

    def connect_headers(self) -> dict[str, str]:
        """The same facts under Kafka Connect's DLQ header names (`errors.deadletterqueue.context.headers.enable`)."""
        return {
            "topic": self.origin.topic,
            "partition": str(self.origin.partition),
            "offset": str(self.origin.offset),
            "connector.name": f"graphrag-streams-{self.stage}",
            "task.id": "0",
            "stage": "VALUE_CONVERTER" if self.reason in DECODE_REASONS else "TRANSFORMATION",
            "class.name": f"graphrag-streams.{self.stage}",
            "exception.class.name": self.error_class,
            "exception.message": f"{self.reason}: {self.message}",
        }


@dataclass(frozen=True)
class DeadLetterRecord:
    """One record of the DLQ topic: where it sits, the original bytes, and the parsed headers."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]  # graphrag.dlq.* without the prefix

    def as_dict(self, value_chars: int = 2000) -> dict[str, Any]:
        """For `dlq --json`: the key and the start of the value as text."""
        return {"partition": self.partition, "offset": self.offset, "headers": self.headers,
                "key": None if self.key is None else self.key.decode("utf-8", "replace"),
                "value": self.value[:value_chars].decode("utf-8", "replace")}


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """DLQ headers back to a dict without the prefix (for `dlq` CLI and tests)."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        if k.startswith(HEADER_PREFIX):
            out[k[len(HEADER_PREFIX):]] = (v or b"").decode("utf-8", "replace")
    return out


class BadMessage(Exception):
    """A message a stage cannot use; carries the DLQ reason code."""

    def __init__(self, reason: str, message: str, *, extra: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.extra = extra or {}


def decode_json_object(value: bytes | None, *, max_bytes: int) -> dict[str, object]:
    """Raw message bytes to a JSON object, or :class:`BadMessage` saying what is wrong."""
    if value is None or len(value) == 0:
        raise BadMessage("empty_message", "the message has no value")
    if len(value) > max_bytes:
        raise BadMessage("oversize", f"the message is {len(value)} bytes; the limit is {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage("invalid_encoding", f"the message is not UTF-8: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadMessage("invalid_json", f"the message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage("schema_violation", f"expected a JSON object, got {type(data).__name__}")
    return data
