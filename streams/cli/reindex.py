"""reindex: a second graph built from the live chunk topic, beside the live pipeline."""

from __future__ import annotations

import json
import signal
import subprocess  # starts this program's own worker (argv built here, no shell)  # nosec B404
import sys
import time

import click

from streams.cli.communities import community_run
from streams.cli.root import CONTEXT, Ctx, cli, fail, open_store, setup_logging
from streams.kafka.topics import Stage, group_id, topics_for
from streams.settings import config_path

# confluent_kafka (the admin client, lag and the re-index job) loads inside the command:
# every command, --help included, imports this module.


@cli.command(context_settings=CONTEXT)
@click.option("--name", required=True, help="The re-index's name: its topics, groups and database derive from it.")
@click.option("--extractor", type=click.Choice(["llm", "offline"]), default=None,
              help="The extractor to use (default: the configuration's).")
@click.option("--prompt-version", default=None, help="A new label of the extraction prompt (new LLM cache keys).")
@click.option("--model", default=None, help="The LLM model (openai.model).")
@click.option("--until-caught-up", is_flag=True,
              help="Stop once every chunk the live topic held at the start is indexed (then a community run).")
@click.option("--no-communities", is_flag=True, help="With --until-caught-up: skip the final community run.")
@click.option("--no-merge", is_flag=True, help="With --until-caught-up: a community run without the merge pass.")
@click.option("--timeout", type=float, default=None, help="With --until-caught-up: give up after this many seconds.")
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds between progress lines.")
@click.pass_obj
def reindex(obj: Ctx, name: str, extractor: str | None, prompt_version: str | None, model: str | None,
            until_caught_up: bool, no_communities: bool, no_merge: bool, timeout: float | None,
            interval: float) -> None:
    """Build the graph again from the live chunk topic into a second database, beside the live pipeline.

    Runs extract, route, resolve, assemble and sink under the re-index's own consumer
    groups from offset 0 of the live chunk topic (nothing is fetched again), writing to
    database <database>_NAME. Inspect it with `--reindex NAME lag|status|graph`, compare it
    with `graph diff live NAME`, and switch reads to it with `graph promote NAME`.
    """
    from streams.jobs.reindex import STAGES, progress
    from streams.kafka.clients import ensure_topics, make_admin
    from streams.monitoring.lag import measure_lag, stage_groups

    extra = [f"graphrag.extraction.extractor={extractor}"] if extractor else []
    extra += [f"graphrag.extraction.prompt_version={prompt_version}"] if prompt_version else []
    extra += [f"openai.model={model}"] if model else []
    child = Ctx(obj.config, obj.env, (*obj.overrides, *extra), name)
    settings = child.settings
    setup_logging(settings)
    chunks = topics_for(settings).chunks
    try:
        ensure_topics(settings)
        admin = make_admin(settings)
        md = admin.list_topics(chunks, timeout=10).topics.get(chunks)
    except Exception as exc:
        fail(f"could not reach Kafka at {settings.kafka.bootstrap_servers}: {exc}", 2)
    if md is None or md.error is not None:
        fail(f"the live chunk topic {chunks} does not exist; run the live pipeline first", 2)
    groups = stage_groups(settings, STAGES)
    # What "caught up" means: the chunk topic's end offsets now.
    target = {r.partition: r.log_end for r in measure_lag(settings, {group_id(settings, Stage.EXTRACT): (chunks,)},
                                                          admin=admin)}
    cmd = [sys.executable, "-m", "streams.cli", "--config", str(config_path(obj.config, obj.env).resolve()),
           *child.root_args(), "worker", "--stages", ",".join(s.value for s in STAGES), "--metrics-port", "0"]
    click.echo(f"re-index {name}: stages {', '.join(s.value for s in STAGES)} from offset 0 of {chunks} "
               f"({sum(target.values())} messages there now) into database {settings.mongodb.database}, "
               f"topics {settings.kafka.topic_prefix}*", err=True)
    proc = subprocess.Popen(cmd)  # argv of our own CLI, no shell  # nosec B603
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    calm = 0
    last_ends: tuple[int, ...] = ()
    code = 0
    try:
        while not stopping:
            time.sleep(interval)
            if proc.poll() is not None:
                fail(f"the re-index worker exited with code {proc.returncode}", proc.returncode or 1)
            try:
                rows = measure_lag(settings, groups, admin=admin)
            except Exception as exc:  # a broker hiccup: report and keep going
                click.echo(f"re-index {name}: could not measure lag ({exc})", err=True)
                continue
            p = progress(rows, settings, target)
            lag = ", ".join(f"{k} {v}" for k, v in p.lag_by_stage.items())
            click.echo(f"re-index {name}: {p.chunks_done}/{p.chunks_target} chunks extracted; lag {lag}", err=True)
            # Caught up twice in a row with no topic growing in between: nothing in flight.
            ends = tuple(r.log_end for r in rows)
            calm = calm + 1 if p.caught_up and (calm == 0 or ends == last_ends) else int(p.caught_up)
            last_ends = ends
            if until_caught_up and calm >= 2:
                break
            if until_caught_up and timeout is not None and time.monotonic() - started > timeout:
                click.echo(f"re-index {name}: not caught up after {timeout:.0f}s", err=True)
                code = 1
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    if code or not until_caught_up:
        sys.exit(code)
    if not no_communities:
        report = community_run(settings, merge=not no_merge)
        click.echo(f"re-index {name}: {report.total} communities, {report.merged_entities} entities merged", err=True)
    counts = open_store(settings).reads.counts()
    click.echo(json.dumps({"name": name, "database": settings.mongodb.database, "chunks": sum(target.values()),
                           "counts": counts}))
