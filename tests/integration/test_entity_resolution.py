"""Streaming entity resolution on the real broker: the resolve stage is restarted in the
middle, and later variants of names resolve to the entities known before the restart (the
block table came back from its changelog); the merge pass publishes aliases that the
resolvers follow.

The pure rules: tests/unit/test_entity_resolution.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from schemas import ChunkExtraction, ExtractedEntity, ExtractedRelation, GraphUpdate, TranscriptChunk
from schemas.events import utcnow
from streams.kafka.codec import encode
from streams.kafka.topics import Stage
from streams.model.ids import chunk_id, entity_id
from tests.support import DeploymentFactory, assert_no_stall, consume_all, produce_raw, wait_quiescent


def _extraction(index: int, names: Sequence[tuple[str, str]], relations: Sequence[tuple[str, str]] = ()) -> bytes:
    text = f"Chunk {index}: " + ". ".join(f"{n} was mentioned" for n, _ in names) + "."
    chunk = TranscriptChunk(chunk_id=chunk_id("Pw0IZg7_4mo", index, text), video_id="Pw0IZg7_4mo", index=index,
                            chunk_count=20, text=text, start=float(index * 10), end=float(index * 10 + 9),
                            token_count=20, requested_at=utcnow())
    return encode(ChunkExtraction(
        chunk=chunk, extractor="test", prompt_version="v1",
        entities=[ExtractedEntity(name=n, type=t) for n, t in names],
        relations=[ExtractedRelation(source=a, target=b, type="RELATED_TO", strength=5) for a, b in relations]))


RESOLUTION = [Stage.ROUTE, Stage.RESOLVE, Stage.ASSEMBLE]
# These tests restart table apps that have changelog data, which is where faust-streaming
# lost records fetched at the end of table recovery (agents/faust_fetch.py): the partition
# kept lag 1 for good and the stall check restarted the app again and again. A short stall
# time makes such a loss show within the test's wait, and each test asserts no app stalled.
# Small data: no risk of taking slow work for a stall.
RESTARTS = {"graphrag": {"stall_seconds": 30}}


def _updates(d: Any) -> dict[int, GraphUpdate]:
    msgs = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}graph.edges")
    out = {}
    for m in msgs:
        u = GraphUpdate.model_validate_json(m.value())
        out[u.chunk.index] = u
    return out


@pytest.mark.integration
def test_resolve_stage_survives_a_restart(deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory(RESTARTS)
    d.cli("topics", "create")
    topic = f"{d.settings.kafka.topic_prefix}graph.extractions"
    worker = d.start_worker("route,resolve,assemble")
    produce_raw(d.settings, topic, [
        (None, _extraction(0, [("Richard Posner", "PERSON"), ("Phobos", "LOCATION"), ("ant colonies", "CONCEPT")],
                           [("Richard Posner", "Phobos")])),
        (None, _extraction(1, [("Kurzgesagt", "ORGANIZATION"), ("Mars", "LOCATION")])),
    ])
    wait_quiescent(d.settings, workers=[worker], stages=RESOLUTION)
    before = _updates(d)
    assert set(before) == {0, 1}
    ids = {e.surface: e.entity_id for u in before.values() for e in u.entities}

    worker.stop()  # the block table lives on in its changelog topic
    worker = d.start_worker("route,resolve,assemble")
    produce_raw(d.settings, topic, [
        (None, _extraction(2, [("richard posner", "PERSON"), ("PHOBOS", "LOCATION"),
                               ("the ant colony's", "CONCEPT"), ("Kurzgesagt", "WORK")])),
        (None, _extraction(3, [("Richard Posnr", "PERSON")])),
    ])
    wait_quiescent(d.settings, workers=[worker], stages=RESOLUTION)
    after = _updates(d)
    got = {e.surface: e.entity_id for e in after[2].entities}
    assert got["richard posner"] == ids["Richard Posner"]      # case
    assert got["PHOBOS"] == ids["Phobos"]
    assert got["the ant colony's"] == ids["ant colonies"]       # article, possessive, plural
    assert got["Kurzgesagt"] == ids["Kurzgesagt"]               # same name, other type: exact match
    # The typo only matches through the block table, which had to be recovered after the restart.
    assert [e.entity_id for e in after[3].entities] == [ids["Richard Posner"]]
    assert entity_id("PERSON", "richard posnr") != ids["Richard Posner"]
    resolved = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}resolve.resolved")
    hows = {json.loads(m.value())["canonical_name"] + ":" + json.loads(m.value())["how"] for m in resolved}
    assert "Richard Posner:fuzzy" in hows
    assert_no_stall(worker)


@pytest.mark.integration
def test_merge_pass_publishes_aliases_that_resolvers_follow(deployment_factory: DeploymentFactory) -> None:
    from streams.jobs.merge_pass import run_merge_pass
    from streams.store import GraphStore

    d = deployment_factory(RESTARTS)
    d.cli("topics", "create")
    worker = d.start_worker("route,resolve,assemble,sink")
    topic = f"{d.settings.kafka.topic_prefix}graph.extractions"
    produce_raw(d.settings, topic, [
        (None, _extraction(0, [("Richard Posner", "PERSON"), ("Mars", "LOCATION")], [("Richard Posner", "Mars")])),
        (None, _extraction(1, [("Posner", "PERSON"), ("Mars", "LOCATION")], [("Posner", "Mars")])),
        (None, _extraction(2, [("Richard Posner", "PERSON"), ("Phobos", "LOCATION")])),
    ])
    wait_quiescent(d.settings, workers=[worker], stages=[*RESOLUTION, Stage.SINK])
    store = GraphStore.from_settings(d.settings)
    assert store.reads.counts()["entities"] == 4
    report = run_merge_pass(d.settings, store)
    assert [(m.source.name, m.target.name) for m in report.merges] == [("Posner", "Richard Posner")]
    # Both names of the merged entity are published: "posner" moves, "richard posner" stays.
    assert report.entities_after == 3 and report.aliases_published == 2 and report.chunks_rewritten == 1
    posner = entity_id("PERSON", "richard posner")
    assert {m["entity_id"] for m in store.db.entity_mentions.find({"surface": "Posner"})} == {posner}
    rel = list(store.db.relations.find())
    assert len(rel) == 1 and rel[0]["source_id"] == posner and rel[0]["evidence_count"] == 2
    again = run_merge_pass(d.settings, store)  # idempotent
    assert (again.chunks_rewritten, again.aliases_published, again.entities_after) == (0, 0, 3)
    snapshot = store.reads.snapshot()
    # A new mention of the merged name now resolves straight to the survivor, via the alias.
    worker.stop()
    worker = d.start_worker("route,resolve,assemble,sink")
    produce_raw(d.settings, topic, [(None, _extraction(3, [("Posner", "PERSON")]))])
    wait_quiescent(d.settings, workers=[worker], stages=[*RESOLUTION, Stage.SINK])
    assert {m["entity_id"] for m in store.db.entity_mentions.find({"chunk_id": {"$exists": True},
                                                                   "surface": "Posner"})} == {posner}
    assert store.reads.counts()["entities"] == 3
    assert snapshot["relations"] == store.reads.snapshot()["relations"]
    assert_no_stall(worker)
