"""resolve: ``graph.extractions`` -> ``graph.edges``, with streaming entity resolution.

Three agents in the resolve app (one consumer group):

* route: each extraction goes to ``resolve.pending`` (keyed by chunk) and each of its
  entities to ``resolve.mentions``, keyed by blocking key, so that similar names from any
  chunk of any video meet on one partition.
* resolver: resolves mentions against the names its partition's blocks already know (a
  changelog-backed table: it survives restarts and rebalances) and the merge decisions
  on the aliases topic; answers on ``resolve.resolved`` keyed by chunk.
* assembler: joins a chunk's extraction with its resolved mentions (both keyed by chunk,
  co-partitioned; state in a second table) and emits the chunk's graph update.

Every step is idempotent: a redelivered mention resolves to the entity its block already
knows, a redelivered extraction is assembled again into the same update. (A mention
answer redelivered after its chunk was assembled leaves a small entry behind in the
assembly table; it completes harmlessly if the chunk is ever processed again.)
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from agents.runtime import StageRuntime
from schemas import ChunkExtraction, MentionRequest, MentionResolved
from streams.aliases import AliasTable
from streams.codec import decode
from streams.dlq import BadMessage
from streams.resolution import Canonical, mention_requests, resolve_extraction, resolve_mention

log = logging.getLogger("graphrag.resolve")
JSON: Any = faust.Schema(key_serializer="json", value_serializer="json")


def register(rt: StageRuntime) -> None:
    app, t, settings = rt.app, rt.topics, rt.settings
    cfg = settings.graphrag.resolution
    types = settings.graphrag.extraction.entity_types
    max_bytes = settings.security.max_message_bytes
    partitions = settings.kafka.partitions
    blocks = app.Table("resolver-blocks", default=dict, partitions=partitions, schema=JSON,
                       help="blocking key -> {folded name: [entity_id, type, canonical name]}")
    assembly = app.Table("resolver-assembly", default=dict, partitions=partitions, schema=JSON,
                         help="chunk_id -> {extraction, resolved mentions}")
    # Read every merge decision before any mention is resolved (the worker starts after this).
    aliases = AliasTable(settings).start()

    @app.agent(rt.topic(t.extractions), name="resolve-route")
    async def route(stream: Any) -> None:
        async for event in stream.events():
            async with rt.processing([event]):
                try:
                    extraction = decode(ChunkExtraction, event.message.value, max_bytes=max_bytes)
                except BadMessage as exc:
                    await rt.dead_letter(event, exc.reason, str(exc))
                    continue
                requests = mention_requests(extraction, entity_types=types, block_chars=cfg.block_chars)
                await rt.send_many(t.resolve_mentions, [(r.block, r) for r in requests])
                await rt.send(t.resolve_pending, extraction.chunk.chunk_id, event.message.value)

    @app.agent(rt.topic(t.resolve_mentions), name="resolve-mentions")
    async def resolver(stream: Any) -> None:
        async for event in stream.events():
            async with rt.processing([event]):
                try:
                    req = decode(MentionRequest, event.message.value, max_bytes=max_bytes)
                except BadMessage as exc:
                    await rt.dead_letter(event, exc.reason, str(exc))
                    continue
                canonical, how, updated = resolve_mention(blocks[req.block], req.name, req.type, cfg,
                                                          alias=aliases.get)
                if updated is not None:
                    blocks[req.block] = updated
                await rt.send_event(t.resolve_resolved, req.chunk_id, MentionResolved(
                    chunk_id=req.chunk_id, mention=req.mention, entity_id=canonical.entity_id,
                    type=canonical.type, canonical_name=canonical.name, how=how))

    @app.agent(rt.topic(t.resolve_pending, t.resolve_resolved), name="resolve-assemble")
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
                        extraction = None
                except BadMessage as exc:
                    await rt.dead_letter(event, exc.reason, str(exc))
                    continue
                if "extraction" in state:
                    extraction = ChunkExtraction.model_validate(state["extraction"])
                    wanted = {r.mention for r in mention_requests(extraction, entity_types=types,
                                                                  block_chars=cfg.block_chars)}
                    have = {int(k): Canonical(*v) for k, v in state.get("resolved", {}).items()}
                    if wanted <= set(have):
                        update = resolve_extraction(extraction, entity_types=types, resolved=have)
                        await rt.send_event(t.edges, update.chunk.video_id, update)
                        if chunk_key in assembly:
                            del assembly[chunk_key]
                        continue
                assembly[chunk_key] = state
