"""Re-index side by side: the graph built again from the log, beside the live one.

Kafka keeps every chunk, so a new extractor, prompt or resolution setting can be tried
without fetching anything again: a re-index named ``v2`` runs its own consumer groups for
the stages after chunking (extract, route, resolve, assemble, sink) from offset 0 of the
live chunk topic, under its own topic prefix (so nothing it produces reaches the live
stages) and into its own database, while the live pipeline keeps serving. It shares the
live LLM cache, so a call it repeats unchanged costs nothing. `graph diff` compares two
graphs; `graph promote` points queries and the API at one (streams/store/graph_store.py, ``graph_pointer``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streams.kafka.topics import Stage, group_id, topics_for
from streams.monitoring.lag import PartitionLag
from streams.settings import Settings

LIVE = "live"
#: The stages a re-index runs: everything that consumes chunks or what follows from them.
STAGES: tuple[Stage, ...] = (Stage.EXTRACT, Stage.ROUTE, Stage.RESOLVE, Stage.ASSEMBLE, Stage.SINK)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")


class InvalidReindexName(ValueError):
    """A re-index name that cannot name topics, groups and a database."""


def check_name(name: str) -> str:
    if name == LIVE:
        raise InvalidReindexName(f"{LIVE!r} names the live graph; choose another name for a re-index")
    if not _NAME.fullmatch(name):
        raise InvalidReindexName(f"{name!r}: a re-index name is 1-24 of a-z, 0-9, '_' and '-', "
                                 "starting with a letter or digit")
    return name


def database_for(live: Settings, name: str) -> str:
    """The database of the graph called ``name`` (``live``: the configured one)."""
    return live.mongodb.database if name == LIVE else f"{live.mongodb.database}_{check_name(name)}"


def reindex_settings(live: Settings, name: str) -> Settings:
    """The live settings turned into those of re-index ``name``.

    Topics and groups under ``<prefix>reindex.<name>.``, except the chunk topic, which is
    the live one; the database ``<database>_<name>``; the live database's LLM cache.
    Apply extractor, model or prompt overrides to ``live`` before calling this.
    """
    check_name(name)
    if live.kafka.chunks_topic is not None:
        raise InvalidReindexName("these settings are a re-index already (kafka.chunks_topic is set)")
    kafka = live.kafka.model_copy(update={"topic_prefix": f"{live.kafka.topic_prefix}reindex.{name}.",
                                          "chunks_topic": topics_for(live).chunks})
    mongodb = live.mongodb.model_copy(update={"database": database_for(live, name)})
    cache = live.cache.model_copy(update={"database": live.cache.database or live.mongodb.database})
    return live.model_copy(update={"kafka": kafka, "mongodb": mongodb, "cache": cache})


@dataclass(frozen=True)
class Progress:
    """How far a re-index is: chunks of the live topic consumed, and lag everywhere."""

    chunks_done: int
    chunks_target: int
    lag_by_stage: dict[str, int]

    @property
    def caught_up(self) -> bool:
        """Every chunk there was at the start consumed, and nothing waiting in any stage."""
        return self.chunks_done >= self.chunks_target and not any(self.lag_by_stage.values())


def progress(rows: Iterable[PartitionLag], settings: Settings, target: Mapping[int, int]) -> Progress:
    """From lag rows of the re-index's groups and the chunk topic's end offsets at start."""
    chunks = topics_for(settings).chunks
    extract = group_id(settings, Stage.EXTRACT)
    stage_of = {group_id(settings, s): s.value for s in STAGES}
    lag: dict[str, int] = {s.value: 0 for s in STAGES}
    done = due = 0
    for r in rows:
        if r.group not in stage_of:
            continue
        lag[stage_of[r.group]] += r.lag
        if r.group == extract and r.topic == chunks and r.partition in target:
            end = target[r.partition]
            start = min(r.log_start, end)  # offsets before the log start are gone (retention)
            due += end - start
            done += min(max(r.committed or 0, start), end) - start
    return Progress(done, due, lag)
