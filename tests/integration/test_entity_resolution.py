"""Streaming entity resolution on the real broker: the resolve stage is restarted in the
middle, and later variants of names resolve to the entities known before the restart (the
block table came back from its changelog); the merge pass publishes aliases that the
resolvers follow.

The pure rules: tests/unit/test_entity_resolution.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaException

from schemas import ChunkExtraction, GraphUpdate
from schemas.events import MentionsResolved
from streams.kafka.topics import Stage
from streams.model.ids import entity_id
from tests.support import (
    DeploymentFactory,
    assert_no_stall,
    consume_all,
    extraction_record,
    produce_raw,
    wait_quiescent,
    wait_until,
)

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


def _resolved(d: Any, chunk: str) -> list[tuple[str, str, str]]:
    """The resolve stage's answers for one chunk's mentions (``resolve.resolved``), in mention
    order: what the resolver decided, before the sink could redirect anything."""
    events = [a for m in consume_all(d.settings, f"{d.settings.kafka.topic_prefix}resolve.resolved")
              for a in MentionsResolved.model_validate_json(m.value()).answers]
    return [(e.entity_id, e.canonical_name, e.how) for e in sorted(events, key=lambda e: e.mention)
            if e.chunk_id == chunk]


@pytest.mark.integration
def test_resolve_stage_survives_a_restart(deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory(RESTARTS)
    d.cli("topics", "create")
    topic = f"{d.settings.kafka.topic_prefix}graph.extractions"
    worker = d.start_worker("route,resolve,assemble")
    produce_raw(d.settings, topic, [
        (None, extraction_record(0, [("Richard Posner", "PERSON"), ("Phobos", "LOCATION"), ("ant colonies", "CONCEPT")],
                           [("Richard Posner", "Phobos")])),
        (None, extraction_record(1, [("Kurzgesagt", "ORGANIZATION"), ("Mars", "LOCATION")])),
    ])
    wait_quiescent(d.settings, workers=[worker], stages=RESOLUTION)
    before = _updates(d)
    assert set(before) == {0, 1}
    ids = {e.surface: e.entity_id for u in before.values() for e in u.entities}

    worker.stop()  # the block table lives on in its changelog topic
    worker = d.start_worker("route,resolve,assemble")
    produce_raw(d.settings, topic, [
        (None, extraction_record(2, [("richard posner", "PERSON"), ("PHOBOS", "LOCATION"),
                               ("the ant colony's", "CONCEPT"), ("Kurzgesagt", "WORK")])),
        (None, extraction_record(3, [("Richard Posnr", "PERSON")])),
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
    # The resolver's own answer for the typo: a fuzzy match to the entity known before the restart.
    assert _resolved(d, after[3].chunk.chunk_id) == [(ids["Richard Posner"], "Richard Posner", "fuzzy")]
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
        (None, extraction_record(0, [("Richard Posner", "PERSON"), ("Mars", "LOCATION")],
                                 [("Richard Posner", "Mars")])),
        (None, extraction_record(1, [("Posner", "PERSON"), ("Mars", "LOCATION")], [("Posner", "Mars")])),
        (None, extraction_record(2, [("Richard Posner", "PERSON"), ("Phobos", "LOCATION")])),
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
    # A community run's pass (only_if_changed) reads nothing when no extraction was stored since.
    assert run_merge_pass(d.settings, store, only_if_changed=True).skipped
    snapshot = store.reads.snapshot()
    # A new mention of the merged name now resolves straight to the survivor, via the alias.
    worker.stop()
    worker = d.start_worker("route,resolve,assemble,sink")
    fourth = extraction_record(3, [("Posner", "PERSON")])
    produce_raw(d.settings, topic, [(None, fourth)])
    wait_quiescent(d.settings, workers=[worker], stages=[*RESOLUTION, Stage.SINK])
    # The resolver itself answers with the survivor, through the alias (the sink's redirects
    # would store the mention on the survivor even if the resolver ignored the aliases topic).
    fourth_chunk = ChunkExtraction.model_validate_json(fourth).chunk.chunk_id
    assert _resolved(d, fourth_chunk) == [(posner, "Richard Posner", "alias")]
    assert [e.entity_id for e in _updates(d)[3].entities] == [posner]
    assert {m["entity_id"] for m in store.db.entity_mentions.find({"chunk_id": {"$exists": True},
                                                                   "surface": "Posner"})} == {posner}
    assert store.reads.counts()["entities"] == 3
    assert snapshot["relations"] == store.reads.snapshot()["relations"]
    # The fourth chunk was stored since: the next community run's pass runs, the one after skips.
    assert not run_merge_pass(d.settings, store, only_if_changed=True).skipped
    assert run_merge_pass(d.settings, store, only_if_changed=True).skipped
    assert_no_stall(worker)


@pytest.mark.integration
def test_published_aliases_are_what_the_topic_holds(deployment_factory: DeploymentFactory) -> None:
    """The merge pass reads the aliases topic to its end once, an empty one at once (not
    after a timeout), and sees retractions."""
    from schemas import EntityAlias
    from streams.resolution.aliases import publish_aliases, published_aliases
    from streams.resolution.resolve import Canonical

    d = deployment_factory()
    d.create_topics()

    def ready() -> list[dict[str, Canonical]] | None:
        try:
            return [published_aliases(d.settings)]
        except KafkaException:  # topics just created: "not leader for partition" for a moment
            return None

    assert wait_until(ready, timeout=30, interval=0.5) == [{}]
    posner, mars = entity_id("PERSON", "richard posner"), entity_id("LOCATION", "mars")
    publish_aliases(d.settings, {"posner": EntityAlias(entity_id=posner, type="PERSON", name="Richard Posner"),
                                 "red planet": EntityAlias(entity_id=mars, type="LOCATION", name="Mars")})
    publish_aliases(d.settings, {"red planet": None})
    assert published_aliases(d.settings) == {"posner": Canonical(posner, "PERSON", "Richard Posner")}
