"""resolve: ``graph.extractions`` -> ``graph.edges`` (canonical entity and relation IDs)."""

from __future__ import annotations

from typing import Any

from agents.runtime import StageRuntime
from schemas import ChunkExtraction
from streams.codec import decode
from streams.dlq import BadMessage
from streams.resolution import resolve_extraction


async def handle(rt: StageRuntime, event: Any) -> None:
    try:
        extraction = decode(ChunkExtraction, event.message.value, max_bytes=rt.settings.security.max_message_bytes)
    except BadMessage as exc:
        await rt.dead_letter(event, exc.reason, str(exc))
        return
    update = resolve_extraction(extraction, entity_types=rt.settings.graphrag.extraction.entity_types)
    # Keyed by video: all of a video's chunks reach the same sink partition.
    await rt.send_event(rt.topics.edges, update.chunk.video_id, update)


def register(rt: StageRuntime) -> None:
    @rt.app.agent(rt.topic(rt.topics.extractions), name="resolve")
    async def resolve(stream: Any) -> None:
        async for event in stream.events():
            async with rt.processing([event]):
                await handle(rt, event)
