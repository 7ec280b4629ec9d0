"""Whole-graph reads for the CLI, `graph diff` and the replay checks: counts, the most
connected entities, comparable fields, a snapshot without wall-clock fields."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pymongo import ASCENDING

from streams.store.mongo import Collections, Doc
from streams.store.videos import FAILED, STORED

GRAPH_COLLECTIONS = ("videos", "chunks", "entities", "relations", "entity_mentions", "relation_evidence")


class GraphReads(Collections):
    """Reads across the graph collections."""

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
        sets = {STORED, FAILED}  # a video's ledger, in the order its chunks came

        def clean(d: Any) -> Any:
            if isinstance(d, dict):
                return {k: sorted(v) if k in sets else clean(v) for k, v in d.items() if k not in volatile}
            if isinstance(d, list):
                return [clean(v) for v in d]
            return d

        return {name: [clean(d) for d in self.coll(name).find().sort("_id", ASCENDING)]
                for name in GRAPH_COLLECTIONS}

    def comparable_graph(self) -> tuple[list[Doc], list[Doc], list[Doc]]:
        """Entities, relations and communities with the fields `graph diff` compares."""
        entities = list(self.coll("entities").find({}, {"name": 1, "type": 1, "aliases": 1, "mention_count": 1}))
        relations = list(self.coll("relations").find({}, {"source_id": 1, "target_id": 1, "type": 1, "weight": 1,
                                                          "evidence_count": 1}))
        communities = list(self.coll("communities").find({}, {"level": 1, "members": 1, "title": 1}))
        return entities, relations, communities
