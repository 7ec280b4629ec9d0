"""Communities on the session's corpus run: forgetting a video, incremental summaries, and
answers with citations. Each test starts from the frozen run and restores it afterwards
(`restored_graph`).

Detection and reports on hand-made graphs: tests/unit/test_communities.py."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from streams.communities.summarize import ExtractiveSummarizer
from streams.jobs.community_run import run_communities
from streams.query.answers import answer_global, answer_local
from streams.query.snapshot import load_snapshot
from streams.store import GRAPH_COLLECTIONS, GraphStore
from tests.integration.corpus_run import CorpusRun
from tests.support import evidence_mismatches, wait_quiescent, wait_until


def _graph(store: GraphStore) -> dict[str, list[dict[str, Any]]]:
    snap = store.reads.snapshot()
    for v in snap["videos"]:  # a new request has a new request time
        v.pop("requested_at", None)
    return {k: snap[k] for k in GRAPH_COLLECTIONS}


def _community_run(settings: Any, store: GraphStore, merge: bool) -> Any:
    return asyncio.run(run_communities(settings, store, ExtractiveSummarizer(), merge=merge))


@pytest.mark.integration
def test_forget_resubmit_and_incremental_summaries(restored_graph: CorpusRun) -> None:
    d, store = restored_graph.deployment, restored_graph.store
    first = _community_run(d.settings, store, merge=True)
    assert first.total > 5 and first.summarized == first.total
    full = _graph(store)

    video = "16W7c0mb-rE"  # Kurzgesagt on emergence: ant colonies
    its_entities = {m["entity_id"] for m in store.db.entity_mentions.find({"video_id": video})}
    its_relations = {e["relation_id"] for e in store.db.relation_evidence.find({"video_id": video})}
    assert its_entities and its_relations
    out = d.cli("forget", video).stdout
    assert "forgot 16W7c0mb-rE" in out
    assert store.db.chunks.count_documents({"video_id": video}) == 0
    assert store.db.entity_mentions.count_documents({"video_id": video}) == 0
    assert store.db.relation_evidence.count_documents({"video_id": video}) == 0
    # What the video supported is recomputed from the evidence left: counts match it exactly,
    # and an entity or relation that only this video supported is gone.
    assert evidence_mismatches(store) == []
    kept_entities = {m["entity_id"] for m in store.db.entity_mentions.find({"entity_id": {"$in": list(its_entities)}})}
    kept_relations = {e["relation_id"] for e in
                      store.db.relation_evidence.find({"relation_id": {"$in": list(its_relations)}})}
    assert kept_entities < its_entities and kept_relations < its_relations  # some were this video's alone
    assert {e["_id"] for e in store.db.entities.find({"_id": {"$in": list(its_entities)}})} == kept_entities
    assert {r["_id"] for r in store.db.relations.find({"_id": {"$in": list(its_relations)}})} == kept_relations
    assert store.db.communities.count_documents({"dirty": True}) > 0
    again = d.cli("forget", video).stdout  # idempotent: nothing left to remove
    assert re.search(r"(?<!\d)0 entity_mentions", again) and re.search(r"(?<!\d)0 relation_evidence", again), again
    assert re.search(r"(?<!\d)0 chunks", again), again
    dirty = {c["_id"] for c in store.db.communities.find({"dirty": True})}
    second = _community_run(d.settings, store, merge=False)
    # Only what the forgotten video touched is summarised again, and each of those once.
    redone_after_forget = {c["_id"] for c in store.db.communities.find({"summarized_run": second.run_id})}
    assert 0 < second.summarized == len(redone_after_forget) < second.total
    assert second.removed + second.changed > 0  # forgetting a video changed the partition
    assert store.db.communities.count_documents({"dirty": True}) == 0, dirty

    # Adding the video back: the same graph as before, and only the communities it touches
    # are summarised again.
    worker = d.start_worker("all")
    d.cli("submit", video)
    wait_until(lambda: store.videos.find([video]) and store.videos.find([video])[0]["status"] == "done", timeout=300,
               message=lambda: f"the video done again; log:\n{worker.log_tail()}")
    wait_quiescent(d.settings, workers=[worker])
    assert _graph(store) == full
    # The region the video touches: its entities and every community that holds one of them.
    region = set(its_entities)
    for c in store.db.communities.find():
        if set(c["members"]) & its_entities:
            region |= set(c["members"])
    third = _community_run(d.settings, store, merge=False)
    print(f"\nadding one video back: {third.total} communities, {third.summarized} re-summarised "
          f"({third.new} new, {third.changed} changed, {third.unchanged} unchanged, {third.removed} removed)")
    assert third.summarized < third.total
    redone = list(store.db.communities.find({"summarized_run": third.run_id}))
    assert len(redone) == third.summarized
    for c in redone:  # each re-summarised community lies in the region the video touched
        assert set(c["members"]) <= region, c["_id"]
    untouched = [c for c in store.db.communities.find() if not set(c["members"]) & region]
    assert untouched and all(c.get("summarized_run") != third.run_id for c in untouched)


QUESTIONS_LOCAL = [
    "What are the moons of Mars?",
    "How do ant colonies work?",
    "What did Judge Posner say about good faith?",
    "What happens to a black hole?",
    "What is fracking?",
    "Tell me about Neptune and Triton.",
]
QUESTIONS_GLOBAL = ["What are the main themes about the universe and stars?",
                    "What do the videos say about contracts and law?"]


@pytest.mark.integration
def test_answers_cite_only_stored_chunks_that_name_an_answer_entity(restored_graph: CorpusRun) -> None:
    d, store = restored_graph.deployment, restored_graph.store
    assert store.db.communities.count_documents({}) == 0  # the frozen run has none; global answers need them
    _community_run(d.settings, store, merge=False)
    # Questions drawn from the corpus: fixed ones, plus one per most connected entity.
    questions = [(q, "local") for q in QUESTIONS_LOCAL] + [(q, "global") for q in QUESTIONS_GLOBAL]
    questions += [(f"What is said about {e['name']}?", "local") for e in store.reads.top_entities(8)]
    cited = answered = 0
    graph = load_snapshot(store)
    for question, mode in questions:
        answer = answer_local(graph, question) if mode == "local" else answer_global(graph, question)
        names = {n.casefold() for e in answer.entities for n in [e["name"], *e.get("aliases", [])]}
        for c in answer.citations:
            chunk = store.db.chunks.find_one({"_id": c.chunk_id})
            assert chunk is not None, (question, c)
            assert chunk["video_id"] == c.video_id and chunk["start"] <= c.seconds <= chunk["end"] + 1
            assert any(n in chunk["text"].casefold() for n in names), (question, c.cite, sorted(names)[:5])
            assert c.url == f"https://youtu.be/{c.video_id}?t={int(c.seconds)}"
            assert c.cite in answer.text
            cited += 1
        if mode == "local" and answer.entities:
            assert answer.citations, question  # a named entity of the graph is always cited
        answered += bool(answer.citations)
    assert answered >= len(questions) - 2 and cited > len(questions)
    # The CLI gives the same answer as JSON.
    out = json.loads(d.cli("query", QUESTIONS_LOCAL[0], "--json").stdout)
    assert out["mode"] == "local" and out["citations"] and out["citations"][0]["url"].startswith("https://youtu.be/")
