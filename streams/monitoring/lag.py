"""Consumer lag per group, topic and partition, from Kafka's admin API.

lag = log-end offset - committed offset (a partition with no commit yet counts from the
log-start offset, as Kafka's own ``kafka-consumer-groups --describe`` shows it with a
committed offset of "-"). These numbers drive the lag exporter, the scaling signal and
the tests' "wait until quiescent"; :class:`LagMonitor` adds lag seconds and each stage's
desired replicas (the `lag` command and the exporter).

Lag in seconds is estimated the way kafka-lag-exporter does it: every measurement
records (time, log-end offset) per partition; the first unconsumed message (the committed
offset) was written at the time the log end passed that offset, interpolated linearly
between the two samples around it; lag seconds = now - that time. When the committed
offset is older than the oldest sample kept, the estimate is a lower bound (now - oldest
sample). Accuracy is bounded by the sampling interval (monitoring.lag_interval_seconds).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.kafka.clients import make_admin
from streams.kafka.offsets import worth_asking_again
from streams.kafka.topics import PIPELINE, Stage, group_id, topics_for
from streams.monitoring.scaling import desired_replicas
from streams.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing for this partition
    log_start: int
    log_end: int

    @property
    def lag(self) -> int:
        base = self.committed if self.committed is not None and self.committed >= 0 else self.log_start
        return max(0, self.log_end - base)


def stage_groups(settings: Settings, stages: Iterable[Stage] = PIPELINE) -> dict[str, tuple[str, ...]]:
    """Consumer group -> the topics it consumes, for the pipeline's stages."""
    t = topics_for(settings)
    return {group_id(settings, s): t.inputs(s) for s in stages}


def _offsets(admin: AdminClient, tps: Sequence[TopicPartition], spec: OffsetSpec,
             timeout: float, attempts: int = 8) -> dict[tuple[str, int], int]:
    """Offsets per partition; retried while the cluster reports a retriable error (a topic
    created a moment ago may not have a leader yet)."""
    if not tps:
        return {}
    for attempt in range(attempts):
        futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
        try:
            return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futures.items()}
        except KafkaException as exc:
            err = exc.args[0]
            if attempt + 1 == attempts or not worth_asking_again(err):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def measure_lag(settings: Settings, groups: Mapping[str, Sequence[str]] | None = None,
                timeout: float = 10.0, admin: AdminClient | None = None) -> list[PartitionLag]:
    """Committed, log-start and log-end offsets for every partition each group consumes.

    A caller that measures repeatedly passes its own ``admin`` (one client, not one per call).
    """
    wanted_groups: dict[str, Sequence[str]] = dict(groups) if groups is not None else dict(stage_groups(settings))
    admin = admin or make_admin(settings)
    topics = sorted({t for ts in wanted_groups.values() for t in ts})
    md = admin.list_topics(timeout=timeout).topics
    tps = [TopicPartition(t, p) for t in topics if t in md for p in sorted(md[t].partitions)]
    ends = _offsets(admin, tps, OffsetSpec.latest(), timeout)  # type: ignore[no-untyped-call]
    starts = _offsets(admin, tps, OffsetSpec.earliest(), timeout)  # type: ignore[no-untyped-call]
    rows: list[PartitionLag] = []
    for group, group_topics in sorted(wanted_groups.items()):
        wanted = [tp for tp in tps if tp.topic in group_topics]
        if not wanted:
            continue
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, wanted)],
                                                request_timeout=timeout)[group]
        committed = {(tp.topic, tp.partition): tp.offset for tp in fut.result().topic_partitions}
        for tp in wanted:
            key = (tp.topic, tp.partition)
            c = committed.get(key)
            rows.append(PartitionLag(group, tp.topic, tp.partition, c if c is not None and c >= 0 else None,
                                     starts[key], ends[key]))
    return rows


def total_lag(rows: Iterable[PartitionLag]) -> int:
    return sum(r.lag for r in rows)


@dataclass
class LagSecondsEstimator:
    """Keeps recent (time, log-end offset) samples per partition to turn lag into seconds."""

    window_seconds: float = 3600.0
    max_samples: int = 720
    _history: dict[tuple[str, int], deque[tuple[float, int]]] = field(default_factory=dict)

    def record(self, topic: str, partition: int, log_end: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        h = self._history.setdefault((topic, partition), deque(maxlen=self.max_samples))
        if len(h) >= 2 and h[-1][1] == log_end and h[-2][1] == log_end:
            h[-1] = (now, log_end)  # a plateau keeps its first and its latest sample only
        else:
            h.append((now, log_end))
        while len(h) > 2 and now - h[0][0] > self.window_seconds:
            h.popleft()

    def seconds_behind(self, topic: str, partition: int, committed: int, log_end: int,
                       now: float | None = None) -> float:
        now = time.time() if now is None else now
        if committed >= log_end:
            return 0.0
        h = self._history.get((topic, partition))
        if not h:
            return 0.0
        # The first sample whose log end is past the committed offset: the message at
        # `committed` was written between the sample before it and that one.
        prev: tuple[float, int] | None = None
        for t, end in h:
            if end > committed:
                if prev is None:
                    return max(0.0, now - t)  # older than our history: a lower bound
                t0, end0 = prev
                frac = (committed - end0) / (end - end0) if end > end0 else 1.0
                return max(0.0, now - (t0 + frac * (t - t0)))
            prev = (t, end)
        return 0.0


@dataclass(frozen=True)
class StageLag:
    stage: Stage
    group: str
    topic: str  # the first topic the stage scales on (Topics.scaling)
    partitions: int  # of that topic
    lag: int  # over every scaling topic
    lag_seconds: float
    desired_replicas: int


@dataclass(frozen=True)
class LagReport:
    at: float
    partitions: list[tuple[PartitionLag, float]]  # each row with its lag in seconds
    stages: list[StageLag]


class LagMonitor:
    """Measures lag, keeps the samples for lag seconds, computes the scaling signal."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.estimator = LagSecondsEstimator()
        self.admin = make_admin(settings)  # one client for every measurement

    def measure(self) -> LagReport:
        now = time.time()
        rows = measure_lag(self.settings, admin=self.admin)
        for r in rows:
            self.estimator.record(r.topic, r.partition, r.log_end, now)
        with_seconds = [(r, self.estimator.seconds_behind(r.topic, r.partition,
                                                          r.committed if r.committed is not None else r.log_start,
                                                          r.log_end, now)) for r in rows]
        return LagReport(now, with_seconds, self._stages(with_seconds))

    def _stages(self, rows: list[tuple[PartitionLag, float]]) -> list[StageLag]:
        t = topics_for(self.settings)
        out = []
        for stage in PIPELINE:
            group, scaling = group_id(self.settings, stage), t.scaling(stage)
            mine = [(r, s) for r, s in rows if r.group == group and r.topic in scaling]
            # One trigger per scaling topic; the HPA follows the one that asks for most.
            per_topic = [[r for r, _ in mine if r.topic == topic] for topic in scaling]
            wanted = max(desired_replicas(sum(r.lag for r in rs), len(rs), self.settings.graphrag.scaling)
                         for rs in per_topic)
            out.append(StageLag(stage, group, scaling[0], len(per_topic[0]), sum(r.lag for r, _ in mine),
                                max((s for _, s in mine), default=0.0), wanted))
        return out
