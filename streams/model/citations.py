"""How times and sources are shown to people: ``video_id@mm:ss`` and YouTube links."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel


def clock(seconds: float) -> str:
    """``83.4`` -> ``01:23``; hours when needed (``1:02:03``)."""
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def youtube_link(video_id: str, seconds: float) -> str:
    return f"https://youtu.be/{video_id}?t={max(0, int(seconds))}"


def citation(video_id: str, seconds: float) -> str:
    return f"{video_id}@{clock(seconds)}"


def shorten(text: str, limit: int) -> str:
    """Whitespace collapsed, cut at a word boundary to at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


class Citation(BaseModel):
    """Where a claim is said: a stored chunk and the moment in the video (``video_id@mm:ss``)."""

    video_id: str
    chunk_id: str
    seconds: float

    @property
    def cite(self) -> str:
        return citation(self.video_id, self.seconds)

    @property
    def url(self) -> str:
        return youtube_link(self.video_id, self.seconds)

    def as_dict(self) -> dict[str, Any]:
        # Down to a tenth, so that the whole second of `cite` and `url` is that of `seconds`.
        return {"video_id": self.video_id, "seconds": math.floor(self.seconds * 10) / 10, "chunk_id": self.chunk_id,
                "cite": self.cite, "url": self.url}
