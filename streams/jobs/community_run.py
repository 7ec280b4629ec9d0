"""One maintenance run: merge pass, community detection, incremental summaries.

The communities app runs it on a leader-only timer; ``graphrag-streams communities run``
runs it by hand. Each run records what it found (new, changed, unchanged, removed
communities) and how many summaries it wrote, so summarisation cost can be seen to
follow the change, not the graph size.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.communities.detect import detect
from streams.communities.summarize import ExtractiveSummarizer, LLMSummarizer, Summarizer
from streams.jobs.merge_pass import run_merge_pass
from streams.llm.cache import LLMCache
from streams.model.reports import CommunityContext, CommunityReport
from streams.settings import Settings
from streams.store import GraphStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommunityRunReport:
    run_id: str
    started_at: datetime
    duration_seconds: float
    total: int
    levels: dict[int, int]
    new: int
    changed: int
    unchanged: int
    removed: int
    summarized: int
    merged_entities: int
    summarizer: str
    # Seconds per phase (merge, read, detect, summarize, save): where a slow run spends its time.
    phases: dict[str, float] = field(default_factory=dict)
    merge_skipped: bool = False  # no extraction changed since the last merge pass

    def as_doc(self) -> dict[str, Any]:
        return {"_id": self.run_id, "started_at": self.started_at, "duration_seconds": self.duration_seconds,
                "total": self.total, "levels": {str(k): v for k, v in self.levels.items()}, "new": self.new,
                "changed": self.changed, "unchanged": self.unchanged, "removed": self.removed,
                "summarized": self.summarized, "merged_entities": self.merged_entities,
                "summarizer": self.summarizer, "phases": self.phases, "merge_skipped": self.merge_skipped}


def make_summarizer(settings: Settings) -> tuple[Summarizer, Any]:
    """The LLM summarizer when the LLM is configured, the extractive one otherwise.

    Returns the summarizer and something to close afterwards (or None).
    """
    findings = settings.graphrag.communities.findings
    if not settings.llm_enabled:
        return ExtractiveSummarizer(findings), None
    from streams.llm.client import LLMClient  # the openai client: extractive runs never import it

    client, cache = LLMClient(settings), LLMCache(settings)

    class _Closer:
        async def aclose(self) -> None:
            await client.aclose()
            await cache.aclose()

    return LLMSummarizer(client, cache, findings), _Closer()


class _Phases:
    """Seconds since the previous phase ended, by phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


async def run_communities(settings: Settings, store: GraphStore, summarizer: Summarizer, *,
                          merge: bool = True) -> CommunityRunReport:
    """Merge duplicates, detect communities, summarise only the new and changed ones."""
    cfg = settings.graphrag.communities
    started_at, t0 = datetime.now(UTC), time.monotonic()
    phases = _Phases()
    merged, merge_skipped, docs = 0, False, None
    if merge:
        merge_report = await asyncio.to_thread(run_merge_pass, settings, store, only_if_changed=True)
        merged = merge_report.entities_before - merge_report.entities_after  # this pass (a split: < 0)
        merge_skipped, docs = merge_report.skipped, merge_report.graph
        phases.done("merge")
    # Each collection read once: detection, summaries and the save share these (a pass that
    # wrote the graph has just read it: its documents are used as they were left).
    if docs is None:
        docs = await asyncio.to_thread(store.communities.read_graph)
    nodes, edges = store.communities.graph(docs)
    stored = await asyncio.to_thread(store.communities.stored)
    previous = store.communities.previous(stored)
    phases.done("read")
    detection = await asyncio.to_thread(detect, nodes, edges, previous, max_community_size=cfg.max_community_size,
                                        max_levels=cfg.max_levels, min_size=cfg.min_size,
                                        resolution=cfg.resolution, seed=cfg.seed,
                                        iterations=cfg.leiden_iterations)
    phases.done("detect")
    todo = set(detection.new) | set(detection.changed)
    contexts = await asyncio.to_thread(store.communities.contexts,
                                       [c for c in detection.communities if c.community_id in todo], docs=docs)
    # In parallel, as LLM summaries wait on the model; bounded, so that cache lookups and
    # calls of thousands of communities are not all started at once.
    limit = asyncio.Semaphore(settings.graphrag.max_concurrent_operations)

    async def summarize(ctx: CommunityContext) -> CommunityReport:
        async with limit:
            return await summarizer.summarize(ctx)

    done = await asyncio.gather(*(summarize(ctx) for ctx in contexts.values()))
    reports: dict[str, CommunityReport] = dict(zip(contexts, done, strict=True))
    phases.done("summarize")
    run_id = uuid.uuid4().hex[:12]
    await asyncio.to_thread(store.communities.save, detection.communities, reports, detection.removed, run_id,
                            stored)
    phases.done("save")
    levels: dict[int, int] = {}
    for c in detection.communities:
        levels[c.level] = levels.get(c.level, 0) + 1
    report = CommunityRunReport(run_id, started_at, round(time.monotonic() - t0, 3), len(detection.communities),
                                levels, len(detection.new), len(detection.changed), len(detection.unchanged),
                                len(detection.removed), len(reports), merged, summarizer.name, phases.seconds,
                                merge_skipped)
    await asyncio.to_thread(store.communities.record_run, report.as_doc())
    log.info("community run %s: %d communities (%d new, %d changed, %d unchanged, %d removed), %d summarised",
             run_id, report.total, report.new, report.changed, report.unchanged, report.removed, report.summarized)
    return report
