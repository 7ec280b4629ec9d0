"""Community runs: seconds per phase (merge, read, detect, summarize, save), on the corpus
graph and on generated graphs, printed side by side.

corpus: every corpus video but the last through the real pipeline (offline extractor),
then a community run (merge pass included, extractive summaries); the same run again with
nothing changed; then the last video and a third run: how much one more video costs.
generated: graphs of --sizes relations (default 10000 and 100000) among a third as many
entities in clusters, written straight into a fresh database (no evidence and no stored
extractions, so no merge pass), then one run.

    .venv/bin/python benchmarks/communities.py [--sizes 10000,100000] [--keep NAME] [--skip-corpus]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from _common import CORPUS, deployment

from streams.communities.summarize import ExtractiveSummarizer
from streams.jobs.community_run import CommunityRunReport, run_communities
from streams.settings import Settings
from streams.store import GraphStore
from tests.support import Deployment, manifest, wait_quiescent, wait_until

PHASES = ("merge", "read", "detect", "summarize", "save")


def _run(settings: Settings, store: GraphStore, *, merge: bool) -> CommunityRunReport:
    summarizer = ExtractiveSummarizer(settings.graphrag.communities.findings)
    return asyncio.run(run_communities(settings, store, summarizer, merge=merge))


def _row(label: str, r: CommunityRunReport, graph: str) -> None:
    phases = " ".join(f"{r.phases.get(p, 0.0):>9.2f}" for p in PHASES)
    print(f"{label:<34} {graph:<24} {phases} {r.duration_seconds:>9.2f}  "
          f"{r.total:>5} communities, {r.summarized:>5} summarised"
          + (", merge pass skipped (no extraction changed)" if r.merge_skipped else ""))


def _header() -> None:
    print(f"\n{'run':<34} {'graph':<24} " + " ".join(f"{p + ' s':>9}" for p in PHASES) + f" {'total s':>9}")


def _index(d: Deployment, store: GraphStore, ids: list[str]) -> None:
    d.cli("submit", *ids)
    wait_until(lambda: len(store.videos.find(ids)) == len(ids)
               and all(v["status"] in ("done", "failed") for v in store.videos.find(ids)), timeout=1800, interval=1)


def corpus(keep: str | None) -> None:
    d = deployment({"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                                 "communities": {"interval_seconds": 86400}}}, name=keep)
    try:
        ids = [e["video_id"] for e in manifest()]
        store = GraphStore.from_settings(d.settings)
        d.create_topics()
        worker = d.start_worker("all")
        _index(d, store, ids[:-1])
        wait_quiescent(d.settings, workers=[worker])
        c = store.reads.counts()
        graph = f"{c['entities']} ent, {c['relations']} rel"
        _header()
        _row(f"corpus, {len(ids) - 1} videos, first run", _run(d.settings, store, merge=True), graph)
        _row("same graph, nothing changed", _run(d.settings, store, merge=True), graph)
        _index(d, store, ids[-1:])
        wait_quiescent(d.settings, workers=[worker])
        c = store.reads.counts()
        _row("after one more video", _run(d.settings, store, merge=True),
             f"{c['entities']} ent, {c['relations']} rel")
    finally:
        d.stop_workers()
        if not keep:
            d.cleanup()


def generated_graph(store: GraphStore, relations: int, seed: int = 7) -> tuple[int, int]:
    """Clusters of about 30 entities, most relations inside a cluster, some across."""
    rnd = random.Random(seed)
    n_entities = max(10, relations // 3)
    types = ["PERSON", "ORGANIZATION", "LOCATION", "CONCEPT", "EVENT"]
    entities: list[dict[str, Any]] = [
        {"_id": f"e{i}", "name": f"Entity {i}", "type": types[i % len(types)], "aliases": [f"Entity {i}"],
         "description": f"Entity {i} of cluster {i // 30}.", "mention_count": rnd.randint(1, 20),
         "video_count": 1} for i in range(n_entities)]
    seen: set[tuple[str, str]] = set()
    docs: list[dict[str, Any]] = []
    while len(docs) < relations:
        a = rnd.randrange(n_entities)
        b = (a // 30) * 30 + rnd.randrange(30) if rnd.random() < 0.85 else rnd.randrange(n_entities)
        if a == b or b >= n_entities:
            continue
        s, t = f"e{min(a, b)}", f"e{max(a, b)}"
        if (s, t) in seen:
            continue
        seen.add((s, t))
        docs.append({"_id": f"r{len(docs)}", "source_id": s, "target_id": t, "type": "RELATED_TO",
                     "weight": rnd.randint(1, 10), "evidence_count": 1, "video_count": 1,
                     "description": f"{s} relates to {t}."})
    for coll, items in (("entities", entities), ("relations", docs)):
        for i in range(0, len(items), 1000):
            store.coll(coll).insert_many(items[i:i + 1000], ordered=False)
    store.graph.note_graph_changed()  # as every writer of the graph does
    return len(entities), len(docs)


def generated(sizes: list[int]) -> None:
    _header()
    for size in sizes:
        d = deployment({})
        try:
            store = GraphStore.from_settings(d.settings)
            store.ensure_indexes()
            t0 = time.monotonic()
            n_e, n_r = generated_graph(store, size)
            written = time.monotonic() - t0
            report = _run(d.settings, store, merge=False)
            _row(f"generated (written in {written:.0f}s)", report, f"{n_e} ent, {n_r} rel")
        finally:
            d.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="relations of each generated graph")
    parser.add_argument("--keep", metavar="NAME", help="keep the corpus deployment under this name")
    parser.add_argument("--skip-corpus", action="store_true")
    args = parser.parse_args()
    if not args.skip_corpus:
        corpus(args.keep)
    generated([int(s) for s in args.sizes.split(",") if s])


if __name__ == "__main__":
    main()
