"""The HTTP API's response and request bodies: the contract that `/docs` shows."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from schemas.events import LanguageCode
from streams.model.citations import citation, youtube_link


class Moment(BaseModel):
    """A place in a video: ``video_id@mm:ss`` and a YouTube link that starts there."""

    video_id: str
    seconds: float
    cite: str
    url: str

    @classmethod
    def at(cls, video_id: str, seconds: float) -> Moment:
        # Down to a tenth, so that the whole second of `cite` and `t=` is that of `seconds`.
        return cls(video_id=video_id, seconds=math.floor(float(seconds) * 10) / 10, cite=citation(video_id, seconds),
                   url=youtube_link(video_id, seconds))


class EntitySummary(BaseModel):
    id: str
    name: str
    type: str
    aliases: list[str] = Field(default_factory=list)
    mention_count: int = 0
    video_count: int = 0


class Neighbour(BaseModel):
    """A relation of the entity, seen from it: the other end, which way, how strong."""

    relation_id: str
    direction: Literal["out", "in"]
    type: str
    weight: int
    description: str = ""
    entity: EntitySummary


class EvidenceLine(BaseModel):
    """One mention: where the entity is spoken, with the words around it."""

    chunk_id: str
    surface: str
    moment: Moment
    excerpt: str = ""


class CommunityRef(BaseModel):
    id: str
    level: int
    size: int
    title: str | None = None


class EntityDetail(EntitySummary):
    description: str = ""
    neighbours: list[Neighbour]
    evidence: list[EvidenceLine]
    communities: list[CommunityRef]


class GraphNode(BaseModel):
    id: str
    name: str
    type: str
    mention_count: int


class GraphEdge(BaseModel):
    id: str
    source: str
    target: str
    type: str
    weight: int


class Neighbourhood(BaseModel):
    """An entity and its strongest neighbours, with the relations among them (for drawing)."""

    center: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class FindingOut(BaseModel):
    text: str
    entity_ids: list[str] = Field(default_factory=list)
    evidence: list[Moment] = Field(default_factory=list)


class CommunitySummary(CommunityRef):
    rating: float | None = None
    summary: str = ""


class CommunityDetail(CommunitySummary):
    parent: str | None = None
    members: list[EntitySummary]
    findings: list[FindingOut]


class ChunkRow(BaseModel):
    id: str
    index: int
    start: float
    end: float
    moment: Moment
    entity_count: int = 0
    relation_count: int = 0
    extraction_error: str | None = None


class VideoRow(BaseModel):
    """What `status` shows for one video: per-stage state and chunk progress."""

    video_id: str
    title: str | None = None
    status: str
    chunks_stored: int = 0
    chunk_count: int | None = None
    chunks_failed: int = 0
    source: str | None = None
    stages: dict[str, str | None] = Field(default_factory=dict)
    error: str | None = None
    requested_at: Any = None
    done_at: Any = None


class VideoDetail(VideoRow):
    chunks: list[ChunkRow]


class Pipeline(BaseModel):
    """Videos per status, graph counts and dead letters per stage and reason."""

    videos_by_status: dict[str, int]
    videos_by_stage: dict[str, dict[str, int]] = Field(description="stage -> state -> videos")
    counts: dict[str, int]
    dead_letters: int | None = Field(description="null when the dead-letter topic could not be read")
    dead_letters_by_stage: dict[str, int]
    dead_letters_by_reason: dict[str, int]
    dead_letters_error: str | None = None
    last_community_run: dict[str, Any] | None = None


class SubmitRequest(BaseModel):
    video_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=100_000, description="YouTube video IDs (11 characters each).")
    source: Literal["auto", "youtube", "local"] = "auto"
    languages: list[LanguageCode] = Field(default_factory=lambda: ["en"], min_length=1, max_length=10)


class SubmitResult(BaseModel):
    submitted: int
    topic: str
    video_ids: list[str]
