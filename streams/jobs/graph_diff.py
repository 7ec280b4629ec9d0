"""Two graphs compared: what a re-index added, removed and changed (`graph diff A B`).

Entities and relations have content IDs (a hash of type and normalised name; of source,
target and type), so the same thing has the same ID in both graphs and is compared field
by field. Communities do not: each graph numbers its own. A community of B is the same as
one of A when their members are equal, *changed* when the best match at the same level
shares at least half of the union of members (Jaccard), and otherwise added (or removed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]

ENTITY_FIELDS = ("name", "type", "aliases", "mention_count")
RELATION_FIELDS = ("type", "weight", "evidence_count")
SAME_COMMUNITY = 0.5  # Jaccard of members at or above which two communities are one, changed


@dataclass
class KindDiff:
    """One kind of thing (entities, relations, communities): counts and the top examples."""

    a: int = 0
    b: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    examples: dict[str, list[Doc]] = field(default_factory=lambda: {"added": [], "removed": [], "changed": []})

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "added": self.added, "removed": self.removed, "changed": self.changed,
                "unchanged": self.unchanged, "examples": self.examples}


@dataclass
class GraphDiff:
    a: str
    b: str
    entities: KindDiff
    relations: KindDiff
    communities: KindDiff

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "entities": self.entities.as_dict(),
                "relations": self.relations.as_dict(), "communities": self.communities.as_dict()}


def _comparable(doc: Mapping[str, Any], fields: Sequence[str]) -> tuple[Any, ...]:
    return tuple(sorted(doc.get(f) or []) if f == "aliases" else doc.get(f) for f in fields)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any], fields: Sequence[str]) -> dict[str, list[Any]]:
    return {f: [old.get(f), new.get(f)] for f, x, y in zip(fields, _comparable(old, fields), _comparable(new, fields),
                                                            strict=True) if x != y}


def diff_by_id(a_docs: Iterable[Doc], b_docs: Iterable[Doc], fields: Sequence[str], *, weight: str,
               describe: Any, top: int) -> KindDiff:
    """Documents keyed by ``_id``: added, removed, and changed in any of ``fields``.

    Examples are the heaviest first by ``weight`` (mentions, relation weight).
    """
    a = {d["_id"]: d for d in a_docs}
    b = {d["_id"]: d for d in b_docs}
    out = KindDiff(a=len(a), b=len(b))
    added = [b[k] for k in b.keys() - a.keys()]
    removed = [a[k] for k in a.keys() - b.keys()]
    changed = []
    for k in a.keys() & b.keys():
        delta = _changes(a[k], b[k], fields)
        if delta:
            changed.append((b[k], delta))
    out.added, out.removed, out.changed = len(added), len(removed), len(changed)
    out.unchanged = len(a.keys() & b.keys()) - len(changed)

    def heaviest(docs: list[Doc]) -> list[Doc]:
        return sorted(docs, key=lambda d: (-float(d.get(weight) or 0), str(d["_id"])))[:top]

    out.examples["added"] = [describe(d) for d in heaviest(added)]
    out.examples["removed"] = [describe(d) for d in heaviest(removed)]
    changed.sort(key=lambda pair: (-float(pair[0].get(weight) or 0), str(pair[0]["_id"])))
    out.examples["changed"] = [{**describe(d), "changes": delta} for d, delta in changed[:top]]
    return out


def diff_communities(a_docs: Iterable[Doc], b_docs: Iterable[Doc], *, top: int) -> KindDiff:
    """Communities matched by members within each level (see the module docstring)."""
    a, b = list(a_docs), list(b_docs)
    out = KindDiff(a=len(a), b=len(b))
    matched_a: set[str] = set()
    changed: list[tuple[Doc, Doc, float]] = []
    added: list[Doc] = []
    by_level: dict[int, list[Doc]] = {}
    for c in a:
        by_level.setdefault(int(c.get("level", 0)), []).append(c)
    for c in sorted(b, key=lambda c: (-len(c.get("members") or ()), str(c["_id"]))):
        members = set(c.get("members") or ())
        best, best_score = None, 0.0
        for candidate in by_level.get(int(c.get("level", 0)), []):
            if candidate["_id"] in matched_a:
                continue
            other = set(candidate.get("members") or ())
            score = len(members & other) / len(members | other) if members | other else 1.0
            if score > best_score:
                best, best_score = candidate, score
        if best is not None and best_score >= SAME_COMMUNITY:
            matched_a.add(best["_id"])
            if best_score < 1.0:
                changed.append((best, c, best_score))
            else:
                out.unchanged += 1
        else:
            added.append(c)
    removed = [c for c in a if c["_id"] not in matched_a]
    out.added, out.removed, out.changed = len(added), len(removed), len(changed)

    def brief(c: Doc) -> Doc:
        return {"id": c["_id"], "level": c.get("level"), "title": c.get("title", ""),
                "size": len(c.get("members") or ())}

    def largest(cs: list[Doc]) -> list[Doc]:
        return [brief(c) for c in sorted(cs, key=lambda c: (-len(c.get("members") or ()), str(c["_id"])))[:top]]

    out.examples["added"] = largest(added)
    out.examples["removed"] = largest(removed)
    changed.sort(key=lambda t: (t[2], str(t[1]["_id"])))
    out.examples["changed"] = [
        {**brief(new), "was": brief(old), "jaccard": round(score, 3),
         "members_added": len(set(new.get("members") or ()) - set(old.get("members") or ())),
         "members_removed": len(set(old.get("members") or ()) - set(new.get("members") or ()))}
        for old, new, score in changed[:top]]
    return out


def diff_graphs(a_name: str, a: tuple[list[Doc], list[Doc], list[Doc]], b_name: str,
                b: tuple[list[Doc], list[Doc], list[Doc]], *, top: int = 5) -> GraphDiff:
    """(entities, relations, communities) of two graphs, as :meth:`GraphStore.comparable_graph` reads them."""
    names = {d["_id"]: d.get("name", d["_id"]) for d in [*a[0], *b[0]]}

    def entity(d: Doc) -> Doc:
        return {"id": d["_id"], "name": d.get("name"), "type": d.get("type"), "mentions": d.get("mention_count")}

    def relation(d: Doc) -> Doc:
        return {"id": d["_id"], "source": names.get(d.get("source_id"), d.get("source_id")),
                "target": names.get(d.get("target_id"), d.get("target_id")), "type": d.get("type"),
                "weight": d.get("weight")}

    return GraphDiff(
        a_name, b_name,
        diff_by_id(a[0], b[0], ENTITY_FIELDS, weight="mention_count", describe=entity, top=top),
        diff_by_id(a[1], b[1], RELATION_FIELDS, weight="weight", describe=relation, top=top),
        diff_communities(a[2], b[2], top=top),
    )
