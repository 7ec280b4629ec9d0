"""extract: ``transcripts.chunks`` -> ``graph.extractions`` (entities and relations per chunk)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agents.runtime import InputEvent, StageRuntime
from schemas import ChunkExtraction, TranscriptChunk
from streams.extraction import ExtractionFailed, Extractor
from streams.extraction.factory import make_extractor
from streams.extraction.offline import OfflineExtractor
from streams.kafka.dlq import BadMessage
from streams.llm.policy import handlers_for
from streams.model.ids import chunk_id

log = logging.getLogger("graphrag.extract")


def verify_chunk(chunk: TranscriptChunk) -> None:
    """A chunk whose ID does not match its content would break idempotency downstream."""
    expected = chunk_id(chunk.video_id, chunk.index, chunk.text)
    if chunk.chunk_id != expected:
        raise BadMessage("chunk_id_mismatch",
                         f"chunk_id {chunk.chunk_id} does not match its video, index and text ({expected})")


class ExtractStage:
    def __init__(self, rt: StageRuntime, extractor: Extractor | None = None) -> None:
        self.rt = rt
        self.extractor = extractor or make_extractor(rt.settings)

    async def extraction(self, event: InputEvent, chunk: TranscriptChunk) -> ChunkExtraction:
        """The chunk's extraction; a permanent failure is dead-lettered and comes back as an
        extraction without a graph (the chunk itself is valid: its video can complete)."""
        try:
            result = await self.extractor.extract(chunk)
            return ChunkExtraction(chunk=chunk, entities=result.entities, relations=result.relations,
                                   extractor=self.extractor.name, prompt_version=self.extractor.prompt_version)
        except ExtractionFailed as exc:
            extra = {"llm.raw_answer": exc.raw} if exc.raw else {}
            await self.rt.dead_letter(event, exc.reason, str(exc), error_class="ExtractionFailed", extra=extra)
            return ChunkExtraction(chunk=chunk, extractor=self.extractor.name,
                                   prompt_version=self.extractor.prompt_version, error=f"{exc.reason}: {exc}"[:500])

    async def handle(self, event: InputEvent, chunk: TranscriptChunk) -> None:
        """One chunk, one send: an LLM call's handler overlaps the others' calls."""
        await self.rt.send_event(self.rt.topics.extractions, chunk.chunk_id, await self.extraction(event, chunk))

    async def handle_batch(self, batch: Sequence[tuple[InputEvent, TranscriptChunk]]) -> None:
        """The chunks at hand, one send: an offline extractor's work is CPU on this loop, so
        handlers that each await their own send only add produce requests."""
        out = [(chunk.chunk_id, await self.extraction(event, chunk)) for event, chunk in batch]
        await self.rt.send_many(self.rt.topics.extractions, out)


def register(rt: StageRuntime) -> None:
    stage = ExtractStage(rt)
    if isinstance(stage.extractor, OfflineExtractor):
        rt.run_decoded_batches(TranscriptChunk, stage.handle_batch, rt.topics.chunks, name="extract",
                               check=verify_chunk)
        return
    # With the LLM, more handlers than call slots (the client's semaphore keeps the calls to
    # the limit), so that the cache, the send and its ack happen while another handler's call
    # runs. spaCy parses on one thread: more handlers than that only queue on it, and cost CPU
    # (the corpus took 42 s with 32 handlers, 33 s with 4).
    rt.run_decoded(TranscriptChunk, stage.handle, rt.topics.chunks, name="extract", check=verify_chunk,
                   concurrency=handlers_for(rt.settings.graphrag.max_concurrent_operations))
