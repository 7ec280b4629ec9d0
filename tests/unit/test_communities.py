"""Communities, incremental summaries, forgetting a video, and answers with citations."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from streams.communities.detect import detect
from streams.communities.summarize import ExtractiveSummarizer
from streams.jobs.community_run import run_communities
from streams.model.citations import Citation
from streams.model.communities import Edge, PreviousCommunity
from streams.model.ids import stable_id
from streams.model.reports import CommunityContext, MemberInfo, RelationInfo
from streams.query.answers import answer_global, answer_local
from streams.store.graph_store import GRAPH_COLLECTIONS, GraphStore
from tests.support import wait_quiescent, wait_until


def clique(prefix: str, n: int, weight: float = 5.0) -> list[Edge]:
    names = [f"{prefix}{i}" for i in range(n)]
    return [Edge(a, b, stable_id("r", a, b), weight) for a, b in itertools.combinations(names, 2)]


def previous(det: Any) -> list[PreviousCommunity]:
    return [PreviousCommunity(c.community_id, c.level, frozenset(c.members), c.fingerprint, c.incident_fingerprint,
                              c.parent, c.fingerprint) for c in det.communities]


def test_two_cliques_are_two_communities_with_stable_ids() -> None:
    edges = clique("a", 5) + clique("b", 5) + [Edge("a0", "b0", "bridge", 1.0)]
    nodes = sorted({e.source for e in edges} | {e.target for e in edges})
    first = detect(nodes, edges)
    assert sorted(sorted(c.members) for c in first.communities) == [[f"a{i}" for i in range(5)],
                                                                    [f"b{i}" for i in range(5)]]
    assert len(first.new) == 2 and not first.changed
    again = detect(nodes, edges, previous(first))
    assert {c.community_id for c in again.communities} == {c.community_id for c in first.communities}
    assert len(again.unchanged) == 2 and not again.new and not again.changed and not again.removed

    # A heavier edge inside clique a changes a, not b; a new clique c is new.
    a1 = next(c for c in first.communities if "a0" in c.members)
    edges2 = [Edge(e.source, e.target, e.relation_id, 9.0) if e.relation_id == stable_id("r", "a1", "a2") else e
              for e in edges] + clique("c", 4)
    third = detect(sorted(set(nodes) | {f"c{i}" for i in range(4)}), edges2, previous(first))
    assert third.changed == [a1.community_id]
    assert len(third.unchanged) == 1 and len(third.new) == 1

    # Clique b gone: its community is removed.
    edges3 = clique("a", 5)
    fourth = detect([f"a{i}" for i in range(5)], edges3, previous(first))
    assert fourth.removed == sorted(c.community_id for c in first.communities if "b0" in c.members)


def test_large_communities_are_split_into_a_finer_level() -> None:
    # Three dense groups loosely tied together form one big level-0 community at low resolution.
    edges = clique("x", 6) + clique("y", 6) + clique("z", 6)
    edges += [Edge("x0", "y0", "xy", 3.0), Edge("y1", "z1", "yz", 3.0), Edge("z2", "x2", "zx", 3.0)]
    nodes = sorted({e.source for e in edges} | {e.target for e in edges})
    det = detect(nodes, edges, max_community_size=10, resolution=0.05)
    levels = {c.level for c in det.communities}
    assert levels == {0, 1}
    top = [c for c in det.communities if c.level == 0]
    children = [c for c in det.communities if c.level == 1]
    assert len(top) == 1 and len(top[0].members) == 18
    assert len(children) == 3 and all(c.parent == top[0].community_id for c in children)


def test_extractive_report_cites_evidence() -> None:
    ev = Citation(video_id="Pw0IZg7_4mo", chunk_id="c" * 24, seconds=83.0)
    ctx = CommunityContext("cid", 0, [MemberInfo("p", "Phobos", "LOCATION", "a moon of Mars", 4, 2),
                                      MemberInfo("m", "Mars", "LOCATION", "the red planet", 9, 2)],
                           [RelationInfo("r", "p", "m", "ORBIT", "Phobos orbits Mars.", 8.0, (ev,))])
    report = ExtractiveSummarizer().report(ctx)
    assert report.title == "Phobos and Mars"
    assert report.findings[0].text.startswith("Phobos orbit Mars") and report.findings[0].evidence == [ev]
    assert ev.cite == "Pw0IZg7_4mo@01:23" and ev.url == "https://youtu.be/Pw0IZg7_4mo?t=83"
    assert 0 < report.rating <= 10


# --------------------------------------------------------------------------- on the corpus

def _graph(store: GraphStore) -> dict[str, list[dict[str, Any]]]:
    snap = store.snapshot()
    for v in snap["videos"]:  # a new request has a new request time
        v.pop("requested_at", None)
    return {k: snap[k] for k in GRAPH_COLLECTIONS}


def _community_run(settings: Any, store: GraphStore, merge: bool) -> Any:
    return asyncio.run(run_communities(settings, store, ExtractiveSummarizer(), merge=merge))


@pytest.mark.integration
def test_forget_resubmit_and_incremental_summaries(corpus_run: dict[str, Any]) -> None:
    d, store = corpus_run["deployment"], corpus_run["store"]
    first = _community_run(d.settings, store, merge=True)
    assert first.total > 5 and first.summarized == first.total
    full = _graph(store)

    video = "16W7c0mb-rE"  # Kurzgesagt on emergence: ant colonies
    its_entities = {m["entity_id"] for m in store.db.entity_mentions.find({"video_id": video})}
    out = json.loads(json.dumps(d.cli("forget", video).stdout))
    assert "forgot 16W7c0mb-rE" in out
    assert store.db.chunks.count_documents({"video_id": video}) == 0
    assert store.db.entity_mentions.count_documents({"video_id": video}) == 0
    assert store.db.communities.count_documents({"dirty": True}) > 0
    assert "0 entity_mentions" in d.cli("forget", video).stdout  # idempotent
    second = _community_run(d.settings, store, merge=False)
    assert second.summarized == second.new + second.changed

    # Adding the video back: the same graph as before, and only the communities it touches
    # are summarised again.
    d.cli("submit", video)
    wait_until(lambda: store.videos([video]) and store.videos([video])[0]["status"] == "done", timeout=300)
    wait_quiescent(d.settings, workers=[corpus_run["worker"]])
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
def test_answers_cite_only_stored_chunks_that_name_an_answer_entity(corpus_run: dict[str, Any]) -> None:
    d, store = corpus_run["deployment"], corpus_run["store"]
    if store.db.communities.count_documents({}) == 0:
        _community_run(d.settings, store, merge=False)
    # Questions drawn from the corpus: fixed ones, plus one per most connected entity.
    questions = [(q, "local") for q in QUESTIONS_LOCAL] + [(q, "global") for q in QUESTIONS_GLOBAL]
    questions += [(f"What is said about {e['name']}?", "local") for e in store.top_entities(8)]
    cited = answered = 0
    for question, mode in questions:
        answer = answer_local(store, question) if mode == "local" else answer_global(store, question)
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
