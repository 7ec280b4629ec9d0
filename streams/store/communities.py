"""The ``communities`` and ``community_runs`` collections: what a community run reads (the
graph as nodes and weighted edges, the previous partition, a community's context) and
what it writes (communities with their reports, one record per run)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING, DeleteOne, UpdateOne

from streams.model.citations import Citation
from streams.model.communities import Community, Edge, PreviousCommunity
from streams.model.reports import CommunityContext, CommunityReport, MemberInfo, RelationInfo
from streams.store.documents import differs
from streams.store.mongo import SCAN_BATCH, Collections, Doc

#: What detection and summaries use of an entity and of a relation.
ENTITY_FIELDS = ("name", "type", "description", "mention_count")
RELATION_FIELDS = ("source_id", "target_id", "type", "description", "weight")


@dataclass(frozen=True)
class GraphDocs:
    """Entities by id and relations, as one community run reads them once."""

    entities: dict[str, Doc]
    relations: list[Doc]

    @classmethod
    def of(cls, entities: Mapping[str, Doc], relations: Mapping[str, Doc]) -> GraphDocs:
        """The graph as ``read_graph`` reads it, from the documents (by id) that the merge
        pass has just written: the community run that follows reads no more."""
        return cls({i: {"_id": i, **{k: d[k] for k in ENTITY_FIELDS if k in d}} for i, d in entities.items()},
                   [{"_id": i, **{k: d[k] for k in RELATION_FIELDS if k in d}} for i, d in relations.items()])


class CommunityStore(Collections):
    """Reads and writes of community runs."""

    def read_graph(self) -> GraphDocs:
        """Every entity and relation, in one read each, with what detection and summaries use."""
        entities = {e["_id"]: e for e in self.coll("entities").find(
            {}, dict.fromkeys(ENTITY_FIELDS, 1), batch_size=SCAN_BATCH)}
        relations = list(self.coll("relations").find({}, dict.fromkeys(RELATION_FIELDS, 1), batch_size=SCAN_BATCH))
        return GraphDocs(entities, relations)

    def graph(self, docs: GraphDocs | None = None) -> tuple[list[str], list[Edge]]:
        docs = docs or self.read_graph()
        edges = [Edge(r["source_id"], r["target_id"], r["_id"], float(r.get("weight", 1))) for r in docs.relations]
        return list(docs.entities), edges

    def stored(self) -> list[Doc]:
        """The stored communities without their reports: what ``previous`` and ``save`` compare with."""
        return list(self.coll("communities").find({}, {"report": 0}, batch_size=SCAN_BATCH))

    def previous(self, stored: Sequence[Doc] | None = None) -> list[PreviousCommunity]:
        out = []
        for c in self.stored() if stored is None else stored:
            dirty = bool(c.get("dirty"))
            out.append(PreviousCommunity(
                c["_id"], int(c["level"]), frozenset(c["members"]), c.get("fingerprint", ""),
                "" if dirty else c.get("incident_fingerprint", ""), c.get("parent"),
                "" if dirty else c.get("summarized_fingerprint", "")))
        return out

    def contexts(self, communities: Sequence[Community], max_relations: int = 60,
                 docs: GraphDocs | None = None) -> dict[str, CommunityContext]:
        """What each community's summary is written from: its members, its heaviest inner
        relations and their strongest evidence (three citations each).

        Three reads in all (entities, relations, the evidence of the chosen relations), not
        three per community: a run that summarises hundreds of communities would otherwise
        spend its time in round trips (and on FerretDB's SQLite backend, in collection scans).
        """
        if not communities:
            return {}
        docs = docs or self.read_graph()
        entities = docs.entities
        incident: dict[str, list[Doc]] = defaultdict(list)
        for r in docs.relations:
            incident[r["source_id"]].append(r)
        chosen: dict[str, list[Doc]] = {}
        for c in communities:
            members = set(c.members)
            inner = [r for m in c.members for r in incident.get(m, ()) if r["target_id"] in members]
            inner.sort(key=lambda r: (-float(r.get("weight", 0)), r["_id"]))
            chosen[c.community_id] = inner[:max_relations]
        evidence = self._citations({r["_id"] for rels in chosen.values() for r in rels})
        out: dict[str, CommunityContext] = {}
        for c in communities:
            relations = chosen[c.community_id]
            degree: Counter[str] = Counter()
            for r in relations:
                degree[r["source_id"]] += 1
                degree[r["target_id"]] += 1
            infos = [MemberInfo(eid, e.get("name", "?"), e.get("type", "CONCEPT"), e.get("description", ""),
                                int(e.get("mention_count", 0)), degree[eid])
                     for eid in c.members if (e := entities.get(eid)) is not None]
            infos.sort(key=lambda m: (-m.degree, -m.mention_count, m.name))
            rels = [RelationInfo(r["_id"], r["source_id"], r["target_id"], r.get("type", "RELATED_TO"),
                                 r.get("description", ""), float(r.get("weight", 0)), tuple(evidence.get(r["_id"], ())))
                    for r in relations]
            out[c.community_id] = CommunityContext(c.community_id, c.level, infos, rels)
        return out

    def _citations(self, relation_ids: set[str], per_relation: int = 3) -> dict[str, list[Citation]]:
        """The strongest evidence of each relation (ties: the lower ``_id``), as citations."""
        if not relation_ids:
            return {}
        found: dict[str, list[Doc]] = defaultdict(list)
        for ev in self.mongo.find_in("relation_evidence", "relation_id", relation_ids,
                                     {"video_id": 1, "chunk_id": 1, "start": 1, "strength": 1}):
            found[ev["relation_id"]].append(ev)
        out: dict[str, list[Citation]] = {}
        for rid, evs in found.items():
            evs.sort(key=lambda ev: (-int(ev.get("strength", 0)), ev["_id"]))
            out[rid] = [Citation(video_id=ev["video_id"], chunk_id=ev["chunk_id"], seconds=float(ev.get("start", 0)))
                        for ev in evs[:per_relation]]
        return out

    def save(self, communities: Sequence[Community], reports: dict[str, CommunityReport],
             removed: Sequence[str], run_id: str, stored: Sequence[Doc] | None = None) -> None:
        """Write what the run changed: new communities in bulk inserts, changed or
        re-summarised ones as updates, removed ones deleted; the rest is not written.
        ``run_id`` marks the run that last changed a community (``summarized_run`` the one
        that last summarised it)."""
        current = {d["_id"]: d for d in (self.stored() if stored is None else stored)}
        new: list[Doc] = []
        ops: list[UpdateOne | DeleteOne] = []
        for c in communities:
            fields: Doc = {"level": c.level, "parent": c.parent, "members": list(c.members), "size": len(c.members),
                           "fingerprint": c.fingerprint, "incident_fingerprint": c.incident_fingerprint,
                           "dirty": False}
            report = reports.get(c.community_id)
            if report is not None:
                fields.update({"report": report.model_dump(mode="json"), "summarized_fingerprint": c.fingerprint,
                               "summarized_run": run_id})
            before = current.get(c.community_id)
            if before is None:
                new.append({"_id": c.community_id, **fields, "run_id": run_id,
                            **({"version": 1} if report is not None else {})})
            elif report is not None or differs(before, fields):
                update: Doc = {"$set": {**fields, "run_id": run_id}}
                if report is not None:
                    update["$inc"] = {"version": 1}
                ops.append(UpdateOne({"_id": c.community_id}, update))
        ops += [DeleteOne({"_id": cid}) for cid in removed if cid in current]
        self.mongo.insert_new("communities", new)
        self.mongo.bulk("communities", ops)

    def record_run(self, run: Doc) -> None:
        self.coll("community_runs").insert_one(run)

    def last_run(self) -> Doc | None:
        return next(iter(self.coll("community_runs").find().sort("started_at", DESCENDING).limit(1)), None)

    def find(self, level: int | None = None, limit: int = 0) -> list[Doc]:
        query: Doc = {} if level is None else {"level": level}
        cursor = self.coll("communities").find(query).sort([("size", DESCENDING), ("_id", ASCENDING)])
        return list(cursor.limit(limit) if limit else cursor)
