"""graph, graph diff and graph promote: what was built, and which graph reads go to."""

from __future__ import annotations

import json

import click

from streams.cli.root import CONTEXT, Ctx, cli, fail, open_read_store, open_store
from streams.jobs.graph_diff import diff_graphs
from streams.model.citations import citation, youtube_link

# pymongo (the store) and confluent_kafka (behind re-index names) load inside the commands:
# every command, --help included, imports this module.


@cli.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--top", type=int, default=10, show_default=True, help="How many of the most connected entities.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def graph(ctx: click.Context, top: int, as_json: bool) -> None:
    """What was built: counts and the most connected entities with evidence timestamps."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Ctx = ctx.obj
    store = open_read_store(obj.settings)
    counts = store.reads.counts()
    entities = store.reads.top_entities(top)
    if as_json:
        click.echo(json.dumps({"counts": counts, "top_entities": entities}, indent=2, default=str))
        return
    click.echo(f"videos {counts['videos']}  chunks {counts['chunks']}  entities {counts['entities']}  "
               f"relations {counts['relations']}  mentions {counts['entity_mentions']}  "
               f"relation evidence {counts['relation_evidence']}")
    click.echo("\nmost connected entities:")
    for e in entities:
        click.echo(f"  {e['name']} ({e['type']}): {e['degree']} relations, {e['mention_count']} mentions "
                   f"in {e['video_count']} video(s)")
        for m in e["evidence"]:
            click.echo(f"      {citation(m['video_id'], m['start'])}  {youtube_link(m['video_id'], m['start'])}")


def _graph_database(obj: Ctx, name: str) -> str:
    from streams.jobs.reindex import InvalidReindexName, database_for

    try:
        return database_for(obj.live_settings, name)
    except InvalidReindexName as exc:
        fail(str(exc), 2)


@graph.command("diff", context_settings=CONTEXT)
@click.argument("a")
@click.argument("b")
@click.option("--top", type=click.IntRange(0), default=5, show_default=True, help="Examples per kind of change.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def graph_diff(obj: Ctx, a: str, b: str, top: int, as_json: bool) -> None:
    """Compare two graphs (`live` or a re-index name): entities, relations, communities added, removed, changed."""
    from streams.store import GraphStore

    settings = obj.live_settings
    graphs = []
    for name in (a, b):
        store = GraphStore.from_settings(settings, app_name="graphrag-cli", database=_graph_database(obj, name))
        if not store.ping():
            fail(f"MongoDB is not reachable (database {store.db.name})")
        if store.db.name not in store.db.client.list_database_names():
            fail(f"there is no graph {name!r} (database {store.db.name}); run `reindex --name {name}` first", 2)
        graphs.append(store.reads.comparable_graph())
        store.close()
    result = diff_graphs(a, graphs[0], b, graphs[1], top=top)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    click.echo(f"graph diff {a} -> {b}")
    for kind in ("entities", "relations", "communities"):
        d = getattr(result, kind)
        click.echo(f"  {kind:<12} {d.a} -> {d.b}: +{d.added} added, -{d.removed} removed, ~{d.changed} changed, "
                   f"{d.unchanged} unchanged")
        for change in ("added", "removed", "changed"):
            for ex in d.examples[change]:
                label = (ex.get("name") or ex.get("title")
                         or f"{ex.get('source')} -{ex.get('type')}-> {ex.get('target')}")
                extra = f"  {ex['changes']}" if "changes" in ex else (
                    f"  (jaccard {ex['jaccard']}, +{ex['members_added']}/-{ex['members_removed']} members)"
                    if "jaccard" in ex else "")
                click.echo(f"      {change:<8} {label}{extra}")


@graph.command("promote", context_settings=CONTEXT)
@click.argument("name")
@click.pass_obj
def graph_promote(obj: Ctx, name: str) -> None:
    """Make graph NAME (a re-index name, or `live` to go back) the one queries and the API read."""
    from streams.store import GraphStore

    settings = obj.live_settings
    target = _graph_database(obj, name)
    live = open_store(settings)
    if target != live.db.name:
        candidate = GraphStore(live.db.client[target], live.max_ops)
        if candidate.coll("entities").estimated_document_count() == 0:
            fail(f"graph {name!r} (database {target}) has no entities; nothing to promote", 2)
    before = live.read_database() or live.db.name
    live.set_read_database(target)
    click.echo(f"queries and the API now read {name} (database {target}; was {before}); "
               "restart a running `serve` (or the API pods) to switch it")
