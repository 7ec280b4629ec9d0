"""dlq and dlq replay: reading dead letters and redriving them."""

from __future__ import annotations

import json
from typing import Any

import click

from streams.cli.root import CONTEXT, Ctx, cli, fail
from streams.kafka.topics import topics_for

# confluent_kafka (the DLQ reader, the producer and the redrive job) loads inside the
# commands: every command, --help included, imports this module.


@cli.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most this many records.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object per record).")
@click.pass_context
def dlq(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show dead-letter records (reason, stage, origin) from the start of the DLQ topic."""
    if ctx.invoked_subcommand is not None:
        return
    from streams.kafka.dlq_reader import read_dead_letters

    obj: Ctx = ctx.obj
    records = read_dead_letters(obj.settings, limit=limit)
    for r in records:
        if as_json:
            click.echo(json.dumps(r.as_dict(), default=str))
        else:
            click.echo(_dead_letter_line(r))
    if not as_json:
        click.echo(f"{len(records)} record(s)", err=True)


def _dead_letter_line(r: Any) -> str:
    h = r.headers
    return (f"{h.get('stage', '?'):<8} {h.get('reason', '?'):<26} "
            f"{h.get('original.topic')}[{h.get('original.partition')}]@{h.get('original.offset')} "
            f"attempt {h.get('attempt', '1')}: {h.get('error.message', '')[:150]}")


@dlq.command("replay", context_settings=CONTEXT)
@click.option("--stage", "stages", multiple=True, help="Only dead letters of this stage (repeatable).")
@click.option("--reason", "reasons", multiple=True,
              help="Only this reason code, e.g. transcript_not_found (repeatable).")
@click.option("--video", "videos", multiple=True, help="Only this video ID (repeatable).")
@click.option("--since", default=None,
              help="Only records that failed at or after this time: ISO 8601 or a duration ago (2h).")
@click.option("--until", default=None,
              help="Only records that failed at or before this time: ISO 8601 or a duration ago.")
@click.option("--max-attempts", type=click.IntRange(1), default=3, show_default=True,
              help="Leave a message in the DLQ once it has failed this many times.")
@click.option("--dry-run", is_flag=True, help="List what would be redriven; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def dlq_replay(obj: Ctx, stages: tuple[str, ...], reasons: tuple[str, ...], videos: tuple[str, ...],
               since: str | None, until: str | None, max_attempts: int, dry_run: bool, as_json: bool) -> None:
    """Redrive dead letters to the topic they failed on, with their key and a header naming their DLQ origin."""
    from streams.jobs.redrive import InvalidTime, RedriveFilter, parse_time, plan_redrive
    from streams.kafka.clients import DeliveryError, make_producer, produce_and_confirm
    from streams.kafka.dlq_reader import iter_dead_letters

    settings = obj.settings
    try:
        wanted = RedriveFilter(frozenset(stages), frozenset(reasons), frozenset(videos),
                               since=parse_time(since) if since else None,
                               until=parse_time(until) if until else None)
    except InvalidTime as exc:
        fail(str(exc), 2)
    names = topics_for(settings)
    plan = plan_redrive(iter_dead_letters(settings), wanted, dlq_topic=names.dlq,
                        allowed_topics=[t for t in names.all() if t != names.dlq], max_attempts=max_attempts)
    sent = 0
    if plan.send and not dry_run:
        try:
            sent = produce_and_confirm(make_producer(settings), [r.message for r in plan.send])
        except DeliveryError as exc:
            fail(f"{exc}; records acknowledged before the failure were redriven, the DLQ is unchanged")
    summary = {"dry_run": dry_run, "selected": len(plan.send), "redriven": sent,
               "exhausted": len(plan.exhausted), "unroutable": len(plan.unroutable),
               "superseded": plan.superseded, "not_matching": plan.not_matching,
               "records": [{"dlq_partition": r.record.partition, "dlq_offset": r.record.offset,
                            "topic": r.message.topic, "stage": r.record.headers.get("stage"),
                            "reason": r.record.headers.get("reason"),
                            "attempt": r.record.headers.get("attempt", "1")} for r in plan.send]}
    if as_json:
        click.echo(json.dumps(summary))
        return
    verb = "would redrive" if dry_run else "redrive"
    for r in plan.send:
        click.echo(f"{verb}: dlq[{r.record.partition}]@{r.record.offset} -> {r.message.topic}  "
                   f"{_dead_letter_line(r.record)}")
    for rec in plan.exhausted:
        click.echo(f"exhausted (failed {rec.headers.get('attempt')} times, --max-attempts {max_attempts}): "
                   f"dlq[{rec.partition}]@{rec.offset}  {_dead_letter_line(rec)}")
    for rec, why in plan.unroutable:
        click.echo(f"unroutable ({why}): dlq[{rec.partition}]@{rec.offset}")
    done = f"{len(plan.send)} record(s) would be redriven" if dry_run else f"redrove {sent} record(s)"
    click.echo(f"{done}; {len(plan.exhausted)} exhausted, {len(plan.unroutable)} unroutable, "
               f"{plan.superseded} superseded by a later attempt, {plan.not_matching} not matching the filters",
               err=True)
