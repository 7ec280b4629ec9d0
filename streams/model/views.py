"""Stored documents as `status`, the CLI and the API show them."""

from __future__ import annotations

from datetime import datetime
from typing import Any


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
