"""The graph collections' writes: evidence (``entity_mentions``, ``relation_evidence``) is the
truth; ``chunks`` carry its fingerprint; ``entities`` and ``relations`` are reconciled from it.

Why it is idempotent: evidence has deterministic ``_id``s and is bulk-inserted (a duplicate
key means "already stored"); a chunk extracted again with another result has its evidence
replaced whole; entities and relations are recomputed from their evidence, never
incremented, so a redelivered message cannot double-count anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
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
from streams.store.mongo import SCAN_BATCH, Collections, Doc, Mongo, batched
from streams.store.videos import StoredChunk, VideoProgress

#: A chunk's request time is not stored, and nothing downstream of extraction reads it.
NOT_STORED = datetime(1970, 1, 1, tzinfo=UTC)

#: Small bookkeeping documents: how often the stored extractions changed, what the last
#: merge pass saw.
CHANGES = "graph_changes"
EXTRACTIONS = "extractions"
GRAPH_VERSION = "graph"  # counts every write to the graph collections: what readers compare
LAST_MERGE = "merge_pass"


@dataclass(frozen=True)
class StoredExtraction:
    """A stored chunk as the merge pass reads it: its extraction (None: stored without one)
    and the fingerprint of the evidence it has now."""

    chunk_id: str
    fingerprint: str | None
    extraction: ChunkExtraction | None


@dataclass(frozen=True)
class Rewrite:
    """What a merge pass's rewrite did: chunks rewritten, and the entity documents just
    before and after it (the pass's report and redirects read no more)."""

    chunks: int
    entities_before: list[Doc]
    entities_after: dict[str, Doc]
    relations_after: dict[str, Doc]


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

    def write_updates(self, updates: Sequence[GraphUpdate]) -> WriteSummary:
        """Store a batch of per-chunk graph updates; safe to call again with the same batch.

        Entities and relations named by the batch are reconciled even when its chunks are
        stored already: a worker that died between storing evidence and reconciling it is
        repaired by the redelivery. (The merge pass writes with ``rewrite_resolutions``.)
        """
        summary = WriteSummary()
        latest: dict[str, GraphUpdate] = {}
        for u in updates:  # a chunk seen twice in one batch: the later one wins
            latest[u.chunk.chunk_id] = u
        if not latest:
            return summary

        # An update made before a merge pass (a replay, a late message) names merged entities:
        # store it as the merge pass stored the rest, on the survivors.
        redirects = self.entity_redirects({e.entity_id for u in latest.values() for e in u.entities})
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
                    for d in self.mongo.find_in("chunks", "_id", latest, {"evidence_fingerprint": 1})}
        changed = [cid for cid, fp in existing.items() if fp != chunk_docs[cid]["evidence_fingerprint"]]
        touched_entities = {m["entity_id"] for ms in mentions.values() for m in ms}
        touched_relations = {e["relation_id"] for es in evidence.values() for e in es}
        if changed:
            # A chunk extracted again with another result: its evidence is replaced whole.
            old = {"chunk_id": {"$in": changed}}
            old_m = list(self.mongo.find_in("entity_mentions", "chunk_id", changed, {"entity_id": 1}))
            old_e = list(self.mongo.find_in("relation_evidence", "chunk_id", changed, {"relation_id": 1}))
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
        summary.completed = self.videos.record_stored(
            StoredChunk(u.chunk.video_id, u.chunk.index, bool(u.error)) for u in latest.values())
        # After the chunks are stored, and for a redelivered batch too: a worker that died
        # between storing and counting counts when the batch comes again.
        self.note_extractions_changed()
        self.note_graph_changed()
        return summary

    def rewrite_resolutions(self, updates: Sequence[GraphUpdate], fingerprints: Mapping[str, str | None]) -> Rewrite:
        """The merge pass's writes: every chunk whose evidence differs from ``updates`` (already
        resolved, no redirects) gets the new evidence, then every entity and relation is
        reconciled with the evidence stored; those left without any go.

        ``fingerprints``: the chunks' as the pass read them with their extractions, so the
        chunks are not scanned again (on FerretDB, the largest collection); only those that
        differ are read again, by id, just before writing. Each graph collection is read once
        in full, before the writes, not once per batch of ids: a pass touches most of the graph,
        and FerretDB answers each such filter with a scan; the evidence replaced is deleted by
        id. It does not count as a change of the extractions (``note_extractions_changed``):
        it changes resolutions only.
        """
        latest: dict[str, tuple[list[Doc], list[Doc], Doc]] = {}
        for u in updates:  # a chunk seen twice: the later one wins
            mentions = [mention_doc(u, e) for e in u.entities]
            evidence = [evidence_doc(u, r) for r in u.relations]
            latest[u.chunk.chunk_id] = (mentions, evidence, chunk_doc(u, mentions, evidence))
        differ = [cid for cid, (_, _, doc) in latest.items()
                  if cid in fingerprints and fingerprints[cid] != doc["evidence_fingerprint"]]
        stored = {d["_id"]: d.get("evidence_fingerprint")
                  for d in self.mongo.find_in("chunks", "_id", differ, {"evidence_fingerprint": 1})}
        # Never a chunk that is gone (a video forgotten meanwhile).
        changed = sorted(cid for cid, fp in stored.items() if fp != latest[cid][2]["evidence_fingerprint"])

        # The graph documents before their evidence: see _reconcile_all.
        entities, relations = self._read_all("entities"), self._read_all("relations")
        stored_m, stored_e = self._read_all("entity_mentions"), self._read_all("relation_evidence")
        gone = set(changed)
        new_m = [m for cid in changed for m in latest[cid][0]]
        new_e = [e for cid in changed for e in latest[cid][1]]
        # Evidence before chunk documents: a stored chunk implies its evidence is stored.
        self._replace_evidence("entity_mentions", stored_m, gone, new_m)
        self._replace_evidence("relation_evidence", stored_e, gone, new_e)
        self.mongo.bulk("chunks", [UpdateOne({"_id": cid}, {"$set": latest[cid][2]}) for cid in changed])

        kept_m = [d for d in stored_m.values() if d["chunk_id"] not in gone]
        kept_e = [d for d in stored_e.values() if d["chunk_id"] not in gone]
        after = self._reconcile_all("entities", entities, [*kept_m, *new_m], "entity_id", entity_doc)
        relations_after = self._reconcile_all("relations", relations, [*kept_e, *new_e], "relation_id", relation_doc)
        self.note_graph_changed()
        return Rewrite(len(changed), list(entities.values()), after, relations_after)

    def _replace_evidence(self, coll: str, stored: Mapping[str, Doc], chunks: Collection[str],
                          wanted: Sequence[Doc]) -> None:
        """Make the ``chunks``' evidence in ``coll`` exactly ``wanted``, touching only the
        documents that differ: a rewritten chunk keeps most of its evidence (only the
        mentions of merged names move), and on FerretDB each document deleted or inserted
        costs about a millisecond or two."""
        old = {i: d for i, d in stored.items() if d["chunk_id"] in chunks}
        new = {d["_id"]: d for d in wanted}
        self.mongo.delete_ids(coll, sorted(i for i, d in old.items() if new.get(i) != d))
        self.mongo.insert_new(coll, [d for i, d in new.items() if old.get(i) != d])

    def _read_all(self, coll: str) -> dict[str, Doc]:
        return {d["_id"]: d for d in self.coll(coll).find({}, batch_size=SCAN_BATCH)}

    def _reconcile_all(self, coll: str, current: Mapping[str, Doc], evidence: Iterable[Doc], field: str,
                       build: Callable[[Sequence[Doc]], Doc]) -> dict[str, Doc]:
        """Every ``coll`` document rebuilt from the ``evidence`` documents naming it in
        ``field``: written where it differs, deleted where none does. Returns the documents
        wanted. ``current`` must be read before the evidence, so a document the stream stores
        meanwhile with its evidence is never taken for unsupported."""
        grouped: dict[str, list[Doc]] = defaultdict(list)
        for d in evidence:
            grouped[d[field]].append(d)
        wanted = {i: build(grouped[i]) for i in sorted(grouped)}
        self._write_reconciled(coll, current, wanted, sorted(current.keys() - grouped.keys()))
        return wanted

    def note_graph_changed(self) -> None:
        """Count a write to the graph (chunks, entities, relations, their evidence, dirty
        communities), after it: a reader that holds the graph in memory compares this one
        number instead of the collections' sizes, which FerretDB counts by reading them
        (0.1 s for 100k relations), and sees a change that leaves every size equal."""
        self.coll(CHANGES).update_one({"_id": GRAPH_VERSION}, {"$inc": {"version": 1}}, upsert=True)

    def graph_version(self) -> int | None:
        """The count of ``note_graph_changed``; None for a graph no writer of this version
        has written yet (a reader then falls back to the collections' sizes)."""
        doc = self.coll(CHANGES).find_one({"_id": GRAPH_VERSION})
        return int(doc["version"]) if doc else None

    def note_extractions_changed(self) -> None:
        """Count a change to the set of stored extractions (a chunk stored, extracted again or
        forgotten): the merge pass, a function of that set alone, skips when the count has
        not moved since its last complete pass."""
        self.coll(CHANGES).update_one({"_id": EXTRACTIONS}, {"$inc": {"version": 1}}, upsert=True)

    def extractions_version(self) -> int:
        doc = self.coll(CHANGES).find_one({"_id": EXTRACTIONS})
        return int(doc["version"]) if doc else 0

    def last_merge_pass(self) -> Doc | None:
        """What the last complete merge pass saw: ``extractions_version`` and ``settings``."""
        return self.coll(CHANGES).find_one({"_id": LAST_MERGE})

    def record_merge_pass(self, extractions_version: int, settings_fingerprint: str) -> None:
        self.coll(CHANGES).replace_one({"_id": LAST_MERGE}, {"extractions_version": extractions_version,
                                                             "settings": settings_fingerprint,
                                                             "at": datetime.now(UTC)}, upsert=True)

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
        for d in self.mongo.find_in(evidence_coll, field, ids, dict.fromkeys(fields, 1)):
            grouped[d[field]].append(d)
        current = self.mongo.current(coll, ids)
        wanted = {i: build(grouped[i]) for i in ids if grouped.get(i)}
        return self._write_reconciled(coll, current, wanted, [i for i in ids if i in current and i not in wanted])

    def _write_reconciled(self, coll: str, current: Mapping[str, Doc], wanted: Mapping[str, Doc],
                          unsupported: Sequence[str]) -> int:
        """Write what differs from ``current``: new documents in bulk inserts, changed ones as
        updates, unsupported ones deleted. Returns the writes (a replay writes nothing)."""
        new = [{"_id": i, **doc} for i, doc in wanted.items() if i not in current]
        ops: list[UpdateOne | DeleteOne] = [UpdateOne({"_id": i}, {"$set": doc}, upsert=True)
                                            for i, doc in wanted.items() if i in current and differs(current[i], doc)]
        self.mongo.insert_or_set(coll, new)
        self.mongo.bulk(coll, ops)
        self.mongo.delete_ids(coll, unsupported)
        return len(new) + len(ops) + len(unsupported)

    def record_redirects(self, mapping: Mapping[str, tuple[str, str]],
                         entities: Collection[str] | None = None) -> None:
        """Remember merged id -> survivor, so updates that still name a merged entity follow it.

        Another redirect whose id is an entity again (a merge undone by new evidence) is dropped;
        ``entities``: the entity ids, when the caller has just written them (else they are read).
        """
        ops: list[UpdateOne | DeleteOne] = [UpdateOne({"_id": old}, {"$set": {"to": new, "type": ttype}}, upsert=True)
                                            for old, (new, ttype) in mapping.items()]
        # Earlier merges into an entity that is merged away now move on to the new survivor.
        ops += [UpdateOne({"_id": d["_id"]}, {"$set": {"to": mapping[d["to"]][0], "type": mapping[d["to"]][1]}})
                for d in self.coll("entity_redirects").find({"to": {"$in": list(mapping)}})]
        self.mongo.bulk("entity_redirects", ops)
        alive = [d["_id"] for d in self.coll("entity_redirects").find({}, {"_id": 1})]
        if entities is not None:
            back = [eid for eid in alive if eid in entities and eid not in mapping]
        else:
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

    def chunk_extractions(self) -> Iterator[StoredExtraction]:
        """Every stored chunk's extraction and evidence fingerprint, in chunk order."""
        for c in self.coll("chunks").find().sort([("video_id", ASCENDING), ("index", ASCENDING), ("_id", ASCENDING)]):
            extracted = c.get("extracted")
            if extracted is None:
                yield StoredExtraction(c["_id"], c.get("evidence_fingerprint"), None)
                continue
            chunk = TranscriptChunk(
                chunk_id=c["_id"], video_id=c["video_id"], index=c["index"], chunk_count=c["chunk_count"],
                text=c["text"], start=c["start"], end=c["end"], token_count=c["token_count"],
                timeline=list(zip(c.get("timeline_offsets") or [], c.get("timeline_seconds") or [], strict=True)),
                requested_at=NOT_STORED)
            graph = ExtractedGraph.model_validate(extracted)
            yield StoredExtraction(c["_id"], c.get("evidence_fingerprint"), ChunkExtraction(
                chunk=chunk, entities=graph.entities, relations=graph.relations, extractor=c.get("extractor", ""),
                prompt_version=c.get("prompt_version", ""), error=c.get("extraction_error")))

    def entity_infos(self) -> list[Doc]:
        return list(self.coll("entities").find({}, {"type": 1, "name": 1, "aliases": 1, "mention_count": 1},
                                               batch_size=SCAN_BATCH))

    def forget_video(self, video_id: str) -> dict[str, int]:
        """Remove a video's chunks and evidence; recompute what they supported. Idempotent.

        Entities and relations left without evidence disappear (reconciliation), and the
        communities that held any touched entity are marked dirty for the next run.
        """
        self.note_extractions_changed()  # before and after: a forget cut short still counts
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
        self.note_extractions_changed()
        removed["videos"] = self.coll("videos").delete_many({"_id": video_id}).deleted_count
        if entities:
            removed["communities_marked_dirty"] = self.coll("communities").update_many(
                {"members": {"$in": list(entities)}}, {"$set": {"dirty": True}}).modified_count
        self.note_graph_changed()
        return removed
