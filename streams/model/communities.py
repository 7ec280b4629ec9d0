"""Communities as the detector, the store and the jobs pass them: plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation_id: str
    weight: float


@dataclass(frozen=True)
class Community:
    community_id: str
    level: int
    parent: str | None
    members: tuple[str, ...]  # sorted entity ids
    fingerprint: str  # members + the edges between them: a new summary is due when it changes
    incident_fingerprint: str  # members + every edge touching them: the region is stable while it holds


@dataclass(frozen=True)
class PreviousCommunity:
    community_id: str
    level: int
    members: frozenset[str]
    fingerprint: str = ""
    incident_fingerprint: str = ""
    parent: str | None = None
    summarized_fingerprint: str = ""  # "" when its summary is missing or marked dirty
