"""Hierarchical community detection with stable IDs and change detection.

Leiden (igraph + leidenalg, seeded) on the entity graph, edge weight = relation weight.
Communities larger than ``max_community_size`` are split again on their own subgraph
(Leiden with that size bound), up to ``max_levels`` levels (level 0 is the coarsest). Each run starts Leiden from the
previous run's membership, so adding one video moves few nodes instead of reshuffling
the whole partition, and matches new communities to old ones by member overlap so IDs
stay stable. A community's fingerprint covers its members and the weights of the edges
between them; only a community whose fingerprint changed needs a new summary.

Runs in process on one leader: igraph's C core handles graphs of a few million edges in
minutes and memory; beyond that, detection would move to a distributed job (e.g. Spark
GraphFrames label propagation) writing the same ``communities`` documents.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streams.model.communities import Community, Edge, PreviousCommunity
from streams.model.ids import stable_id


@dataclass
class Detection:
    communities: list[Community]
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def inner_edges(members: Sequence[str], edges_of: Mapping[str, list[Edge]]) -> list[Edge]:
    """The edges between ``members``, found through each member's own edges: a run over
    thousands of communities never scans every edge per community."""
    inside = set(members)
    return list({e.relation_id: e for m in members for e in edges_of.get(m, [])
                 if e.source in inside and e.target in inside}.values())


def fingerprint(members: Sequence[str], edges_of: Mapping[str, list[Edge]]) -> str:
    """Members and the weights of the edges between them."""
    internal = sorted((e.relation_id, round(e.weight, 6)) for e in inner_edges(members, edges_of))
    return stable_id("community", *sorted(members), "|", *(f"{r}:{w}" for r, w in internal))


def incident_fingerprint(members: Sequence[str] | frozenset[str], edges_of: Mapping[str, list[Edge]]) -> str:
    touching = sorted({(e.relation_id, round(e.weight, 6)) for m in members for e in edges_of.get(m, [])})
    return stable_id("incident", *sorted(members), "|", *(f"{r}:{w}" for r, w in touching))


def _leiden(nodes: Sequence[str], edges: Sequence[Edge], initial: Mapping[str, int] | None,
            resolution: float, seed: int, max_size: int = 0, iterations: int = 2) -> list[list[str]]:
    # C extensions that take a while to load: only a community run pays for them.
    import igraph as ig
    import leidenalg as la

    index = {n: i for i, n in enumerate(nodes)}
    weights: dict[tuple[int, int], float] = defaultdict(float)
    for e in edges:
        a, b = index.get(e.source), index.get(e.target)
        if a is None or b is None or a == b:
            continue
        weights[(min(a, b), max(a, b))] += e.weight
    pairs = sorted(weights)
    g = ig.Graph(n=len(nodes), edges=pairs, directed=False)
    g.es["weight"] = [weights[p] for p in pairs]
    membership = None
    if initial:
        # Known nodes start in their previous community, new nodes alone; labels are
        # renumbered 0..k-1 (leidenalg wants them below the node count).
        labels: dict[tuple[str, object], int] = {}
        membership = [labels.setdefault(("old", initial[n]) if n in initial else ("new", n), len(labels))
                      for n in nodes]
    part = la.find_partition(g, la.RBConfigurationVertexPartition, weights="weight", seed=seed,
                             resolution_parameter=resolution, initial_membership=membership, n_iterations=iterations,
                             max_comm_size=max_size)
    groups: dict[int, list[str]] = defaultdict(list)
    for node, c in zip(nodes, part.membership, strict=True):
        groups[c].append(node)
    return [sorted(g) for g in groups.values()]


def detect(nodes: Sequence[str], edges: Sequence[Edge], previous: Sequence[PreviousCommunity] = (), *,
           max_community_size: int = 25, max_levels: int = 3, min_size: int = 2, resolution: float = 1.0,
           seed: int = 42, iterations: int = 2) -> Detection:
    """Communities of the graph, with IDs and change status relative to ``previous``.

    Locality: a previous top-level community whose members still exist and whose incident
    edges (inside and to the outside) are all unchanged is kept as it was, with its
    sub-communities; Leiden only re-runs on the rest of the graph. So a new video changes
    the communities it touches, not the partition elsewhere.
    """
    nodes = sorted(set(nodes))
    node_set = set(nodes)
    edges_of: dict[str, list[Edge]] = defaultdict(list)
    for e in edges:
        edges_of[e.source].append(e)
        edges_of[e.target].append(e)
    by_level_prev: dict[int, list[PreviousCommunity]] = defaultdict(list)
    children: dict[str, list[PreviousCommunity]] = defaultdict(list)
    for p in previous:
        by_level_prev[p.level].append(p)
        if p.parent:
            children[p.parent].append(p)

    detection = Detection([])
    claimed: set[str] = set()

    def keep(p: PreviousCommunity) -> None:
        """Carry a stable community (and its sub-communities) over unchanged."""
        members = tuple(sorted(p.members))
        fp = fingerprint(members, edges_of)
        detection.communities.append(Community(p.community_id, p.level, p.parent, members, fp,
                                               incident_fingerprint(members, edges_of)))
        (detection.unchanged if p.summarized_fingerprint == fp else detection.changed).append(p.community_id)
        claimed.add(p.community_id)
        for child in children.get(p.community_id, []):
            keep(child)

    stable = [p for p in by_level_prev[0]
              if p.members <= node_set and p.incident_fingerprint
              and incident_fingerprint(p.members, edges_of) == p.incident_fingerprint]
    for p in sorted(stable, key=lambda p: p.community_id):
        keep(p)
    kept = {m for p in stable for m in p.members}

    def initial_for(level: int, subset: Sequence[str]) -> dict[str, int]:
        inside = set(subset)
        out = {}
        for i, p in enumerate(sorted(by_level_prev[level], key=lambda p: p.community_id)):
            for m in p.members & inside:
                out[m] = i
        return out

    raw: list[tuple[int, str | None, list[str]]] = []  # (level, parent key, members)
    rest = [n for n in nodes if n not in kept]
    queue: list[tuple[int, str | None, list[str]]] = [(0, None, rest)] if rest else []
    while queue:
        level, parent, subset = queue.pop(0)
        sub_edges = inner_edges(subset, edges_of)
        # Below the top level: at least the standard resolution and a size bound, so that an
        # oversized community divides (on its own subgraph, its inner structure shows).
        max_size = max_community_size if level else 0
        res = max(1.0, resolution) if level else resolution
        for members in _leiden(subset, sub_edges, initial_for(level, subset), res, seed, max_size, iterations):
            if len(members) < min_size or (level > 0 and len(members) == len(subset)):
                continue
            key = stable_id("members", level, *members)
            raw.append((level, parent, members))
            if len(members) > max_community_size and level + 1 < max_levels:
                queue.append((level + 1, key, members))

    # Stable IDs: each new community takes the ID of the previous one (same level) it
    # overlaps most (Jaccard >= 0.5), each previous ID used at most once.
    ids: dict[tuple[int, str], str] = {}
    holding: dict[tuple[int, str], list[PreviousCommunity]] = defaultdict(list)  # (level, member) -> previous
    for p in previous:
        for m in p.members:
            holding[(p.level, m)].append(p)
    for level, parent_key, members in sorted(raw, key=lambda r: (r[0], -len(r[2]), r[2])):
        mset = frozenset(members)
        best, best_score = None, 0.5
        # Only a previous community sharing a member can overlap (Jaccard > 0).
        candidates = {p.community_id: p for m in members for p in holding.get((level, m), ())}
        for p in (candidates[k] for k in sorted(candidates)):
            if p.community_id in claimed:
                continue
            score = len(mset & p.members) / len(mset | p.members)
            if score >= best_score and (best is None or score > best_score or p.community_id < best.community_id):
                best, best_score = p, score
        fp = fingerprint(members, edges_of)
        if best is not None:
            cid = best.community_id
            claimed.add(cid)
            (detection.unchanged if best.summarized_fingerprint == fp else detection.changed).append(cid)
        else:
            cid = stable_id("community-id", level, *members)
            detection.new.append(cid)
        key = stable_id("members", level, *members)
        ids[(level, key)] = cid
        parent = ids.get((level - 1, parent_key)) if parent_key else None
        detection.communities.append(Community(cid, level, parent, tuple(members), fp,
                                               incident_fingerprint(members, edges_of)))
    detection.removed = sorted(p.community_id for p in previous if p.community_id not in claimed)
    return detection
