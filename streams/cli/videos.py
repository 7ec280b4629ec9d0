"""submit, status, wait and forget: the commands that take video IDs (hence ID_ARGS)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from schemas import is_video_id
from streams.cli.root import ID_ARGS, Ctx, cli, fail, open_store
from streams.kafka.topics import topics_for
from streams.model.views import iso, video_row

# confluent_kafka (the producer) and requests (the transcript sources) load inside the
# commands: every command, --help included, imports this module.


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


@cli.command(context_settings=ID_ARGS)
@click.argument("video_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: Ctx, video_ids: tuple[str, ...], as_json: bool) -> None:
    """Per-video progress through the stages, and totals for the whole graph."""
    _reject_invalid(video_ids)
    store = open_store(obj.settings)
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
    _reject_invalid(ids)
    store = open_store(obj.settings)
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


@cli.command(context_settings=ID_ARGS)
@click.argument("video_id")
@click.pass_obj
def forget(obj: Ctx, video_id: str) -> None:
    """Remove a video from the graph (chunks, evidence, what only it supported). Idempotent."""
    if not is_video_id(video_id):
        fail(f"{video_id!r} is not a valid YouTube video ID", 2)
    store = open_store(obj.settings)
    removed = store.graph.forget_video(video_id)
    click.echo(f"forgot {video_id}: " + ", ".join(f"{n} {k}" for k, n in removed.items()))


def _reject_invalid(video_ids: Sequence[str]) -> None:
    """Exit 2 on an ID no video can have: waiting for it would never end (a mistyped option
    after ``--`` is taken for an ID)."""
    bad = [v for v in video_ids if not is_video_id(v)]
    if bad:
        fail(f"{len(bad)} invalid video ID(s): {', '.join(repr(b) for b in bad[:10])}", 2)
