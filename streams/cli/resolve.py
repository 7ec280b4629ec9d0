"""resolve merge: the entity merge pass over the whole graph."""

from __future__ import annotations

import json

import click

from streams.cli.root import CONTEXT, Ctx, cli, open_store

# pymongo and confluent_kafka (the merge pass) load inside the command: every command,
# --help included, imports this module.


@cli.group(context_settings=CONTEXT)
def resolve() -> None:
    """Entity resolution across the whole graph."""


@resolve.command("merge", context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="Only show what would be merged.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show", type=int, default=20, show_default=True, help="How many merges to list.")
@click.pass_obj
def resolve_merge(obj: Ctx, dry_run: bool, as_json: bool, show: int) -> None:
    """Resolve the whole graph again from its extractions: merges the duplicates the in-stream
    resolver could not see and undoes its order-dependent guesses (also runs periodically)."""
    from streams.jobs.merge_pass import run_merge_pass

    store = open_store(obj.settings)
    report = run_merge_pass(obj.settings, store, dry_run=dry_run)
    rows = [{"merged": m.source.name, "merged_type": m.source.type, "into": m.target.name,
             "into_type": m.target.type, "reason": m.reason} for m in report.merges]
    if as_json:
        click.echo(json.dumps({"entities_before": report.entities_before, "entities_after": report.entities_after,
                               "same_name_pairs_before": report.same_name_pairs_before,
                               "same_name_pairs_after": report.same_name_pairs_after,
                               "aliases_published": report.aliases_published, "dry_run": dry_run,
                               "chunks_rewritten": report.chunks_rewritten,
                               "chunks_without_extraction": report.chunks_without_extraction,
                               "merges": rows}, indent=2))
        return
    if dry_run:
        click.echo(f"would merge {len(report.merges)} entities across blocks; {report.entities_before} entities now")
    else:
        click.echo(f"{len(report.merges)} entities merged across blocks; {report.chunks_rewritten} chunks resolved "
                   f"differently than before; entities {report.entities_before} -> {report.entities_after}; "
                   f"pairs sharing a normalised name {report.same_name_pairs_before} -> "
                   f"{report.same_name_pairs_after}; {report.aliases_published} alias records written")
    if report.chunks_without_extraction:
        click.echo(f"  {report.chunks_without_extraction} chunks were stored without their extraction (an older "
                   "version) and keep their resolution; re-extract them to include them", err=True)
    for r in rows[:show]:
        click.echo(f"  {r['merged']} ({r['merged_type']}) -> {r['into']} ({r['into_type']}): {r['reason']}")
