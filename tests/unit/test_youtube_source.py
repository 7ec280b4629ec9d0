"""YouTubeTranscriptSource against a local fake of YouTube (tests/fakes/fake_youtube.py).

The real youtube-transcript-api client and the real requests stack run; only the server is
local. Each test checks the server was really called.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from streams.settings import TranscriptSettings
from streams.transcripts.parse import Segment, TranscriptError, parse_transcript
from streams.transcripts.sources import TranscriptFetcher, YouTubeTranscriptSource
from tests.fakes.fake_youtube import API_KEY, UNAVAILABLE, FakeYouTube, Track, Video
from tests.support import CORPUS

VID = "Pw0IZg7_4mo"


@pytest.fixture
def yt() -> Iterator[FakeYouTube]:
    with FakeYouTube() as fake:
        yield fake


def _source(yt: FakeYouTube, **settings: Any) -> YouTubeTranscriptSource:
    return YouTubeTranscriptSource(TranscriptSettings(youtube_base_url=yt.url, youtube_timeout_seconds=10,
                                                      **settings))


def _error(source: YouTubeTranscriptSource, video_id: str = VID,
           languages: tuple[str, ...] = ("en",)) -> TranscriptError:
    with pytest.raises(TranscriptError) as info:
        source.fetch(video_id, languages)
    return info.value


@cache
def _corpus_segments() -> tuple[Segment, ...]:
    """Real caption lines: the first 25 of the Kurzgesagt transcript."""
    text = (CORPUS / "Kurzgesagt/Pw0IZg7_4mo.vtt").read_text(encoding="utf-8")
    return tuple(parse_transcript(text, "vtt")[:25])


def _corpus_track(language: str = "en", generated: bool = True) -> Track:
    return Track(language, "English (auto-generated)" if generated else "English",
                 [(s.start, round(s.end - s.start, 3), s.text) for s in _corpus_segments()], generated)


# --------------------------------------------------------------------------- success


def test_a_real_transcript_comes_back_with_its_times(yt: FakeYouTube) -> None:
    yt.videos[VID] = Video(tracks=[_corpus_track()])
    got = _source(yt).fetch(VID, ["en"])
    assert got.source == "youtube" and got.video_id == VID and got.language == "en"
    assert got.source_ref == f"https://www.youtube.com/watch?v={VID}"
    expected = _corpus_segments()
    assert len(got.segments) == len(expected)
    for g, e in zip(got.segments, expected, strict=True):
        assert g.text == e.text
        assert g.start == pytest.approx(e.start) and g.end == pytest.approx(e.end, abs=0.002)


def test_the_library_really_talked_to_the_server(yt: FakeYouTube) -> None:
    yt.videos[VID] = Video(tracks=[_corpus_track()])
    _source(yt).fetch(VID, ["en"])
    assert yt.paths() == [("GET", "/watch"), ("POST", "/youtubei/v1/player"), ("GET", "/api/timedtext")]
    watch, player, timedtext = yt.requests
    assert watch.query["v"] == [VID]
    assert player.query["key"] == [API_KEY]
    assert player.body["videoId"] == VID and player.body["context"]["client"]["clientName"] == "ANDROID"
    assert timedtext.query["v"] == [VID] and timedtext.query["lang"] == ["en"] and "fmt" not in timedtext.query
    assert watch.headers.get("Accept-Language") == "en-US"


def test_markup_entities_and_whitespace_are_cleaned(yt: FakeYouTube) -> None:
    yt.videos[VID] = Video(tracks=[Track("en", "English", [
        (0.5, 2.1, "hello & world"),
        (2.6, 1.9, "<font color=\"#E5E5E5\">Phobos</font> orbits   Mars"),
        (4.5, 1.0, "   "),  # nothing left: dropped
        (5.5, 0.0, 'he said "tiny"\n indeed'),
    ])])
    got = _source(yt).fetch(VID, ["en"])
    assert got.segments == [Segment(0.5, 2.6, "hello & world"), Segment(2.6, 4.5, "Phobos orbits Mars"),
                            Segment(5.5, 5.5, 'he said "tiny" indeed')]


def test_manual_captions_win_over_generated_and_language_order_is_kept(yt: FakeYouTube) -> None:
    yt.videos[VID] = Video(tracks=[
        Track("en", "English (auto-generated)", [(0.0, 1.0, "generated english")], generated=True),
        Track("en", "English", [(0.0, 1.0, "manual english")]),
        Track("de", "Deutsch", [(0.0, 1.0, "deutsch")]),
    ])
    source = _source(yt)
    assert [s.text for s in source.fetch(VID, ["en"]).segments] == ["manual english"]
    german = source.fetch(VID, ["de", "en"])
    assert german.language == "de" and [s.text for s in german.segments] == ["deutsch"]
    assert [s.text for s in source.fetch(VID, ["fr", "en"]).segments] == ["manual english"]


def test_the_fetcher_uses_youtube_when_configured(yt: FakeYouTube) -> None:
    yt.videos[VID] = Video(tracks=[_corpus_track()])
    fetcher = TranscriptFetcher(TranscriptSettings(source="youtube", youtube_base_url=yt.url))
    got = fetcher.fetch(VID, "auto", ["en"])
    assert got.source == "youtube" and got.segments
    assert ("POST", "/youtubei/v1/player") in yt.paths()
    with pytest.raises(TranscriptError) as info:
        fetcher.fetch(VID, "local", ["en"])
    assert info.value.reason == "source_not_allowed"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("video", "reason", "retryable"), [
    pytest.param(Video(tracks=[_corpus_track()], playability=UNAVAILABLE), "video_unavailable", False,
                 id="unavailable"),
    pytest.param(Video(captions=False), "transcripts_disabled", False, id="captions-disabled"),
    pytest.param(Video(tracks=[_corpus_track("de")]), "no_transcript_in_language", False, id="other-language"),
    pytest.param(Video(tracks=[_corpus_track()], fail=("watch", 429)), "youtube_blocked", True, id="429-watch"),
    pytest.param(Video(tracks=[_corpus_track()], fail=("player", 429)), "youtube_blocked", True, id="429-player"),
    pytest.param(Video(tracks=[_corpus_track()], fail=("watch", 500)), "youtube_request_failed", True,
                 id="500-watch"),
    pytest.param(Video(tracks=[_corpus_track()], fail=("timedtext", 503)), "youtube_request_failed", True,
                 id="503-timedtext"),
    pytest.param(Video(tracks=[Track("en", "English", [])]), "empty_transcript", False, id="empty"),
    pytest.param(Video(tracks=[Track("en", "English", [(0.0, 1.0, " "), (1.0, 1.0, "\n")])]),
                 "empty_transcript", False, id="whitespace-only"),
    pytest.param(Video(tracks=[_corpus_track()], playability={"status": "LOGIN_REQUIRED",
                                                               "reason": "Sign in to confirm you\u2019re not a bot"}),
                 "youtube_blocked", True, id="bot-check"),
    pytest.param(Video(tracks=[_corpus_track()], watch_html='<html><div class="g-recaptcha"></div></html>'),
                 "youtube_blocked", True, id="recaptcha"),
    pytest.param(Video(tracks=[_corpus_track()], watch_html="<html>changed layout</html>"), "youtube_unparsable",
                 False, id="no-api-key"),
    pytest.param(Video(tracks=[_corpus_track()], playability={"status": "UNPLAYABLE", "reason": "Private video"}),
                 "video_unplayable", False, id="unplayable"),
])
def test_error_reasons(yt: FakeYouTube, video: Video, reason: str, retryable: bool) -> None:
    yt.videos[VID] = video
    err = _error(_source(yt))
    assert (err.reason, err.retryable) == (reason, retryable), str(err)
    assert ("GET", "/watch") in yt.paths()
    assert "\n" not in str(err) and len(str(err)) <= 400


def test_unknown_video_is_unavailable(yt: FakeYouTube) -> None:
    err = _error(_source(yt), "aaaaaaaaaaA")
    assert err.reason == "video_unavailable" and not err.retryable
    assert yt.requests[1].body["videoId"] == "aaaaaaaaaaA"


def test_transcript_too_large(yt: FakeYouTube) -> None:
    yt.videos[VID] = Video(tracks=[Track("en", "English", [(float(i), 1.0, "x" * 100) for i in range(20)])])
    err = _error(_source(yt, max_chars=1000))
    assert err.reason == "transcript_too_large" and not err.retryable


def test_unreachable_server_is_retryable() -> None:
    fake = FakeYouTube().start()
    url = fake.url
    fake.stop()  # nothing listens on that port any more
    source = YouTubeTranscriptSource(TranscriptSettings(youtube_base_url=url, youtube_timeout_seconds=5))
    err = _error(source)
    assert err.reason == "youtube_unreachable" and err.retryable
    assert fake.requests == []
