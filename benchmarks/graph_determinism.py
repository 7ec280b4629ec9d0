"""Whether the graph is a function of the set of chunks: two clean runs of the corpus
(offline extractor) with different partition counts, compared before and after a merge pass.

Prints, per layer, what the runs share and what only one of them has: chunks and their
extractions (identical), entities, relations and mentions before the merge pass (in-stream
IDs depend on the order in which names reach a resolver block, which the partition count
changes) and after it (identical, documents included), and how long each merge pass took.

    python benchmarks/graph_determinism.py [--partitions 1 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import CORPUS, deployment, index_corpus

from streams.jobs.merge_pass import run_merge_pass
from streams.store import GraphStore
from tests.support import extractions_by_chunk, wait_quiescent


def _graph(store: GraphStore) -> dict[str, set[Any]]:
    db = store.db
    return {
        "entities": {d["_id"] for d in db.entities.find({}, {"_id": 1})},
        "relations": {d["_id"] for d in db.relations.find({}, {"_id": 1})},
        "mentions": {(d["chunk_id"], d["entity_id"])
                     for d in db.entity_mentions.find({}, {"chunk_id": 1, "entity_id": 1})},
    }


def _run(partitions: int) -> dict[str, Any]:
    d = deployment({"kafka": {"partitions": partitions},
                    "graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                                 "communities": {"interval_seconds": 86400}}})
    try:
        d.cli("topics", "create")
        store, worker, _, wall = index_corpus(d)
        wait_quiescent(d.settings, workers=[worker])
        before = _graph(store)
        t1 = time.monotonic()
        report = run_merge_pass(d.settings, store)
        merge_seconds = time.monotonic() - t1
        after = _graph(store)
        again = run_merge_pass(d.settings, store)
        chunks = {c["_id"] for c in store.db.chunks.find({}, {"_id": 1})}
        print(f"{partitions} partition(s): corpus done in {wall:.1f}s; {len(chunks)} chunks; "
              f"in-stream {len(before['entities'])} entities, {len(before['relations'])} relations; "
              f"merge pass {merge_seconds:.1f}s, {report.chunks_rewritten} chunks resolved again, "
              f"{len(report.merges)} cross-block merges -> {len(after['entities'])} entities; "
              f"a second pass rewrote {again.chunks_rewritten}")
        docs = {name: docs for name, docs in store.reads.snapshot().items() if name != "videos"}
        return {"chunks": chunks, "extractions": extractions_by_chunk(d.settings), "before": before, "after": after,
                "docs": docs}
    finally:
        d.cleanup()


def _compare(label: str, a: set[Any], b: set[Any]) -> None:
    both = len(a & b)
    union = len(a | b) or 1
    print(f"  {label:<26} shared {both:>6}  only first {len(a - b):>5}  only second {len(b - a):>5}  "
          f"identical share {both / union:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, nargs=2, default=[1, 3])
    args = parser.parse_args()
    first, second = (_run(p) for p in args.partitions)
    print(f"compared: {args.partitions[0]} vs {args.partitions[1]} partitions")
    _compare("chunks", first["chunks"], second["chunks"])
    same_extraction = first["extractions"] == second["extractions"]
    print(f"  {'extractions':<22} identical: {same_extraction}")
    for stage in ("before", "after"):
        for layer in ("entities", "relations", "mentions"):
            _compare(f"{layer} ({stage} merge)", first[stage][layer], second[stage][layer])
    same = [name for name in first["docs"] if first["docs"][name] == second["docs"][name]]
    print(f"  documents identical after the merge pass: {len(same)}/{len(first['docs'])} collections "
          f"({', '.join(sorted(first['docs']))})")


if __name__ == "__main__":
    main()
