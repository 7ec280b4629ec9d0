"""The whole pipeline on the real broker and FerretDB: every corpus video, bad messages of
many kinds interleaved with them, the graph's consistency, and the replay invariant."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from schemas import TranscriptChunk
from schemas.events import utcnow
from streams.codec import encode
from streams.dlq import parse_headers
from streams.ids import chunk_id
from streams.kafka import make_admin
from streams.lag import stage_groups
from streams.store import GraphStore
from tests.support import (
    CORPUS,
    Deployment,
    consume_all,
    manifest,
    produce_raw,
    wait_quiescent,
    wait_until,
)

pytestmark = pytest.mark.integration

VALID_ID_WITHOUT_TRANSCRIPT = "aaaaaaaaaaA"
BROKEN_SRT_ID = "bbbbbbbbbbE"
EMPTY_VTT_ID = "cccccccccc4"


def _chunk(**changes: Any) -> dict[str, Any]:
    text = "Phobos and Deimos orbit Mars."
    base = TranscriptChunk(chunk_id=chunk_id("Pw0IZg7_4mo", 0, text), video_id="Pw0IZg7_4mo", index=0,
                           chunk_count=1, text=text, start=0.0, end=4.0, token_count=6,
                           requested_at=utcnow())
    data: dict[str, Any] = json.loads(encode(base))
    data.update(changes)
    return data


# Ingest topic: (value, DLQ reason the fetch stage must give).
BAD_REQUESTS: list[tuple[bytes, str]] = [
    (b"this is not json {", "invalid_json"),
    (b"\xff\xfe\xfd not utf-8", "invalid_encoding"),
    (b"", "empty_message"),
    (b"[1, 2, 3]", "schema_violation"),
    (b'{"source": "local"}', "schema_violation"),
    (b'{"video_id": "abc"}', "invalid_video_id"),
    (b"dQw4w9WgXcZ", "invalid_video_id"),
    (b'{"video_id": "dQw4w9WgXcQ", "colour": "red"}', "schema_violation"),
    (b'{"video_id": "dQw4w9WgXcQ", "schema_version": 2}', "unsupported_schema_version"),
    (json.dumps({"video_id": "dQw4w9WgXcQ", "request_id": "x" * 20_000}).encode(), "oversize"),
    (json.dumps({"video_id": VALID_ID_WITHOUT_TRANSCRIPT, "source": "local"}).encode(), "transcript_not_found"),
    (json.dumps({"video_id": BROKEN_SRT_ID, "source": "local"}).encode(), "unparseable_transcript"),
    (json.dumps({"video_id": EMPTY_VTT_ID, "source": "local"}).encode(), "unparseable_transcript"),
]

# Chunk topic: (value, DLQ reason the extract stage must give).
BAD_CHUNKS: list[tuple[bytes, str]] = [
    (b"<html>not json</html>", "invalid_json"),
    (json.dumps(_chunk(start=-5)).encode(), "schema_violation"),
    (json.dumps(_chunk(text="Tampered text.")).encode(), "chunk_id_mismatch"),
    (json.dumps(_chunk(index=3)).encode(), "schema_violation"),
    (json.dumps(_chunk(text="")).encode(), "schema_violation"),
    (json.dumps(_chunk(entities=["extra"])).encode(), "schema_violation"),
    (json.dumps(_chunk(video_id="../../etc")).encode(), "invalid_video_id"),
]


@pytest.fixture(scope="module")
def run(services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One corpus run with bad messages interleaved; shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("pipeline")
    bad_dir = tmp / "bad-transcripts"
    bad_dir.mkdir()
    (bad_dir / f"{BROKEN_SRT_ID}.srt").write_text("1\n00:00:01,000 --> garbage\nhello\n\n2\nnonsense\n")
    (bad_dir / f"{EMPTY_VTT_ID}.vtt").write_text("WEBVTT\n\n")
    d = Deployment(services, tmp, {"graphrag": {"transcripts": {"local_dirs": [str(CORPUS), str(bad_dir)],
                                                                "source": "local"}}})
    entries = manifest()
    ids = [e["video_id"] for e in entries]
    try:
        d.cli("topics", "create")
        worker = d.start_worker("all")
        started = time.monotonic()
        topics = d.settings.kafka.topic_prefix
        half = len(ids) // 2
        d.cli("submit", *ids[:half])
        produce_raw(d.settings, f"{topics}videos.requested", [(None, v) for v, _ in BAD_REQUESTS])
        produce_raw(d.settings, f"{topics}transcripts.chunks", [(None, v) for v, _ in BAD_CHUNKS])
        d.cli("submit", "--file", "-", input="\n".join(ids[half:]) + "\n")
        store = GraphStore.from_settings(d.settings)

        def all_finished() -> bool:
            docs = store.videos(ids)
            return len(docs) == len(ids) and all(x["status"] in ("done", "failed") for x in docs)

        wait_until(all_finished, timeout=900, interval=2,
                   message=lambda: f"all corpus videos done; worker log:\n{worker.log_tail()}")
        wall = time.monotonic() - started
        wait_quiescent(d.settings, workers=[worker])
        yield {"deployment": d, "worker": worker, "store": store, "ids": ids, "wall_seconds": wall}
    finally:
        d.cleanup()


def test_every_corpus_video_is_done(run: dict[str, Any]) -> None:
    store: GraphStore = run["store"]
    docs = store.videos(run["ids"])
    states = Counter(d["status"] for d in docs)
    assert states == {"done": len(run["ids"])}, [(d["_id"], d["status"], d.get("stages")) for d in docs
                                                  if d["status"] != "done"]
    for d in docs:
        assert d["chunks_stored"] == d["chunk_count"] > 0
    counts = store.counts()
    print(f"\ncorpus run: {len(docs)} videos in {run['wall_seconds']:.1f}s; {counts}")
    assert counts["entities"] > 0 and counts["relations"] > 0


def test_graph_is_consistent(run: dict[str, Any]) -> None:
    db = run["store"].db
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


def test_long_video_spreads_over_partitions(run: dict[str, Any]) -> None:
    d: Deployment = run["deployment"]
    msgs = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}transcripts.chunks")
    long_video = "-92PkAXJIqQ"  # ~90k characters
    partitions = {m.partition() for m in msgs if m.value().startswith(b"{")
                  and json.loads(m.value()).get("video_id") == long_video}
    assert len(partitions) == d.settings.kafka.partitions


def test_bad_messages_are_dead_lettered_with_reasons(run: dict[str, Any]) -> None:
    d: Deployment = run["deployment"]
    records = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}dlq")
    got = Counter((parse_headers(m.headers())["stage"], parse_headers(m.headers())["reason"]) for m in records)
    want = Counter([("fetch", r) for _, r in BAD_REQUESTS] + [("extract", r) for _, r in BAD_CHUNKS])
    assert got == want
    values = {m.value() or b"" for m in records}
    for v, _ in BAD_REQUESTS + BAD_CHUNKS:
        assert v in values  # the original bytes, unchanged
    for m in records:
        h = parse_headers(m.headers())
        assert h["original.topic"].startswith(d.settings.kafka.topic_prefix)
        assert int(h["original.offset"]) >= 0 and h["error.message"]
    # Requests for videos that could not be fetched show up as failed, with the reason.
    failed = {v["_id"]: v for v in run["store"].videos([VALID_ID_WITHOUT_TRANSCRIPT, BROKEN_SRT_ID])}
    assert failed[VALID_ID_WITHOUT_TRANSCRIPT]["status"] == "failed"
    assert "transcript_not_found" in failed[VALID_ID_WITHOUT_TRANSCRIPT]["stages"]["fetch"]["detail"]
    assert failed[BROKEN_SRT_ID]["status"] == "failed"


def test_status_command_reports_progress(run: dict[str, Any]) -> None:
    d: Deployment = run["deployment"]
    out = json.loads(d.cli("status", "--json").stdout)
    assert out["totals"]["videos_by_status"]["done"] == len(run["ids"])
    one = json.loads(d.cli("status", "16W7c0mb-rE", "nnnnnnnnnnE", "--json").stdout)
    assert [v["video_id"] for v in one["videos"]] == ["16W7c0mb-rE"]
    assert one["videos"][0]["stages"] == {"fetch": "done", "chunk": "done"}
    assert one["unseen"] == ["nnnnnnnnnnE"]


def _reset_groups_to_earliest(d: Deployment) -> None:
    admin = make_admin(d.settings)
    md = admin.list_topics(timeout=10).topics
    requests = []
    for group, topics in stage_groups(d.settings).items():
        tps = [TopicPartition(t, p, 0) for t in topics for p in md[t].partitions]
        requests.append(ConsumerGroupTopicPartitions(group, tps))
    for req in requests:  # the API takes one group per call
        admin.alter_consumer_group_offsets([req])[req.group_id].result()


def test_replaying_every_topic_leaves_the_graph_identical(run: dict[str, Any]) -> None:
    d: Deployment = run["deployment"]
    store: GraphStore = run["store"]
    before = store.snapshot()
    d.stop_workers()
    _reset_groups_to_earliest(d)
    worker = d.start_worker("all")
    # Everything is consumed again, including the duplicates the replay itself produces.
    wait_quiescent(d.settings, timeout=900, workers=[worker])
    after = store.snapshot()
    for name in before:
        assert len(after[name]) == len(before[name]), name
        assert after[name] == before[name], name
