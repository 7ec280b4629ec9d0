"""Answers: in-process latency of local and global questions, p50/p95 over 20 questions per
mode, on the corpus graph and on a generated graph, printed side by side ("unnamed": local
questions that name no entity, found through BM25), and what a snapshot refresh costs.

The graph is read once into a snapshot (streams/query/snapshot.py; its build time is
printed); each question is then timed twice: answered from that snapshot, and through
`SnapshotHolder.latest()` first, as `serve` answers (a signature check of the store, then
the snapshot). The CLI's `query` loads the snapshot once per process: its cost is the
build time plus one answer.

corpus: a kept deployment (--keep NAME, e.g. from `benchmarks/communities.py --keep NAME`),
or every corpus video through the pipeline here and one community run.
generated: --relations relations among a third as many entities (benchmarks/communities.py's
generator), one community run with extractive summaries.

    .venv/bin/python benchmarks/query.py [--keep NAME] [--relations 100000] [--skip-corpus]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from _common import CORPUS, deployment, index_corpus, percentile
from communities import generated_graph

from streams.communities.summarize import ExtractiveSummarizer
from streams.jobs.community_run import run_communities
from streams.query.answers import Answer, answer_global, answer_local
from streams.query.index import QueryIndex, terms
from streams.query.snapshot import GraphSnapshot, SnapshotHolder, load_snapshot
from streams.settings import Settings
from streams.store import GraphStore
from tests.support import Deployment, wait_quiescent

QUESTIONS = 20


def questions(snap: GraphSnapshot) -> tuple[list[str], list[str], list[str]]:
    """20 local questions naming the most mentioned entities, 20 global ones from report titles,
    and 20 local ones that name no entity: four words of a described entity's description
    (answered through BM25)."""
    top = sorted(snap.entities.items(), key=lambda kv: (-int(kv[1].get("mention_count", 0)), kv[0]))
    local = [f"What is said about {e['name']}?" for _, e in top[:QUESTIONS]]
    titles = [(c.get("report") or {}).get("title", "") for c in snap.communities]
    global_ = [f"What do the videos say about {t}?" for t in titles if t][:QUESTIONS]
    unnamed = []
    for _, e in top:
        name = set(terms(e.get("name", "")))
        words = list(dict.fromkeys(w for w in terms(e.get("description") or "") if w not in name))[:4]
        question = f"What is said about {' '.join(words)}?"
        if len(words) == 4 and not snap.index.named(question):
            unnamed.append(question)
        if len(unnamed) == QUESTIONS:
            break
    return local, global_, unnamed


def refresh_times(store: GraphStore, snap: GraphSnapshot) -> None:
    """What a refresh costs: the snapshot read afresh against one built from the last one, and
    the index alone, afresh against from the last one with one entity renamed."""
    t0 = time.perf_counter()
    load_snapshot(store)
    fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_snapshot(store, snap)
    again = time.perf_counter() - t0
    entities = dict(snap.entities)
    some = next(iter(entities), None)
    if some is not None:
        entities[some] = {**entities[some], "name": f"{entities[some].get('name', '')} renamed"}
    t0 = time.perf_counter()
    QueryIndex.build(entities, snap.communities, snap.chunk_texts)
    index_fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    QueryIndex.build(entities, snap.communities, snap.chunk_texts, previous=snap.index)
    index_again = time.perf_counter() - t0
    print(f"refresh: snapshot afresh {fresh:.2f}s, from the last one {again:.2f}s; index alone (one entity "
          f"renamed) afresh {index_fresh * 1000:.0f} ms, from the last one {index_again * 1000:.0f} ms "
          f"(x{index_fresh / max(index_again, 1e-9):.1f})")


def _timed(answer: Callable[[str], Answer], qs: list[str]) -> tuple[list[float], int]:
    times, cited = [], 0
    for q in qs:
        t0 = time.perf_counter()
        a = answer(q)
        times.append((time.perf_counter() - t0) * 1000)
        cited += bool(a.citations)
    return times, cited


def _row(graph: str, mode: str, path: str, times: list[float], cited: int, n: int) -> None:
    print(f"{graph:<28} {mode:<7} {path:<22} {percentile(times, 50):>8.1f} {percentile(times, 95):>8.1f} "
          f"{max(times):>8.1f}   {cited}/{n} with citations")


def measure(label: str, store: GraphStore) -> None:
    snap = load_snapshot(store)
    graph = f"{label} ({len(snap.entities)} ent)"
    print(f"\n{graph}: snapshot built in {snap.build_seconds:.2f}s, {len(snap.communities)} communities")
    print(f"{'graph':<28} {'mode':<7} {'path':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    holder = SnapshotHolder(store, refresh_seconds=3600, max_age_seconds=3600, loader=lambda *_: snap)
    holder.refresh()
    local, global_, unnamed = questions(snap)
    for mode, qs, fn in (("local", local, answer_local), ("global", global_, answer_global),
                         ("unnamed", unnamed, answer_local)):
        if not qs:
            continue
        times, cited = _timed(lambda q, fn=fn: fn(snap, q), qs)  # type: ignore[misc]
        _row(graph, mode, "snapshot", times, cited, len(qs))
        times, cited = _timed(lambda q, fn=fn: fn(holder.latest(), q), qs)  # type: ignore[misc]
        _row(graph, mode, "latest() + snapshot", times, cited, len(qs))
    refresh_times(store, snap)


def _communities(settings: Settings, store: GraphStore, *, merge: bool) -> None:
    summarizer = ExtractiveSummarizer(settings.graphrag.communities.findings)
    asyncio.run(run_communities(settings, store, summarizer, merge=merge))


def corpus(keep: str | None) -> None:
    overrides = {"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                              "communities": {"interval_seconds": 86400}}}
    d: Deployment = deployment(overrides, name=keep)
    try:
        store = GraphStore.from_settings(d.settings)
        if not store.communities.find():
            d.create_topics()
            _, worker, _, _ = index_corpus(d)
            wait_quiescent(d.settings, workers=[worker])
            d.stop_workers()
            _communities(d.settings, store, merge=True)
        measure("corpus", store)
    finally:
        d.stop_workers()
        if not keep:
            d.cleanup()


def generated(relations: int) -> None:
    d = deployment({})
    try:
        store = GraphStore.from_settings(d.settings)
        store.ensure_indexes()
        generated_graph(store, relations)
        _communities(d.settings, store, merge=False)
        measure(f"generated {relations // 1000}k rel", store)
    finally:
        d.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", metavar="NAME", help="use (or make and keep) the corpus deployment of this name")
    parser.add_argument("--relations", type=int, default=100_000, help="relations of the generated graph (0: none)")
    parser.add_argument("--skip-corpus", action="store_true")
    args = parser.parse_args()
    if not args.skip_corpus:
        corpus(args.keep)
    if args.relations:
        generated(args.relations)


if __name__ == "__main__":
    main()
