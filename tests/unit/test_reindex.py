"""Re-index side by side, `graph diff` and `graph promote`: the rules (names, derived
settings, progress, --set, the diff).

Two re-indexes of the session's corpus run: tests/integration/test_reindex.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from streams.jobs.graph_diff import diff_graphs
from streams.jobs.reindex import InvalidReindexName, database_for, progress, reindex_settings
from streams.kafka.topics import Stage, group_id, topics_for
from streams.monitoring.lag import PartitionLag
from streams.settings import ConfigError, load_settings
from tests.support import ROOT

LIVE = load_settings(ROOT / "config" / "development.yaml", env={})


def test_a_reindex_reads_the_live_chunks_and_writes_under_its_own_names() -> None:
    r = reindex_settings(LIVE, "v2")
    live_topics, topics = topics_for(LIVE), topics_for(r)
    assert topics.chunks == live_topics.chunks  # the only topic it shares
    others = [t for t in topics.all() if t != topics.chunks]
    assert others and not set(others) & set(live_topics.all())
    assert all(t.startswith(f"{LIVE.kafka.topic_prefix}reindex.v2.") for t in others)
    assert group_id(r, Stage.EXTRACT) == f"{LIVE.kafka.topic_prefix}reindex.v2-extract" != group_id(LIVE, Stage.EXTRACT)
    assert r.mongodb.database == f"{LIVE.mongodb.database}_v2" == database_for(LIVE, "v2")
    assert r.cache.database == LIVE.mongodb.database  # unchanged calls are cache hits
    assert database_for(LIVE, "live") == LIVE.mongodb.database
    for bad in ("live", "", "V2", "a.b", "x" * 25, "-v"):
        with pytest.raises(InvalidReindexName):
            reindex_settings(LIVE, bad)
    with pytest.raises(InvalidReindexName, match="a re-index already"):
        reindex_settings(r, "v3")


def test_set_overrides_settings_and_is_validated_like_the_file() -> None:
    path = ROOT / "config" / "development.yaml"
    s = load_settings(path, env={}, overrides=["graphrag.extraction.max_entities_per_chunk=8",
                                                "graphrag.extraction.extractor=offline",
                                                "graphrag.transcripts.languages=[en, de]"])
    assert s.graphrag.extraction.max_entities_per_chunk == 8
    assert s.graphrag.extraction.extractor == "offline"
    assert s.graphrag.transcripts.languages == ("en", "de")
    with pytest.raises(ConfigError, match=re.escape("max_entities_per_chunk: Input should be greater")):
        load_settings(path, env={}, overrides=["graphrag.extraction.max_entities_per_chunk=0"])
    with pytest.raises(ConfigError, match=re.escape("graphrag.extraction.colour: unknown key")):
        load_settings(path, env={}, overrides=["graphrag.extraction.colour=red"])
    with pytest.raises(ConfigError, match=re.escape("expected dotted.key=value")):
        load_settings(path, env={}, overrides=["graphrag.extraction.extractor"])
    with pytest.raises(ConfigError, match=re.escape("graphrag.extraction.extractor is not a section")):
        load_settings(path, env={}, overrides=["graphrag.extraction.extractor.x=1"])


def test_progress_counts_chunks_consumed_since_the_start_and_lag_in_every_stage() -> None:
    r = reindex_settings(LIVE, "v2")
    chunks = topics_for(r).chunks
    extract, sink = group_id(r, Stage.EXTRACT), group_id(r, Stage.SINK)
    target = {0: 10, 1: 6}
    rows = [PartitionLag(extract, chunks, 0, 4, 0, 12), PartitionLag(extract, chunks, 1, None, 2, 6),
            PartitionLag(sink, topics_for(r).graph_updates, 0, 3, 0, 5)]
    p = progress(rows, r, target)
    # Partition 1 starts at 2 (retention): 4 of its 6 offsets are due.
    assert (p.chunks_done, p.chunks_target) == (4, 14)
    assert p.lag_by_stage["extract"] == 8 + 4 and p.lag_by_stage["sink"] == 2 and not p.caught_up
    done = [PartitionLag(extract, chunks, 0, 12, 0, 12), PartitionLag(extract, chunks, 1, 6, 2, 6),
            PartitionLag(sink, topics_for(r).graph_updates, 0, 5, 0, 5)]
    assert progress(done, r, target).caught_up
    # Chunks that arrived after the start are not due, but lag still counts them.
    later = [PartitionLag(extract, chunks, 0, 10, 0, 12), PartitionLag(extract, chunks, 1, 6, 2, 6)]
    p = progress(later, r, target)
    assert p.chunks_done == p.chunks_target == 14 and not p.caught_up


def _entity(i: str, name: str, mentions: int, **kw: Any) -> dict[str, Any]:
    return {"_id": i, "name": name, "type": "PERSON", "aliases": [name], "mention_count": mentions, **kw}


def test_diff_reports_added_removed_and_changed_of_each_kind() -> None:
    a = ([_entity("e1", "Ada", 5), _entity("e2", "Bob", 2), _entity("e3", "Cy", 9)],
         [{"_id": "r1", "source_id": "e1", "target_id": "e2", "type": "KNOWS", "weight": 4, "evidence_count": 2}],
         [{"_id": "c1", "level": 0, "members": ["e1", "e2", "e3"], "title": "Ada and Bob"},
          {"_id": "c2", "level": 0, "members": ["x", "y"], "title": "gone"}])
    b = ([_entity("e1", "Ada", 7), _entity("e2", "Bob", 2), _entity("e4", "Dee", 1)],
         [{"_id": "r1", "source_id": "e1", "target_id": "e2", "type": "KNOWS", "weight": 4, "evidence_count": 2},
          {"_id": "r2", "source_id": "e1", "target_id": "e4", "type": "MET", "weight": 1, "evidence_count": 1}],
         [{"_id": "k7", "level": 0, "members": ["e1", "e2"], "title": "Ada"},
          {"_id": "k8", "level": 1, "members": ["e4", "z"], "title": "new"}])
    d = diff_graphs("a", a, "b", b, top=5)
    e = d.entities
    assert (e.a, e.b, e.added, e.removed, e.changed, e.unchanged) == (3, 3, 1, 1, 1, 1)
    assert e.examples["removed"][0]["name"] == "Cy" and e.examples["added"][0]["name"] == "Dee"
    assert e.examples["changed"][0]["changes"] == {"mention_count": [5, 7]}
    r = d.relations
    assert (r.added, r.removed, r.changed, r.unchanged) == (1, 0, 0, 1)
    assert r.examples["added"][0] == {"id": "r2", "source": "Ada", "target": "Dee", "type": "MET", "weight": 1}
    c = d.communities
    # k7 shares 2 of 3 members with c1 (Jaccard 0.67): the same community, changed.
    assert (c.added, c.removed, c.changed, c.unchanged) == (1, 1, 1, 0)
    assert c.examples["changed"][0]["was"]["id"] == "c1" and c.examples["changed"][0]["members_removed"] == 1
    assert c.examples["removed"][0]["title"] == "gone" and c.examples["added"][0]["title"] == "new"
    same = diff_graphs("a", a, "a", a)
    assert all(getattr(same, k).added == getattr(same, k).removed == getattr(same, k).changed == 0
               for k in ("entities", "relations", "communities"))
