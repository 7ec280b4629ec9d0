"""The whole pipeline on the real broker and FerretDB: every corpus video, bad messages of
many kinds interleaved with them, the graph's consistency (each of those tests reads the
frozen corpus run), and the replay invariant, on a run of its own over a sixth of the corpus:
a replay consumes everything again and again downstream (each stage also re-reads what the
replay itself produced), so its cost is several times its data's."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from streams.store import GraphStore
from tests.integration.corpus_run import (
    BAD_CHUNKS,
    BAD_REQUESTS,
    BROKEN_SRT_ID,
    SAMPLE_SETTINGS,
    VALID_ID_WITHOUT_TRANSCRIPT,
    CorpusRun,
    sample_run,
)
from tests.support import Deployment, DeploymentFactory, consume_all, reset_groups_to_earliest, wait_quiescent

pytestmark = pytest.mark.integration

def test_every_corpus_video_is_done(corpus_run: CorpusRun) -> None:
    store: GraphStore = corpus_run.store
    docs = store.videos.find(corpus_run.ids)
    states = Counter(d["status"] for d in docs)
    assert states == {"done": len(corpus_run.ids)}, [(d["_id"], d["status"], d.get("stages")) for d in docs
                                                  if d["status"] != "done"]
    for d in docs:
        assert d["chunks_stored"] == d["chunk_count"] > 0
    counts = store.reads.counts()
    print(f"\ncorpus run: {len(docs)} videos in {corpus_run.wall_seconds:.1f}s; {counts}")
    assert counts["entities"] > 0 and counts["relations"] > 0


def test_graph_is_consistent(corpus_run: CorpusRun) -> None:
    db = corpus_run.store.db
    entity_ids = {e["_id"] for e in db.entities.find({}, {"_id": 1})}
    chunk_ids = {c["_id"] for c in db.chunks.find({}, {"_id": 1})}
    relations = list(db.relations.find())
    assert relations
    for r in relations:
        assert r["source_id"] in entity_ids and r["target_id"] in entity_ids, r
    for m in db.entity_mentions.find():
        assert m["chunk_id"] in chunk_ids and m["entity_id"] in entity_ids
    evidence = list(db.relation_evidence.find())
    for e in evidence:
        assert e["chunk_id"] in chunk_ids
    # Weights and counts are exactly what the evidence says.
    by_rel: dict[str, list[dict[str, Any]]] = {}
    for e in evidence:
        by_rel.setdefault(e["relation_id"], []).append(e)
    for r in relations:
        ev = by_rel[r["_id"]]
        assert r["evidence_count"] == len(ev)
        assert r["weight"] == sum(x["strength"] for x in ev)
    mention_counts = Counter(m["entity_id"] for m in db.entity_mentions.find({}, {"entity_id": 1}))
    for e in db.entities.find():
        assert e["mention_count"] == mention_counts[e["_id"]]
    # Every chunk of every video is stored exactly once, indexes 0..n-1.
    for v in db.videos.find({"chunk_count": {"$exists": True}}):
        idx = sorted(c["index"] for c in db.chunks.find({"video_id": v["_id"]}, {"index": 1}))
        assert idx == list(range(v["chunk_count"]))


def test_long_video_spreads_over_partitions(corpus_run: CorpusRun) -> None:
    d: Deployment = corpus_run.deployment
    msgs = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}transcripts.chunks")
    long_video = "-92PkAXJIqQ"  # ~90k characters
    partitions = {m.partition() for m in msgs if m.value().startswith(b"{")
                  and json.loads(m.value()).get("video_id") == long_video}
    assert len(partitions) == d.settings.kafka.partitions


def test_bad_messages_are_dead_lettered_with_reasons(corpus_run: CorpusRun) -> None:
    d: Deployment = corpus_run.deployment
    records = corpus_run.dead_letters  # as the run left the DLQ (a replay adds its own copies)
    got = Counter((m.headers["stage"], m.headers["reason"]) for m in records)
    want = Counter([("fetch", r) for _, r in BAD_REQUESTS] + [("extract", r) for _, r in BAD_CHUNKS])
    assert got == want
    values = {m.value for m in records}
    for v, _ in BAD_REQUESTS + BAD_CHUNKS:
        assert v in values  # the original bytes, unchanged
    for m in records:
        h = m.headers
        assert h["original.topic"].startswith(d.settings.kafka.topic_prefix)
        assert int(h["original.offset"]) >= 0 and h["error.message"]
    # Requests for videos that could not be fetched show up as failed, with the reason.
    failed = {v["_id"]: v for v in corpus_run.store.videos.find([VALID_ID_WITHOUT_TRANSCRIPT, BROKEN_SRT_ID])}
    assert failed[VALID_ID_WITHOUT_TRANSCRIPT]["status"] == "failed"
    assert "transcript_not_found" in failed[VALID_ID_WITHOUT_TRANSCRIPT]["stages"]["fetch"]["detail"]
    assert failed[BROKEN_SRT_ID]["status"] == "failed"


def test_status_command_reports_progress(corpus_run: CorpusRun) -> None:
    d: Deployment = corpus_run.deployment
    out = json.loads(d.cli("status", "--json").stdout)
    assert out["totals"]["videos_by_status"]["done"] == len(corpus_run.ids)
    one = json.loads(d.cli("status", "16W7c0mb-rE", "nnnnnnnnnnE", "--json").stdout)
    assert [v["video_id"] for v in one["videos"]] == ["16W7c0mb-rE"]
    assert one["videos"][0]["stages"] == {"fetch": "done", "chunk": "done"}
    assert one["unseen"] == ["nnnnnnnnnnE"]


def test_replaying_every_topic_leaves_the_graph_identical(deployment_factory: DeploymentFactory) -> None:
    """Every stage's group back to offset 0 of all its inputs, bad messages among them, and
    everything consumed again (the duplicates the replay itself produces too): the graph is
    the same, document for document."""
    d: Deployment = deployment_factory(SAMPLE_SETTINGS)
    # A sixth of the corpus (3 videos, one the longest): each stage reads again its input and
    # what the replay upstream of it produced, so extraction alone runs about three times over.
    store = sample_run(d)
    before = store.reads.snapshot()
    assert before["chunks"] and before["entities"] and before["relations"]

    reset_groups_to_earliest(d.settings)
    worker = d.start_worker("all")
    wait_quiescent(d.settings, timeout=900, workers=[worker])
    after = store.reads.snapshot()
    for name in before:
        assert len(after[name]) == len(before[name]), name
        assert after[name] == before[name], name
