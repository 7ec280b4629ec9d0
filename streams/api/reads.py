"""What the API reads from the graph: plain functions from the store to response models.

With a :class:`~streams.query.snapshot.GraphSnapshot` the adjacency (relations, mentions,
memberships, chunk lists) comes from memory and the store is asked only by ``_id``; without
one, or for an entity newer than it, every read goes to the store (indexed on MongoDB, a
scan per query on FerretDB).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams.api.models import (
    ChunkRow,
    CommunityDetail,
    CommunityRef,
    CommunitySummary,
    EntityDetail,
    EntitySummary,
    EvidenceLine,
    FindingOut,
    GraphEdge,
    GraphNode,
    Moment,
    Neighbour,
    Neighbourhood,
    VideoDetail,
    VideoRow,
)
from streams.model.views import video_row
from streams.query.answers import excerpt
from streams.query.snapshot import GraphSnapshot
from streams.store import GraphStore

Doc = dict[str, Any]
SUMMARY_FIELDS = {"name": 1, "type": 1, "aliases": 1, "mention_count": 1, "video_count": 1}


def entity_summary(doc: Doc) -> EntitySummary:
    return EntitySummary(id=doc["_id"], name=doc.get("name") or "", type=doc.get("type") or "",
                         aliases=list(doc.get("aliases") or []), mention_count=int(doc.get("mention_count", 0)),
                         video_count=int(doc.get("video_count", 0)))


def _by_mentions(docs: Iterable[Doc]) -> list[Doc]:
    return sorted(docs, key=lambda d: (-int(d.get("mention_count", 0)), d["_id"]))


def _names(d: Doc) -> list[str]:
    return [d.get("name") or "", *(a for a in d.get("aliases") or [] if a)]


def search_entities(store: GraphStore, snap: GraphSnapshot | None, search: str = "", type_: str | None = None,
                    limit: int = 20) -> list[EntitySummary]:
    """Entities whose name or an alias contains ``search`` (any case), most mentioned first;
    an exact name first, then names that start with it."""
    key = search.strip().lower()  # lower(), as the store's case-insensitive regex compares
    kind = type_.upper() if type_ else None
    if snap is not None:
        docs = [d for d in _by_mentions(snap.entities.values())
                if (kind is None or d.get("type") == kind) and (not key or any(key in n.lower() for n in _names(d)))]
    else:
        query: Doc = {}
        if key:
            pattern = re.escape(search.strip())
            query["$or"] = [{"name": {"$regex": pattern, "$options": "i"}},
                            {"aliases": {"$regex": pattern, "$options": "i"}}]
        if kind:
            query["type"] = kind
        docs = list(store.coll("entities").find(query, SUMMARY_FIELDS).sort([("mention_count", -1), ("_id", 1)]))
    if key:
        docs.sort(key=lambda d: (_names(d)[0].lower() != key, not _names(d)[0].lower().startswith(key)))
    return [entity_summary(d) for d in docs[:limit]]


def entity_types(store: GraphStore, snap: GraphSnapshot | None) -> dict[str, int]:
    if snap is not None:
        counts = Counter(str(d.get("type")) for d in snap.entities.values())
    else:
        counts = Counter({str(r["_id"]): int(r["n"]) for r in
                          store.coll("entities").aggregate([{"$group": {"_id": "$type", "n": {"$sum": 1}}}])})
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def redirected_to(store: GraphStore, entity_id: str) -> str | None:
    """The entity a merged-away ID now lives on, if it was merged."""
    hit = store.graph.entity_redirects([entity_id]).get(entity_id)
    return hit[0] if hit else None


@dataclass
class _EntityData:
    """What an entity's page needs, from the snapshot or from the store."""

    doc: Doc
    relations: list[Doc]  # strongest first
    mentions: list[Doc]   # by video, then time
    communities: list[Doc]
    entities: Callable[[Iterable[str]], dict[str, Doc]]


def _entity_data(store: GraphStore, snap: GraphSnapshot | None, entity_id: str) -> _EntityData | None:
    if snap is not None and entity_id in snap.entities:
        known = snap.entities
        return _EntityData(known[entity_id], snap.relations_by_entity.get(entity_id, []),
                           snap.mentions_by_entity.get(entity_id, []), snap.communities_by_entity.get(entity_id, []),
                           lambda ids: {i: known[i] for i in ids if i in known})
    # Not in the snapshot (newer than it, or none yet): the store, with a scan per query.
    doc = store.coll("entities").find_one({"_id": entity_id})
    if doc is None:
        return None
    rels = list(store.coll("relations").find({"$or": [{"source_id": entity_id}, {"target_id": entity_id}]},
                                             {"descriptions": 0}))
    rels.sort(key=lambda r: (-int(r.get("weight", 0)), r["_id"]))
    mentions = list(store.coll("entity_mentions").find({"entity_id": entity_id},
                                                       {"chunk_id": 1, "video_id": 1, "start": 1, "surface": 1}))
    mentions.sort(key=lambda m: (m["video_id"], float(m.get("start", 0)), m["_id"]))
    communities = list(store.coll("communities").find({"members": entity_id}, {"level": 1, "size": 1,
                                                                               "report.title": 1}))
    return _EntityData(doc, rels, mentions, communities, lambda ids: _entities(store, ids))


def _entities(store: GraphStore, ids: Iterable[str]) -> dict[str, Doc]:
    wanted = sorted(set(ids))
    return {d["_id"]: d for d in store.coll("entities").find({"_id": {"$in": wanted}}, SUMMARY_FIELDS)} \
        if wanted else {}


def _other(r: Doc, entity_id: str) -> str:
    return str(r["target_id"] if r["source_id"] == entity_id else r["source_id"])


def entity_detail(store: GraphStore, snap: GraphSnapshot | None, entity_id: str, *, neighbours: int = 50,
                  evidence: int = 100) -> EntityDetail | None:
    data = _entity_data(store, snap, entity_id)
    if data is None:
        return None
    rels = data.relations[:neighbours]
    others = data.entities(_other(r, entity_id) for r in rels)
    rows = []
    for r in rels:
        other = others.get(_other(r, entity_id))
        if other is not None:
            rows.append(Neighbour(relation_id=r["_id"], direction="out" if r["source_id"] == entity_id else "in",
                                  type=r.get("type", ""), weight=int(r.get("weight", 0)),
                                  description=r.get("description", ""), entity=entity_summary(other)))
    mentions = data.mentions[:evidence]
    wanted = {m["chunk_id"] for m in mentions}
    texts = {c: snap.chunk_texts[c] for c in wanted if c in snap.chunk_texts} if snap is not None else {}
    if wanted - texts.keys():
        texts.update((c["_id"], c.get("text", "")) for c in
                     store.coll("chunks").find({"_id": {"$in": sorted(wanted - texts.keys())}}, {"text": 1}))
    lines = [EvidenceLine(chunk_id=m["chunk_id"], surface=m.get("surface", ""),
                          moment=Moment.at(m["video_id"], m.get("start", 0)),
                          excerpt=excerpt(texts.get(m["chunk_id"], ""), [m.get("surface", "")], width=200))
             for m in mentions]
    communities = sorted((CommunityRef(id=c["_id"], level=int(c.get("level", 0)), size=int(c.get("size", 0)),
                                       title=(c.get("report") or {}).get("title")) for c in data.communities),
                         key=lambda c: (c.level, c.id))
    return EntityDetail(**entity_summary(data.doc).model_dump(), description=data.doc.get("description", ""),
                        neighbours=rows, evidence=lines, communities=communities)


def neighbourhood(store: GraphStore, snap: GraphSnapshot | None, entity_id: str, *,
                  limit: int = 40) -> Neighbourhood | None:
    """The entity, its ``limit`` strongest neighbours and every relation among those nodes."""
    data = _entity_data(store, snap, entity_id)
    if data is None:
        return None
    rels = data.relations[:limit]
    ids = {entity_id} | {r["source_id"] for r in rels} | {r["target_id"] for r in rels}
    among: Iterable[Doc]
    if snap is not None and entity_id in snap.entities:
        among = {r["_id"]: r for i in ids for r in snap.relations_by_entity.get(i, [])
                 if r["source_id"] in ids and r["target_id"] in ids}.values()
    else:
        among = store.coll("relations").find({"source_id": {"$in": sorted(ids)}, "target_id": {"$in": sorted(ids)}},
                                             {"source_id": 1, "target_id": 1, "type": 1, "weight": 1})
    docs = data.entities(ids)
    nodes = [GraphNode(id=i, name=d.get("name", ""), type=d.get("type", ""),
                       mention_count=int(d.get("mention_count", 0))) for i, d in sorted(docs.items())]
    edges = [GraphEdge(id=r["_id"], source=r["source_id"], target=r["target_id"], type=r.get("type", ""),
                       weight=int(r.get("weight", 0)))
             for r in sorted(among, key=lambda r: r["_id"]) if r["source_id"] in docs and r["target_id"] in docs]
    return Neighbourhood(center=entity_id, nodes=nodes, edges=edges)


def _community_summary(c: Doc) -> CommunitySummary:
    report = c.get("report") or {}
    return CommunitySummary(id=c["_id"], level=int(c.get("level", 0)), size=int(c.get("size", 0)),
                            title=report.get("title"), rating=report.get("rating"), summary=report.get("summary", ""))


def list_communities(store: GraphStore, snap: GraphSnapshot | None, level: int | None = None,
                     limit: int = 50) -> list[CommunitySummary]:
    if snap is None:
        return [_community_summary(c) for c in store.communities.find(level, limit=limit)]
    chosen = [c for c in snap.communities if level is None or c.get("level") == level]
    return [_community_summary(c) for c in chosen[:limit]]


def community_detail(store: GraphStore, snap: GraphSnapshot | None, community_id: str) -> CommunityDetail | None:
    c = snap.community_by_id.get(community_id) if snap is not None else None
    c = c or store.coll("communities").find_one({"_id": community_id})
    if c is None:
        return None
    members = c.get("members") or []
    known = snap.entities if snap is not None else {}
    docs = {m: known[m] for m in members if m in known}
    docs.update(_entities(store, [m for m in members if m not in docs]))
    findings = [FindingOut(text=f.get("text", ""), entity_ids=list(f.get("entity_ids") or []),
                           evidence=[Moment.at(ev["video_id"], ev.get("seconds", 0)) for ev in f.get("evidence", [])])
                for f in (c.get("report") or {}).get("findings", [])]
    return CommunityDetail(**_community_summary(c).model_dump(), parent=c.get("parent"),
                           members=[entity_summary(d) for d in _by_mentions(docs.values())], findings=findings)


def list_videos(store: GraphStore) -> list[VideoRow]:
    return [VideoRow(**video_row(d)) for d in store.videos.find()]


def video_detail(store: GraphStore, snap: GraphSnapshot | None, video_id: str) -> VideoDetail | None:
    docs = store.videos.find([video_id])
    if not docs:
        return None
    stored = snap.chunks_by_video.get(video_id) if snap is not None else None
    if stored is None or len(stored) < int(docs[0].get("chunks_stored", 0)):  # newer than the snapshot
        stored = sorted(store.coll("chunks").find({"video_id": video_id}, {"text": 0, "extracted": 0,
                                                                           "timeline_offsets": 0,
                                                                           "timeline_seconds": 0}),
                        key=lambda c: int(c.get("index", 0)))
    chunks = [ChunkRow(id=c["_id"], index=int(c.get("index", 0)), start=float(c.get("start", 0)),
                       end=float(c.get("end", 0)), moment=Moment.at(video_id, c.get("start", 0)),
                       entity_count=int(c.get("entity_count", 0)), relation_count=int(c.get("relation_count", 0)),
                       extraction_error=c.get("extraction_error"))
              for c in stored]
    return VideoDetail(**video_row(docs[0]), chunks=chunks)


def video_counts(store: GraphStore) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Videos per overall status, and per stage per state (what the pipeline page shows)."""
    docs = store.videos.find()
    by_stage: dict[str, Counter[str]] = {}
    for d in docs:
        for stage, s in (d.get("stages") or {}).items():
            by_stage.setdefault(stage, Counter())[str(s.get("state"))] += 1
    return dict(Counter(d["status"] for d in docs)), {k: dict(v) for k, v in sorted(by_stage.items())}


def whole_graph(store: GraphStore) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Every entity and relation, for export."""
    nodes = [GraphNode(id=d["_id"], name=d.get("name", ""), type=d.get("type", ""),
                       mention_count=int(d.get("mention_count", 0)))
             for d in store.coll("entities").find({}, {"name": 1, "type": 1, "mention_count": 1}).sort("_id", 1)]
    edges = [GraphEdge(id=r["_id"], source=r["source_id"], target=r["target_id"], type=r.get("type", ""),
                       weight=int(r.get("weight", 0)))
             for r in store.coll("relations").find({}, {"source_id": 1, "target_id": 1, "type": 1, "weight": 1})
             .sort("_id", 1)]
    return nodes, edges
