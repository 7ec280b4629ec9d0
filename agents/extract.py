"""extract: ``transcripts.chunks`` -> ``graph.extractions`` (entities and relations per chunk)."""

from __future__ import annotations

import logging

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

    async def handle(self, event: InputEvent, chunk: TranscriptChunk) -> None:
        rt = self.rt
        try:
            result = await self.extractor.extract(chunk)
            out = ChunkExtraction(chunk=chunk, entities=result.entities, relations=result.relations,
                                  extractor=self.extractor.name, prompt_version=self.extractor.prompt_version)
        except ExtractionFailed as exc:
            extra = {"llm.raw_answer": exc.raw} if exc.raw else {}
            await rt.dead_letter(event, exc.reason, str(exc), error_class="ExtractionFailed", extra=extra)
            # The chunk itself is valid: store it without a graph so its video can complete.
            out = ChunkExtraction(chunk=chunk, extractor=self.extractor.name,
                                  prompt_version=self.extractor.prompt_version, error=f"{exc.reason}: {exc}"[:500])
        await rt.send_event(rt.topics.extractions, chunk.chunk_id, out)


#: Handlers of the rules extractor: its ~1.4 ms of work per chunk runs on the event loop, so
#: handlers only overlap the sends' round trips to the broker (each chunk waits for its ack).
RULES_HANDLERS = 32


def register(rt: StageRuntime) -> None:
    stage = ExtractStage(rt)
    # With the LLM, more handlers than call slots (the client's semaphore keeps the calls to
    # the limit), so that the cache, the send and its ack happen while another handler's call
    # runs. spaCy parses on one thread: more handlers than that only queue on it, and cost CPU
    # (the corpus took 42 s with 32 handlers, 33 s with 4).
    handlers = (RULES_HANDLERS if isinstance(stage.extractor, OfflineExtractor)
                else handlers_for(rt.settings.graphrag.max_concurrent_operations))
    rt.run_decoded(TranscriptChunk, stage.handle, rt.topics.chunks, name="extract", check=verify_chunk,
                   concurrency=handlers)
