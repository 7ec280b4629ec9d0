"""Community reports and the context they are written from (the store builds it, a
summariser turns it into a report)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from streams.model.citations import Citation


class Finding(BaseModel):
    text: str
    entity_ids: list[str] = Field(default_factory=list)
    evidence: list[Citation] = Field(default_factory=list)


class CommunityReport(BaseModel):
    title: str
    summary: str
    findings: list[Finding]
    rating: float = Field(ge=0, le=10)
    rating_explanation: str = ""
    generated_by: str
    prompt_version: str


@dataclass(frozen=True)
class MemberInfo:
    entity_id: str
    name: str
    type: str
    description: str
    mention_count: int
    degree: int  # relations inside the community


@dataclass(frozen=True)
class RelationInfo:
    relation_id: str
    source_id: str
    target_id: str
    type: str
    description: str
    weight: float
    evidence: tuple[Citation, ...]


@dataclass(frozen=True)
class CommunityContext:
    community_id: str
    level: int
    members: list[MemberInfo]  # most connected first
    relations: list[RelationInfo]  # heaviest first
