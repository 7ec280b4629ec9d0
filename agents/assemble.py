"""assemble: ``resolve.pending`` + ``resolve.resolved`` -> ``graph.edges``.

Joins a chunk's extraction with its resolved mentions (both keyed by chunk and
co-partitioned; the partial state lives in this app's own table) and emits the chunk's
graph update once every mention has its entity. A redelivered extraction is assembled
again into the same update. (A mention answer redelivered after its chunk was assembled
leaves a small entry behind; it completes harmlessly if the chunk is processed again.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faust

from agents.runtime import BATCH_SECONDS, BATCH_SIZE, InputEvent, StageRuntime, table_writes_for
from schemas import ChunkExtraction, GraphUpdate, MentionResolved, MentionsResolved
from streams.kafka.codec import decode_resolved
from streams.kafka.topics import TABLES, Stage
from streams.resolution.resolve import Canonical, mention_requests, resolve_extraction

JSON: Any = faust.Schema(key_serializer="json", value_serializer="json")


@dataclass(frozen=True)
class Assembly:
    """One chunk's partial state: its extraction once it came, the mentions resolved so far.

    Stored in the table as ``{"extraction": {...}, "resolved": {"3": [id, type, name]}}``,
    the shape the changelogs of running deployments already hold.
    """

    extraction: ChunkExtraction | None = None
    resolved: Mapping[int, Canonical] = field(default_factory=dict)

    @classmethod
    def from_table(cls, value: Mapping[str, Any]) -> Assembly:
        x = value.get("extraction")
        return cls(ChunkExtraction.model_validate(x) if x is not None else None,
                   {int(k): Canonical(*v) for k, v in (value.get("resolved") or {}).items()})

    def to_table(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.extraction is not None:
            out["extraction"] = self.extraction.model_dump(mode="json")
        if self.resolved:
            out["resolved"] = {str(k): [c.entity_id, c.type, c.name] for k, c in self.resolved.items()}
        return out

    def with_resolved(self, answer: MentionResolved) -> Assembly:
        canonical = Canonical(answer.entity_id, answer.type, answer.canonical_name)
        return replace(self, resolved={**self.resolved, answer.mention: canonical})

    def complete(self, *, entity_types: Iterable[str] | None, block_chars: int) -> GraphUpdate | None:
        """The chunk's graph update when its extraction and every mention are in, else None."""
        if self.extraction is None:
            return None
        wanted = {r.mention for r in mention_requests(self.extraction, entity_types=entity_types,
                                                       block_chars=block_chars)}
        if not wanted <= set(self.resolved):
            return None
        return resolve_extraction(self.extraction, entity_types=entity_types, resolved=dict(self.resolved))


class AssembleStage:
    """Handles a batch at a time: the messages of one chunk in a batch cost one table read and
    one table write (a chunk's ~10 messages arrive close together), and the batch's completed
    updates are sent together instead of one awaited round trip each."""

    def __init__(self, rt: StageRuntime, table: MutableMapping[str, dict[str, Any]]) -> None:
        self.rt = rt
        self.table = table  # chunk_id -> Assembly.to_table()
        limit = rt.settings.security.max_message_bytes
        self.decode_resolved: Callable[[bytes], MentionsResolved] = lambda raw: decode_resolved(raw, max_bytes=limit)

    async def apply(self, state: Assembly, event: InputEvent) -> Assembly:
        """``state`` with one message of its chunk applied (unchanged if it was dead-lettered)."""
        rt = self.rt
        if event.message.topic == rt.topics.resolve_pending:
            extraction = await rt.decode_or_dead_letter(event, ChunkExtraction)
            return state if extraction is None else replace(state, extraction=extraction)
        answers = await rt.decode_or_dead_letter(event, MentionsResolved, decoder=self.decode_resolved)
        if answers is None:
            return state
        for answer in answers.answers:
            state = state.with_resolved(answer)
        return state

    async def handle(self, events: Sequence[InputEvent]) -> None:
        rt, cfg = self.rt, self.rt.settings.graphrag
        by_chunk: dict[str, list[InputEvent]] = {}
        for event in events:  # keyed by chunk and co-partitioned: a chunk's messages share a partition
            by_chunk.setdefault((event.message.key or b"").decode("utf-8", "replace"), []).append(event)
        completed: list[tuple[str, InputEvent, GraphUpdate]] = []
        for chunk_key, chunk_events in by_chunk.items():
            state = before = Assembly.from_table(self.table[chunk_key])
            for event in chunk_events:
                state = await self.apply(state, event)
            update = state.complete(entity_types=cfg.extraction.entity_types, block_chars=cfg.resolution.block_chars)
            if update is not None:
                completed.append((chunk_key, chunk_events[-1], update))
            elif state != before:
                with table_writes_for(chunk_events[-1]):
                    self.table[chunk_key] = state.to_table()
        await rt.send_many(rt.topics.graph_updates, [(u.chunk.video_id, u) for _, _, u in completed])
        for chunk_key, event, _ in completed:  # only once the updates are on the broker
            if chunk_key in self.table:
                with table_writes_for(event):
                    del self.table[chunk_key]


def register(rt: StageRuntime) -> None:
    (table_name,) = TABLES[Stage.ASSEMBLE]
    table = rt.app.Table(table_name, default=dict, partitions=rt.settings.kafka.partitions, schema=JSON,
                         help="chunk_id -> {extraction, resolved mentions}")
    rt.run_batches(AssembleStage(rt, table).handle, rt.topics.resolve_pending, rt.topics.resolve_resolved,
                   name="assemble", size=BATCH_SIZE, within=BATCH_SECONDS)
