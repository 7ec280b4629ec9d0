"""Community reports: title, summary, key findings with the entities and evidence they rest
on, and a rating. Written by the LLM when one is configured, extractively otherwise."""

from __future__ import annotations

import math
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from streams.llm.cache import cache_key
from streams.llm.schema import strict_object
from streams.model.citations import shorten
from streams.model.reports import CommunityContext, CommunityReport, Finding, RelationInfo
from streams.resolution.resolve import fold

SUMMARY_PROMPT_VERSION = "community-report-v1"


class Summarizer(Protocol):
    name: str

    async def summarize(self, ctx: CommunityContext) -> CommunityReport: ...


def _relation_text(r: RelationInfo, names: dict[str, str]) -> str:
    verb = r.type.replace("_", " ").lower()
    base = f"{names.get(r.source_id, '?')} {verb} {names.get(r.target_id, '?')}"
    return f"{base}: {shorten(r.description, 200)}" if r.description else base


def _rating(ctx: CommunityContext) -> float:
    weight = sum(r.weight for r in ctx.relations) + sum(m.mention_count for m in ctx.members)
    return round(min(10.0, 1.0 + math.log2(1 + weight)), 1)


class ExtractiveSummarizer:
    """No LLM: the community's most connected entities and strongest relations, verbatim."""

    name = "extractive"

    def __init__(self, findings: int = 5) -> None:
        self.findings = findings

    async def summarize(self, ctx: CommunityContext) -> CommunityReport:
        return self.report(ctx)

    def report(self, ctx: CommunityContext) -> CommunityReport:
        names = {m.entity_id: m.name for m in ctx.members}
        top = [m.name for m in ctx.members[:3]]
        title = top[0] if len(top) == 1 else ", ".join(top[:-1]) + f" and {top[-1]}"
        described = [m for m in ctx.members[:3] if m.description]
        summary = (f"{len(ctx.members)} entities around {title}. "
                   + " ".join(f"{m.name}: {shorten(m.description, 200)}" for m in described[:2])).strip()
        findings = [Finding(text=_relation_text(r, names), entity_ids=[r.source_id, r.target_id],
                            evidence=list(r.evidence[:2])) for r in ctx.relations[: self.findings]]
        return CommunityReport(title=title, summary=summary[:1500], findings=findings, rating=_rating(ctx),
                               rating_explanation="from the community's total relation weight and mentions",
                               generated_by=self.name, prompt_version="extractive-v1")


SYSTEM = """You write reports about communities of entities in a knowledge graph built from
YouTube video transcripts. Use only the entities and relations given. Answer with JSON only."""

USER = """Community {community_id} (level {level}).

Entities:
{entities}

Relations:
{relations}

Write: a short title naming the community's main entities; a summary of 2-4 sentences; up to
{findings} key findings, each a one-sentence claim with the names of the entities it is about
(exactly as listed); a rating from 0 to 10 of how important this community is for understanding
the videos, and one sentence explaining the rating."""


class _LLMFinding(BaseModel):
    claim: str
    entities: list[str]


class _LLMReport(BaseModel):
    title: str
    summary: str
    findings: list[_LLMFinding]
    rating: float
    rating_explanation: str


def report_schema() -> dict[str, Any]:
    finding = strict_object({"claim": {"type": "string"}, "entities": {"type": "array", "items": {"type": "string"}}})
    return strict_object({"title": {"type": "string"}, "summary": {"type": "string"},
                          "findings": {"type": "array", "items": finding}, "rating": {"type": "number"},
                          "rating_explanation": {"type": "string"}})


class LLMSummarizer:
    """The LLM writes the report; findings are tied back to entity IDs and to evidence."""

    def __init__(self, client: Any, cache: Any, findings: int = 5) -> None:
        self.client = client
        self.cache = cache
        self.findings = findings
        self.name = f"openai:{client.model}"
        self.fallback = ExtractiveSummarizer(findings)

    async def summarize(self, ctx: CommunityContext) -> CommunityReport:
        names = {m.entity_id: m.name for m in ctx.members}
        entities = "\n".join(f"- {m.name} ({m.type}): {m.description[:200]}" for m in ctx.members[:40])
        relations = "\n".join(f"- {_relation_text(r, names)[:300]}" for r in ctx.relations[:60])
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": USER.format(community_id=ctx.community_id, level=ctx.level,
                                                            entities=entities, relations=relations,
                                                            findings=self.findings)}]
        key = cache_key(self.client.model, SUMMARY_PROMPT_VERSION, messages)
        raw = await self.cache.get(key)
        if raw is None:
            completion = await self.client.complete(messages, json_schema=report_schema(),
                                                    schema_name="community_report")
            try:
                parsed = _LLMReport.model_validate_json(completion.content)
            except ValidationError:
                # A report is a convenience, not data: keep the community with an extractive one.
                return self.fallback.report(ctx)
            raw = parsed.model_dump()
            await self.cache.put(key, raw, model=self.client.model, prompt_version=SUMMARY_PROMPT_VERSION)
        report = _LLMReport.model_validate(raw)
        by_fold = {fold(m.name): m.entity_id for m in ctx.members}
        findings = []
        for f in report.findings[: self.findings]:
            ids = [by_fold[fold(n)] for n in f.entities if fold(n) in by_fold]
            evidence = [e for r in ctx.relations if {r.source_id, r.target_id} & set(ids) for e in r.evidence][:2]
            findings.append(Finding(text=f.claim, entity_ids=ids, evidence=evidence))
        return CommunityReport(title=report.title[:200], summary=report.summary[:2000], findings=findings,
                               rating=min(10.0, max(0.0, report.rating)),
                               rating_explanation=report.rating_explanation[:500], generated_by=self.name,
                               prompt_version=SUMMARY_PROMPT_VERSION)
