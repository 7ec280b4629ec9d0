"""Token-based chunking with overlap and timing, on real transcripts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from schemas import TranscriptFetched, TranscriptSegment
from schemas.events import utcnow
from streams.model.ids import chunk_id
from streams.transcripts.chunking import chunk_segments, chunk_transcript, count_tokens, locate, timed_words
from streams.transcripts.parse import Segment, parse_transcript


def _long(corpus: Path) -> list[Segment]:
    return parse_transcript((corpus / "Big_Think/-92PkAXJIqQ.srt").read_text(encoding="utf-8"))


def test_chunks_respect_budget_and_cover_every_word(corpus: Path) -> None:
    segments = _long(corpus)
    chunks = chunk_segments(segments, tokens=300, overlap=50)
    assert len(chunks) > 20
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 0 < c.token_count <= 300 + 10  # one word may carry a few tokens past the budget
        assert c.end >= c.start
    all_words = [w.text for w in timed_words(segments)]
    # Reassemble without the overlaps: every word, in order, nothing invented.
    rebuilt: list[str] = []
    for c in chunks:
        words = c.text.split()
        overlap = next((n for n in range(min(len(words), len(rebuilt)), -1, -1)
                        if rebuilt[len(rebuilt) - n:] == words[:n]), 0)
        rebuilt += words[overlap:]
    assert rebuilt == all_words


def test_consecutive_chunks_overlap_and_move_forward(corpus: Path) -> None:
    chunks = chunk_segments(_long(corpus), tokens=200, overlap=40)
    for a, b in itertools.pairwise(chunks):
        assert b.start >= a.start
        shared = set(a.text.split()[-30:]) & set(b.text.split()[:30])
        assert shared, "neighbouring chunks share their overlap"
        assert b.text != a.text


def test_times_follow_the_video(corpus: Path) -> None:
    segments = _long(corpus)
    chunks = chunk_segments(segments, tokens=300, overlap=0)
    assert chunks[0].start == pytest.approx(segments[0].start)
    assert chunks[-1].end == pytest.approx(segments[-1].end, abs=0.01)
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def test_prefers_sentence_ends() -> None:
    segs = [Segment(i, i + 1, f"word{i} word{i} word{i} end{i}.") for i in range(40)]
    chunks = chunk_segments(segs, tokens=60, overlap=0)
    assert all(c.text.endswith(".") for c in chunks[:-1])


def test_small_input_and_edges() -> None:
    assert chunk_segments([], 100, 10) == []
    one = chunk_segments([Segment(0, 2, "hello world")], 100, 10)
    assert len(one) == 1 and one[0].text == "hello world" and one[0].token_count == 2
    assert count_tokens("Phobos, Deimos!") == 4
    with pytest.raises(ValueError):
        chunk_segments([Segment(0, 1, "x")], 0, 0)


def test_timeline_places_mentions_where_they_are_spoken() -> None:
    segs = [Segment(10, 12, "first we talk about ants"), Segment(60, 62, "then about Phobos and Mars")]
    (chunk,) = chunk_segments(segs, tokens=100, overlap=0)
    assert chunk.timeline == ((0, 10.0), (len("first we talk about ants "), 60.0))
    assert locate(chunk.text, chunk.timeline, "Phobos", chunk.start) == 60.0
    assert locate(chunk.text, chunk.timeline, "ants", chunk.start) == 10.0
    assert locate(chunk.text, chunk.timeline, "not there", chunk.start) == 10.0


def test_chunk_events_have_deterministic_ids(corpus: Path) -> None:
    segments = _long(corpus)
    t = TranscriptFetched(video_id="-92PkAXJIqQ", source="local", source_ref="x",
                          segments=[TranscriptSegment(start=s.start, end=s.end, text=s.text) for s in segments],
                          requested_at=utcnow(), fetched_at=utcnow())
    a = chunk_transcript(t)
    b = chunk_transcript(t)
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert len({c.chunk_id for c in a}) == len(a)
    assert all(c.chunk_id == chunk_id(c.video_id, c.index, c.text) and c.chunk_count == len(a) for c in a)
