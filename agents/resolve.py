"""resolve: ``resolve.mentions`` -> ``resolve.resolved``, streaming entity resolution.

Mentions arrive keyed by blocking key. Each is resolved against the names its block
already knows (a changelog-backed table, so it survives restarts and rebalances; this app
is its only reader and writer) and the merge decisions on the aliases topic, and the
answer goes to ``resolve.resolved`` keyed by chunk. A redelivered mention resolves to the
entity its block already knows.
"""

from __future__ import annotations

from typing import Any

import faust

from agents.runtime import StageRuntime
from schemas import MentionRequest, MentionResolved
from streams.kafka.codec import decode
from streams.kafka.dlq import BadMessage
from streams.kafka.topics import TABLES, Stage
from streams.resolution.aliases import AliasTable
from streams.resolution.resolve import resolve_mention

JSON: Any = faust.Schema(key_serializer="json", value_serializer="json")


def register(rt: StageRuntime) -> None:
    app, t, settings = rt.app, rt.topics, rt.settings
    cfg = settings.graphrag.resolution
    max_bytes = settings.security.max_message_bytes
    (table_name,) = TABLES[Stage.RESOLVE]
    blocks = app.Table(table_name, default=dict, partitions=settings.kafka.partitions, schema=JSON,
                       help="blocking key -> {folded name: [entity_id, type, canonical name]}")
    # Read every merge decision before any mention is resolved (the worker starts after this).
    aliases = AliasTable(settings).start()

    @app.agent(rt.topic(t.resolve_mentions), name="resolve")
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
