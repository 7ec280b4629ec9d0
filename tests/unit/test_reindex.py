"""Re-index side by side, `graph diff` and `graph promote`.

The rules first (names, derived settings, progress, --set, the diff), then two re-indexes of
the session's corpus run with the offline extractor under two settings, beside the live
pipeline: what each consumed, that the live graph and DLQ are untouched, the diff of the
two, and promoting one and going back.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from pymongo import MongoClient

from streams.jobs.graph_diff import diff_graphs
from streams.jobs.reindex import InvalidReindexName, database_for, progress, reindex_settings
from streams.kafka.dlq import parse_headers
from streams.kafka.topics import Stage, group_id, topics_for
from streams.monitoring.lag import PartitionLag
from streams.settings import ConfigError, load_settings
from tests.integration.corpus_run import BAD_CHUNKS
from tests.support import ROOT, Deployment, consume_all

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


# --------------------------------------------------------------------------- on the corpus


def _reindex(d: Deployment, name: str, *root: str) -> dict[str, Any]:
    proc = d.cli(*root, "reindex", "--name", name, "--extractor", "offline", "--until-caught-up",
                 "--timeout", "1200", "--interval", "2", timeout=1800)
    assert "chunks extracted; lag" in proc.stderr  # progress on the way
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.integration
def test_two_reindexes_of_the_corpus_beside_the_live_graph_diff_and_promote(corpus_run: dict[str, Any]) -> None:
    d: Deployment = corpus_run["deployment"]
    prefix = d.settings.kafka.topic_prefix
    live_counts = corpus_run["store"].counts()
    live_dlq = len(consume_all(d.settings, f"{prefix}dlq"))
    client: MongoClient[dict[str, Any]] = MongoClient(d.services.mongo_uri)
    try:
        first = _reindex(d, "a")
        second = _reindex(d, "b", "--set", "graphrag.extraction.max_entities_per_chunk=4")
        # Each consumed every chunk of the live topic: the same chunks as the live graph.
        live_chunks = {c["_id"] for c in corpus_run["store"].db.chunks.find({}, {"_id": 1})}
        for name, out in (("a", first), ("b", second)):
            db = client[out["database"]]
            assert out["database"] == f"{d.settings.mongodb.database}_{name}"
            assert {c["_id"] for c in db.chunks.find({}, {"_id": 1})} == live_chunks
            assert out["counts"]["entities"] > 0 and db.communities.estimated_document_count() > 0
            # The bad chunks of the live topic went to the re-index's own DLQ, with the same reasons.
            dlq = consume_all(d.settings, f"{prefix}reindex.{name}.dlq")
            assert Counter(parse_headers(m.headers())["reason"] for m in dlq) == Counter(r for _, r in BAD_CHUNKS)
        assert second["counts"]["entity_mentions"] < first["counts"]["entity_mentions"]
        # The live pipeline saw none of it.
        assert corpus_run["store"].counts() == live_counts
        assert len(consume_all(d.settings, f"{prefix}dlq")) == live_dlq

        diff = json.loads(d.cli("graph", "diff", "a", "b", "--json", "--top", "3").stdout)
        print("\ngraph diff a b:", json.dumps({k: {x: v for x, v in diff[k].items() if x != "examples"}
                                               for k in ("entities", "relations", "communities")}))
        for kind, count in (("entities", "entities"), ("relations", "relations")):
            k = diff[kind]
            assert (k["a"], k["b"]) == (first["counts"][count], second["counts"][count])
            assert k["b"] - k["a"] == k["added"] - k["removed"]
            assert k["a"] == k["removed"] + k["changed"] + k["unchanged"]
        assert diff["entities"]["removed"] > 0 and len(diff["entities"]["examples"]["removed"]) == 3
        assert diff["entities"]["changed"] > 0  # fewer mentions kept per chunk
        text = d.cli("graph", "diff", "a", "b").stdout
        assert text.startswith("graph diff a -> b") and "entities" in text and "communities" in text
        same = json.loads(d.cli("graph", "diff", "a", "a", "--json").stdout)
        assert all(same[k][c] == 0 for k in ("entities", "relations", "communities")
                   for c in ("added", "removed", "changed"))

        # Promote b: `graph` and `query` read it; the pipeline still writes live.
        assert "now read b" in d.cli("graph", "promote", "b").stdout
        counts = json.loads(d.cli("graph", "--json").stdout)["counts"]
        assert counts["entities"] == second["counts"]["entities"] != live_counts["entities"]
        d.cli("graph", "promote", "live")
        assert json.loads(d.cli("graph", "--json").stdout)["counts"]["entities"] == live_counts["entities"]
        missing = d.cli("graph", "diff", "a", "nosuch", check=False)
        assert missing.returncode == 2 and "there is no graph 'nosuch'" in missing.stderr
        bad = d.cli("graph", "promote", "Not-A-Name", check=False)
        assert bad.returncode == 2 and "a re-index name is" in bad.stderr
    finally:
        d.cli("graph", "promote", "live", check=False)
        for name in ("a", "b"):
            client.drop_database(f"{d.settings.mongodb.database}_{name}")
        client.close()
