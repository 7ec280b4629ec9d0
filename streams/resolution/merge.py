"""Merge rules: which extracted names are one entity, decided from the set of all names.

In-stream resolution is a fast first guess. It compares a name only with the names its
block has seen *so far*, so its answer depends on the order in which names arrive (which
partitioning, restarts and timing change), and it cannot see "Posner" vs "Richard
Posner", "NASA" vs "National Aeronautics and Space Administration", a typo in the first
letters, or one name extracted under two types.

``canonical_names`` decides every name's entity from the set of all extracted names alone:
names that fold alike are one name; in-block fuzzy matches join symmetrically (every pair,
not first come first served); then the cross-block rules of ``propose_merges``; survivors
and IDs are chosen by counts and names, never by arrival. The merge pass that applies these
decisions to the store is ``streams.jobs.merge_pass``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from schemas import ChunkExtraction, EntityAlias, GraphUpdate, MentionRequest
from streams.model.ids import entity_id
from streams.model.names import PERSONAL_TITLES
from streams.resolution.normalize import normalize_name
from streams.resolution.resolve import Canonical, block_of, fold, mention_requests, resolve_extraction
from streams.settings import ResolutionSettings

log = logging.getLogger(__name__)

MINOR_WORDS = frozenset({"of", "the", "and", "for", "in", "on", "at", "de", "la", "a", "an", "to"})


@dataclass(frozen=True)
class EntityInfo:
    entity_id: str
    type: str
    name: str
    aliases: tuple[str, ...]
    mention_count: int

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> EntityInfo:
        return cls(doc["_id"], doc.get("type", "CONCEPT"), doc.get("name", ""), tuple(doc.get("aliases") or ()),
                   int(doc.get("mention_count", 0)))


@dataclass(frozen=True)
class Merge:
    source: EntityInfo  # merged away
    target: EntityInfo  # survives
    reason: str


def _person_tokens(name: str) -> tuple[str, ...]:
    return tuple(w for w in fold(name).split() if w not in PERSONAL_TITLES)


def _initials(name: str) -> str:
    return "".join(w[0] for w in fold(name).split() if w not in MINOR_WORDS)


def _is_proper_name(name: str) -> bool:
    """Every word but the minor ones capitalised: "Federal Arbitration Act", not "great magazine"."""
    words = [w for w in name.split() if w.lower() not in MINOR_WORDS]
    return bool(words) and all(w[:1].isupper() for w in words)


def _differs_by_an_affix(a: str, b: str) -> bool:
    """One name is the other with letters added at the start or end: another word, not a typo."""
    short, long = sorted((a, b), key=len)
    return long.startswith(short) or long.endswith(short)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.reason: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str, reason: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.reason.setdefault(a, reason)
            self.reason.setdefault(b, reason)


def propose_merges(entities: Sequence[EntityInfo], cfg: ResolutionSettings) -> list[Merge]:
    """Groups of entities that name the same thing, each folded into its most mentioned member."""
    uf = _UnionFind()
    by_id = {e.entity_id: e for e in entities}

    # 1. The same folded name (or alias), whatever the type.
    by_fold: dict[str, list[str]] = defaultdict(list)
    for e in entities:
        for form in {fold(e.name), *(fold(a) for a in e.aliases)}:
            if form:
                by_fold[form].append(e.entity_id)
    for ids in by_fold.values():
        for other in ids[1:]:
            uf.union(ids[0], other, "same normalised name")

    # 2. A person named by a shorter form of exactly one longer name ("Posner" -> "Richard Posner").
    people = [e for e in entities if e.type == "PERSON"]
    by_last: dict[str, list[EntityInfo]] = defaultdict(list)
    for p in people:
        tokens = _person_tokens(p.name)
        if tokens:
            by_last[tokens[-1]].append(p)
    for group in by_last.values():
        full = [p for p in group if len(_person_tokens(p.name)) >= 2]
        short = [p for p in group if len(_person_tokens(p.name)) == 1]
        distinct_full = {_person_tokens(p.name) for p in full}
        if short and len(distinct_full) == 1:
            for s in short:
                uf.union(full[0].entity_id, s.entity_id, "short form of a person's name")

    # 3. An acronym of exactly one multi-word proper name of its type ("NASA").
    by_initials: dict[str, list[EntityInfo]] = defaultdict(list)
    for e in entities:
        if len(fold(e.name).split()) >= 2 and _is_proper_name(e.name):
            by_initials[_initials(e.name)].append(e)
    for e in entities:
        raw = e.name.replace(".", "").strip()
        if 2 <= len(raw) <= 8 and raw.isupper() and raw.isalpha():
            matches = {m.entity_id for m in by_initials.get(raw.lower(), []) if m.type == e.type}
            if len(matches) == 1:
                uf.union(next(iter(matches)), e.entity_id, "acronym")

    # 4. Near-identical names of one type in different blocks (a typo in the first letters;
    #    "article" vs "particle" is another word, not a typo).
    by_type: dict[str, list[EntityInfo]] = defaultdict(list)
    for e in entities:
        if len(fold(e.name)) >= max(6, cfg.min_fuzzy_length):
            by_type[e.type].append(e)
    for group in by_type.values():
        if len(group) < 2:
            continue
        names = [fold(e.name) for e in group]
        scores = process.cdist(names, names, scorer=fuzz.ratio, score_cutoff=cfg.merge_threshold, workers=-1)
        for i, j in zip(*scores.nonzero(), strict=True):
            if (i < j and block_of(group[i].name, cfg.block_chars) != block_of(group[j].name, cfg.block_chars)
                    and not _differs_by_an_affix(names[i], names[j])):
                uf.union(group[i].entity_id, group[j].entity_id, f"similar name ({scores[i][j]:.0f})")

    components: dict[str, list[EntityInfo]] = defaultdict(list)
    for e in entities:
        components[uf.find(e.entity_id)].append(e)
    merges = []
    for members in components.values():
        if len(members) < 2:
            continue
        target = max(members, key=lambda m: (m.mention_count, len(m.name), m.entity_id))
        for m in sorted(members, key=lambda m: m.entity_id):
            if m.entity_id != target.entity_id:
                merges.append(Merge(m, by_id[target.entity_id], uf.reason.get(m.entity_id, "merged group")))
    return merges


def _preferred(surfaces: Counter[str]) -> str:
    """Most used first; on a tie "Phobos" before "PHOBOS" and "phobos" (as the store names entities)."""
    return min(surfaces.items(), key=lambda kv: (-kv[1], kv[0].isupper(), kv[0].islower(), kv[0]))[0]


def _majority(types: Counter[str]) -> str:
    return min(types.items(), key=lambda kv: (-kv[1], kv[0]))[0]


@dataclass
class _Name:
    """Everything extracted under one folded name."""

    surfaces: Counter[str] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Resolution:
    """Folded name -> its entity, and the cross-block merges that decided part of it."""

    names: dict[str, Canonical]
    merges: list[Merge]

    def multi_name(self) -> dict[str, Canonical]:
        """The names of entities known by more than one folded name: what aliases are for."""
        count = Counter(c.entity_id for c in self.names.values())
        return {f: c for f, c in self.names.items() if count[c.entity_id] > 1}


def canonical_names(requests: Iterable[MentionRequest], cfg: ResolutionSettings) -> Resolution:
    """Every folded name's entity, from the multiset of extracted names alone (order-free)."""
    names: dict[str, _Name] = defaultdict(_Name)
    for r in requests:
        n = names[fold(r.name)]
        n.surfaces[r.name] += 1
        n.types[r.type] += 1

    # In-block fuzzy matching as the resolver does it, but between every pair of names.
    uf = _UnionFind()
    blocks: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in sorted(names):
        uf.find(f)
        if len(f) >= cfg.min_fuzzy_length:
            blocks[(block_of(f, cfg.block_chars), _majority(names[f].types))].append(f)
    for folds in blocks.values():
        if len(folds) < 2:
            continue
        scores = process.cdist(folds, folds, scorer=fuzz.ratio, score_cutoff=cfg.fuzzy_threshold)
        for i, j in zip(*scores.nonzero(), strict=True):
            if i < j:
                uf.union(folds[i], folds[j], "similar name in block")

    groups: dict[str, list[str]] = defaultdict(list)
    for f in sorted(names):
        groups[uf.find(f)].append(f)
    first_guess: dict[str, EntityInfo] = {}  # fold -> its entity before the cross-block rules
    for folds in groups.values():
        surfaces = sum((names[f].surfaces for f in folds), Counter[str]())
        etype = _majority(sum((names[f].types for f in folds), Counter[str]()))
        name = _preferred(surfaces)
        # Distinct groups have distinct folded names, and equal IDs would need equal folds.
        info = EntityInfo(entity_id(etype, normalize_name(name, etype)), etype, name,
                          tuple(sorted(surfaces, key=lambda s: (-surfaces[s], s))), surfaces.total())
        first_guess.update(dict.fromkeys(folds, info))

    entities = sorted({e.entity_id: e for e in first_guess.values()}.values(), key=lambda e: e.entity_id)
    merges = propose_merges(entities, cfg)
    survivor = {m.source.entity_id: m.target for m in merges}
    out = {}
    for f, e in first_guess.items():
        s = survivor.get(e.entity_id, e)
        out[f] = Canonical(s.entity_id, s.type, s.name)
    return Resolution(out, merges)


def resolve_again(extraction: ChunkExtraction, resolution: Resolution, *, entity_types: Iterable[str] | None,
                  block_chars: int) -> GraphUpdate:
    """One chunk's graph update with the merge pass's decisions instead of the stream's."""
    requests = mention_requests(extraction, entity_types=entity_types, block_chars=block_chars)
    resolved = {r.mention: resolution.names[fold(r.name)] for r in requests}
    return resolve_extraction(extraction, entity_types=entity_types, resolved=resolved)


def alias_changes(wanted: Mapping[str, Canonical], published: Mapping[str, Canonical],
                  reasons: Mapping[str, str]) -> dict[str, EntityAlias | None]:
    """The alias records to write so that the topic holds exactly ``wanted`` (None retracts)."""
    out: dict[str, EntityAlias | None] = {}
    for folded, c in wanted.items():
        if published.get(folded) != c:
            out[folded] = EntityAlias(entity_id=c.entity_id, type=c.type, name=c.name,
                                      reason=reasons.get(c.entity_id, "merged group"))
    for folded in published.keys() - wanted.keys():
        out[folded] = None
    return out


def unmerged_same_name_share(entities: Sequence[EntityInfo]) -> tuple[int, int]:
    """(pairs of entities that share a folded name, all entity pairs): the resolver's miss rate."""
    counts: dict[str, int] = defaultdict(int)
    for e in entities:
        counts[fold(e.name)] += 1
    same = sum(n * (n - 1) // 2 for n in counts.values())
    n = len(entities)
    return same, n * (n - 1) // 2
