"""Entity resolution: extracted names -> canonical entity IDs, relations -> relation IDs.

This module holds the pure, per-chunk part: normalisation and deterministic IDs
(``entity_id = hash(type, normalised name)``). Cross-chunk resolution (aliases, fuzzy
matching) supplies an ``alias`` function that maps a (type, key) to the canonical key
it was merged into.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from schemas import ChunkExtraction, GraphUpdate, ResolvedEntity, ResolvedRelation
from streams.chunking import locate
from streams.ids import entity_id, relation_id
from streams.normalize import normalize_name, normalize_type

#: Maps (entity type, normalised key) to the canonical (type, key); identity by default.
AliasFn = Callable[[str, str], tuple[str, str]]


def _identity(entity_type: str, key: str) -> tuple[str, str]:
    return entity_type, key


def canonical_type(raw: str, allowed: Iterable[str] | None = None) -> str:
    """Normalised type; an unknown type (when a list is configured) becomes CONCEPT."""
    t = normalize_type(raw)
    if allowed is not None:
        allowed_set = {normalize_type(a) for a in allowed}
        if t not in allowed_set:
            return "CONCEPT" if "CONCEPT" in allowed_set else next(iter(sorted(allowed_set)))
    return t


def resolve_extraction(
    extraction: ChunkExtraction,
    *,
    alias: AliasFn = _identity,
    entity_types: Iterable[str] | None = None,
) -> GraphUpdate:
    """Give every entity and relation of one chunk its canonical, deterministic ID.

    Relations whose endpoints are not among the chunk's entities are matched by
    normalised name (ignoring type) and otherwise dropped: the store never holds a
    relation without both endpoints. Self-loops are dropped.
    """
    allowed = list(entity_types) if entity_types is not None else None
    chunk = extraction.chunk

    def spoken_at(phrase: str) -> float:
        return locate(chunk.text, chunk.timeline, phrase, chunk.start)

    entities: dict[str, ResolvedEntity] = {}
    by_name: dict[str, str] = {}  # normalised surface -> entity id
    for e in extraction.entities:
        etype = canonical_type(e.type, allowed)
        key = normalize_name(e.name, etype)
        if not key:
            continue
        ctype, ckey = alias(etype, key)
        eid = entity_id(ctype, ckey)
        by_name.setdefault(normalize_name(e.name, "PERSON"), eid)
        by_name.setdefault(key, eid)
        if eid not in entities:
            entities[eid] = ResolvedEntity(entity_id=eid, name=e.name.strip(), type=ctype,
                                           surface=e.name.strip(), description=e.description,
                                           start=spoken_at(e.name))

    def endpoint(name: str) -> str | None:
        return by_name.get(normalize_name(name, "PERSON")) or by_name.get(normalize_name(name))

    relations: dict[str, ResolvedRelation] = {}
    for r in extraction.relations:
        src, dst = endpoint(r.source), endpoint(r.target)
        if src is None or dst is None or src == dst:
            continue
        rtype = normalize_type(r.type)
        rid = relation_id(src, dst, rtype)
        prev = relations.get(rid)
        if prev is None or r.strength > prev.strength:
            relations[rid] = ResolvedRelation(relation_id=rid, source_id=src, target_id=dst, type=rtype,
                                              description=r.description, strength=r.strength,
                                              start=min(spoken_at(r.source), spoken_at(r.target)))
    return GraphUpdate(
        chunk=extraction.chunk,
        entities=list(entities.values()),
        relations=list(relations.values()),
        extractor=extraction.extractor,
        prompt_version=extraction.prompt_version,
        error=extraction.error,
    )
