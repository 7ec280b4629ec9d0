"""The ``graphrag-streams`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from schemas import is_video_id
from streams.kafka.topics import topics_for
from streams.model.citations import citation, youtube_link
from streams.model.views import iso, video_row
from streams.settings import ConfigError, Settings, default_config_dir, load_settings, redacted

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# Video IDs may start with "-" (-92PkAXJIqQ, -6uLaTEbhbs): commands that take IDs define no
# short options at all (help is --help only), so click passes such words through unchanged
# instead of reading them as clusters of short flags.
ID_ARGS = {"help_option_names": ["--help"], "max_content_width": 100, "ignore_unknown_options": True}


class Ctx:
    def __init__(self, config: str | None, env: str | None, overrides: Sequence[str] = (),
                 reindex: str | None = None) -> None:
        self.config = config
        self.env = env
        self.overrides = tuple(overrides)
        self.reindex = reindex
        self._settings: Settings | None = None

    @property
    def live_settings(self) -> Settings:
        """The configuration with --set applied, before --reindex turns it into a re-index's."""
        try:
            return load_settings(self.config, environment=self.env, overrides=self.overrides)
        except ConfigError as exc:
            raise click.ClickException(f"configuration error: {exc}") from None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = self.live_settings
            if self.reindex is not None:
                from streams.jobs.reindex import InvalidReindexName, reindex_settings

                try:
                    settings = reindex_settings(settings, self.reindex)
                except InvalidReindexName as exc:
                    raise click.ClickException(str(exc)) from None
            self._settings = settings
        return self._settings

    def root_args(self) -> list[str]:
        """The root options that make a child process see the same settings."""
        args = [arg for item in self.overrides for arg in ("--set", item)]
        return args + (["--reindex", self.reindex] if self.reindex else [])


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings=CONTEXT)
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar="GRAPHRAG_CONFIG",
              help="Configuration file (default: config/$GRAPHRAG_ENV.yaml).")
@click.option("--env", "env", type=click.Choice(["development", "staging", "production"]),
              help="Environment whose config/<env>.yaml to load (default: $GRAPHRAG_ENV or development).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set graphrag.extraction.extractor=offline (repeatable).")
@click.option("--reindex", "reindex", default=None, metavar="NAME",
              help="Act on re-index NAME (its topics, groups and database), e.g. --reindex v2 lag.")
@click.version_option(package_name="graphrag-streams", prog_name="graphrag-streams",
                      help="Show the installed version and exit.")
@click.pass_context
def cli(ctx: click.Context, config: str | None, env: str | None, overrides: tuple[str, ...],
        reindex: str | None) -> None:
    """graphrag-streams: index YouTube transcripts into a knowledge graph through Kafka."""
    ctx.obj = Ctx(config, env, overrides, reindex)


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=getattr(logging, settings.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("aiokafka", "faust", "mode", "pymongo", "httpx", "openai", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, settings.log_level)))


# --------------------------------------------------------------------------- submit


def _ids_from_file(path: str) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines() if path != "-" else sys.stdin.read().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


@cli.command(context_settings=ID_ARGS)
@click.argument("video_ids", nargs=-1)
@click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="Read video IDs from a file, one per line ('-' for stdin; '#' starts a comment).")
@click.option("--transcripts", "transcript_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False),
              help="Submit every video with a transcript file (<video_id>.srt|.vtt|.json) in this directory.")
@click.option("--source", type=click.Choice(["auto", "youtube", "local"]), default="auto", show_default=True,
              help="Where the fetch stage should take the transcript from.")
@click.option("--language", "languages", multiple=True, default=("en",), show_default=True,
              help="Preferred transcript languages, in order.")
@click.pass_obj
def submit(obj: Ctx, video_ids: tuple[str, ...], files: tuple[str, ...], transcript_dirs: tuple[str, ...],
           source: str, languages: tuple[str, ...]) -> None:
    """Put video IDs on the ingest topic and wait until the broker confirmed every one.

    Exits non-zero if an ID is invalid (nothing is sent then) or a message was not delivered.
    """
    from streams.kafka.clients import DeliveryError, make_producer, produce_and_confirm
    from streams.kafka.submission import InvalidSubmission, request_messages
    from streams.transcripts.sources import LocalTranscriptSource

    settings = obj.settings
    ids = list(video_ids)
    for f in files:
        ids += _ids_from_file(f)
    for d in transcript_dirs:
        found = LocalTranscriptSource([d], settings.graphrag.transcripts.max_chars).video_ids()
        if not found:
            fail(f"no transcript files named <video_id>.srt|.vtt|.json in {d}")
        ids += found
        configured = {Path(p).resolve() for p in settings.graphrag.transcripts.local_dirs}
        if Path(d).resolve() not in configured:
            click.echo(f"warning: {d} is not among graphrag.transcripts.local_dirs of this configuration; "
                       "the fetch stage will look for these videos elsewhere", err=True)
    if not ids:
        fail("no video IDs given (pass IDs, --file or --transcripts)", 2)
    try:  # the whole batch is valid or nothing is sent
        messages = request_messages(settings, ids, source=source, languages=languages)
    except InvalidSubmission as exc:
        fail(str(exc), 2)
    topic = topics_for(settings).requested
    try:
        n = produce_and_confirm(make_producer(settings), messages)
    except DeliveryError as exc:
        fail(str(exc))
    except Exception as exc:  # broker unreachable and the like
        fail(f"could not produce to {topic}: {exc}")
    click.echo(f"submitted {n} video(s) to {topic}")


# --------------------------------------------------------------------------- worker


@cli.command(context_settings=CONTEXT)
@click.option("--stages", default="all", show_default=True,
              help="'all' or a comma-separated list of: fetch, chunk, extract, route, resolve, assemble, sink, "
                   "communities.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Port of /metrics, /livez, /readyz (default: monitoring.metrics_port; with several "
                   "stages, stage i gets port+i; 0 turns the endpoint off).")
@click.pass_obj
def worker(obj: Ctx, stages: str, metrics_port: int | None) -> None:
    """Run pipeline stages (one Faust app and consumer group per stage) until interrupted.

    One stage runs in this process; several (or 'all', for development) run one child
    process each under a supervisor that restarts a child that dies (with backoff). The
    topics must exist (`topics create`); a missing one stops start-up with exit 2.
    """
    from agents.worker import parse_stages, run_stage, supervise
    from streams.settings import config_path

    settings = obj.settings
    if metrics_port is not None:
        settings = settings.model_copy(
            update={"monitoring": settings.monitoring.model_copy(update={"metrics_port": metrics_port})})
    setup_logging(settings)
    try:
        chosen = parse_stages(stages)
    except ValueError as exc:
        fail(str(exc), 2)
    if len(chosen) == 1:
        sys.exit(run_stage(chosen[0], settings))
    from streams.kafka.clients import TopicsNotReady, check_topics

    try:  # one clear message before any child starts (each child checks again)
        check_topics(settings, *chosen)
    except TopicsNotReady as exc:
        fail(str(exc), 2)
    except Exception as exc:
        fail(f"could not reach Kafka at {settings.kafka.bootstrap_servers}: {exc}", 2)
    path = config_path(obj.config, obj.env)
    click.echo(f"starting stages: {', '.join(s.value for s in chosen)} ({settings.environment}, "
               f"topics {settings.kafka.topic_prefix}*)", err=True)
    sys.exit(supervise(chosen, path.resolve(), metrics_port=settings.monitoring.metrics_port,
                       root_args=obj.root_args()))


# --------------------------------------------------------------------------- topics


@cli.group(context_settings=CONTEXT)
def topics() -> None:
    """Manage the pipeline's Kafka topics."""


@topics.command("create", context_settings=CONTEXT)
@click.pass_obj
def topics_create(obj: Ctx) -> None:
    """Create every topic the apps use (pipeline, internal, changelogs, leader). Idempotent.

    Exits 1 when an existing topic has another partition count than the configuration.
    """
    from streams.kafka.clients import ensure_topics

    try:
        results = ensure_topics(obj.settings)
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
    from streams.kafka.topics import topic_specs

    md = make_admin(obj.settings).list_topics(timeout=10).topics
    for spec in topic_specs(obj.settings):
        t = md.get(spec.name)
        click.echo(f"{spec.name}  {len(t.partitions) if t else 'missing'}  [{spec.partitions}]")


# --------------------------------------------------------------------------- status


def _store(settings: Settings) -> Any:
    from streams.store import GraphStore

    store = GraphStore.from_settings(settings, app_name="graphrag-cli")
    if not store.ping():
        fail(f"MongoDB is not reachable (database {settings.mongodb.database})")
    return store


@cli.command(context_settings=ID_ARGS)
@click.argument("video_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: Ctx, video_ids: tuple[str, ...], as_json: bool) -> None:
    """Per-video progress through the stages, and totals for the whole graph."""
    store = _store(obj.settings)
    docs = store.videos.find(list(video_ids) or None)
    rows = [video_row(d) for d in docs]
    unseen = [v for v in video_ids if v not in {r["video_id"] for r in rows}]
    totals: dict[str, Any] = {"videos_by_status": dict(Counter(r["status"] for r in rows)), **store.reads.counts()}
    last = store.communities.last_run()
    totals["last_community_run"] = {k: iso(v) for k, v in last.items() if k != "_id"} if last else None
    if as_json:
        click.echo(json.dumps({"videos": rows, "unseen": unseen, "totals": totals}, indent=2, default=str))
        return
    if rows:
        click.echo(f"{'video':<12} {'status':<11} {'chunks':>9}  stages")
        for r in rows:
            chunks = f"{r['chunks_stored']}/{r['chunk_count'] if r['chunk_count'] is not None else '?'}"
            stages = " ".join(f"{k}={v}" for k, v in sorted(r["stages"].items()))
            click.echo(f"{r['video_id']:<12} {r['status']:<11} {chunks:>9}  {stages}")
            if r["error"]:
                click.echo(f"{'':<12} error: {r['error']}")
    for v in unseen:
        click.echo(f"{v:<12} {'unseen':<11} (no stage has reported on it yet)")
    by = ", ".join(f"{n} {s}" for s, n in sorted(totals["videos_by_status"].items())) or "none"
    click.echo(f"videos: {by}")
    run = totals.get("last_community_run")
    if run:
        click.echo(f"last community run: {run['started_at']} ({run['duration_seconds']}s): {run['total']} "
                   f"communities, {run['new']} new, {run['changed']} changed, {run['unchanged']} unchanged, "
                   f"{run['removed']} removed, {run['summarized']} summarised")
    else:
        click.echo("last community run: none yet")
    click.echo("graph: " + ", ".join(f"{totals[c]} {c}" for c in
                                     ("chunks", "entities", "relations", "entity_mentions", "relation_evidence")))


@cli.command(context_settings=ID_ARGS)
@click.argument("video_ids", nargs=-1)
@click.option("--transcripts", "transcript_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Wait for every video with a transcript file in this directory.")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="Seconds to wait at most.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between progress lines.")
@click.pass_obj
def wait(obj: Ctx, video_ids: tuple[str, ...], transcript_dirs: tuple[str, ...], timeout: float,
         interval: float) -> None:
    """Wait until every given video is done or failed, printing progress. Exit 1 on timeout."""
    from streams.transcripts.sources import LocalTranscriptSource

    ids = list(video_ids)
    for d in transcript_dirs:
        ids += LocalTranscriptSource([d], obj.settings.graphrag.transcripts.max_chars).video_ids()
    ids = list(dict.fromkeys(ids))
    if not ids:
        fail("no video IDs to wait for", 2)
    store = _store(obj.settings)
    started = time.monotonic()
    while True:
        docs = {d["_id"]: d for d in store.videos.find(ids)}
        states = Counter(docs[v]["status"] if v in docs else "queued" for v in ids)
        stored = sum(d.get("chunks_stored", 0) for d in docs.values())
        total = sum(d.get("chunk_count") or 0 for d in docs.values())
        finished = states["done"] + states["failed"]
        elapsed = time.monotonic() - started
        click.echo(f"[{elapsed:5.0f}s] {finished}/{len(ids)} videos finished "
                   f"({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); "
                   f"chunks stored {stored}/{total or '?'}", err=True)
        if finished == len(ids):
            break
        if elapsed > timeout:
            fail(f"timed out after {timeout:.0f}s with {len(ids) - finished} video(s) unfinished")
        time.sleep(interval)
    if states["failed"]:
        click.echo(f"{states['failed']} video(s) failed; see `graphrag-streams status` and the DLQ", err=True)


# --------------------------------------------------------------------------- graph


@cli.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--top", type=int, default=10, show_default=True, help="How many of the most connected entities.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def graph(ctx: click.Context, top: int, as_json: bool) -> None:
    """What was built: counts and the most connected entities with evidence timestamps."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Ctx = ctx.obj
    store = _read_store(obj.settings)
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


def _run_communities(settings: Settings, *, merge: bool) -> Any:
    import asyncio

    from streams.jobs.community_run import make_summarizer, run_communities

    store = _store(settings)

    async def go() -> Any:
        summarizer, closer = make_summarizer(settings)
        try:
            return await run_communities(settings, store, summarizer, merge=merge)
        finally:
            if closer is not None:
                await closer.aclose()

    return asyncio.run(go())


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
    from streams.jobs.graph_diff import diff_graphs
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
    live = _store(settings)
    if target != live.db.name:
        candidate = GraphStore(live.db.client[target], live.max_ops)
        if candidate.coll("entities").estimated_document_count() == 0:
            fail(f"graph {name!r} (database {target}) has no entities; nothing to promote", 2)
    before = live.read_database() or live.db.name
    live.set_read_database(target)
    click.echo(f"queries and the API now read {name} (database {target}; was {before}); "
               "restart a running `serve` (or the API pods) to switch it")


def _read_store(settings: Settings) -> Any:
    """The graph reads go to: the promoted one, else the configured database."""
    from streams.store import GraphStore

    store = GraphStore.for_reads(settings, app_name="graphrag-cli")
    if not store.ping():
        fail(f"MongoDB is not reachable (database {store.db.name})")
    return store


# --------------------------------------------------------------------------- reindex


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
    import signal
    import subprocess

    from streams.jobs.reindex import STAGES, progress
    from streams.kafka.clients import ensure_topics, make_admin
    from streams.kafka.topics import Stage, group_id
    from streams.monitoring.lag import measure_lag, stage_groups
    from streams.settings import config_path

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
    proc = subprocess.Popen(cmd)
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
        report = _run_communities(settings, merge=not no_merge)
        click.echo(f"re-index {name}: {report.total} communities, {report.merged_entities} entities merged", err=True)
    counts = _store(settings).reads.counts()
    click.echo(json.dumps({"name": name, "database": settings.mongodb.database, "chunks": sum(target.values()),
                           "counts": counts}))


# --------------------------------------------------------------------------- serve


@cli.command(context_settings=CONTEXT)
@click.option("--host", default=None, help="Address to listen on (default: api.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: api.port).")
@click.pass_obj
def serve(obj: Ctx, host: str | None, port: int | None) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) and the graph explorer page at /.

    Reads the graph from MongoDB; POST /api/videos produces onto the ingest topic and needs
    the bearer token api.token. Runs until interrupted.
    """
    import uvicorn

    from streams.api import create_app

    settings = obj.settings
    setup_logging(settings)
    host = host or settings.api.host
    port = port or settings.api.port
    click.echo(f"graph explorer: http://{host}:{port}/  API docs: http://{host}:{port}/docs", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                access_log=settings.log_level == "DEBUG")


# --------------------------------------------------------------------------- dlq


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


# --------------------------------------------------------------------------- communities and answers


@cli.group(context_settings=CONTEXT)
def communities() -> None:
    """Community detection and summaries."""


@communities.command("run", context_settings=CONTEXT)
@click.option("--no-merge", is_flag=True, help="Skip the entity merge pass that normally runs first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def communities_run(obj: Ctx, no_merge: bool, as_json: bool) -> None:
    """Run the merge pass, detect communities and summarise the new and changed ones now."""
    report = _run_communities(obj.settings, merge=not no_merge)
    if as_json:
        click.echo(json.dumps(report.as_doc(), indent=2, default=str))
        return
    levels = ", ".join(f"level {k}: {v}" for k, v in sorted(report.levels.items())) or "none"
    click.echo(f"{report.total} communities ({levels}): {report.new} new, {report.changed} changed, "
               f"{report.unchanged} unchanged, {report.removed} removed; {report.summarized} summarised "
               f"({report.summarizer}) in {report.duration_seconds:.1f}s; {report.merged_entities} entities merged")


@communities.command("list", context_settings=CONTEXT)
@click.option("--level", type=int, default=None, help="Only this level (0 is the coarsest).")
@click.option("--top", type=int, default=10, show_default=True, help="How many, largest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def communities_list(obj: Ctx, level: int | None, top: int, as_json: bool) -> None:
    """The largest communities with their reports."""
    store = _read_store(obj.settings)
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


@cli.command(context_settings=CONTEXT)
@click.argument("question")
@click.option("--mode", type=click.Choice(["local", "global"]), default="local", show_default=True,
              help="local: the entities the question names and their neighbourhood; "
                   "global: community summaries, combined.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output with every citation.")
@click.pass_obj
def query(obj: Ctx, question: str, mode: str, as_json: bool) -> None:
    """Answer a question from the graph; every claim cites video_id@mm:ss with a YouTube link."""
    import asyncio

    from streams.query.answers import answer_global, answer_local, answer_with_llm

    settings = obj.settings
    store = _read_store(settings)
    answer = answer_local(store, question) if mode == "local" else answer_global(store, question)
    if settings.llm_enabled and answer.citations:
        from streams.llm.client import LLMClient

        async def write() -> Any:
            client = LLMClient(settings)
            try:
                return await answer_with_llm(answer, client)
            finally:
                await client.aclose()

        answer = asyncio.run(write())
    if as_json:
        click.echo(json.dumps(answer.as_dict(), indent=2, default=str))
    else:
        click.echo(answer.text)


@cli.command(context_settings=ID_ARGS)
@click.argument("video_id")
@click.pass_obj
def forget(obj: Ctx, video_id: str) -> None:
    """Remove a video from the graph (chunks, evidence, what only it supported). Idempotent."""
    if not is_video_id(video_id):
        fail(f"{video_id!r} is not a valid YouTube video ID", 2)
    store = _store(obj.settings)
    removed = store.graph.forget_video(video_id)
    click.echo(f"forgot {video_id}: " + ", ".join(f"{n} {k}" for k, n in removed.items()))


# --------------------------------------------------------------------------- resolve


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

    store = _store(obj.settings)
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


# --------------------------------------------------------------------------- lag


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--samples", type=int, default=1, show_default=True,
              help="Measure this many times (one interval apart) so lag seconds can be estimated.")
@click.pass_obj
def lag(obj: Ctx, as_json: bool, samples: int) -> None:
    """Consumer lag per stage, topic and partition, and the replicas KEDA would run."""
    from streams.monitoring.lag import LagMonitor

    settings = obj.settings
    monitor = LagMonitor(settings)
    try:
        report = monitor.measure()
        for _ in range(max(0, samples - 1)):
            time.sleep(settings.monitoring.lag_interval_seconds)
            report = monitor.measure()
    except Exception as exc:
        fail(f"could not measure lag on {settings.kafka.bootstrap_servers}: {exc}")
    if as_json:
        click.echo(json.dumps({
            "partitions": [{"group": r.group, "topic": r.topic, "partition": r.partition, "committed": r.committed,
                            "log_end": r.log_end, "lag": r.lag, "lag_seconds": round(sec, 1)}
                           for r, sec in report.partitions],
            "stages": [{"stage": s.stage.value, "group": s.group, "topic": s.topic, "partitions": s.partitions,
                        "lag": s.lag, "lag_seconds": round(s.lag_seconds, 1), "desired_replicas": s.desired_replicas}
                       for s in report.stages],
        }, indent=2))
        return
    click.echo(f"{'stage':<8} {'group':<24} {'topic':<36} {'lag':>7} {'lag s':>7} {'replicas':>8}")
    for s in report.stages:
        click.echo(f"{s.stage.value:<8} {s.group:<24} {s.topic:<36} {s.lag:>7} {s.lag_seconds:>7.0f} "
                   f"{s.desired_replicas:>8}")
    click.echo(f"\n{'group':<24} {'topic':<36} {'part':>4} {'committed':>10} {'log end':>10} {'lag':>7}")
    for r, _ in report.partitions:
        committed = "-" if r.committed is None else str(r.committed)
        click.echo(f"{r.group:<24} {r.topic:<36} {r.partition:>4} {committed:>10} {r.log_end:>10} {r.lag:>7}")


@cli.command("lag-exporter", context_settings=CONTEXT)
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port of /metrics, /livez, /readyz (default: monitoring.lag_exporter_port).")
@click.pass_obj
def lag_exporter(obj: Ctx, port: int | None) -> None:
    """Export consumer lag, lag seconds and desired replicas to Prometheus until interrupted."""
    from streams.monitoring.exporter import run_exporter

    settings = obj.settings
    if port is not None:
        settings = settings.model_copy(
            update={"monitoring": settings.monitoring.model_copy(update={"lag_exporter_port": port})})
    setup_logging(settings)
    click.echo(f"lag exporter on {settings.monitoring.metrics_host}:{settings.monitoring.lag_exporter_port} "
               f"every {settings.monitoring.lag_interval_seconds:g}s", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        run_exporter(settings)


# --------------------------------------------------------------------------- config


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Inspect the configuration."""


_ENV_HERE = click.option("--env", "env", type=click.Choice(["development", "staging", "production"]), default=None,
                         help="This environment's file instead of the one the root options chose.")


def _with_env(obj: Ctx, env: str | None) -> Ctx:
    """`config show --env E` reads E's file even when $GRAPHRAG_CONFIG names another."""
    return obj if env is None else Ctx(str(default_config_dir() / f"{env}.yaml"), env, obj.overrides, obj.reindex)


@config.command("show", context_settings=CONTEXT)
@_ENV_HERE
@click.pass_obj
def config_show(obj: Ctx, env: str | None) -> None:
    """Print the effective configuration (after interpolation; secrets masked)."""
    click.echo(json.dumps(redacted(_with_env(obj, env).settings), indent=2))


@config.command("check", context_settings=CONTEXT)
@_ENV_HERE
@click.pass_obj
def config_check(obj: Ctx, env: str | None) -> None:
    """Validate the configuration and exit (non-zero with the problem on error)."""
    s = _with_env(obj, env).settings
    click.echo(f"ok: {s.environment}, extraction={'llm' if s.llm_enabled else 'offline'}, "
               f"kafka={s.kafka.bootstrap_servers}, topics={s.kafka.topic_prefix}*")


def main(argv: Iterable[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="graphrag-streams")



__all__ = ["cli", "main"]
