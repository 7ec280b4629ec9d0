"""resolve: ``resolve.mentions`` -> ``resolve.resolved``, streaming entity resolution.

Mentions arrive keyed by blocking key. Each is resolved against the names its block
already knows (a changelog-backed table, so it survives restarts and rebalances; this app
is its only reader and writer) and the merge decisions on the aliases topic, and the
answer goes to ``resolve.resolved`` keyed by chunk. A redelivered mention resolves to the
entity its block already knows.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import faust

from agents.runtime import InputEvent, StageRuntime
from schemas import MentionRequest, MentionResolved
from streams.kafka.topics import TABLES, Stage
from streams.resolution.aliases import AliasTable
from streams.resolution.resolve import BlockState, resolve_mention

JSON: Any = faust.Schema(key_serializer="json", value_serializer="json")


class ResolveStage:
    def __init__(self, rt: StageRuntime, blocks: MutableMapping[str, BlockState], aliases: AliasTable) -> None:
        self.rt = rt
        self.blocks = blocks  # blocking key -> the block's names (resolution.resolve.BlockState)
        self.aliases = aliases

    async def handle(self, event: InputEvent, req: MentionRequest) -> None:
        rt = self.rt
        canonical, how, updated = resolve_mention(self.blocks[req.block], req.name, req.type,
                                                  rt.settings.graphrag.resolution, alias=self.aliases.get)
        if updated is not None:
            self.blocks[req.block] = updated
        await rt.send_event(rt.topics.resolve_resolved, req.chunk_id, MentionResolved(
            chunk_id=req.chunk_id, mention=req.mention, entity_id=canonical.entity_id,
            type=canonical.type, canonical_name=canonical.name, how=how))


def register(rt: StageRuntime) -> None:
    (table_name,) = TABLES[Stage.RESOLVE]
    blocks = rt.app.Table(table_name, default=dict, partitions=rt.settings.kafka.partitions, schema=JSON,
                          help="blocking key -> {folded name: [entity_id, type, canonical name]}")
    # Read every merge decision before any mention is resolved (the worker starts after this).
    aliases = AliasTable(rt.settings).start()
    rt.run_decoded(MentionRequest, ResolveStage(rt, blocks, aliases).handle, rt.topics.resolve_mentions,
                   name="resolve")
