"""Topic names, consumer groups and stage wiring: the one place that knows them.

Every name carries the configured prefix, so several deployments (or test runs) share a
cluster without touching each other's data. Each stage is its own Faust app, and the app
id is the consumer group, so a stage's input-topic lag is its own scaling signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from streams.config import KafkaSettings, Settings


class Stage(StrEnum):
    FETCH = "fetch"
    CHUNK = "chunk"
    EXTRACT = "extract"
    RESOLVE = "resolve"
    SINK = "sink"
    # Not a stream stage: a leader-only timer (merge pass, communities, summaries).
    COMMUNITIES = "communities"


#: The streaming stages, in order: each consumes an input topic and scales on its lag.
PIPELINE: tuple[Stage, ...] = (Stage.FETCH, Stage.CHUNK, Stage.EXTRACT, Stage.RESOLVE, Stage.SINK)
#: Every app a deployment runs (`worker --stages all`).
ALL_APPS: tuple[Stage, ...] = (*PIPELINE, Stage.COMMUNITIES)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def requested(self) -> str:
        return f"{self.prefix}videos.requested"

    @property
    def transcripts(self) -> str:
        return f"{self.prefix}transcripts.fetched"

    @property
    def chunks(self) -> str:
        return f"{self.prefix}transcripts.chunks"

    @property
    def extractions(self) -> str:
        return f"{self.prefix}graph.extractions"

    @property
    def edges(self) -> str:
        return f"{self.prefix}graph.edges"

    @property
    def status(self) -> str:
        return f"{self.prefix}videos.status"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    # The resolve stage's own topics: mentions repartitioned by blocking key, the chunk
    # waiting for its mentions, resolved mentions by chunk, and merge decisions (compacted).
    @property
    def resolve_mentions(self) -> str:
        return f"{self.prefix}resolve.mentions"

    @property
    def resolve_pending(self) -> str:
        return f"{self.prefix}resolve.pending"

    @property
    def resolve_resolved(self) -> str:
        return f"{self.prefix}resolve.resolved"

    @property
    def aliases(self) -> str:
        return f"{self.prefix}entities.aliases"

    def inputs(self, stage: Stage) -> tuple[str, ...]:
        """The topics a stage consumes; the first is the one its lag scales on."""
        return {
            Stage.FETCH: (self.requested,),
            Stage.CHUNK: (self.transcripts,),
            Stage.EXTRACT: (self.chunks,),
            Stage.RESOLVE: (self.extractions, self.resolve_mentions, self.resolve_pending, self.resolve_resolved),
            Stage.SINK: (self.edges, self.status),
            Stage.COMMUNITIES: (),
        }[stage]

    def all(self) -> tuple[str, ...]:
        return (self.requested, self.transcripts, self.chunks, self.extractions, self.edges,
                self.status, self.dlq, self.resolve_mentions, self.resolve_pending, self.resolve_resolved,
                self.aliases)


def topics_for(settings: Settings) -> Topics:
    return Topics(settings.kafka.topic_prefix)


def group_prefix(prefix: str) -> str:
    """``graphrag.`` -> ``graphrag``: the stem shared by every consumer group of a deployment."""
    return prefix.rstrip("._-") or "graphrag"


def group_id(settings: Settings | KafkaSettings, stage: Stage | str) -> str:
    """Consumer group (= Faust app id) of a stage, e.g. ``graphrag-extract``."""
    kafka = settings.kafka if isinstance(settings, Settings) else settings
    return f"{group_prefix(kafka.topic_prefix)}-{Stage(stage).value}"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """What `topics create` makes: partitions from config, sizes and retention per topic."""
    k = settings.kafka
    t = topics_for(settings)
    big = {"max.message.bytes": str(settings.security.max_message_bytes)}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    return [
        TopicSpec(t.requested, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.transcripts, k.partitions, k.replication_factor, {**week, **big}),
        TopicSpec(t.chunks, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.extractions, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.edges, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.status, k.partitions, k.replication_factor, dict(week)),
        # The DLQ keeps its records for a month: someone has to look at them.
        TopicSpec(t.dlq, k.partitions, k.replication_factor,
                  {"retention.ms": str(30 * 24 * 3600 * 1000), **big}),
        # Co-partitioned: pending and resolved are joined by chunk_id in one agent.
        TopicSpec(t.resolve_mentions, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.resolve_pending, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.resolve_resolved, k.partitions, k.replication_factor, dict(week)),
        # Merge decisions are state, not events: compacted, kept for good.
        TopicSpec(t.aliases, k.partitions, k.replication_factor,
                  {"cleanup.policy": "compact", "retention.ms": "-1"}),
    ]
