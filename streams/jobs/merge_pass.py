"""The periodic merge pass: the graph resolved again from every chunk's extraction.

Every chunk is resolved again from its stored extraction with the decisions of
``streams.resolution.merge.canonical_names`` and written where it differs. So the graph
after a pass is a function of the set of chunks stored, and a second pass changes nothing.
The decisions are also published as aliases, so resolvers send new mentions of merged
names to the survivor.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas import GraphUpdate
from streams.resolution.aliases import publish_aliases, published_aliases
from streams.resolution.merge import (
    EntityInfo,
    Merge,
    Resolution,
    alias_changes,
    canonical_names,
    resolve_again,
    unmerged_same_name_share,
)
from streams.resolution.resolve import fold, mention_requests
from streams.settings import ResolutionSettings, Settings
from streams.store import GraphStore
from streams.store.communities import GraphDocs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeReport:
    entities_before: int
    entities_after: int
    same_name_pairs_before: int
    same_name_pairs_after: int
    merges: list[Merge]
    aliases_published: int
    chunks_rewritten: int = 0
    chunks_without_extraction: int = 0  # stored by a version that did not keep extractions
    skipped: bool = False  # nothing changed since the last complete pass: nothing was read or written
    # The entities and relations as the pass left them, for the community run that follows
    # (None: a dry run or skipped pass, nothing written).
    graph: GraphDocs | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class MergePlan:
    resolution: Resolution
    updates: list[GraphUpdate]
    chunks_without_extraction: int
    fingerprints: dict[str, str | None]  # chunk -> its evidence fingerprint, as read with the extractions


@dataclass(frozen=True)
class MergeWrites:
    chunks_rewritten: int
    before: list[EntityInfo]  # the entities just before the rewrite
    after: list[EntityInfo]  # and after it
    graph: GraphDocs  # the entities and relations after it


def plan_merge(store: GraphStore, cfg: ResolutionSettings, entity_types: Iterable[str] | None) -> MergePlan:
    """Read every stored extraction and decide the whole graph's resolution (no writes)."""
    types = list(entity_types) if entity_types is not None else None
    extractions, missing, fingerprints = [], 0, {}
    for stored in store.graph.chunk_extractions():
        fingerprints[stored.chunk_id] = stored.fingerprint
        if stored.extraction is None:
            missing += 1
        else:
            extractions.append(stored.extraction)
    requests = [r for x in extractions for r in mention_requests(x, entity_types=types, block_chars=cfg.block_chars)]
    resolution = canonical_names(requests, cfg)
    updates = [resolve_again(x, resolution, entity_types=types, block_chars=cfg.block_chars) for x in extractions]
    return MergePlan(resolution, updates, missing, fingerprints)


def apply_merge(store: GraphStore, plan: MergePlan) -> MergeWrites:
    """Write the plan: chunks whose evidence differs are replaced, what lost its evidence goes,
    and updates still in flight that name a merged-away entity are redirected.

    The entities are read once, by the rewrite, which also knows what it left: the report's
    before and after and the redirects come from there, not from more reads."""
    rewrite = store.graph.rewrite_resolutions(plan.updates, plan.fingerprints)
    before = [EntityInfo.from_doc(d) for d in rewrite.entities_before]
    alive = rewrite.entities_after
    names = plan.resolution.names
    store.graph.record_redirects({e.entity_id: (names[fold(e.name)].entity_id, names[fold(e.name)].type)
                                  for e in before if e.entity_id not in alive and fold(e.name) in names}, alive)
    return MergeWrites(rewrite.chunks, before,
                       [EntityInfo.from_doc({"_id": i, **d}) for i, d in rewrite.entities_after.items()],
                       GraphDocs.of(rewrite.entities_after, rewrite.relations_after))


def decision_settings(settings: Settings) -> str:
    """A fingerprint of the settings the merge decisions depend on."""
    wanted = {"resolution": settings.graphrag.resolution.model_dump(mode="json"),
              "entity_types": settings.graphrag.extraction.entity_types}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


def run_merge_pass(settings: Settings, store: GraphStore, *, dry_run: bool = False,
                   only_if_changed: bool = False) -> MergeReport:
    """Resolve the whole graph again from its extractions, publish the aliases, rewrite the store.

    ``only_if_changed`` (the community runs): skip, reading nothing, when no extraction was
    stored, extracted again or forgotten since the last complete pass with the same
    settings: the pass is a function of that set, so it would change nothing.
    """
    cfg = settings.graphrag.resolution
    version, fingerprint = store.graph.extractions_version(), decision_settings(settings)
    last = store.graph.last_merge_pass()
    if (only_if_changed and not dry_run and last is not None and last.get("extractions_version") == version
            and last.get("settings") == fingerprint):
        log.info("merge pass skipped: no extraction changed since the last pass (version %d)", version)
        return MergeReport(0, 0, 0, 0, [], 0, skipped=True)
    plan = plan_merge(store, cfg, settings.graphrag.extraction.entity_types)
    published = rewritten = 0
    graph = None
    if dry_run:
        before = after = [EntityInfo.from_doc(d) for d in store.graph.entity_infos()]
    else:
        # Aliases first: from now on resolvers send new mentions of these names to the survivor.
        reasons = {m.target.entity_id: m.reason for m in plan.resolution.merges}
        published = publish_aliases(settings, alias_changes(plan.resolution.multi_name(),
                                                            published_aliases(settings), reasons))
        writes = apply_merge(store, plan)
        rewritten, before, after, graph = writes.chunks_rewritten, writes.before, writes.after, writes.graph
        store.graph.record_merge_pass(version, fingerprint)  # read before the extractions: never newer
    same_before, _ = unmerged_same_name_share(before)
    same_after, _ = unmerged_same_name_share(after)
    log.info("merge pass: %d merge decisions, %d chunks rewritten, entities %d -> %d",
             len(plan.resolution.merges), rewritten, len(before), len(after))
    return MergeReport(len(before), len(after), same_before, same_after, plan.resolution.merges, published,
                       rewritten, plan.chunks_without_extraction, graph=graph)
