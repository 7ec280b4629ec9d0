"""MongoDB/FerretDB writes: one upsert per document vs the store's batched write path.

Both write the same graph updates, made from corpus transcripts by the real parse, chunk,
extract (offline) and resolve functions, into fresh databases on the local stack.

    python benchmarks/sink_writes.py [--videos 8]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from _common import CORPUS, deployment, manifest
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    batch = updates(args.videos)
    d = deployment({})
    client = connect(d.settings)
    try:
        single = GraphStore(client[d.name + "_single"], d.settings.mongodb.max_ops_per_command)
        t0 = time.perf_counter()
        docs = naive(single, batch)
        t_single = time.perf_counter() - t0

        batched = GraphStore(client[d.name + "_batched"], d.settings.mongodb.max_ops_per_command)
        batched.ensure_indexes()
        t0 = time.perf_counter()
        for i in range(0, len(batch), args.batch):
            batched.graph.write_updates(batch[i:i + args.batch])
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(batch), args.batch):
            batched.graph.write_updates(batch[i:i + args.batch])
        t_replay = time.perf_counter() - t0
        counts = batched.reads.counts()
        print(f"{len(batch)} chunk updates from {args.videos} videos = {docs} document writes "
              f"({counts['entity_mentions']} mentions, {counts['relation_evidence']} evidence, "
              f"{counts['entities']} entities, {counts['relations']} relations)")
        print(f"one upsert per document : {t_single:7.2f}s  {len(batch) / t_single:7.1f} chunks/s  "
              f"{docs / t_single:7.0f} docs/s")
        print(f"store, batches of {args.batch:<4}  : {t_batched:7.2f}s  {len(batch) / t_batched:7.1f} chunks/s  "
              f"(x{t_single / t_batched:.1f})")
        print(f"same batches again      : {t_replay:7.2f}s  {len(batch) / t_replay:7.1f} chunks/s  (a replay)")
    finally:
        client.drop_database(d.name + "_single")
        client.drop_database(d.name + "_batched")
        client.close()


if __name__ == "__main__":
    main()
