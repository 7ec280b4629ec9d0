"""How times and sources are shown to people: ``video_id@mm:ss`` and YouTube links."""

from __future__ import annotations


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
