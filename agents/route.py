"""route: ``graph.extractions`` -> ``resolve.mentions`` (by block) and ``resolve.pending`` (by chunk).

The first of the three resolution apps. Each entity of a chunk becomes a mention request
for the partition that owns its blocking key, so similar names from any chunk of any video
meet on one partition of the resolve app (a chunk's requests for one partition travel as
one message); the extraction itself waits for its resolved mentions in
the assemble app, keyed by chunk. No table: a redelivered extraction is routed again and
resolves to the same entities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from agents.runtime import InputEvent, StageRuntime
from schemas import ChunkExtraction
from streams.kafka.topics import key_partition
from streams.resolution.resolve import mention_batches, mention_requests


class RouteStage:
    def __init__(self, rt: StageRuntime) -> None:
        self.rt = rt
        partitions = rt.settings.kafka.partitions  # resolve.mentions' (and the block table's) partitions
        self.partition_of: Callable[[str], int] = lambda block: key_partition(block, partitions)

    async def handle(self, batch: Sequence[tuple[InputEvent, ChunkExtraction]]) -> None:
        rt, cfg = self.rt, self.rt.settings.graphrag
        mentions = [(b.mentions[0].block, b) for _, extraction in batch
                    for b in mention_batches(mention_requests(extraction, entity_types=cfg.extraction.entity_types,
                                                              block_chars=cfg.resolution.block_chars),
                                             self.partition_of)]
        # Both at once, in one produce request: the assembler completes a chunk once its
        # extraction and all its mentions met, whichever came first.
        await asyncio.gather(
            rt.send_many(rt.topics.resolve_mentions, mentions),
            rt.send_raw_many(rt.topics.resolve_pending,
                             [(extraction.chunk.chunk_id, event.message.value) for event, extraction in batch]))


def register(rt: StageRuntime) -> None:
    rt.run_decoded_batches(ChunkExtraction, RouteStage(rt).handle, rt.topics.extractions, name="route")
