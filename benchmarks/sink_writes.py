"""MongoDB/FerretDB writes: one upsert per document vs the store's batched write path.

Both write the same graph updates, made from corpus transcripts by the real parse, chunk,
extract (offline) and resolve functions, into fresh databases on the local stack, or on
each store given with ``--store NAME=URI`` (repeatable: the stores run one after the other
in the same run, and the batched rates are printed side by side with their ratio), e.g.
FerretDB on SQLite against FerretDB on PostgreSQL.

    python benchmarks/sink_writes.py [--videos 8] [--store sqlite=mongodb://127.0.0.1:27017 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

from _common import CORPUS, Deployment, deployment, manifest
from pymongo import UpdateOne

from schemas import ChunkExtraction, GraphUpdate, TranscriptFetched, TranscriptSegment
from streams.extraction.offline import PROMPT_VERSION, extract_offline
from streams.resolution.resolve import resolve_extraction
from streams.store import GraphStore, connect
from streams.store.documents import chunk_doc, evidence_doc, mention_doc
from streams.transcripts.chunking import chunk_transcript
from streams.transcripts.parse import parse_transcript


def updates(videos: int) -> list[GraphUpdate]:
    out = []
    now = datetime.now(UTC)
    for e in manifest()[:videos]:
        segs = parse_transcript((CORPUS / e["path"]).read_text(encoding="utf-8"), e["format"])
        t = TranscriptFetched(video_id=e["video_id"], source="local", source_ref=e["path"],
                              segments=[TranscriptSegment(start=s.start, end=s.end, text=s.text) for s in segs],
                              requested_at=now, fetched_at=now)
        for c in chunk_transcript(t):
            r = extract_offline(c.text)
            out.append(resolve_extraction(ChunkExtraction(chunk=c, entities=r.entities, relations=r.relations,
                                                          extractor="offline-plain", prompt_version=PROMPT_VERSION)))
    return out


def naive(store: GraphStore, batch: list[GraphUpdate]) -> int:
    """What a sink without batching does: one upsert per chunk, mention, evidence, entity, relation."""
    n = 0
    for u in batch:
        ms = [mention_doc(u, e) for e in u.entities]
        es = [evidence_doc(u, r) for r in u.relations]
        store.db.chunks.update_one({"_id": u.chunk.chunk_id}, {"$set": chunk_doc(u, ms, es)}, upsert=True)
        for d in ms:
            store.db.entity_mentions.update_one({"_id": d["_id"]}, {"$set": d}, upsert=True)
        for d in es:
            store.db.relation_evidence.update_one({"_id": d["_id"]}, {"$set": d}, upsert=True)
        for e in u.entities:
            store.db.entities.update_one({"_id": e.entity_id}, {"$set": {"name": e.name, "type": e.type}},
                                         upsert=True)
        for r in u.relations:
            store.db.relations.bulk_write([UpdateOne({"_id": r.relation_id}, {"$set": {"type": r.type}},
                                                     upsert=True)])
        n += 1 + len(ms) + len(es) + len(u.entities) + len(u.relations)
    return n


LOCAL_URI = f"mongodb://127.0.0.1:{os.environ.get('GRAPHRAG_MONGO_PORT', '27017')}"


def batched_rate(d: Deployment, batch: list[GraphUpdate], size: int) -> tuple[float, float, dict[str, int]]:
    """The store's batched write path into a fresh database: (seconds, seconds of a replay of
    the same batches, document counts)."""
    client = connect(d.settings)
    try:
        batched = GraphStore(client[d.name + "_batched"], d.settings.mongodb.max_ops_per_command)
        batched.ensure_indexes()
        t0 = time.perf_counter()
        for i in range(0, len(batch), size):
            batched.graph.write_updates(batch[i:i + size])
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(batch), size):
            batched.graph.write_updates(batch[i:i + size])
        return t_batched, time.perf_counter() - t0, batched.reads.counts()
    finally:
        client.drop_database(d.name + "_batched")
        client.close()


def one_store(d: Deployment, batch: list[GraphUpdate], size: int, label: str, uri: str, with_naive: bool) -> float:
    """Both write paths on one store (or the batched one only), printed; returns the batched path's chunks/s."""
    t_single = docs = 0.0
    if with_naive:
        client = connect(d.settings)
        try:
            single = GraphStore(client[d.name + "_single"], d.settings.mongodb.max_ops_per_command)
            t0 = time.perf_counter()
            docs = naive(single, batch)
            t_single = time.perf_counter() - t0
        finally:
            client.drop_database(d.name + "_single")
            client.close()
    t_batched, t_replay, counts = batched_rate(d, batch, size)
    print(f"[{label}] {uri}: {len(batch)} chunk updates ({counts['entity_mentions']} mentions, "
          f"{counts['relation_evidence']} evidence, {counts['entities']} entities, {counts['relations']} relations)")
    if with_naive:
        print(f"[{label}] one upsert per document : {t_single:7.2f}s  {len(batch) / t_single:7.1f} chunks/s  "
              f"{docs / t_single:7.0f} docs/s ({docs:.0f} document writes)")
    print(f"[{label}] store, batches of {size:<4}  : {t_batched:7.2f}s  {len(batch) / t_batched:7.1f} chunks/s"
          + (f"  (x{t_single / t_batched:.1f})" if with_naive else ""))
    print(f"[{label}] same batches again      : {t_replay:7.2f}s  {len(batch) / t_replay:7.1f} chunks/s  (a replay)")
    return len(batch) / t_batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--store", action="append", default=[], metavar="NAME=URI",
                        help="a MongoDB URI to measure (repeatable; default: the local stack's)")
    parser.add_argument("--no-naive", action="store_true", help="the store's batched path only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every store this many times, taking turns (the median is compared)")
    args = parser.parse_args()
    stores = [tuple(s.split("=", 1)) for s in args.store] or [("local", LOCAL_URI)]
    batch = updates(args.videos)
    print(f"{len(batch)} chunk updates from {args.videos} videos; load average {os.getloadavg()[0]:.2f} at the start")
    rates: dict[str, list[float]] = {label: [] for label, _ in stores}
    for _ in range(args.rounds):
        for label, uri in stores:
            d = deployment({"mongodb": {"uri": uri}})
            rates[label].append(one_store(d, batch, args.batch, label, uri, not args.no_naive))
    if len(rates) > 1:
        medians = [(label, statistics.median(r)) for label, r in rates.items()]
        base_label, base = medians[0]
        print(f"store's batched path, median of {args.rounds} round(s), side by side: " + ", ".join(
            f"{label} {rate:.1f} chunks/s (x{rate / base:.2f} of {base_label})" for label, rate in medians))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
