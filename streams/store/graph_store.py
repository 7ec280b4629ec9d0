"""The knowledge graph in MongoDB: batched, idempotent writes and the reads around them.

Write model (why it is idempotent and cheap on FerretDB as well as MongoDB):

* Evidence is the source of truth. ``entity_mentions`` (one per chunk and entity) and
  ``relation_evidence`` (one per chunk and relation) have deterministic ``_id``s and are
  bulk-inserted; a duplicate key means "already stored" and is ignored.
* A chunk document carries the fingerprint of its evidence set. When a chunk is
  extracted again with a different result (new prompt version), its stale evidence is
  removed, so a chunk's evidence is always exactly its latest extraction.
* ``entities`` and ``relations`` are reconciled from their evidence after every batch
  (counts, weights, names, aliases), never incremented, so a redelivered message cannot
  double-count anything.
* ``videos`` holds per-stage progress from ``videos.status`` events and monotonic
  counters (``$max``), so two writers cannot move a video backwards.

Only operations both MongoDB and FerretDB 1.24 support are used: CRUD, unordered bulk
writes, upserts, ``$set/$setOnInsert/$min/$max``, unique indexes, ``$match/$group($sum)``.
Update commands are split into ``max_ops_per_command`` operations (see MongoSettings).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, DeleteOne, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from schemas import ChunkExtraction, ExtractedGraph, GraphUpdate, TranscriptChunk, VideoStatusEvent
from streams.model.citations import Citation
from streams.model.communities import Community, Edge, PreviousCommunity
from streams.model.ids import evidence_id, mention_id, relation_id, stable_id
from streams.model.reports import CommunityContext, CommunityReport, MemberInfo, RelationInfo
from streams.settings import Settings

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")

GRAPH_COLLECTIONS = ("videos", "chunks", "entities", "relations", "entity_mentions", "relation_evidence")
# One document naming the database reads go to after `graph promote` (in the live database).
POINTER = "graph_pointer"
MAX_ALIASES = 20
MAX_DESCRIPTIONS = 5
DUPLICATE_KEY = 11000
#: A chunk's request time is not stored, and nothing downstream of extraction reads it.
NOT_STORED = datetime(1970, 1, 1, tzinfo=UTC)


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def connect(settings: Settings, *, app_name: str = "graphrag-streams") -> MongoClient[Doc]:
    return MongoClient(
        settings.mongodb.uri.get_secret_value(),
        serverSelectionTimeoutMS=settings.mongodb.server_selection_timeout_ms,
        appname=app_name,
        tz_aware=True,
    )


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


def video_state(doc: Doc) -> str:
    """A video's overall state, derived from its stage progress and counters."""
    stages = doc.get("stages") or {}
    if any((s or {}).get("state") == "failed" for s in stages.values()):
        return "failed"
    chunk_count = doc.get("chunk_count")
    stored = doc.get("chunks_stored", 0)
    if chunk_count is not None and stored >= chunk_count:
        return "done"
    if stored > 0:
        return "extracting"
    for stage, label in (("chunk", "chunked"), ("fetch", "fetched")):
        if (stages.get(stage) or {}).get("state") == "done":
            return label
    if (stages.get("fetch") or {}).get("state") == "started":
        return "fetching"
    return "requested"


class GraphStore:
    """All reads and writes of the graph collections."""

    def __init__(self, db: Database[Doc] | Callable[[], Database[Doc]], max_ops_per_command: int = 25) -> None:
        # A callable is resolved on first use and again after a failure: a process that
        # starts while MongoDB is down still starts, and never reads the wrong graph.
        self._db: Database[Doc] | None = None if callable(db) else db
        self._resolve_db = db if callable(db) else None
        self._client: MongoClient[Doc] | None = None if callable(db) else db.client
        self.max_ops = max_ops_per_command
        self._refresh_lock = threading.Lock()

    @property
    def db(self) -> Database[Doc]:
        if self._db is None:
            assert self._resolve_db is not None
            self._db = self._resolve_db()
        return self._db

    @classmethod
    def from_settings(cls, settings: Settings, *, app_name: str = "graphrag-streams",
                      database: str | None = None) -> GraphStore:
        client = connect(settings, app_name=app_name)
        return cls(client[database or settings.mongodb.database], settings.mongodb.max_ops_per_command)

    @classmethod
    def for_reads(cls, settings: Settings, *, app_name: str = "graphrag-streams") -> GraphStore:
        """The graph queries and the API read: the promoted one (`graph promote`), else the
        configured one; looked up on first use (nothing is read here)."""
        live = cls.from_settings(settings, app_name=app_name)

        def resolve() -> Database[Doc]:
            promoted = live.read_database()
            return live.db if promoted in (None, live.db.name) else live.db.client[promoted]

        store = cls(resolve, settings.mongodb.max_ops_per_command)
        store._client = live.db.client
        return store

    # The pointer lives in the configured (live) database: one document naming the
    # database that reads go to. The pipeline always writes where its settings say.
    def read_database(self) -> str | None:
        doc = self.coll(POINTER).find_one({"_id": "reads"})
        return str(doc["database"]) if doc else None

    def set_read_database(self, database: str | None) -> None:
        if database is None or database == self.db.name:
            self.coll(POINTER).delete_one({"_id": "reads"})
        else:
            self.coll(POINTER).replace_one({"_id": "reads"}, {"database": database, "at": datetime.now(UTC)},
                                           upsert=True)

    def comparable_graph(self) -> tuple[list[Doc], list[Doc], list[Doc]]:
        """Entities, relations and communities with the fields `graph diff` compares."""
        entities = list(self.coll("entities").find({}, {"name": 1, "type": 1, "aliases": 1, "mention_count": 1}))
        relations = list(self.coll("relations").find({}, {"source_id": 1, "target_id": 1, "type": 1, "weight": 1,
                                                          "evidence_count": 1}))
        communities = list(self.coll("communities").find({}, {"level": 1, "members": 1, "title": 1}))
        return entities, relations, communities

    def close(self) -> None:
        client = self._db.client if self._db is not None else self._client
        if client is not None:
            client.close()

    def ping(self) -> bool:
        try:
            self.db.command("ping")
            return True
        except Exception:
            return False

    def coll(self, name: str) -> Collection[Doc]:
        return self.db[name]

    # ------------------------------------------------------------------ setup

    def ensure_indexes(self) -> None:
        """Idempotent; every worker and the CLI call it on start."""
        self.coll("chunks").create_index([("video_id", ASCENDING), ("index", ASCENDING)])
        self.coll("entity_mentions").create_index([("entity_id", ASCENDING)])
        self.coll("entity_mentions").create_index([("chunk_id", ASCENDING)])
        self.coll("entity_mentions").create_index([("video_id", ASCENDING)])
        self.coll("relation_evidence").create_index([("relation_id", ASCENDING)])
        self.coll("relation_evidence").create_index([("chunk_id", ASCENDING)])
        self.coll("relation_evidence").create_index([("video_id", ASCENDING)])
        self.coll("relations").create_index([("source_id", ASCENDING)])
        self.coll("relations").create_index([("target_id", ASCENDING)])
        self.coll("entities").create_index([("mention_count", DESCENDING)])
        self.coll("entities").create_index([("type", ASCENDING), ("key", ASCENDING)])
        self.coll("communities").create_index([("level", ASCENDING)])
        self.coll("communities").create_index([("members", ASCENDING)])  # an entity's communities (API)

    # ------------------------------------------------------------------ low-level writes

    def _bulk(self, coll: str, ops: Sequence[UpdateOne | DeleteOne]) -> None:
        for part in batched(ops, self.max_ops):
            self.coll(coll).bulk_write(list(part), ordered=False)

    def _insert_new(self, coll: str, docs: Sequence[Doc]) -> int:
        """Insert documents whose ``_id`` may already exist; returns how many were new."""
        inserted = 0
        for part in batched(docs, 1000):
            try:
                inserted += len(self.coll(coll).insert_many(list(part), ordered=False).inserted_ids)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                inserted += int(exc.details.get("nInserted", 0))
        return inserted

    # ------------------------------------------------------------------ graph writes

    def write_graph_updates(self, updates: Sequence[GraphUpdate], *, merge_pass: bool = False) -> WriteSummary:
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
            mentions[cid], evidence[cid] = redirect_evidence([_mention_doc(u, e) for e in u.entities],
                                                             [_evidence_doc(u, r) for r in u.relations], redirects)
            chunk_docs[cid] = _chunk_doc(u, mentions[cid], evidence[cid])

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
        summary.mentions_inserted = self._insert_new("entity_mentions", [m for ms in mentions.values() for m in ms])
        summary.evidence_inserted = self._insert_new("relation_evidence", [e for es in evidence.values() for e in es])
        new_chunks = [doc for cid, doc in chunk_docs.items() if cid not in existing]
        self._insert_new("chunks", new_chunks)
        self._bulk("chunks", [UpdateOne({"_id": cid}, {"$set": chunk_docs[cid]}) for cid in changed])
        summary.chunks = len(new_chunks) + len(changed)

        summary.entities = self.reconcile_entities(touched_entities)
        summary.relations = self.reconcile_relations(touched_relations)
        summary.videos = {u.chunk.video_id for u in latest.values()}
        summary.completed = self.refresh_videos(summary.videos)
        return summary

    def reconcile_entities(self, entity_ids: Iterable[str]) -> int:
        """Recompute entity documents from their mentions; remove entities left without any."""
        ids = sorted(set(entity_ids))
        if not ids:
            return 0
        grouped: dict[str, list[Doc]] = defaultdict(list)
        for part in batched(ids, 1000):
            for m in self.coll("entity_mentions").find(
                {"entity_id": {"$in": list(part)}},
                {"entity_id": 1, "type": 1, "surface": 1, "description": 1, "video_id": 1},
            ):
                grouped[m["entity_id"]].append(m)
        current = self._current("entities", ids)
        ops: list[UpdateOne | DeleteOne] = []
        for eid in ids:
            ms = grouped.get(eid)
            if not ms:
                if eid in current:
                    ops.append(DeleteOne({"_id": eid}))
                continue
            surfaces = Counter(m["surface"] for m in ms)
            # Most used first; on a tie "Phobos" before "PHOBOS" and "phobos".
            aliases = [s for s, _ in sorted(surfaces.items(),
                                            key=lambda kv: (-kv[1], kv[0].isupper(), kv[0].islower(), kv[0]))]
            aliases = aliases[:MAX_ALIASES]
            descriptions = _top_texts(m.get("description", "") for m in ms)
            doc = {
                "type": ms[0]["type"],
                "name": aliases[0],
                "aliases": aliases,
                "description": summarize_descriptions(descriptions),
                "descriptions": descriptions,
                "mention_count": len(ms),
                "video_count": len({m["video_id"] for m in ms}),
            }
            if _differs(current.get(eid), doc):  # a replay rewrites nothing
                ops.append(UpdateOne({"_id": eid}, {"$set": doc}, upsert=True))
        self._bulk("entities", ops)
        return len(ops)

    def reconcile_relations(self, relation_ids: Iterable[str]) -> int:
        """Recompute relation weights from their evidence; remove relations left without any."""
        ids = sorted(set(relation_ids))
        if not ids:
            return 0
        grouped: dict[str, list[Doc]] = defaultdict(list)
        for part in batched(ids, 1000):
            for ev in self.coll("relation_evidence").find(
                {"relation_id": {"$in": list(part)}},
                {"relation_id": 1, "source_id": 1, "target_id": 1, "type": 1, "strength": 1,
                 "description": 1, "video_id": 1},
            ):
                grouped[ev["relation_id"]].append(ev)
        current = self._current("relations", ids)
        ops: list[UpdateOne | DeleteOne] = []
        for rid in ids:
            evs = grouped.get(rid)
            if not evs:
                if rid in current:
                    ops.append(DeleteOne({"_id": rid}))
                continue
            descriptions = _top_texts(e.get("description", "") for e in evs)
            doc = {
                "source_id": evs[0]["source_id"],
                "target_id": evs[0]["target_id"],
                "type": evs[0]["type"],
                "weight": sum(int(e["strength"]) for e in evs),
                "evidence_count": len(evs),
                "video_count": len({e["video_id"] for e in evs}),
                "description": descriptions[0] if descriptions else "",
                "descriptions": descriptions,
            }
            if _differs(current.get(rid), doc):
                ops.append(UpdateOne({"_id": rid}, {"$set": doc}, upsert=True))
        self._bulk("relations", ops)
        return len(ops)

    def _current(self, coll: str, ids: Sequence[str]) -> dict[str, Doc]:
        out: dict[str, Doc] = {}
        for part in batched(ids, 1000):
            out.update({d["_id"]: d for d in self.coll(coll).find({"_id": {"$in": list(part)}})})
        return out

    # ------------------------------------------------------------------ merges

    def record_redirects(self, mapping: Mapping[str, tuple[str, str]]) -> None:
        """Remember merged id -> survivor, so updates that still name a merged entity follow it.

        Another redirect whose id is an entity again (a merge undone by new evidence) is dropped.
        """
        ops: list[UpdateOne | DeleteOne] = [UpdateOne({"_id": old}, {"$set": {"to": new, "type": ttype}}, upsert=True)
                                            for old, (new, ttype) in mapping.items()]
        # Earlier merges into an entity that is merged away now move on to the new survivor.
        ops += [UpdateOne({"_id": d["_id"]}, {"$set": {"to": mapping[d["to"]][0], "type": mapping[d["to"]][1]}})
                for d in self.coll("entity_redirects").find({"to": {"$in": list(mapping)}})]
        self._bulk("entity_redirects", ops)
        alive = [d["_id"] for d in self.coll("entity_redirects").find({}, {"_id": 1})]
        back = [eid for part in batched(alive, 1000)
                for eid in (d["_id"] for d in self.coll("entities").find({"_id": {"$in": list(part)}}, {"_id": 1}))
                if eid not in mapping]
        self._bulk("entity_redirects", [DeleteOne({"_id": eid}) for eid in back])

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

    # ------------------------------------------------------------------ communities

    def community_graph(self) -> tuple[list[str], list[Edge]]:
        nodes = [e["_id"] for e in self.coll("entities").find({}, {"_id": 1})]
        edges = [Edge(r["source_id"], r["target_id"], r["_id"], float(r.get("weight", 1)))
                 for r in self.coll("relations").find({}, {"source_id": 1, "target_id": 1, "weight": 1})]
        return nodes, edges

    def previous_communities(self) -> list[PreviousCommunity]:
        out = []
        for c in self.coll("communities").find({}, {"level": 1, "members": 1, "parent": 1, "fingerprint": 1,
                                                    "incident_fingerprint": 1, "summarized_fingerprint": 1,
                                                    "dirty": 1}):
            dirty = bool(c.get("dirty"))
            out.append(PreviousCommunity(
                c["_id"], int(c["level"]), frozenset(c["members"]), c.get("fingerprint", ""),
                "" if dirty else c.get("incident_fingerprint", ""), c.get("parent"),
                "" if dirty else c.get("summarized_fingerprint", "")))
        return out

    def community_context(self, community: Community, max_relations: int = 60) -> CommunityContext:
        members = set(community.members)
        entities = {e["_id"]: e for e in self.coll("entities").find({"_id": {"$in": list(members)}})}
        relations = [r for r in self.coll("relations").find({"source_id": {"$in": list(members)}})
                     if r["target_id"] in members]
        relations.sort(key=lambda r: (-float(r.get("weight", 0)), r["_id"]))
        relations = relations[:max_relations]
        evidence: dict[str, list[Citation]] = defaultdict(list)
        for ev in self.coll("relation_evidence").find({"relation_id": {"$in": [r["_id"] for r in relations]}},
                                                      {"relation_id": 1, "video_id": 1, "chunk_id": 1, "start": 1,
                                                       "strength": 1}).sort([("strength", DESCENDING),
                                                                             ("_id", ASCENDING)]):
            if len(evidence[ev["relation_id"]]) < 3:
                evidence[ev["relation_id"]].append(Citation(video_id=ev["video_id"], chunk_id=ev["chunk_id"],
                                                            seconds=float(ev.get("start", 0))))
        degree: Counter[str] = Counter()
        for r in relations:
            degree[r["source_id"]] += 1
            degree[r["target_id"]] += 1
        infos = [MemberInfo(eid, e.get("name", "?"), e.get("type", "CONCEPT"), e.get("description", ""),
                            int(e.get("mention_count", 0)), degree[eid]) for eid, e in entities.items()]
        infos.sort(key=lambda m: (-m.degree, -m.mention_count, m.name))
        rels = [RelationInfo(r["_id"], r["source_id"], r["target_id"], r.get("type", "RELATED_TO"),
                             r.get("description", ""), float(r.get("weight", 0)), tuple(evidence[r["_id"]]))
                for r in relations]
        return CommunityContext(community.community_id, community.level, infos, rels)

    def save_communities(self, communities: Sequence[Community], reports: dict[str, CommunityReport],
                         removed: Sequence[str], run_id: str) -> None:
        ops: list[UpdateOne | DeleteOne] = []
        for c in communities:
            update: Doc = {"$set": {"level": c.level, "parent": c.parent, "members": list(c.members),
                                    "size": len(c.members), "fingerprint": c.fingerprint,
                                    "incident_fingerprint": c.incident_fingerprint, "run_id": run_id,
                                    "dirty": False}}
            report = reports.get(c.community_id)
            if report is not None:
                update["$set"].update({"report": report.model_dump(mode="json"),
                                       "summarized_fingerprint": c.fingerprint, "summarized_run": run_id})
                update["$inc"] = {"version": 1}
            ops.append(UpdateOne({"_id": c.community_id}, update, upsert=True))
        ops += [DeleteOne({"_id": cid}) for cid in removed]
        self._bulk("communities", ops)

    def record_community_run(self, run: Doc) -> None:
        self.coll("community_runs").insert_one(run)

    def last_community_run(self) -> Doc | None:
        return next(iter(self.coll("community_runs").find().sort("started_at", DESCENDING).limit(1)), None)

    def communities(self, level: int | None = None, limit: int = 0) -> list[Doc]:
        query: Doc = {} if level is None else {"level": level}
        cursor = self.coll("communities").find(query).sort([("size", DESCENDING), ("_id", ASCENDING)])
        return list(cursor.limit(limit) if limit else cursor)

    # ------------------------------------------------------------------ forgetting

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

    # ------------------------------------------------------------------ video progress

    def apply_status_events(self, events: Sequence[VideoStatusEvent]) -> list[Doc]:
        """Record stage progress; returns the videos that became done."""
        ops: list[UpdateOne | DeleteOne] = []
        for ev in events:
            prefix = f"stages.{ev.stage}"
            set_: Doc = {f"{prefix}.state": ev.state, f"{prefix}.at": ev.at, f"{prefix}.detail": ev.detail}
            if ev.chunk_count is not None:
                set_["chunk_count"] = ev.chunk_count
            if ev.title is not None:
                set_["title"] = ev.title
            if ev.source is not None:
                set_["source"] = ev.source
            update: Doc = {"$set": set_, "$setOnInsert": {"chunks_stored": 0, "chunks_failed": 0}}
            if ev.requested_at is not None:
                update["$min"] = {"requested_at": ev.requested_at}
            ops.append(UpdateOne({"_id": ev.video_id}, update, upsert=True))
        # One command per video keeps a video's events in order (ordered bulk).
        for part in batched(ops, self.max_ops):
            self.coll("videos").bulk_write(list(part), ordered=True)
        return self.refresh_videos({ev.video_id for ev in events})

    def refresh_videos(self, video_ids: Iterable[str]) -> list[Doc]:
        """Update stored-chunk counters; mark videos done. Returns videos that became done."""
        ids = sorted(set(video_ids))
        if not ids:
            return []
        with self._refresh_lock:
            stored: Counter[str] = Counter()
            failed: Counter[str] = Counter()
            for c in self.coll("chunks").find({"video_id": {"$in": ids}}, {"video_id": 1, "extraction_error": 1}):
                stored[c["video_id"]] += 1
                if c.get("extraction_error"):
                    failed[c["video_id"]] += 1
            self._bulk("videos", [
                UpdateOne({"_id": vid}, {"$max": {"chunks_stored": stored[vid], "chunks_failed": failed[vid]}})
                for vid in ids if stored[vid]
            ])
            completed = []
            now = datetime.now(UTC)
            for doc in self.coll("videos").find({"_id": {"$in": ids}, "done_at": {"$exists": False}}):
                if video_state(doc) == "done":
                    res = self.coll("videos").update_one({"_id": doc["_id"], "done_at": {"$exists": False}},
                                                         {"$set": {"done_at": now}})
                    if res.modified_count:
                        completed.append({**doc, "done_at": now})
            return completed

    # ------------------------------------------------------------------ reads

    def videos(self, video_ids: Sequence[str] | None = None) -> list[Doc]:
        query: Doc = {"_id": {"$in": list(video_ids)}} if video_ids else {}
        docs = list(self.coll("videos").find(query).sort("_id", ASCENDING))
        for d in docs:
            d["status"] = video_state(d)
        return docs

    def counts(self) -> dict[str, int]:
        return {name: self.coll(name).count_documents({}) for name in GRAPH_COLLECTIONS}

    def entity_degrees(self) -> Counter[str]:
        degree: Counter[str] = Counter()
        for side in ("$source_id", "$target_id"):
            for row in self.coll("relations").aggregate([{"$group": {"_id": side, "n": {"$sum": 1}}}]):
                degree[row["_id"]] += int(row["n"])
        return degree

    def top_entities(self, limit: int = 10, timestamps: int = 3) -> list[Doc]:
        """The most connected entities with where in which video they are mentioned."""
        degree = self.entity_degrees()
        top = [eid for eid, _ in sorted(degree.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]
        entities = {e["_id"]: e for e in self.coll("entities").find({"_id": {"$in": top}})}
        out = []
        for eid in top:
            ent = entities.get(eid)
            if ent is None:
                continue
            mentions = list(self.coll("entity_mentions").find({"entity_id": eid}, {"video_id": 1, "start": 1})
                            .sort([("video_id", ASCENDING), ("start", ASCENDING)]).limit(timestamps))
            out.append({**ent, "degree": degree[eid], "evidence": mentions})
        return out

    def snapshot(self) -> dict[str, list[Doc]]:
        """Every graph document, sorted, without wall-clock fields: for the replay test."""
        volatile = {"done_at", "at", "stored_at"}

        def clean(d: Any) -> Any:
            if isinstance(d, dict):
                return {k: clean(v) for k, v in d.items() if k not in volatile}
            if isinstance(d, list):
                return [clean(v) for v in d]
            return d

        return {name: [clean(d) for d in self.coll(name).find().sort("_id", ASCENDING)]
                for name in GRAPH_COLLECTIONS}


# --------------------------------------------------------------------------- documents


def _differs(existing: Doc | None, wanted: Doc) -> bool:
    return existing is None or any(existing.get(k) != v for k, v in wanted.items())


def summarize_descriptions(descriptions: Sequence[str], limit: int = 400) -> str:
    """An entity's description, bounded: the most frequent ones joined while they fit.

    Keeps the entity document small however many chunks describe it; the full (bounded)
    list stays in ``descriptions``.
    """
    out = ""
    for d in descriptions:
        candidate = (f"{out} {d}" if out.endswith((".", "!", "?")) else f"{out}; {d}") if out else d
        if len(candidate) > limit:
            break
        out = candidate
    return out or (descriptions[0][: limit - 1] + "…" if descriptions else "")


def _top_texts(texts: Iterable[str]) -> list[str]:
    counts = Counter(t.strip() for t in texts if t and t.strip())
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_DESCRIPTIONS]


def _redirected_mention(m: Doc, redirects: Mapping[str, tuple[str, str]]) -> Doc:
    """A mention moved to the survivor of its (merged) entity."""
    target, ttype = redirects[m["entity_id"]]
    return {**m, "_id": mention_id(m["chunk_id"], target), "entity_id": target, "type": ttype}


def _redirected_evidence(e: Doc, redirects: Mapping[str, tuple[str, str]]) -> Doc | None:
    """Evidence moved to the survivors of its endpoints; None when it becomes a self-loop."""
    src = redirects.get(e["source_id"], (e["source_id"], ""))[0]
    dst = redirects.get(e["target_id"], (e["target_id"], ""))[0]
    if src == dst:
        return None
    rid = relation_id(src, dst, e["type"])
    return {**e, "_id": evidence_id(e["chunk_id"], rid), "relation_id": rid, "source_id": src, "target_id": dst}


def redirect_evidence(mentions: Sequence[Doc], evidence: Sequence[Doc],
                      redirects: Mapping[str, tuple[str, str]]) -> tuple[list[Doc], list[Doc]]:
    """One chunk's mentions and evidence with merged entities replaced by their survivors:
    the survivor's own mention wins over a redirected one, of two relations that become one
    the stronger stays, relations that become self-loops go. A close stand-in until the next
    merge pass resolves the chunk again from its extraction."""
    if not redirects:
        return list(mentions), list(evidence)

    def moved(e: Doc) -> bool:
        return e["source_id"] in redirects or e["target_id"] in redirects

    out_m: dict[str, Doc] = {}
    for m in sorted(mentions, key=lambda m: m["entity_id"] in redirects):  # stable: own mentions first
        if m["entity_id"] in redirects:
            m = _redirected_mention(m, redirects)
        out_m.setdefault(m["_id"], m)
    out_e: dict[str, Doc] = {}
    for e in evidence:  # two relations that become one keep the stronger, as resolution does
        new = _redirected_evidence(e, redirects) if moved(e) else e
        if new is not None and (new["_id"] not in out_e or new["strength"] > out_e[new["_id"]]["strength"]):
            out_e[new["_id"]] = new
    return list(out_m.values()), list(out_e.values())


def _mention_doc(u: GraphUpdate, e: Any) -> Doc:
    c = u.chunk
    return {
        "_id": mention_id(c.chunk_id, e.entity_id),
        "entity_id": e.entity_id,
        "chunk_id": c.chunk_id,
        "video_id": c.video_id,
        "type": e.type,
        "surface": e.surface,
        "description": e.description,
        "start": e.start,
        "chunk_start": c.start,
        "chunk_end": c.end,
    }


def _evidence_doc(u: GraphUpdate, r: Any) -> Doc:
    c = u.chunk
    return {
        "_id": evidence_id(c.chunk_id, r.relation_id),
        "relation_id": r.relation_id,
        "source_id": r.source_id,
        "target_id": r.target_id,
        "type": r.type,
        "strength": r.strength,
        "description": r.description,
        "chunk_id": c.chunk_id,
        "video_id": c.video_id,
        "start": r.start,
        "chunk_start": c.start,
        "chunk_end": c.end,
    }


def evidence_fingerprint(mentions: Iterable[Doc], evidence: Iterable[Doc], *, error: str | None,
                         extractor: str, prompt_version: str, extracted: Doc | None) -> str:
    """Identifies a chunk's evidence set by content (strengths, descriptions, times and the
    extraction it was resolved from included)."""
    canonical = json.dumps({"m": sorted(mentions, key=lambda d: str(d["_id"])),
                            "e": sorted(evidence, key=lambda d: str(d["_id"])),
                            "error": error, "extractor": extractor, "prompt": prompt_version, "x": extracted},
                           sort_keys=True, default=str)
    return stable_id("evidence-set", canonical)


def _chunk_doc(u: GraphUpdate, mentions: list[Doc], evidence: list[Doc]) -> Doc:
    c = u.chunk
    extracted = u.extracted.model_dump(mode="json") if u.extracted is not None else None
    fingerprint = evidence_fingerprint(mentions, evidence, error=u.error, extractor=u.extractor,
                                       prompt_version=u.prompt_version, extracted=extracted)
    return {
        "_id": c.chunk_id,
        "video_id": c.video_id,
        "index": c.index,
        "chunk_count": c.chunk_count,
        "text": c.text,
        "start": c.start,
        "end": c.end,
        "token_count": c.token_count,
        "extractor": u.extractor,
        "prompt_version": u.prompt_version,
        "extraction_error": u.error,
        "entity_count": len(mentions),
        "relation_count": len(evidence),
        "evidence_fingerprint": fingerprint,
        # What the merge pass resolves again, with the timeline that places each name in time
        # (two flat arrays: FerretDB 1.x stores no nested arrays).
        "timeline_offsets": [offset for offset, _ in c.timeline],
        "timeline_seconds": [seconds for _, seconds in c.timeline],
        "extracted": extracted,
    }
