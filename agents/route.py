"""route: ``graph.extractions`` -> ``resolve.mentions`` (by block) and ``resolve.pending`` (by chunk).

The first of the three resolution apps. Each entity of a chunk becomes a mention request
keyed by its blocking key, so similar names from any chunk of any video meet on one
partition of the resolve app; the extraction itself waits for its resolved mentions in
the assemble app, keyed by chunk. No table: a redelivered extraction is routed again and
resolves to the same entities.
"""

from __future__ import annotations

from typing import Any

from agents.runtime import StageRuntime
from schemas import ChunkExtraction
from streams.kafka.codec import decode
from streams.kafka.dlq import BadMessage
from streams.resolution.resolve import mention_requests


async def handle(rt: StageRuntime, event: Any) -> None:
    t, cfg = rt.topics, rt.settings.graphrag.resolution
    try:
        extraction = decode(ChunkExtraction, event.message.value, max_bytes=rt.settings.security.max_message_bytes)
    except BadMessage as exc:
        await rt.dead_letter(event, exc.reason, str(exc))
        return
    requests = mention_requests(extraction, entity_types=rt.settings.graphrag.extraction.entity_types,
                                block_chars=cfg.block_chars)
    # Mentions first: the assembler completes a chunk once its extraction and all its mentions met.
    await rt.send_many(t.resolve_mentions, [(r.block, r) for r in requests])
    await rt.send(t.resolve_pending, extraction.chunk.chunk_id, event.message.value)


def register(rt: StageRuntime) -> None:
    @rt.app.agent(rt.topic(rt.topics.extractions), name="route")
    async def route(stream: Any) -> None:
        async for event in stream.events():
            async with rt.processing([event]):
                await handle(rt, event)
