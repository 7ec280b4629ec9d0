"""resolve: ``resolve.mentions`` -> ``resolve.resolved``, streaming entity resolution.

Mentions arrive in batches (a chunk's mentions whose blocks this partition owns). Each is
resolved against the names its block already knows (a changelog-backed table, so it
survives restarts and rebalances; this app is its only reader and writer) and the merge
decisions on the aliases topic; a batch's answers go to ``resolve.resolved`` as one
message, keyed by chunk. A redelivered mention resolves to the entity its block already
knows.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import faust

from agents.runtime import InputEvent, StageRuntime, table_writes_for
from schemas import MentionBatch, MentionResolved, MentionsResolved
from streams.kafka.codec import decode_mentions
from streams.kafka.topics import TABLES, Stage
from streams.resolution.aliases import AliasTable
from streams.resolution.resolve import BlockState, resolve_mention

JSON: Any = faust.Schema(key_serializer="json", value_serializer="json")


class ResolveStage:
    def __init__(self, rt: StageRuntime, blocks: MutableMapping[str, BlockState], aliases: AliasTable) -> None:
        self.rt = rt
        self.blocks = blocks  # blocking key -> the block's names (resolution.resolve.BlockState)
        self.aliases = aliases

    async def handle(self, batch: Sequence[tuple[InputEvent, MentionBatch]]) -> None:
        """Resolves the batch's mentions in order (each sees what the ones before it added to
        its block), then sends the answers together, one message per chunk's batch."""
        rt, cfg = self.rt, self.rt.settings.graphrag.resolution
        answers: list[tuple[str, MentionsResolved]] = []
        for event, mentions in batch:
            resolved = []
            for req in mentions.mentions:
                canonical, how, updated = resolve_mention(self.blocks[req.block], req.name, req.type, cfg,
                                                          alias=self.aliases.get)
                if updated is not None:
                    with table_writes_for(event):
                        self.blocks[req.block] = updated
                resolved.append(MentionResolved(chunk_id=req.chunk_id, mention=req.mention,
                                                entity_id=canonical.entity_id, type=canonical.type,
                                                canonical_name=canonical.name, how=how))
            answers.append((mentions.chunk_id, MentionsResolved(chunk_id=mentions.chunk_id, answers=resolved)))
        await rt.send_many(rt.topics.resolve_resolved, answers)


def register(rt: StageRuntime) -> None:
    (table_name,) = TABLES[Stage.RESOLVE]
    blocks = rt.app.Table(table_name, default=dict, partitions=rt.settings.kafka.partitions, schema=JSON,
                          help="blocking key -> {folded name: [entity_id, type, canonical name]}")
    # Read every merge decision before any mention is resolved (the worker starts after this).
    aliases = AliasTable(rt.settings).start()
    max_bytes = rt.settings.security.max_message_bytes
    rt.run_decoded_batches(MentionBatch, ResolveStage(rt, blocks, aliases).handle, rt.topics.resolve_mentions,
                           name="resolve", decoder=lambda raw: decode_mentions(raw, max_bytes=max_bytes))
