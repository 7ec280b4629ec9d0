"""How times and sources are shown to people: ``video_id@mm:ss`` and YouTube links."""

from __future__ import annotations

from datetime import datetime
from typing import Any


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


def iso(value: Any) -> Any:
    """Datetimes as ISO 8601 text; anything else as it is."""
    return value.isoformat() if isinstance(value, datetime) else value


def video_row(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored video document as `status` and `GET /api/videos` show it."""
    stages = doc.get("stages") or {}
    failed = [f"{name}: {s.get('detail', '')}" for name, s in stages.items() if s.get("state") == "failed"]
    return {
        "video_id": doc["_id"],
        "status": doc["status"],
        "chunks_stored": doc.get("chunks_stored", 0),
        "chunk_count": doc.get("chunk_count"),
        "chunks_failed": doc.get("chunks_failed", 0),
        "title": doc.get("title"),
        "source": doc.get("source"),
        "stages": {name: s.get("state") for name, s in stages.items()},
        "error": "; ".join(failed) or None,
        "requested_at": iso(doc.get("requested_at")),
        "done_at": iso(doc.get("done_at")),
    }
