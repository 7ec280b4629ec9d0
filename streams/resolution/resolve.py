"""Entity resolution: extracted names -> canonical entity IDs, relations -> relation IDs.

Pure functions; the resolve stage (agents/resolve.py) runs them in three steps:

1. ``mention_requests``: every entity of a chunk becomes a request keyed by its *block*
   (the first letters of its folded name), so similar names meet on one partition.
2. ``resolve_mention``: against the block's known names (a changelog-backed table):
   alias (a merge decision) -> exact folded name (any type) -> fuzzy match (same type,
   rapidfuzz ratio) -> a new entity whose ID is ``hash(type, normalised name)``.
3. ``resolve_extraction``: the chunk's entities with their canonical IDs and its
   relations with ``relation_id = hash(source, target, type)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from schemas import (
    ChunkExtraction,
    ExtractedGraph,
    GraphUpdate,
    MentionBatch,
    MentionRequest,
    ResolvedEntity,
    ResolvedRelation,
)
from streams.model.ids import entity_id, relation_id
from streams.resolution.normalize import normalize_name, normalize_type
from streams.settings import ResolutionSettings
from streams.transcripts.chunking import locate


@dataclass(frozen=True)
class Canonical:
    """The entity a mention resolves to."""

    entity_id: str
    type: str
    name: str


#: The block table's value: folded name -> [entity_id, type, canonical name].
BlockState = dict[str, list[str]]
AliasLookup = Callable[[str], Canonical | None]


def fold(name: str) -> str:
    """The type-independent key names are matched on (plurals folded)."""
    return normalize_name(name, "CONCEPT")


def block_of(name: str, chars: int) -> str:
    return fold(name)[:chars] or "_"


def _no_alias(_: str) -> Canonical | None:
    return None


def canonical_type(raw: str, allowed: Iterable[str] | None = None) -> str:
    """Normalised type; an unknown type (when a list is configured) becomes CONCEPT."""
    t = normalize_type(raw)
    if allowed is not None:
        allowed_set = {normalize_type(a) for a in allowed}
        if t not in allowed_set:
            return "CONCEPT" if "CONCEPT" in allowed_set else next(iter(sorted(allowed_set)))
    return t


def mention_requests(extraction: ChunkExtraction, *, entity_types: Iterable[str] | None = None,
                     block_chars: int = 2) -> list[MentionRequest]:
    """The chunk's entities that have a usable name, each addressed to its block."""
    allowed = list(entity_types) if entity_types is not None else None
    out = []
    for i, e in enumerate(extraction.entities):
        etype = canonical_type(e.type, allowed)
        if normalize_name(e.name, etype) and fold(e.name):
            out.append(MentionRequest(chunk_id=extraction.chunk.chunk_id, mention=i, name=e.name.strip(),
                                      type=etype, block=block_of(e.name, block_chars)))
    return out


def mention_batches(requests: Sequence[MentionRequest], partition_of: Callable[[str], int]) -> list[MentionBatch]:
    """A chunk's mention requests, one batch per resolver partition that owns their blocks
    (``partition_of`` a block; batches in the order of their first mention). Sent keyed by
    their first block, each lands on that partition."""
    by_partition: dict[int, list[MentionRequest]] = {}
    for r in requests:
        by_partition.setdefault(partition_of(r.block), []).append(r)
    return [MentionBatch(chunk_id=group[0].chunk_id, mentions=group) for group in by_partition.values()]


def new_entity(name: str, etype: str) -> Canonical:
    return Canonical(entity_id(etype, normalize_name(name, etype)), etype, name.strip())


def resolve_mention(block: Mapping[str, list[str]], name: str, etype: str, cfg: ResolutionSettings,
                    alias: AliasLookup = _no_alias) -> tuple[Canonical, str, BlockState | None]:
    """Resolve one name against its block. Returns (entity, how, the block's new state or None)."""
    folded = fold(name)
    merged = alias(folded)
    if merged is not None:
        return merged, "alias", None
    known = block.get(folded)
    if known is not None:
        return Canonical(*known), "exact", None
    if len(folded) >= cfg.min_fuzzy_length:
        same_type = [k for k, v in block.items() if v[1] == etype and len(k) >= cfg.min_fuzzy_length]
        best = process.extractOne(folded, same_type, scorer=fuzz.ratio, score_cutoff=cfg.fuzzy_threshold)
        if best is not None:
            canonical = Canonical(*block[best[0]])
            return canonical, "fuzzy", {**block, folded: [canonical.entity_id, canonical.type, canonical.name]}
    canonical = new_entity(name, etype)
    return canonical, "new", {**block, folded: [canonical.entity_id, canonical.type, canonical.name]}


def _names(surface: str, canonical: Canonical) -> bool:
    return normalize_name(surface, canonical.type) == normalize_name(canonical.name, canonical.type)


def resolve_extraction(
    extraction: ChunkExtraction,
    *,
    entity_types: Iterable[str] | None = None,
    resolved: Mapping[int, Canonical] | None = None,
) -> GraphUpdate:
    """Give every entity and relation of one chunk its canonical, deterministic ID.

    ``resolved`` maps an entity's position in the chunk to its canonical entity (from the
    resolver); without it, each name gets the ID of a new entity. Relations whose
    endpoints are not among the chunk's entities are matched by normalised name (ignoring
    type) and otherwise dropped: the store never holds a relation without both endpoints.
    Self-loops are dropped.
    """
    allowed = list(entity_types) if entity_types is not None else None
    chunk = extraction.chunk

    def spoken_at(phrase: str) -> float:
        return locate(chunk.text, chunk.timeline, phrase, chunk.start)

    entities: dict[str, ResolvedEntity] = {}
    by_name: dict[str, str] = {}  # normalised surface -> entity id
    for i, e in enumerate(extraction.entities):
        etype = canonical_type(e.type, allowed)
        key = normalize_name(e.name, etype)
        if not key or not fold(e.name):
            continue
        canonical = resolved.get(i) if resolved is not None else None
        if canonical is None:
            canonical = new_entity(e.name, etype)
        eid = canonical.entity_id
        by_name.setdefault(normalize_name(e.name, "PERSON"), eid)
        by_name.setdefault(key, eid)
        # Two names of one entity in a chunk (after a merge: "Posner", "Richard Posner"): keep
        # the mention that names the entity itself, as the merge pass keeps the survivor's own.
        if eid not in entities or (_names(e.name, canonical) and not _names(entities[eid].surface, canonical)):
            entities[eid] = ResolvedEntity(entity_id=eid, name=canonical.name, type=canonical.type,
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
        extracted=ExtractedGraph(entities=extraction.entities, relations=extraction.relations),
    )
