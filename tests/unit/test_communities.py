"""Communities: detection with stable IDs and a finer level for large ones, and extractive
reports that cite their evidence.

Forgetting a video, incremental summaries and answers with citations, on the session's
corpus run: tests/integration/test_communities.py."""

from __future__ import annotations

import itertools
from typing import Any

from streams.communities.detect import detect
from streams.communities.summarize import ExtractiveSummarizer
from streams.model.citations import Citation
from streams.model.communities import Edge, PreviousCommunity
from streams.model.ids import stable_id
from streams.model.reports import CommunityContext, MemberInfo, RelationInfo


def clique(prefix: str, n: int, weight: float = 5.0) -> list[Edge]:
    names = [f"{prefix}{i}" for i in range(n)]
    return [Edge(a, b, stable_id("r", a, b), weight) for a, b in itertools.combinations(names, 2)]


def previous(det: Any) -> list[PreviousCommunity]:
    return [PreviousCommunity(c.community_id, c.level, frozenset(c.members), c.fingerprint, c.incident_fingerprint,
                              c.parent, c.fingerprint) for c in det.communities]


def test_two_cliques_are_two_communities_with_stable_ids() -> None:
    edges = clique("a", 5) + clique("b", 5) + [Edge("a0", "b0", "bridge", 1.0)]
    nodes = sorted({e.source for e in edges} | {e.target for e in edges})
    first = detect(nodes, edges)
    assert sorted(sorted(c.members) for c in first.communities) == [[f"a{i}" for i in range(5)],
                                                                    [f"b{i}" for i in range(5)]]
    assert len(first.new) == 2 and not first.changed
    again = detect(nodes, edges, previous(first))
    assert {c.community_id for c in again.communities} == {c.community_id for c in first.communities}
    assert len(again.unchanged) == 2 and not again.new and not again.changed and not again.removed

    # A heavier edge inside clique a changes a, not b; a new clique c is new.
    a1 = next(c for c in first.communities if "a0" in c.members)
    edges2 = [Edge(e.source, e.target, e.relation_id, 9.0) if e.relation_id == stable_id("r", "a1", "a2") else e
              for e in edges] + clique("c", 4)
    third = detect(sorted(set(nodes) | {f"c{i}" for i in range(4)}), edges2, previous(first))
    assert third.changed == [a1.community_id]
    assert len(third.unchanged) == 1 and len(third.new) == 1

    # Clique b gone: its community is removed.
    edges3 = clique("a", 5)
    fourth = detect([f"a{i}" for i in range(5)], edges3, previous(first))
    assert fourth.removed == sorted(c.community_id for c in first.communities if "b0" in c.members)


def test_large_communities_are_split_into_a_finer_level() -> None:
    # Three dense groups loosely tied together form one big level-0 community at low resolution.
    edges = clique("x", 6) + clique("y", 6) + clique("z", 6)
    edges += [Edge("x0", "y0", "xy", 3.0), Edge("y1", "z1", "yz", 3.0), Edge("z2", "x2", "zx", 3.0)]
    nodes = sorted({e.source for e in edges} | {e.target for e in edges})
    det = detect(nodes, edges, max_community_size=10, resolution=0.05)
    levels = {c.level for c in det.communities}
    assert levels == {0, 1}
    top = [c for c in det.communities if c.level == 0]
    children = [c for c in det.communities if c.level == 1]
    assert len(top) == 1 and len(top[0].members) == 18
    assert len(children) == 3 and all(c.parent == top[0].community_id for c in children)


def test_extractive_report_cites_evidence() -> None:
    ev = Citation(video_id="Pw0IZg7_4mo", chunk_id="c" * 24, seconds=83.0)
    ctx = CommunityContext("cid", 0, [MemberInfo("p", "Phobos", "LOCATION", "a moon of Mars", 4, 2),
                                      MemberInfo("m", "Mars", "LOCATION", "the red planet", 9, 2)],
                           [RelationInfo("r", "p", "m", "ORBIT", "Phobos orbits Mars.", 8.0, (ev,))])
    report = ExtractiveSummarizer().report(ctx)
    assert report.title == "Phobos and Mars"
    assert report.findings[0].text.startswith("Phobos orbit Mars") and report.findings[0].evidence == [ev]
    assert ev.cite == "Pw0IZg7_4mo@01:23" and ev.url == "https://youtu.be/Pw0IZg7_4mo?t=83"
    assert 0 < report.rating <= 10
