"""What the API reads from the graph: plain functions from the store to response models.

Each read is a handful of indexed queries (by ``_id``, ``entity_id``, ``members``), so it
costs the same whatever the size of the graph, except search and export, which scan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
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
from streams.format import video_row
from streams.query import excerpt
from streams.store import GraphStore

Doc = dict[str, Any]
SUMMARY_FIELDS = {"name": 1, "type": 1, "aliases": 1, "mention_count": 1, "video_count": 1}


def entity_summary(doc: Doc) -> EntitySummary:
    return EntitySummary(id=doc["_id"], name=doc.get("name", ""), type=doc.get("type", ""),
                         aliases=list(doc.get("aliases") or []), mention_count=int(doc.get("mention_count", 0)),
                         video_count=int(doc.get("video_count", 0)))


def search_entities(store: GraphStore, search: str = "", type_: str | None = None,
                    limit: int = 20) -> list[EntitySummary]:
    """Entities whose name or an alias contains ``search`` (any case), most mentioned first."""
    query: Doc = {}
    if search.strip():
        pattern = re.escape(search.strip())
        query["$or"] = [{"name": {"$regex": pattern, "$options": "i"}},
                        {"aliases": {"$regex": pattern, "$options": "i"}}]
    if type_:
        query["type"] = type_.upper()
    docs = store.coll("entities").find(query, SUMMARY_FIELDS).sort([("mention_count", -1), ("_id", 1)]).limit(limit)
    found = [entity_summary(d) for d in docs]
    if search.strip():  # an exact name first, then names that start with it
        key = search.strip().casefold()
        found.sort(key=lambda e: (e.name.casefold() != key, not e.name.casefold().startswith(key)))
    return found


def entity_types(store: GraphStore) -> dict[str, int]:
    rows = store.coll("entities").aggregate([{"$group": {"_id": "$type", "n": {"$sum": 1}}}])
    return {r["_id"]: int(r["n"]) for r in sorted(rows, key=lambda r: (-int(r["n"]), str(r["_id"])))}


def redirected_to(store: GraphStore, entity_id: str) -> str | None:
    """The entity a merged-away ID now lives on, if it was merged."""
    hit = store.entity_redirects([entity_id]).get(entity_id)
    return hit[0] if hit else None


def _entities(store: GraphStore, ids: Iterable[str]) -> dict[str, Doc]:
    wanted = sorted(set(ids))
    return {d["_id"]: d for d in store.coll("entities").find({"_id": {"$in": wanted}}, SUMMARY_FIELDS)} \
        if wanted else {}


def _relations_of(store: GraphStore, entity_id: str, limit: int) -> list[Doc]:
    rels = list(store.coll("relations").find({"$or": [{"source_id": entity_id}, {"target_id": entity_id}]},
                                             {"descriptions": 0}))
    rels.sort(key=lambda r: (-int(r.get("weight", 0)), r["_id"]))
    return rels[:limit]


def entity_detail(store: GraphStore, entity_id: str, *, neighbours: int = 50,
                  evidence: int = 100) -> EntityDetail | None:
    doc = store.coll("entities").find_one({"_id": entity_id})
    if doc is None:
        return None
    rels = _relations_of(store, entity_id, neighbours)
    others = _entities(store, [r["target_id"] if r["source_id"] == entity_id else r["source_id"] for r in rels])
    rows = []
    for r in rels:
        out = r["source_id"] == entity_id
        other = others.get(r["target_id"] if out else r["source_id"])
        if other is not None:
            rows.append(Neighbour(relation_id=r["_id"], direction="out" if out else "in", type=r.get("type", ""),
                                  weight=int(r.get("weight", 0)), description=r.get("description", ""),
                                  entity=entity_summary(other)))
    mentions = list(store.coll("entity_mentions").find({"entity_id": entity_id},
                                                       {"chunk_id": 1, "video_id": 1, "start": 1, "surface": 1})
                    .sort([("video_id", 1), ("start", 1)]).limit(evidence))
    texts = {c["_id"]: c.get("text", "") for c in
             store.coll("chunks").find({"_id": {"$in": sorted({m["chunk_id"] for m in mentions})}}, {"text": 1})}
    lines = [EvidenceLine(chunk_id=m["chunk_id"], surface=m.get("surface", ""),
                          moment=Moment.at(m["video_id"], m.get("start", 0)),
                          excerpt=excerpt(texts.get(m["chunk_id"], ""), [m.get("surface", "")], width=200))
             for m in mentions]
    communities = [CommunityRef(id=c["_id"], level=int(c.get("level", 0)), size=int(c.get("size", 0)),
                                title=(c.get("report") or {}).get("title"))
                   for c in store.coll("communities").find({"members": entity_id}, {"level": 1, "size": 1,
                                                                                    "report.title": 1})]
    communities.sort(key=lambda c: (c.level, c.id))
    return EntityDetail(**entity_summary(doc).model_dump(), description=doc.get("description", ""),
                        neighbours=rows, evidence=lines, communities=communities)


def neighbourhood(store: GraphStore, entity_id: str, *, limit: int = 40) -> Neighbourhood | None:
    """The entity, its ``limit`` strongest neighbours and every relation among those nodes."""
    center = store.coll("entities").find_one({"_id": entity_id}, SUMMARY_FIELDS)
    if center is None:
        return None
    rels = _relations_of(store, entity_id, limit)
    ids = {entity_id} | {r["source_id"] for r in rels} | {r["target_id"] for r in rels}
    among = list(store.coll("relations").find({"source_id": {"$in": sorted(ids)}, "target_id": {"$in": sorted(ids)}},
                                              {"source_id": 1, "target_id": 1, "type": 1, "weight": 1}))
    docs = _entities(store, ids)
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


def list_communities(store: GraphStore, level: int | None = None, limit: int = 50) -> list[CommunitySummary]:
    return [_community_summary(c) for c in store.communities(level, limit=limit)]


def community_detail(store: GraphStore, community_id: str) -> CommunityDetail | None:
    c = store.coll("communities").find_one({"_id": community_id})
    if c is None:
        return None
    members = _entities(store, c.get("members") or [])
    ranked = sorted(members.values(), key=lambda d: (-int(d.get("mention_count", 0)), d["_id"]))
    findings = [FindingOut(text=f.get("text", ""), entity_ids=list(f.get("entity_ids") or []),
                           evidence=[Moment.at(ev["video_id"], ev.get("seconds", 0)) for ev in f.get("evidence", [])])
                for f in (c.get("report") or {}).get("findings", [])]
    return CommunityDetail(**_community_summary(c).model_dump(), parent=c.get("parent"),
                           members=[entity_summary(d) for d in ranked], findings=findings)


def list_videos(store: GraphStore) -> list[VideoRow]:
    return [VideoRow(**video_row(d)) for d in store.videos()]


def video_detail(store: GraphStore, video_id: str) -> VideoDetail | None:
    docs = store.videos([video_id])
    if not docs:
        return None
    chunks = [ChunkRow(id=c["_id"], index=int(c.get("index", 0)), start=float(c.get("start", 0)),
                       end=float(c.get("end", 0)), moment=Moment.at(video_id, c.get("start", 0)),
                       entity_count=int(c.get("entity_count", 0)), relation_count=int(c.get("relation_count", 0)),
                       extraction_error=c.get("extraction_error"))
              for c in store.coll("chunks").find({"video_id": video_id}, {"text": 0, "extracted": 0,
                                                                          "timeline_offsets": 0,
                                                                          "timeline_seconds": 0})]
    chunks.sort(key=lambda c: c.index)
    return VideoDetail(**video_row(docs[0]), chunks=chunks)


def video_counts(store: GraphStore) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Videos per overall status, and per stage per state (what the pipeline page shows)."""
    docs = store.videos()
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
