"""chunk: ``transcripts.fetched`` -> ``transcripts.chunks``, one message per timed chunk.

Chunks are keyed by chunk_id, so a long video spreads over every partition of the chunk
topic and its extraction runs in parallel instead of serially.
"""

from __future__ import annotations

from agents.runtime import InputEvent, StageRuntime
from schemas import TranscriptFetched
from streams.transcripts.chunking import chunk_transcript


class ChunkStage:
    def __init__(self, rt: StageRuntime) -> None:
        self.rt = rt

    async def handle(self, event: InputEvent, t: TranscriptFetched) -> None:
        """Cut one fetched transcript into chunks; a transcript without words is dead-lettered."""
        rt = self.rt
        cfg = rt.settings.graphrag.chunking
        try:
            chunks = chunk_transcript(t, cfg.tokens, cfg.overlap)
        except ValueError as exc:  # a pydantic limit, e.g. a single "word" longer than a chunk may be
            await rt.dead_letter(event, "unchunkable_transcript", str(exc)[:500])
            await rt.status(t.video_id, "failed", detail=f"unchunkable_transcript: {str(exc)[:300]}")
            return
        if not chunks:
            await rt.dead_letter(event, "empty_transcript", "the transcript has no words to chunk")
            await rt.status(t.video_id, "failed", detail="empty_transcript")
            return
        await rt.send_many(rt.topics.chunks, [(c.chunk_id, c) for c in chunks])
        await rt.status(t.video_id, "done", detail=f"{len(chunks)} chunks", chunk_count=len(chunks),
                        requested_at=t.requested_at)


def register(rt: StageRuntime) -> None:
    # Several transcripts at once: each waits for its chunks' and its status's acks, and a
    # video's chunks are independent of another's.
    rt.run_decoded(TranscriptFetched, ChunkStage(rt).handle, rt.topics.transcripts, name="chunk", concurrency=8)
