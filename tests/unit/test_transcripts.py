"""Parsers on the real, machine-made corpus files and on broken input."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from streams.transcripts.parse import (
    TranscriptError,
    clean_text,
    decode_transcript,
    parse_json_segments,
    parse_srt,
    parse_transcript,
    parse_vtt,
)
from streams.transcripts.sources import LocalTranscriptSource
from tests.support import manifest

ENTRIES = manifest()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["video_id"] for e in ENTRIES])
def test_every_corpus_file_parses_clean_and_ordered(corpus: Path, entry: dict[str, str]) -> None:
    text = (corpus / entry["path"]).read_text(encoding="utf-8")
    segments = parse_transcript(text, entry["format"])
    assert segments
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    for s in segments:
        assert s.end >= s.start >= 0
        assert s.text == s.text.strip() and s.text
        assert "<" not in s.text and "-->" not in s.text and "\r" not in s.text
        assert not re.search(r"\s{2,}", s.text)
    # Nothing is lost: every word of the file's caption lines is in the segments.
    if entry["format"] == "srt":
        words = set(" ".join(s.text for s in segments).split())
        assert {"the", "and"} <= {w.lower() for w in words}


def test_vtt_rolling_auto_captions_are_deduplicated(corpus: Path) -> None:
    segments = parse_vtt((corpus / "Kurzgesagt/Pw0IZg7_4mo.vtt").read_text(encoding="utf-8"))
    texts = [s.text for s in segments]
    assert texts[:3] == [
        "the moons of Mars explained Mars has two",
        "moons Phobos and Deimos they are really",
        "tiny how tiny compared to Mars or our",
    ]
    assert all(a != b for a, b in itertools.pairwise(texts))  # no rolling repeats
    assert len(texts) == len(set(texts))
    # Millisecond precision (webvtt-py's start_in_seconds would truncate to 100).
    assert any(s.start == pytest.approx(100.429) for s in segments)
    assert "[Music]" not in " ".join(texts)


@pytest.mark.parametrize("name", ["Pw0IZg7_4mo", "cR9uphgMZ8U", "Uti2niW2BRA", "_lNF3_30lUE"])
def test_vtt_rolling_keeps_every_spoken_line_once(corpus: Path, name: str) -> None:
    """Lines with inline word timings are the newly spoken ones: all of them, in order.

    YouTube writes a one-word line without timing tags, so such lines may come in between.
    """
    raw = (corpus / f"Kurzgesagt/{name}.vtt").read_text(encoding="utf-8")
    tagged = [t for t in (clean_text(line) for line in raw.splitlines() if "<c>" in line) if t]
    texts = [s.text for s in parse_vtt(raw)]
    it = iter(texts)
    assert all(any(t == x for x in it) for t in tagged)  # tagged lines are a subsequence
    assert all(len(x.split()) == 1 for x in texts if x not in tagged)


def test_srt_crlf_and_trailing_spaces(corpus: Path) -> None:
    raw = (corpus / "Big_Think/-0bi7FOvW8E.srt").read_bytes()
    assert b"\r\n" in raw
    segments = parse_srt(raw.decode("utf-8"))
    assert segments[0].text == "Yeah,"
    assert segments[1].text == "no, we have progressed in the gay rights"
    assert segments[1].start == pytest.approx(9.32)


def test_broken_srt_is_a_clear_error() -> None:
    with pytest.raises(TranscriptError) as err:
        parse_srt("1\n00:00:01,000 --> garbage\nhello\n\n")
    assert err.value.reason == "unparseable_transcript"
    assert "SRT" in str(err.value)


def test_vtt_without_cues_is_an_error() -> None:
    with pytest.raises(TranscriptError) as err:
        parse_vtt("WEBVTT\n\n")
    assert err.value.reason == "unparseable_transcript"
    with pytest.raises(TranscriptError):
        parse_vtt("no header at all\n00:01.000 --> 00:02.000\nhi\n")


def test_only_annotations_is_empty() -> None:
    with pytest.raises(TranscriptError) as err:
        parse_srt("1\n00:00:01,000 --> 00:00:02,000\n[Music]\n\n")
    assert err.value.reason == "empty_transcript"


def test_json_segments_with_duration_or_end() -> None:
    segs = parse_json_segments(json.dumps([{"start": 1, "duration": 2, "text": "hello  <b>world</b>"},
                                           {"start": 0.5, "end": 0.9, "text": "first"}]))
    assert [(s.start, s.end, s.text) for s in segs] == [(0.5, 0.9, "first"), (1.0, 3.0, "hello world")]
    assert parse_json_segments(json.dumps({"segments": [{"start": 0, "end": 1, "text": "x"}]}))[0].text == "x"


@pytest.mark.parametrize("bad", ["{not json", "42", json.dumps([{"start": "x", "text": "a"}]),
                                 json.dumps([{"start": 5, "end": 1, "text": "a"}])])
def test_bad_json_segments(bad: str) -> None:
    with pytest.raises(TranscriptError) as err:
        parse_json_segments(bad)
    assert err.value.reason == "unparseable_transcript"


def test_decode_limits_and_encoding() -> None:
    with pytest.raises(TranscriptError) as err:
        decode_transcript("é".encode("latin-1"), max_chars=100, name="x.srt")
    assert err.value.reason == "unparseable_transcript"
    with pytest.raises(TranscriptError) as err:
        decode_transcript(b"a" * 5000, max_chars=1000, name="x.srt")
    assert err.value.reason == "transcript_too_large"
    assert decode_transcript(b"ok", max_chars=10, name="x") == "ok"


def test_format_is_sniffed_without_extension(corpus: Path) -> None:
    vtt = (corpus / "Kurzgesagt/Pw0IZg7_4mo.vtt").read_text(encoding="utf-8")
    assert parse_transcript(vtt)[0].text.startswith("the moons of Mars")


def test_local_source_finds_files_in_subdirectories(corpus: Path, tmp_path: Path) -> None:
    src = LocalTranscriptSource([corpus], max_chars=2_000_000)
    assert set(src.video_ids()) == {e["video_id"] for e in ENTRIES}
    t = src.fetch("-92PkAXJIqQ")
    assert t.source == "local" and t.source_ref.endswith("-92PkAXJIqQ.srt") and len(t.segments) > 100
    # A file added after start-up is found too; the yt-dlp ".en" suffix is understood.
    extra = tmp_path / "late"
    extra.mkdir()
    src2 = LocalTranscriptSource([extra], max_chars=1000)
    (extra / "dQw4w9WgXcQ.en.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello there\n")
    assert src2.fetch("dQw4w9WgXcQ").segments[0].text == "hello there"
    with pytest.raises(TranscriptError) as err:
        src2.fetch("aaaaaaaaaaA")
    assert err.value.reason == "transcript_not_found"
