"""The periodic merge pass: duplicates the in-stream resolver cannot see.

In-stream resolution only compares names within one block (same first letters), so it
misses "Posner" vs "Richard Posner", "NASA" vs "National Aeronautics and Space
Administration", a typo in the first letters, and one name extracted under two types.
This pass looks at the whole entity collection, proposes merges by explicit rules,
publishes them as aliases (so resolvers map future mentions to the survivor) and
re-points mentions, relations and evidence in the store. Running it twice changes
nothing the second time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process

from schemas import EntityAlias
from streams.config import ResolutionSettings
from streams.resolution import block_of, fold

log = logging.getLogger(__name__)

TITLES = frozenset({"mr", "mrs", "ms", "dr", "professor", "prof", "president", "judge", "justice", "sir",
                    "senator", "governor", "king", "queen", "saint", "st", "lord", "lady"})
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
    return tuple(w for w in fold(name).split() if w not in TITLES)


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


def alias_records(merges: Iterable[Merge]) -> dict[str, EntityAlias]:
    """Folded name -> surviving entity, for every name a merged entity was known by."""
    out: dict[str, EntityAlias] = {}
    for m in merges:
        alias = EntityAlias(entity_id=m.target.entity_id, type=m.target.type, name=m.target.name, reason=m.reason)
        # Also when a form folds like the survivor's name: a resolver's block may still map it
        # to the merged entity.
        for form in {m.source.name, *m.source.aliases}:
            key = fold(form)
            if key:
                out[key] = alias
    return out


def unmerged_same_name_share(entities: Sequence[EntityInfo]) -> tuple[int, int]:
    """(pairs of entities that share a folded name, all entity pairs): the resolver's miss rate."""
    counts: dict[str, int] = defaultdict(int)
    for e in entities:
        counts[fold(e.name)] += 1
    same = sum(n * (n - 1) // 2 for n in counts.values())
    n = len(entities)
    return same, n * (n - 1) // 2


@dataclass(frozen=True)
class MergeReport:
    entities_before: int
    entities_after: int
    same_name_pairs_before: int
    same_name_pairs_after: int
    merges: list[Merge]
    aliases_published: int


def run_merge_pass(settings: Any, store: Any, *, dry_run: bool = False) -> MergeReport:
    """Propose merges over the whole graph, publish them as aliases, re-point the store."""
    from streams.aliases import publish_aliases

    before = [EntityInfo.from_doc(d) for d in store.entity_infos()]
    merges = propose_merges(before, settings.graphrag.resolution)
    same_before, _ = unmerged_same_name_share(before)
    published = 0
    if merges and not dry_run:
        # Aliases first: from now on resolvers send new mentions of these names to the survivor.
        published = publish_aliases(settings, alias_records(merges))
        store.repoint_entities({m.source.entity_id: (m.target.entity_id, m.target.type) for m in merges})
    after = [EntityInfo.from_doc(d) for d in store.entity_infos()] if not dry_run else before
    same_after, _ = unmerged_same_name_share(after)
    log.info("merge pass: %d merges, entities %d -> %d", len(merges), len(before), len(after))
    return MergeReport(len(before), len(after), same_before, same_after, merges, published)
