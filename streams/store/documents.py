"""The stored documents of the graph, built from wire events: mentions, evidence, chunks,
and the rules that keep them bounded (aliases, descriptions) and comparable (fingerprints)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from schemas import GraphUpdate, ResolvedEntity, ResolvedRelation
from streams.model.ids import evidence_id, mention_id, relation_id, stable_id
from streams.store.mongo import Doc

MAX_ALIASES = 20
MAX_DESCRIPTIONS = 5


def differs(existing: Doc | None, wanted: Doc) -> bool:
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


def top_texts(texts: Iterable[str]) -> list[str]:
    counts = Counter(t.strip() for t in texts if t and t.strip())
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_DESCRIPTIONS]


def entity_doc(mentions: Sequence[Doc]) -> Doc:
    """An entity from its mentions: the most used surface is its name (on a tie "Phobos"
    before "PHOBOS" and "phobos"), bounded aliases and descriptions, counts."""
    surfaces = Counter(m["surface"] for m in mentions)
    aliases = [s for s, _ in sorted(surfaces.items(),
                                    key=lambda kv: (-kv[1], kv[0].isupper(), kv[0].islower(), kv[0]))]
    aliases = aliases[:MAX_ALIASES]
    descriptions = top_texts(m.get("description", "") for m in mentions)
    return {
        "type": mentions[0]["type"],
        "name": aliases[0],
        "aliases": aliases,
        "description": summarize_descriptions(descriptions),
        "descriptions": descriptions,
        "mention_count": len(mentions),
        "video_count": len({m["video_id"] for m in mentions}),
    }


def relation_doc(evidence: Sequence[Doc]) -> Doc:
    """A relation from its evidence: the weight is the sum of the strengths."""
    descriptions = top_texts(e.get("description", "") for e in evidence)
    return {
        "source_id": evidence[0]["source_id"],
        "target_id": evidence[0]["target_id"],
        "type": evidence[0]["type"],
        "weight": sum(int(e["strength"]) for e in evidence),
        "evidence_count": len(evidence),
        "video_count": len({e["video_id"] for e in evidence}),
        "description": descriptions[0] if descriptions else "",
        "descriptions": descriptions,
    }


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


def mention_doc(u: GraphUpdate, e: ResolvedEntity) -> Doc:
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


def evidence_doc(u: GraphUpdate, r: ResolvedRelation) -> Doc:
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


def chunk_doc(u: GraphUpdate, mentions: list[Doc], evidence: list[Doc]) -> Doc:
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
