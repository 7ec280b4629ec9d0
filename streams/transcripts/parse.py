"""Transcript parsing and clean-up: SRT, WebVTT (incl. YouTube rolling auto-captions), JSON.

Every parser returns clean, time-ordered :class:`Segment` lists or raises
:class:`TranscriptError` with a reason code the fetch stage puts on the DLQ record.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

Format = Literal["srt", "vtt", "json"]
FORMATS: tuple[Format, ...] = ("srt", "vtt", "json")


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


class TranscriptError(Exception):
    """A transcript that cannot be used, with a stable reason code.

    ``retryable`` marks failures that may succeed later (network, rate limits); the others
    are permanent and go straight to the DLQ.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


_TAG = re.compile(r"<[^>]*>")
# Sound annotations that carry no content: [Music], [Applause], (laughter), ♪ ... ♪
_ANNOTATION = re.compile(r"\[[^\]]{0,40}\]|\((?:music|applause|laughter|laughs|inaudible)\)|♪+", re.I)
_WS = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Strip markup and sound annotations, collapse whitespace."""
    text = _TAG.sub("", text)
    text = _ANNOTATION.sub(" ", text)
    text = text.replace("&nbsp;", " ").replace("&amp;", "&").replace("&gt;", ">").replace("&lt;", "<")
    return _WS.sub(" ", text).strip()


def _finish(segments: list[Segment], fmt: str) -> list[Segment]:
    kept = [s for s in segments if s.text]
    if not kept:
        raise TranscriptError("empty_transcript", f"the {fmt} transcript contains no caption text")
    kept.sort(key=lambda s: (s.start, s.end))
    return kept


def parse_srt(text: str) -> list[Segment]:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, CRLF or LF."""
    try:
        cues = list(srt.parse(text.lstrip("\ufeff"), ignore_errors=False))
    except srt.SRTParseError as exc:
        raise TranscriptError("unparseable_transcript", f"not a valid SRT file: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise TranscriptError("unparseable_transcript", f"not a valid SRT file: {exc}") from None
    segments = [
        Segment(c.start.total_seconds(), max(c.end, c.start).total_seconds(), clean_text(c.content))
        for c in cues
    ]
    return _finish(segments, "SRT")


def parse_vtt(text: str) -> list[Segment]:
    """WebVTT, including YouTube's rolling auto-captions.

    Auto-captions repeat the previous line at the top of every cue and add 10 ms filler
    cues that only repeat; a line is kept only the first time it appears in a row, so
    every spoken line appears once, with the time of the cue that introduced it.
    """
    try:
        doc = webvtt.from_buffer(io.StringIO(text.lstrip("\ufeff")))
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise TranscriptError("unparseable_transcript", f"not a valid WebVTT file: {exc}") from None
    segments: list[Segment] = []
    recent: list[str] = []  # the last two lines emitted
    for cue in doc.captions:
        # start_in_seconds truncates to whole seconds; milliseconds keep the precision.
        start = cue.start_time.in_milliseconds() / 1000
        end = cue.end_time.in_milliseconds() / 1000
        for raw in cue.text.splitlines():
            line = clean_text(raw)
            if not line or line in recent:
                continue
            segments.append(Segment(start, max(start, end), line))
            recent = [*recent[-1:], line]
    if not doc.captions:
        raise TranscriptError("unparseable_transcript", "not a valid WebVTT file: no cues found")
    return _finish(segments, "WebVTT")


def parse_json_segments(text: str) -> list[Segment]:
    """A JSON list of ``{"start", "end" | "duration", "text"}`` (youtube-transcript-api's shape)."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptError("unparseable_transcript", f"not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("segments"), list):
        data = data["segments"]
    if not isinstance(data, list):
        raise TranscriptError("unparseable_transcript",
                              "a JSON transcript must be a list of segments or {\"segments\": [...]}")
    segments = []
    for i, item in enumerate(data):
        try:
            start = float(item["start"])
            end = float(item["end"]) if "end" in item else start + float(item["duration"])
            body = str(item["text"])
        except (KeyError, TypeError, ValueError):
            raise TranscriptError(
                "unparseable_transcript",
                f"JSON segment {i} needs numeric 'start', 'end' or 'duration', and 'text'",
            ) from None
        if start < 0 or end < start:
            raise TranscriptError("unparseable_transcript", f"JSON segment {i} has an invalid time span")
        segments.append(Segment(start, end, clean_text(body)))
    return _finish(segments, "JSON")


def detect_format(text: str, hint: str | None = None) -> Format:
    """The format named by a file extension, else sniffed from the content."""
    if hint:
        h = hint.lower().lstrip(".")
        if h in FORMATS:
            return h
    head = text.lstrip("\ufeff \t\r\n")[:200]
    if head.startswith("WEBVTT"):
        return "vtt"
    if head.startswith(("[", "{")):
        return "json"
    return "srt"


def parse_transcript(text: str, fmt: str | None = None) -> list[Segment]:
    parsers = {"srt": parse_srt, "vtt": parse_vtt, "json": parse_json_segments}
    return parsers[detect_format(text, fmt)](text)


def decode_transcript(data: bytes, *, max_chars: int, name: str) -> str:
    """Bytes of a transcript file to text, enforcing UTF-8 and the size limit."""
    if len(data) > max_chars * 4:
        raise TranscriptError("transcript_too_large",
                              f"{name} is {len(data)} bytes; the limit is {max_chars} characters")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TranscriptError("unparseable_transcript", f"{name} is not UTF-8 text: {exc}") from None
    if len(text) > max_chars:
        raise TranscriptError("transcript_too_large",
                              f"{name} has {len(text)} characters; the limit is {max_chars}")
    return text
