"""assemble: ``resolve.pending`` + ``resolve.resolved`` -> ``graph.edges``.

Joins a chunk's extraction with its resolved mentions (both keyed by chunk and
co-partitioned; the partial state lives in this app's own table) and emits the chunk's
graph update once every mention has its entity. A redelivered extraction is assembled
again into the same update. (A mention answer redelivered after its chunk was assembled
leaves a small entry behind; it completes harmlessly if the chunk is processed again.)
"""

from __future__ import annotations

from typing import Any

import faust

from agents.runtime import StageRuntime
from schemas import ChunkExtraction, MentionResolved
from streams.kafka.codec import decode
from streams.kafka.dlq import BadMessage
from streams.kafka.topics import TABLES, Stage
from streams.resolution.resolve import Canonical, mention_requests, resolve_extraction

JSON: Any = faust.Schema(key_serializer="json", value_serializer="json")


def register(rt: StageRuntime) -> None:
    app, t, settings = rt.app, rt.topics, rt.settings
    cfg = settings.graphrag.resolution
    types = settings.graphrag.extraction.entity_types
    max_bytes = settings.security.max_message_bytes
    (table_name,) = TABLES[Stage.ASSEMBLE]
    assembly = app.Table(table_name, default=dict, partitions=settings.kafka.partitions, schema=JSON,
                         help="chunk_id -> {extraction, resolved mentions}")

    def complete(state: dict[str, Any]) -> Any:
        """The chunk's graph update when its extraction and every mention are in, else None."""
        if "extraction" not in state:
            return None
        extraction = ChunkExtraction.model_validate(state["extraction"])
        wanted = {r.mention for r in mention_requests(extraction, entity_types=types, block_chars=cfg.block_chars)}
        have = {int(k): Canonical(*v) for k, v in state.get("resolved", {}).items()}
        if not wanted <= set(have):
            return None
        return resolve_extraction(extraction, entity_types=types, resolved=have)

    @app.agent(rt.topic(t.resolve_pending, t.resolve_resolved), name="assemble")
    async def assembler(stream: Any) -> None:
        async for event in stream.events():
            async with rt.processing([event]):
                msg = event.message
                chunk_key = (msg.key or b"").decode("utf-8", "replace")
                state = dict(assembly[chunk_key])
                try:
                    if msg.topic == t.resolve_pending:
                        extraction = decode(ChunkExtraction, msg.value, max_bytes=max_bytes)
                        state["extraction"] = extraction.model_dump(mode="json")
                    else:
                        resolved = decode(MentionResolved, msg.value, max_bytes=max_bytes)
                        state.setdefault("resolved", {})[str(resolved.mention)] = [
                            resolved.entity_id, resolved.type, resolved.canonical_name]
                except BadMessage as exc:
                    await rt.dead_letter(event, exc.reason, str(exc))
                    continue
                update = complete(state)
                if update is None:
                    assembly[chunk_key] = state
                    continue
                await rt.send_event(t.graph_updates, update.chunk.video_id, update)
                if chunk_key in assembly:
                    del assembly[chunk_key]
