"""Bytes <-> events. Every stage decodes its input here, so every stage rejects bad input
the same way, with the same reason codes on the DLQ record."""

from __future__ import annotations

import re
from typing import TypeVar

import pydantic

from schemas import Event, MentionBatch, MentionRequest, MentionResolved, MentionsResolved, VideoRequested, is_video_id
from schemas.errors import describe_validation_error
from streams.kafka.dlq import BadMessage, decode_json_object

E = TypeVar("E", bound=Event)


def encode(event: Event) -> bytes:
    return event.model_dump_json(exclude_none=False).encode("utf-8")


def decode(model: type[E], value: bytes | None, *, max_bytes: int) -> E:
    """Validate raw bytes strictly against a topic's model."""
    return _validate(model, decode_json_object(value, max_bytes=max_bytes))


def decode_mentions(value: bytes | None, *, max_bytes: int) -> MentionBatch:
    """A ``resolve.mentions`` message: a batch, or the lone mention an earlier route app sent."""
    return _batch_or_lone(MentionBatch, "mentions", MentionRequest, value, max_bytes=max_bytes)


def decode_resolved(value: bytes | None, *, max_bytes: int) -> MentionsResolved:
    """A ``resolve.resolved`` message: a batch, or the lone answer an earlier resolve app sent."""
    return _batch_or_lone(MentionsResolved, "answers", MentionResolved, value, max_bytes=max_bytes)


def _batch_or_lone(batch: type[E], items: str, lone: type[Event], value: bytes | None, *, max_bytes: int) -> E:
    """A ``batch`` message (its events in ``items``), or one ``lone`` event, which an app of
    the previous version sent, as a batch of one (both name their chunk in ``chunk_id``)."""
    data = decode_json_object(value, max_bytes=max_bytes)
    if items in data:
        return _validate(batch, data)
    return batch.model_validate({"chunk_id": data.get("chunk_id"), items: [_validate(lone, data)]})


def _validate(model: type[E], data: dict[str, object]) -> E:
    version = data.get("schema_version", 1)
    if version != 1:
        raise BadMessage("unsupported_schema_version",
                         f"schema_version {version!r} is not supported (this worker reads version 1)")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        reason = "schema_violation"
        if any(err["loc"] and err["loc"][-1] == "video_id" and err["type"] != "missing"
               for err in exc.errors()):
            reason = "invalid_video_id"
        raise BadMessage(reason, describe_validation_error(exc, limit=5)) from None


_BARE_ID = re.compile(rb"\s*[A-Za-z0-9_-]{11}\s*")


def decode_request(value: bytes | None, *, max_bytes: int) -> VideoRequested:
    """An ingest message: a JSON ``VideoRequested`` or just the bare 11-character video ID."""
    if value is not None and _BARE_ID.fullmatch(value):
        text = value.decode("ascii").strip()
        if not is_video_id(text):
            raise BadMessage("invalid_video_id", f"{text!r} is not a valid YouTube video ID")
        return VideoRequested(video_id=text)
    return decode(VideoRequested, value, max_bytes=max_bytes)
