"""Topic names, consumer groups and stage wiring: the one place that knows them.

Every name carries the configured prefix, so several deployments (or test runs) share a
cluster without touching each other's data. Each stage is its own Faust app, and the app
id is the consumer group, so a stage's input-topic lag is its own scaling signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from streams.settings import KafkaSettings, Settings


class Stage(StrEnum):
    FETCH = "fetch"
    CHUNK = "chunk"
    EXTRACT = "extract"
    # Resolution is three apps, one job and at most one table each, and none consumes a
    # topic it produces: route (extraction -> mentions by block + the chunk by chunk id),
    # resolve (mentions against the block table), assemble (chunk + its resolved mentions).
    ROUTE = "route"
    RESOLVE = "resolve"
    ASSEMBLE = "assemble"
    SINK = "sink"
    # Not a stream stage: a leader-only timer (merge pass, communities, summaries).
    COMMUNITIES = "communities"


#: The streaming stages, in order: each consumes an input topic and scales on its lag.
PIPELINE: tuple[Stage, ...] = (Stage.FETCH, Stage.CHUNK, Stage.EXTRACT, Stage.ROUTE, Stage.RESOLVE,
                               Stage.ASSEMBLE, Stage.SINK)
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
    chunks_topic: str | None = None  # kafka.chunks_topic: a re-index reads the live chunks

    @property
    def requested(self) -> str:
        return f"{self.prefix}videos.requested"

    @property
    def transcripts(self) -> str:
        return f"{self.prefix}transcripts.fetched"

    @property
    def chunks(self) -> str:
        return self.chunks_topic or f"{self.prefix}transcripts.chunks"

    @property
    def extractions(self) -> str:
        return f"{self.prefix}graph.extractions"

    @property
    def graph_updates(self) -> str:
        # One GraphUpdate per chunk (its resolved entities, relations and evidence). The
        # topic keeps its first name, graph.edges: deployments, dashboards and KEDA use it.
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
            Stage.ROUTE: (self.extractions,),
            Stage.RESOLVE: (self.resolve_mentions,),
            Stage.ASSEMBLE: (self.resolve_pending, self.resolve_resolved),
            Stage.SINK: (self.graph_updates, self.status),
            Stage.COMMUNITIES: (),
        }[stage]

    def scaling(self, stage: Stage) -> tuple[str, ...]:
        """The topics a stage's replica count follows (one KEDA trigger each; the HPA takes
        the largest): its first input, and both inputs of the assembler, whose work arrives
        on either. The sink scales on graph updates only (status events are small)."""
        inputs = self.inputs(stage)
        return inputs if stage is Stage.ASSEMBLE else inputs[:1]

    def all(self) -> tuple[str, ...]:
        return (self.requested, self.transcripts, self.chunks, self.extractions, self.graph_updates,
                self.status, self.dlq, self.resolve_mentions, self.resolve_pending, self.resolve_resolved,
                self.aliases)


def topics_for(settings: Settings) -> Topics:
    return Topics(settings.kafka.topic_prefix, settings.kafka.chunks_topic)


def group_prefix(prefix: str) -> str:
    """``graphrag.`` -> ``graphrag``: the stem shared by every consumer group of a deployment."""
    return prefix.rstrip("._-") or "graphrag"


def group_id(settings: Settings | KafkaSettings, stage: Stage | str) -> str:
    """Consumer group (= Faust app id) of a stage, e.g. ``graphrag-extract``."""
    kafka = settings.kafka if isinstance(settings, Settings) else settings
    return f"{group_prefix(kafka.topic_prefix)}-{Stage(stage).value}"


#: The Faust tables each app owns (changelog topic: ``<group>-<table>-changelog``). The
#: blocks table keeps the name it had when resolve was one app, so its state carries over.
TABLES: dict[Stage, tuple[str, ...]] = {
    Stage.RESOLVE: ("resolver-blocks",),
    Stage.ASSEMBLE: ("assembly",),
}
#: The one app that elects a leader (its timer runs on one worker only).
LEADER_APPS: tuple[Stage, ...] = (Stage.COMMUNITIES,)


def changelog_topic(settings: Settings, stage: Stage, table: str) -> str:
    """Faust's name for a table's changelog: ``<app id>-<table>-changelog``."""
    return f"{group_id(settings, stage)}-{table}-changelog"


def leader_topic(settings: Settings, stage: Stage) -> str:
    """Faust's leader-election topic of an app: ``<app id>-__assignor-__leader``."""
    return f"{group_id(settings, stage)}-__assignor-__leader"


def app_topics(settings: Settings, stage: Stage) -> tuple[str, ...]:
    """Every topic an app touches that must exist before it starts: what it consumes,
    its tables' changelogs and its leader topic."""
    return (*topics_for(settings).inputs(stage),
            *(changelog_topic(settings, stage, t) for t in TABLES.get(stage, ())),
            *((leader_topic(settings, stage),) if stage in LEADER_APPS else ()))


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """What `topics create` makes: every topic any app uses, with explicit partitions.

    That includes the internal topics Faust would otherwise create on the fly (table
    changelogs, the leader topic): created by a starting app, a topic is not yet in that
    app's metadata when it subscribes, and faust-streaming then ignores it for good (a
    table whose changelog it thinks has 0 partitions crashes its agent on every write).
    """
    k = settings.kafka
    t = topics_for(settings)
    big = {"max.message.bytes": str(settings.security.max_message_bytes)}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    return [
        TopicSpec(t.requested, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.transcripts, k.partitions, k.replication_factor, {**week, **big}),
        TopicSpec(t.chunks, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.extractions, k.partitions, k.replication_factor, dict(week)),
        TopicSpec(t.graph_updates, k.partitions, k.replication_factor, dict(week)),
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
        # Changelogs are co-partitioned with their tables' source topics (Faust checks it).
        *(TopicSpec(changelog_topic(settings, stage, table), k.partitions, k.replication_factor,
                    {"cleanup.policy": "compact"})
          for stage, tables in TABLES.items() for table in tables),
        *(TopicSpec(leader_topic(settings, stage), 1, k.replication_factor) for stage in LEADER_APPS),
    ]


def key_partition(key: str, partitions: int) -> int:
    """The partition of ``key`` under Kafka's default partitioner, murmur2: the Java
    client's, aiokafka's (every Faust app), and this project's librdkafka producers'
    (``streams.kafka.clients.make_producer``). A message produced with this key lands there."""
    from aiokafka.partitioner import murmur2

    return int(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
