"""Token-based chunking with overlap that keeps the time span of every chunk.

Tokens are counted with a word/punctuation regex (roughly 1.3 per English word, close to
what BPE tokenizers give for speech transcripts); no tokenizer download is needed, so it
works offline. Words inherit times interpolated inside their caption segment, so a chunk's
``start``/``end`` point at the moment in the video where its text is spoken, which is what
answer citations link to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas import TranscriptChunk, TranscriptFetched
from streams.model.ids import chunk_id
from streams.transcripts.parse import Segment

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENTENCE_END = re.compile(r"[.?!…][\"')\]]*$")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float
    end: float
    tokens: int
    segment: int


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: float
    end: float
    token_count: int
    # (character offset in text, seconds) wherever a new caption segment begins: lets a
    # mention inside the chunk be placed at the moment it is spoken, not at chunk start.
    timeline: tuple[tuple[int, float], ...] = ()


def timed_words(segments: Sequence[Segment]) -> list[TimedWord]:
    """Split segments into words with times spread evenly over each segment."""
    words: list[TimedWord] = []
    for n, seg in enumerate(segments):
        parts = seg.text.split()
        if not parts:
            continue
        step = (seg.end - seg.start) / len(parts)
        for i, w in enumerate(parts):
            start = seg.start + i * step
            words.append(TimedWord(w, round(start, 3), round(start + step, 3), max(1, count_tokens(w)), n))
    return words


def _timeline(window: Sequence[TimedWord]) -> tuple[tuple[int, float], ...]:
    points: list[tuple[int, float]] = []
    offset = 0
    previous = -1
    for w in window:
        if w.segment != previous:
            points.append((offset, w.start))
            previous = w.segment
        offset += len(w.text) + 1
    return tuple(points)


def time_at(timeline: Sequence[Sequence[float]], offset: int, default: float) -> float:
    """The time at a character offset of a chunk's text (the segment that holds it)."""
    t = default
    for off, seconds in timeline:
        if off > offset:
            break
        t = float(seconds)
    return t


def locate(text: str, timeline: Sequence[Sequence[float]], phrase: str, default: float) -> float:
    """When a phrase is first spoken in a chunk; ``default`` if it does not occur verbatim."""
    pos = text.casefold().find(phrase.casefold().strip())
    return default if pos < 0 or not phrase.strip() else time_at(timeline, pos, default)


def chunk_segments(segments: Sequence[Segment], tokens: int = 300, overlap: int = 50) -> list[Chunk]:
    """Cut a transcript into windows of about ``tokens`` tokens, ``overlap`` tokens shared.

    A window closes early (after 80 % of its budget) at a sentence end when there is one,
    so chunks tend to hold whole sentences; the next window starts ``overlap`` tokens
    before the previous one ended.
    """
    if tokens < 1:
        raise ValueError("tokens must be positive")
    overlap = max(0, min(overlap, tokens // 2))
    words = timed_words(segments)
    chunks: list[Chunk] = []
    begin = 0
    while begin < len(words):
        used = 0
        end = begin
        soft_limit = int(tokens * 0.8)
        while end < len(words):
            used += words[end].tokens
            end += 1
            if used >= tokens:
                break
            if used >= soft_limit and _SENTENCE_END.search(words[end - 1].text):
                break
        window = words[begin:end]
        chunks.append(Chunk(
            index=len(chunks),
            text=" ".join(w.text for w in window),
            start=window[0].start,
            end=window[-1].end,
            token_count=sum(w.tokens for w in window),
            timeline=_timeline(window),
        ))
        if end >= len(words):
            break
        # Step back `overlap` tokens, but always move forward by at least one word.
        back, shared = end, 0
        while back > begin + 1 and shared + words[back - 1].tokens <= overlap:
            back -= 1
            shared += words[back].tokens
        begin = back
    return chunks


def chunk_transcript(t: TranscriptFetched, tokens: int = 300, overlap: int = 50) -> list[TranscriptChunk]:
    """A fetched transcript as chunk events with deterministic IDs."""
    pieces = chunk_segments([Segment(s.start, s.end, s.text) for s in t.segments], tokens, overlap)
    return [
        TranscriptChunk(
            chunk_id=chunk_id(t.video_id, c.index, c.text),
            video_id=t.video_id,
            index=c.index,
            chunk_count=len(pieces),
            text=c.text,
            start=c.start,
            end=max(c.end, c.start),
            token_count=c.token_count,
            timeline=[(off, sec) for off, sec in c.timeline],
            requested_at=t.requested_at,
        )
        for c in pieces
    ]
