"""Dead-letter records: the original message, unchanged, plus headers saying why.

The value and key are the original bytes, so a fixed record can be re-driven by
producing it back to the topic named in ``graphrag.dlq.original.topic``. Headers follow
Kafka Connect's DLQ convention (one header per fact, UTF-8 strings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pydantic

HEADER_PREFIX = "graphrag.dlq."
MAX_HEADER_TEXT = 4000


@dataclass(frozen=True)
class Origin:
    """Where a message came from: enough to find it again in the source topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


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
        items.update(self.extra)
        return [(HEADER_PREFIX + k, v[:MAX_HEADER_TEXT].encode("utf-8")) for k, v in items.items()]


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """DLQ headers back to a dict without the prefix (for `dlq` CLI and tests)."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        if k.startswith(HEADER_PREFIX):
            out[k[len(HEADER_PREFIX):]] = (v or b"").decode("utf-8", "replace")
    return out


def describe_validation_error(exc: pydantic.ValidationError, limit: int = 5) -> str:
    """A short, readable account of what is wrong with a message (field paths first)."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


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
