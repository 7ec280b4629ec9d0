"""topics create and list: the Kafka topics the apps need."""

from __future__ import annotations

import click

from streams.cli.root import CONTEXT, Ctx, cli, fail
from streams.kafka.topics import topic_specs

# confluent_kafka (the admin client) loads inside the commands: every command, --help
# included, imports this module.


@cli.group(context_settings=CONTEXT)
def topics() -> None:
    """Manage the pipeline's Kafka topics."""


@topics.command("create", context_settings=CONTEXT)
@click.pass_obj
def topics_create(obj: Ctx) -> None:
    """Create every topic the apps use (pipeline, internal, changelogs, leader). Idempotent.

    Exits 1 when an existing topic has another partition count than the configuration.
    """
    from streams.kafka.clients import KafkaConnectionError, ensure_topics

    try:
        results = ensure_topics(obj.settings)
    except KafkaConnectionError as exc:
        fail(str(exc))
    except Exception as exc:
        fail(f"could not create topics on {obj.settings.kafka.bootstrap_servers}: {exc}")
    for r in results:
        note = f"  MISMATCH: the configuration says {r.configured}" if r.mismatched else ""
        click.echo(f"{'created' if r.created else 'exists '}  {r.name}  ({r.partitions} partitions){note}")
    wrong = [r.name for r in results if r.mismatched]
    if wrong:
        fail(f"{len(wrong)} topic(s) have another partition count than configured: {', '.join(wrong)}; "
             "recreate them or set kafka.partitions to match")


@topics.command("list", context_settings=CONTEXT)
@click.pass_obj
def topics_list(obj: Ctx) -> None:
    """Show every topic the apps use and its partition count (configured in brackets)."""
    from streams.kafka.clients import make_admin

    md = make_admin(obj.settings).list_topics(timeout=10).topics
    for spec in topic_specs(obj.settings):
        t = md.get(spec.name)
        click.echo(f"{spec.name}  {len(t.partitions) if t else 'missing'}  [{spec.partitions}]")
