"""fetch: ``videos.requested`` -> ``transcripts.fetched`` (plus progress on ``videos.status``)."""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agents.runtime import InputEvent, StageRuntime
from schemas import TranscriptFetched, TranscriptSegment, VideoRequested
from schemas.events import utcnow
from streams.kafka.codec import decode_request, encode
from streams.transcripts.parse import TranscriptError
from streams.transcripts.sources import FetchedTranscript, TranscriptFetcher

log = logging.getLogger("graphrag.fetch")


class FetchStage:
    def __init__(self, rt: StageRuntime, fetcher: TranscriptFetcher | None = None) -> None:
        self.rt = rt
        self.fetcher = fetcher or TranscriptFetcher(rt.settings.graphrag.transcripts, base_dir=Path.cwd())
        # Fetching is blocking HTTP/file IO; keep it off the event loop.
        self.pool = ThreadPoolExecutor(max_workers=rt.settings.graphrag.max_concurrent_operations,
                                       thread_name_prefix="fetch")

    async def _fetch_with_retries(self, req: VideoRequested) -> FetchedTranscript:
        attempts = self.rt.settings.graphrag.retry_attempts + 1
        loop = asyncio.get_running_loop()
        for attempt in range(1, attempts + 1):
            try:
                return await loop.run_in_executor(self.pool, self.fetcher.fetch, req.video_id, req.source,
                                                  req.languages)
            except TranscriptError as exc:
                if not exc.retryable or attempt == attempts:
                    raise
                delay = min(30.0, 2 ** attempt) * (0.5 + random.random() / 2)  # retry jitter, not a secret  # nosec B311
                log.info("fetch %s: %s (attempt %d/%d); retrying in %.1fs", req.video_id, exc, attempt,
                         attempts, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def handle(self, event: InputEvent, req: VideoRequested) -> None:
        rt = self.rt
        await rt.status(req.video_id, "started", requested_at=req.requested_at)
        try:
            transcript = await self._fetch_with_retries(req)
        except TranscriptError as exc:
            await rt.dead_letter(event, exc.reason, str(exc), error_class="TranscriptError")
            await rt.status(req.video_id, "failed", detail=f"{exc.reason}: {exc}", requested_at=req.requested_at)
            return
        fetched = TranscriptFetched(
            video_id=req.video_id,
            source=transcript.source,
            source_ref=transcript.source_ref[:500],
            language=transcript.language,
            title=transcript.title,
            segments=[TranscriptSegment(start=s.start, end=s.end, text=s.text[:5000])
                      for s in transcript.segments],
            requested_at=req.requested_at,
            fetched_at=utcnow(),
        )
        payload = encode(fetched)
        if len(payload) > rt.settings.security.max_message_bytes:
            limit = rt.settings.security.max_message_bytes
            reason = f"transcript is {len(payload)} bytes encoded; the limit is {limit}"
            await rt.dead_letter(event, "oversize", reason)
            await rt.status(req.video_id, "failed", detail=f"oversize: {reason}")
            return
        await rt.send(rt.topics.transcripts, req.video_id, payload)
        await rt.status(req.video_id, "done", detail=f"{len(fetched.segments)} segments from {transcript.source}",
                        source=transcript.source, title=transcript.title, requested_at=req.requested_at)


def register(rt: StageRuntime) -> None:
    max_bytes = rt.settings.security.max_request_bytes
    # The ingest topic takes a bare video ID as well as a VideoRequested document.
    rt.run_decoded(VideoRequested, FetchStage(rt).handle, rt.topics.requested, name="fetch",
                   decoder=lambda raw: decode_request(raw, max_bytes=max_bytes),
                   concurrency=rt.settings.graphrag.max_concurrent_operations)
