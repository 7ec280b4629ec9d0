"""The graph collections' writes: evidence (``entity_mentions``, ``relation_evidence``) is the
truth; ``chunks`` carry its fingerprint; ``entities`` and ``relations`` are reconciled from it.

Why it is idempotent: evidence has deterministic ``_id``s and is bulk-inserted (a duplicate
key means "already stored"); a chunk extracted again with another result has its evidence
replaced whole; entities and relations are recomputed from their evidence, never
incremented, so a redelivered message cannot double-count anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import bson
from pymongo import ASCENDING, DeleteOne, UpdateOne

from schemas import ChunkExtraction, ExtractedGraph, GraphUpdate, TranscriptChunk
from streams.store.documents import (
    chunk_doc,
    differs,
    entity_doc,
    evidence_doc,
    mention_doc,
    redirect_evidence,
    relation_doc,
)
from streams.store.mongo import Collections, Doc, Mongo, batched
from streams.store.videos import VideoProgress

#: A chunk's request time is not stored, and nothing downstream of extraction reads it.
NOT_STORED = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class WriteSummary:
    chunks: int = 0
    mentions_inserted: int = 0
    evidence_inserted: int = 0
    stale_removed: int = 0
    entities: int = 0
    relations: int = 0
    videos: set[str] = field(default_factory=set)
    completed: list[Doc] = field(default_factory=list)  # videos that became done in this batch


class GraphWrites(Collections):
    """Batched, idempotent writes of per-chunk graph updates, merges and forgetting."""

    def __init__(self, mongo: Mongo, videos: VideoProgress) -> None:
        super().__init__(mongo)
        self.videos = videos  # a batch's videos get their stored-chunk counters refreshed

    def write_updates(self, updates: Sequence[GraphUpdate], *, merge_pass: bool = False) -> WriteSummary:
        """Store a batch of per-chunk graph updates; safe to call again with the same batch.

        ``merge_pass``: the updates are resolved already (no redirects), and only stored
        chunks whose evidence differs are written. The stream reconciles even those: a worker that
        died between storing evidence and reconciling it is repaired by the redelivery.
        """
        summary = WriteSummary()
        latest: dict[str, GraphUpdate] = {}
        for u in updates:  # a chunk seen twice in one batch: the later one wins
            latest[u.chunk.chunk_id] = u
        if not latest:
            return summary

        # An update made before a merge pass (a replay, a late message) names merged entities:
        # store it as the merge pass stored the rest, on the survivors.
        redirects = ({} if merge_pass
                     else self.entity_redirects({e.entity_id for u in latest.values() for e in u.entities}))
        mentions: dict[str, list[Doc]] = {}
        evidence: dict[str, list[Doc]] = {}
        chunk_docs: dict[str, Doc] = {}
        for cid, u in latest.items():
            mentions[cid], evidence[cid] = redirect_evidence([mention_doc(u, e) for e in u.entities],
                                                             [evidence_doc(u, r) for r in u.relations], redirects)
            chunk_docs[cid] = chunk_doc(u, mentions[cid], evidence[cid])
            # A document the driver cannot encode fails the batch here, before anything of it
            # is written: its evidence must not count once the sink dead-letters it.
            for doc in (chunk_docs[cid], *mentions[cid], *evidence[cid]):
                bson.encode(doc)

        existing = {d["_id"]: d.get("evidence_fingerprint")
                    for d in self.coll("chunks").find({"_id": {"$in": list(latest)}},
                                                     {"evidence_fingerprint": 1})}
        changed = [cid for cid, fp in existing.items() if fp != chunk_docs[cid]["evidence_fingerprint"]]
        if merge_pass:  # only what differs; never a chunk that is gone (a video forgotten meanwhile)
            latest = {cid: latest[cid] for cid in changed}
            mentions = {cid: mentions[cid] for cid in changed}
            evidence = {cid: evidence[cid] for cid in changed}
            chunk_docs = {cid: chunk_docs[cid] for cid in changed}

        touched_entities = {m["entity_id"] for ms in mentions.values() for m in ms}
        touched_relations = {e["relation_id"] for es in evidence.values() for e in es}
        if changed:
            # A chunk extracted again with another result: its evidence is replaced whole.
            old = {"chunk_id": {"$in": changed}}
            old_m = list(self.coll("entity_mentions").find(old, {"entity_id": 1}))
            old_e = list(self.coll("relation_evidence").find(old, {"relation_id": 1}))
            touched_entities |= {d["entity_id"] for d in old_m}
            touched_relations |= {d["relation_id"] for d in old_e}
            self.coll("entity_mentions").delete_many(old)
            self.coll("relation_evidence").delete_many(old)
            still = {m["_id"] for cid in changed for m in mentions[cid]} | {e["_id"] for cid in changed
                                                                            for e in evidence[cid]}
            summary.stale_removed = len({d["_id"] for d in old_m + old_e} - still)

        # Evidence before chunk documents: a stored chunk implies its evidence is stored.
        insert = self.mongo.insert_new
        summary.mentions_inserted = insert("entity_mentions", [m for ms in mentions.values() for m in ms])
        summary.evidence_inserted = insert("relation_evidence", [e for es in evidence.values() for e in es])
        new_chunks = [doc for cid, doc in chunk_docs.items() if cid not in existing]
        self.mongo.insert_new("chunks", new_chunks)
        self.mongo.bulk("chunks", [UpdateOne({"_id": cid}, {"$set": chunk_docs[cid]}) for cid in changed])
        summary.chunks = len(new_chunks) + len(changed)

        summary.entities = self.reconcile_entities(touched_entities)
        summary.relations = self.reconcile_relations(touched_relations)
        summary.videos = {u.chunk.video_id for u in latest.values()}
        summary.completed = self.videos.refresh(summary.videos)
        return summary

    def reconcile_entities(self, entity_ids: Iterable[str]) -> int:
        """Recompute entity documents from their mentions; remove entities left without any."""
        return self._reconcile("entities", "entity_mentions", "entity_id", entity_ids,
                               ("type", "surface", "description", "video_id"), entity_doc)

    def reconcile_relations(self, relation_ids: Iterable[str]) -> int:
        """Recompute relation weights from their evidence; remove relations left without any."""
        return self._reconcile("relations", "relation_evidence", "relation_id", relation_ids,
                               ("source_id", "target_id", "type", "strength", "description", "video_id"),
                               relation_doc)

    def _reconcile(self, coll: str, evidence_coll: str, field: str, ids_: Iterable[str], fields: Sequence[str],
                   build: Callable[[Sequence[Doc]], Doc]) -> int:
        """Rebuild each ``coll`` document from the ``evidence_coll`` documents naming it in
        ``field``; delete those with none; write only what differs. Returns the writes."""
        ids = sorted(set(ids_))
        if not ids:
            return 0
        grouped: dict[str, list[Doc]] = defaultdict(list)
        projection = dict.fromkeys((field, *fields), 1)
        for part in batched(ids, 1000):
            for d in self.coll(evidence_coll).find({field: {"$in": list(part)}}, projection):
                grouped[d[field]].append(d)
        current = self.mongo.current(coll, ids)
        ops: list[UpdateOne | DeleteOne] = []
        new: list[Doc] = []
        for i in ids:
            evidence = grouped.get(i)
            if not evidence:
                if i in current:
                    ops.append(DeleteOne({"_id": i}))
                continue
            doc = build(evidence)
            if i not in current:  # inserted, not upserted: the first write of a graph is mostly these
                new.append({"_id": i, **doc})
            elif differs(current[i], doc):  # a replay rewrites nothing
                ops.append(UpdateOne({"_id": i}, {"$set": doc}, upsert=True))
        self.mongo.insert_or_set(coll, new)
        self.mongo.bulk(coll, ops)
        return len(ops) + len(new)

    def record_redirects(self, mapping: Mapping[str, tuple[str, str]]) -> None:
        """Remember merged id -> survivor, so updates that still name a merged entity follow it.

        Another redirect whose id is an entity again (a merge undone by new evidence) is dropped.
        """
        ops: list[UpdateOne | DeleteOne] = [UpdateOne({"_id": old}, {"$set": {"to": new, "type": ttype}}, upsert=True)
                                            for old, (new, ttype) in mapping.items()]
        # Earlier merges into an entity that is merged away now move on to the new survivor.
        ops += [UpdateOne({"_id": d["_id"]}, {"$set": {"to": mapping[d["to"]][0], "type": mapping[d["to"]][1]}})
                for d in self.coll("entity_redirects").find({"to": {"$in": list(mapping)}})]
        self.mongo.bulk("entity_redirects", ops)
        alive = [d["_id"] for d in self.coll("entity_redirects").find({}, {"_id": 1})]
        back = [eid for part in batched(alive, 1000)
                for eid in (d["_id"] for d in self.coll("entities").find({"_id": {"$in": list(part)}}, {"_id": 1}))
                if eid not in mapping]
        self.mongo.bulk("entity_redirects", [DeleteOne({"_id": eid}) for eid in back])

    def entity_redirects(self, entity_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Merged entity id -> (surviving id, surviving type), for those of ``entity_ids`` merged away."""
        ids = sorted(set(entity_ids))
        found: dict[str, tuple[str, str]] = {}
        for part in batched(ids, 500):
            for d in self.coll("entity_redirects").find({"_id": {"$in": list(part)}}):
                found[d["_id"]] = (d["to"], d["type"])
        return found

    def chunk_extractions(self) -> Iterator[ChunkExtraction | None]:
        """Every stored chunk's extraction, in chunk order; None for a chunk stored without one."""
        for c in self.coll("chunks").find().sort([("video_id", ASCENDING), ("index", ASCENDING), ("_id", ASCENDING)]):
            extracted = c.get("extracted")
            if extracted is None:
                yield None
                continue
            chunk = TranscriptChunk(
                chunk_id=c["_id"], video_id=c["video_id"], index=c["index"], chunk_count=c["chunk_count"],
                text=c["text"], start=c["start"], end=c["end"], token_count=c["token_count"],
                timeline=list(zip(c.get("timeline_offsets") or [], c.get("timeline_seconds") or [], strict=True)),
                requested_at=NOT_STORED)
            graph = ExtractedGraph.model_validate(extracted)
            yield ChunkExtraction(chunk=chunk, entities=graph.entities, relations=graph.relations,
                                  extractor=c.get("extractor", ""), prompt_version=c.get("prompt_version", ""),
                                  error=c.get("extraction_error"))

    def prune_unsupported(self) -> tuple[int, int]:
        """Reconcile entities and relations that no evidence names any more (they go)."""
        def ids(coll: str) -> set[str]:
            return {d["_id"] for d in self.coll(coll).find({}, {"_id": 1})}

        def named(coll: str, field: str) -> set[str]:
            return {row["_id"] for row in self.coll(coll).aggregate([{"$group": {"_id": f"${field}"}}])}

        entities = ids("entities") - named("entity_mentions", "entity_id")
        relations = ids("relations") - named("relation_evidence", "relation_id")
        self.reconcile_entities(entities)
        self.reconcile_relations(relations)
        return len(entities), len(relations)

    def entity_infos(self) -> list[Doc]:
        return list(self.coll("entities").find({}, {"type": 1, "name": 1, "aliases": 1, "mention_count": 1}))

    def forget_video(self, video_id: str) -> dict[str, int]:
        """Remove a video's chunks and evidence; recompute what they supported. Idempotent.

        Entities and relations left without evidence disappear (reconciliation), and the
        communities that held any touched entity are marked dirty for the next run.
        """
        mentions = list(self.coll("entity_mentions").find({"video_id": video_id}, {"entity_id": 1}))
        evidence = list(self.coll("relation_evidence").find({"video_id": video_id}, {"relation_id": 1}))
        entities = {m["entity_id"] for m in mentions}
        relations = {e["relation_id"] for e in evidence}
        removed = {
            "entity_mentions": self.coll("entity_mentions").delete_many({"video_id": video_id}).deleted_count,
            "relation_evidence": self.coll("relation_evidence").delete_many({"video_id": video_id}).deleted_count,
        }
        before_e = self.coll("entities").count_documents({"_id": {"$in": list(entities)}}) if entities else 0
        before_r = self.coll("relations").count_documents({"_id": {"$in": list(relations)}}) if relations else 0
        self.reconcile_entities(entities)
        self.reconcile_relations(relations)
        removed["entities"] = before_e - (self.coll("entities").count_documents({"_id": {"$in": list(entities)}})
                                          if entities else 0)
        removed["relations"] = before_r - (self.coll("relations").count_documents({"_id": {"$in": list(relations)}})
                                           if relations else 0)
        removed["chunks"] = self.coll("chunks").delete_many({"video_id": video_id}).deleted_count
        removed["videos"] = self.coll("videos").delete_many({"_id": video_id}).deleted_count
        if entities:
            removed["communities_marked_dirty"] = self.coll("communities").update_many(
                {"members": {"$in": list(entities)}}, {"$set": {"dirty": True}}).modified_count
        return removed
