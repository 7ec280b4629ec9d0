"""Where transcripts come from: a local directory of files, or YouTube.

Both return a :class:`FetchedTranscript` or raise :class:`TranscriptError` with a reason
code (``transcript_not_found``, ``transcripts_disabled``, ``video_unavailable``,
``youtube_unreachable``, ...) that ends up on the DLQ record and in the video's status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
import youtube_transcript_api as yta
from requests.adapters import HTTPAdapter
from youtube_transcript_api import YouTubeTranscriptApi

from schemas import is_video_id
from streams.settings import TranscriptSettings
from streams.transcripts.parse import FORMATS, Segment, TranscriptError, decode_transcript, parse_transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedTranscript:
    video_id: str
    source: str  # "local" | "youtube"
    source_ref: str  # file path or URL
    language: str | None
    segments: list[Segment]
    title: str | None = None


class TranscriptSource(Protocol):
    name: str

    def fetch(self, video_id: str, languages: Sequence[str]) -> FetchedTranscript: ...


# --------------------------------------------------------------------------- local files


def _video_id_of(path: Path) -> str | None:
    stem = path.stem
    for suffix in (".en", ".en-US", ".en-GB"):  # yt-dlp style "<id>.en.vtt"
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem if is_video_id(stem) else None


class LocalTranscriptSource:
    """Transcript files named ``<video_id>.srt|.vtt|.json`` anywhere under the given directories."""

    name = "local"
    _PREFERENCE = {"srt": 0, "vtt": 1, "json": 2}

    def __init__(self, dirs: Iterable[str | Path], max_chars: int) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.max_chars = max_chars
        self._index: dict[str, Path] = {}
        self._lock = threading.Lock()
        self.rescan()

    def rescan(self) -> int:
        index: dict[str, Path] = {}
        for d in self.dirs:
            if not d.is_dir():
                continue
            for path in sorted(d.rglob("*")):
                fmt = path.suffix.lower().lstrip(".")
                vid = _video_id_of(path)
                if fmt in FORMATS and vid and path.is_file():
                    best = index.get(vid)
                    if best is None or self._PREFERENCE[fmt] < self._PREFERENCE[best.suffix.lower().lstrip(".")]:
                        index[vid] = path
        with self._lock:
            self._index = index
        return len(index)

    def find(self, video_id: str) -> Path | None:
        with self._lock:
            path = self._index.get(video_id)
        if path is None or not path.exists():
            self.rescan()  # files may have been added since start-up
            with self._lock:
                path = self._index.get(video_id)
        return path

    def has(self, video_id: str) -> bool:
        return self.find(video_id) is not None

    def video_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._index)

    def fetch(self, video_id: str, languages: Sequence[str] = ("en",)) -> FetchedTranscript:
        path = self.find(video_id)
        if path is None:
            where = ", ".join(str(d) for d in self.dirs) or "(no directory configured)"
            raise TranscriptError("transcript_not_found", f"no transcript file for {video_id} under {where}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TranscriptError("transcript_unreadable", f"cannot read {path}: {exc}") from None
        text = decode_transcript(data, max_chars=self.max_chars, name=path.name)
        segments = parse_transcript(text, path.suffix)
        return FetchedTranscript(video_id, "local", str(path), languages[0] if languages else None, segments)


# --------------------------------------------------------------------------- YouTube


class _RebaseAdapter(HTTPAdapter):
    """Sends requests for youtube.com to another base URL (a mirror, proxy or test server)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._base = urlsplit(base_url.rstrip("/"))

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = urlunsplit((self._base.scheme, self._base.netloc,
                                  self._base.path + parts.path, parts.query, parts.fragment))
        return super().send(request, *args, **kwargs)


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


def _youtube_error(exc: Exception) -> TranscriptError:
    table: list[tuple[type[Exception], str, bool]] = [
        (yta.InvalidVideoId, "invalid_video_id", False),
        (yta.VideoUnavailable, "video_unavailable", False),
        (yta.TranscriptsDisabled, "transcripts_disabled", False),
        (yta.NoTranscriptFound, "no_transcript_in_language", False),
        (yta.AgeRestricted, "age_restricted", False),
        (yta.VideoUnplayable, "video_unplayable", False),
        (yta.PoTokenRequired, "po_token_required", False),
        (yta.IpBlocked, "youtube_blocked", True),
        (yta.RequestBlocked, "youtube_blocked", True),
        (yta.YouTubeDataUnparsable, "youtube_unparsable", False),
        (yta.YouTubeRequestFailed, "youtube_request_failed", True),
    ]
    for cls, reason, retryable in table:
        if isinstance(exc, cls):
            # The library's messages are long multi-paragraph help texts; keep the cause.
            first = str(exc).strip().splitlines()
            cause = next((line for line in first if line.strip() and "http" not in line.lower()), cls.__name__)
            return TranscriptError(reason, f"YouTube: {cls.__name__}: {cause.strip()[:300]}", retryable=retryable)
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return TranscriptError("youtube_unreachable", f"YouTube could not be reached: {exc}"[:400], retryable=True)
    return TranscriptError("youtube_error", f"YouTube: {type(exc).__name__}: {exc}"[:400], retryable=True)


class YouTubeTranscriptSource:
    """Captions from YouTube through youtube-transcript-api (manual first, then generated)."""

    name = "youtube"

    def __init__(self, settings: TranscriptSettings) -> None:
        self.settings = settings

    def _client(self) -> Any:
        session = _TimeoutSession(self.settings.youtube_timeout_seconds)
        if self.settings.youtube_base_url:
            session.mount("https://www.youtube.com", _RebaseAdapter(self.settings.youtube_base_url))
        return YouTubeTranscriptApi(http_client=session)

    def fetch(self, video_id: str, languages: Sequence[str] = ("en",)) -> FetchedTranscript:
        langs = list(languages) or list(self.settings.languages)
        try:
            fetched = self._client().fetch(video_id, languages=langs)
            raw = fetched.to_raw_data()
        except Exception as exc:
            raise _youtube_error(exc) from None
        segments = [Segment(float(s["start"]), float(s["start"]) + float(s.get("duration", 0.0)),
                            " ".join(str(s["text"]).split())) for s in raw]
        segments = [s for s in segments if s.text]
        if not segments:
            raise TranscriptError("empty_transcript", f"YouTube returned an empty transcript for {video_id}")
        chars = sum(len(s.text) for s in segments)
        if chars > self.settings.max_chars:
            raise TranscriptError("transcript_too_large",
                                  f"{video_id} has {chars} characters; the limit is {self.settings.max_chars}")
        return FetchedTranscript(video_id, "youtube", f"https://www.youtube.com/watch?v={video_id}",
                                 getattr(fetched, "language_code", None), segments)


# --------------------------------------------------------------------------- choice


class TranscriptFetcher:
    """Picks the source for a request: the configured source bounds what a request may ask."""

    def __init__(self, settings: TranscriptSettings, base_dir: Path | None = None) -> None:
        self.settings = settings
        dirs = [Path(d) if Path(d).is_absolute() or base_dir is None else base_dir / d
                for d in settings.local_dirs]
        self.local = LocalTranscriptSource(dirs, settings.max_chars)
        self.youtube = YouTubeTranscriptSource(settings)

    def fetch(self, video_id: str, requested_source: str, languages: Sequence[str]) -> FetchedTranscript:
        allowed = self.settings.source
        if requested_source != "auto" and allowed != "auto" and requested_source != allowed:
            raise TranscriptError("source_not_allowed",
                                  f"source {requested_source!r} is disabled here (configured: {allowed!r})")
        want = requested_source if requested_source != "auto" else allowed
        if want == "local" or (want == "auto" and self.local.has(video_id)):
            return self.local.fetch(video_id, languages)
        return self.youtube.fetch(video_id, languages)
