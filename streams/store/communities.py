"""The ``communities`` and ``community_runs`` collections: what a community run reads (the
graph as nodes and weighted edges, the previous partition, a community's context) and
what it writes (communities with their reports, one record per run)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from pymongo import ASCENDING, DESCENDING, DeleteOne, UpdateOne

from streams.model.citations import Citation
from streams.model.communities import Community, Edge, PreviousCommunity
from streams.model.reports import CommunityContext, CommunityReport, MemberInfo, RelationInfo
from streams.store.mongo import Collections, Doc


class CommunityStore(Collections):
    """Reads and writes of community runs."""

    def graph(self) -> tuple[list[str], list[Edge]]:
        nodes = [e["_id"] for e in self.coll("entities").find({}, {"_id": 1})]
        edges = [Edge(r["source_id"], r["target_id"], r["_id"], float(r.get("weight", 1)))
                 for r in self.coll("relations").find({}, {"source_id": 1, "target_id": 1, "weight": 1})]
        return nodes, edges

    def previous(self) -> list[PreviousCommunity]:
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

    def context(self, community: Community, max_relations: int = 60) -> CommunityContext:
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

    def save(self, communities: Sequence[Community], reports: dict[str, CommunityReport],
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
        self.mongo.bulk("communities", ops)

    def record_run(self, run: Doc) -> None:
        self.coll("community_runs").insert_one(run)

    def last_run(self) -> Doc | None:
        return next(iter(self.coll("community_runs").find().sort("started_at", DESCENDING).limit(1)), None)

    def find(self, level: int | None = None, limit: int = 0) -> list[Doc]:
        query: Doc = {} if level is None else {"level": level}
        cursor = self.coll("communities").find(query).sort([("size", DESCENDING), ("_id", ASCENDING)])
        return list(cursor.limit(limit) if limit else cursor)
