"""communities run and list, and the community run that reindex ends with."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from streams.cli.root import CONTEXT, Ctx, cli, open_read_store, open_store
from streams.model.citations import citation
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.jobs.community_run import CommunityRunReport

# asyncio, pymongo and the summariser's LLM client load inside community_run: every
# command, --help included, imports this module.


def community_run(settings: Settings, *, merge: bool) -> CommunityRunReport:
    """The merge pass (unless merge is false), detection and summaries, run now on the configured graph."""
    import asyncio

    from streams.jobs.community_run import make_summarizer, run_communities

    store = open_store(settings)

    async def go() -> CommunityRunReport:
        summarizer, closer = make_summarizer(settings)
        try:
            return await run_communities(settings, store, summarizer, merge=merge)
        finally:
            if closer is not None:
                await closer.aclose()

    return asyncio.run(go())


@cli.group(context_settings=CONTEXT)
def communities() -> None:
    """Community detection and summaries."""


@communities.command("run", context_settings=CONTEXT)
@click.option("--no-merge", is_flag=True, help="Skip the entity merge pass that normally runs first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def communities_run(obj: Ctx, no_merge: bool, as_json: bool) -> None:
    """Run the merge pass, detect communities and summarise the new and changed ones now."""
    report = community_run(obj.settings, merge=not no_merge)
    if as_json:
        click.echo(json.dumps(report.as_doc(), indent=2, default=str))
        return
    levels = ", ".join(f"level {k}: {v}" for k, v in sorted(report.levels.items())) or "none"
    click.echo(f"{report.total} communities ({levels}): {report.new} new, {report.changed} changed, "
               f"{report.unchanged} unchanged, {report.removed} removed; {report.summarized} summarised "
               f"({report.summarizer}) in {report.duration_seconds:.1f}s; {report.merged_entities} entities merged")
    click.echo("phases: " + ", ".join(f"{name} {s:.1f}s" for name, s in report.phases.items()))


@communities.command("list", context_settings=CONTEXT)
@click.option("--level", type=int, default=None, help="Only this level (0 is the coarsest).")
@click.option("--top", type=int, default=10, show_default=True, help="How many, largest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def communities_list(obj: Ctx, level: int | None, top: int, as_json: bool) -> None:
    """The largest communities with their reports."""
    store = open_read_store(obj.settings)
    docs = store.communities.find(level, limit=top)
    if as_json:
        click.echo(json.dumps(docs, indent=2, default=str))
        return
    for c in docs:
        report = c.get("report") or {}
        click.echo(f"[{c['_id']}] level {c['level']}, {c['size']} entities, rating {report.get('rating', '?')}: "
                   f"{report.get('title', '(no report yet)')}")
        if report.get("summary"):
            click.echo(f"    {report['summary'][:300]}")
        for f in report.get("findings", [])[:3]:
            cites = " ".join(citation(ev['video_id'], ev['seconds']) for ev in f.get("evidence", [])[:2])
            click.echo(f"    - {f.get('text', '')[:200]} {cites}")
