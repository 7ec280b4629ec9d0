"""A local HTTP server speaking the parts of YouTube that youtube-transcript-api 1.2.x uses.

What the library does for ``YouTubeTranscriptApi().fetch(video_id, languages)``:

1. ``GET https://www.youtube.com/watch?v=<id>``: it looks for ``"INNERTUBE_API_KEY": "<key>"``
   in the HTML (and for a consent form or a reCAPTCHA);
2. ``POST https://www.youtube.com/youtubei/v1/player?key=<key>`` with
   ``{"context": {"client": {"clientName": "ANDROID", ...}}, "videoId": <id>}``: it reads
   ``playabilityStatus`` and ``captions.playerCaptionsTracklistRenderer.captionTracks``
   (``baseUrl``, ``languageCode``, ``name.runs[0].text``, ``kind == "asr"`` for generated);
3. ``GET <baseUrl>`` (with ``&fmt=srv3`` removed): timedtext XML,
   ``<transcript><text start=".." dur="..">..</text></transcript>``, entity-escaped twice.

Caption ``baseUrl``s point at ``https://www.youtube.com/api/timedtext`` like the real ones; the
code under test sends every www.youtube.com request to this server (TranscriptSettings
.youtube_base_url), so all three requests arrive here. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API_KEY = "AIzaSyFAKE_innertube-key_0123456789"
UNAVAILABLE = {"status": "ERROR", "reason": "This video is unavailable"}


@dataclass
class Track:
    language_code: str
    name: str
    #: (start, duration, text) per caption line; text as the viewer sees it.
    lines: list[tuple[float, float, str]]
    generated: bool = False


@dataclass
class Video:
    tracks: list[Track] = field(default_factory=list)
    #: The player response's playabilityStatus.
    playability: dict[str, Any] = field(default_factory=lambda: {"status": "OK", "playableInEmbed": True})
    #: False: the player response has no "captions" (subtitles disabled).
    captions: bool = True
    #: Answer this endpoint ("watch", "player" or "timedtext") with this HTTP status instead.
    fail: tuple[str, int] | None = None
    #: Replace the watch page (e.g. one without an API key).
    watch_html: str | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


class FakeYouTube:
    """``with FakeYouTube() as yt: yt.videos["Pw0IZg7_4mo"] = Video(...); yt.url``"""

    def __init__(self) -> None:
        self.videos: dict[str, Video] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeYouTube:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the body waited for
            # the client's delayed ACK, 40 ms added to every request on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake._handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                fake._handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-youtube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeYouTube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection

    def paths(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(r.method, r.path) for r in self.requests]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ YouTube

    def _handle(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append(Request(h.command, parts.path, query, body, dict(h.headers.items())))
        if h.command == "GET" and parts.path == "/watch":
            video_id = query.get("v", [""])[0]
            self._watch(h, video_id)
        elif h.command == "POST" and parts.path == "/youtubei/v1/player":
            if query.get("key") != [API_KEY]:
                self._send(h, 403, "application/json", b'{"error": {"code": 403, "status": "PERMISSION_DENIED"}}')
                return
            video_id = body.get("videoId", "") if isinstance(body, dict) else ""
            self._player(h, video_id)
        elif h.command == "GET" and parts.path == "/api/timedtext":
            self._timedtext(h, query.get("v", [""])[0], query.get("lang", [""])[0], query.get("kind") == ["asr"])
        else:
            self._send(h, 404, "text/plain", b"not found")

    def _failing(self, h: BaseHTTPRequestHandler, video_id: str, endpoint: str) -> bool:
        video = self.videos.get(video_id)
        if video is not None and video.fail is not None and video.fail[0] == endpoint:
            self._send(h, video.fail[1], "text/html", b"<html><body>error</body></html>")
            return True
        return False

    def _watch(self, h: BaseHTTPRequestHandler, video_id: str) -> None:
        if self._failing(h, video_id, "watch"):
            return
        video = self.videos.get(video_id)
        if video is not None and video.watch_html is not None:
            html = video.watch_html
        else:
            # Unknown videos get a page too (as on YouTube); the player says they are unavailable.
            html = ('<!DOCTYPE html><html><head><title>YouTube</title></head><body><script>'
                    'ytcfg.set({"INNERTUBE_API_KEY":"' + API_KEY + '","INNERTUBE_CLIENT_NAME":"WEB"});'
                    '</script><div id="player"></div></body></html>')
        self._send(h, 200, "text/html; charset=utf-8", html.encode())

    def _player(self, h: BaseHTTPRequestHandler, video_id: str) -> None:
        if self._failing(h, video_id, "player"):
            return
        video = self.videos.get(video_id)
        if video is None:
            data: dict[str, Any] = {"playabilityStatus": UNAVAILABLE}
        else:
            data = {"playabilityStatus": video.playability,
                    "videoDetails": {"videoId": video_id, "title": f"Video {video_id}"}}
            if video.captions:
                data["captions"] = {"playerCaptionsTracklistRenderer": {
                    "captionTracks": [{
                        "baseUrl": "https://www.youtube.com/api/timedtext?" + urlencode(
                            {"v": video_id, "caps": "asr", "lang": t.language_code,
                             **({"kind": "asr"} if t.generated else {})}) + "&fmt=srv3",
                        "name": {"runs": [{"text": t.name}]},
                        "vssId": ("a." if t.generated else ".") + t.language_code,
                        "languageCode": t.language_code,
                        **({"kind": "asr"} if t.generated else {}),
                        "isTranslatable": False,
                    } for t in video.tracks],
                    "audioTracks": [{"captionTrackIndices": list(range(len(video.tracks)))}],
                    "translationLanguages": [],
                }}
        self._send(h, 200, "application/json; charset=utf-8", json.dumps(data).encode())

    def _timedtext(self, h: BaseHTTPRequestHandler, video_id: str, lang: str, generated: bool) -> None:
        if self._failing(h, video_id, "timedtext"):
            return
        video = self.videos.get(video_id)
        track = next((t for t in video.tracks if t.language_code == lang and t.generated == generated),
                     None) if video else None
        if track is None:
            self._send(h, 404, "text/plain", b"no such track")
            return
        # YouTube escapes the caption text twice ("&" arrives as "&amp;amp;").
        lines = "".join(f'<text start="{start}" dur="{dur}">{escape(escape(text))}</text>'
                        for start, dur, text in track.lines)
        xml = f'<?xml version="1.0" encoding="utf-8" ?><transcript>{lines}</transcript>'
        self._send(h, 200, "text/xml; charset=UTF-8", xml.encode())

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, content_type: str, payload: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)


@contextmanager
def fake_youtube() -> Iterator[FakeYouTube]:
    with FakeYouTube() as yt:
        yield yt
