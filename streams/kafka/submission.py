"""Putting video IDs on the ingest topic: one rule for the CLI's `submit` and `POST /api/videos`."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from schemas import VideoRequested, is_video_id
from schemas.errors import describe_validation_error
from streams.kafka.clients import OutgoingMessage
from streams.kafka.codec import encode
from streams.kafka.topics import topics_for
from streams.settings import Settings


class InvalidSubmission(ValueError):
    """The request cannot become ``VideoRequested`` events; nothing was sent."""


class InvalidVideoIds(InvalidSubmission):
    """Some IDs are not YouTube video IDs; nothing was sent."""

    def __init__(self, bad: Sequence[str]) -> None:
        self.bad = list(bad)
        shown = ", ".join(repr(b) for b in self.bad[:10]) + (" …" if len(self.bad) > 10 else "")
        super().__init__(f"{len(self.bad)} invalid video ID(s), nothing was sent: {shown}")


def request_messages(settings: Settings, video_ids: Sequence[str], *, source: str = "auto",
                     languages: Sequence[str] = ("en",)) -> list[OutgoingMessage]:
    """One ``VideoRequested`` per distinct ID (first occurrence order), keyed by the ID.

    Raises :class:`InvalidVideoIds` when one ID is not valid and :class:`InvalidSubmission`
    for any other invalid field, before anything is sent, so a batch goes out whole or not
    at all.
    """
    bad = [v for v in video_ids if not is_video_id(v)]
    if bad:
        raise InvalidVideoIds(bad)
    topic = topics_for(settings).requested
    try:
        events = [VideoRequested(video_id=v, source=source, languages=list(languages))
                  for v in dict.fromkeys(video_ids)]
    except ValidationError as exc:
        problems = describe_validation_error(exc, limit=5)
        raise InvalidSubmission(f"invalid request, nothing was sent: {problems}") from None
    return [OutgoingMessage(topic, e.video_id.encode(), encode(e)) for e in events]
