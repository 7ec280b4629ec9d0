"""The shared corpus run: every video of ../shared/corpus through the real pipeline, with bad
messages of many kinds interleaved, once per session (conftest.corpus_run), frozen.

What the run left is kept as a `CorpusRun`: the database's every document, the dead letters
and the aliases, read once the pipeline was quiescent, with the worker stopped. A test that
changes the graph (replay, forget, re-index, community runs) takes the `restored_graph`
fixture, which puts the database and the aliases topic back as the run left them after the
test; so every test sees the same graph whatever ran before it, and in any order."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import TranscriptChunk
from schemas.events import utcnow
from streams.kafka.codec import encode
from streams.kafka.dlq import parse_headers
from streams.kafka.topics import topics_for
from streams.model.ids import chunk_id
from streams.resolution.aliases import AliasTable, publish_aliases
from streams.resolution.merge import alias_changes
from streams.resolution.resolve import Canonical
from streams.store import GraphStore
from tests.support import (
    CORPUS,
    Deployment,
    Services,
    consume_all,
    corpus_sample,
    manifest,
    produce_raw,
    wait_quiescent,
    wait_videos_finished,
)

VALID_ID_WITHOUT_TRANSCRIPT = "aaaaaaaaaaA"
BROKEN_SRT_ID = "bbbbbbbbbbE"
EMPTY_VTT_ID = "cccccccccc4"


def _chunk(**changes: Any) -> dict[str, Any]:
    text = "Phobos and Deimos orbit Mars."
    base = TranscriptChunk(chunk_id=chunk_id("Pw0IZg7_4mo", 0, text), video_id="Pw0IZg7_4mo", index=0,
                           chunk_count=1, text=text, start=0.0, end=4.0, token_count=6,
                           requested_at=utcnow())
    data: dict[str, Any] = json.loads(encode(base))
    data.update(changes)
    return data


# Ingest topic: (value, DLQ reason the fetch stage must give).
BAD_REQUESTS: list[tuple[bytes, str]] = [
    (b"this is not json {", "invalid_json"),
    (b"\xff\xfe\xfd not utf-8", "invalid_encoding"),
    (b"", "empty_message"),
    (b"[1, 2, 3]", "schema_violation"),
    (b'{"source": "local"}', "schema_violation"),
    (b'{"video_id": "abc"}', "invalid_video_id"),
    (b"dQw4w9WgXcZ", "invalid_video_id"),
    (b'{"video_id": "dQw4w9WgXcQ", "colour": "red"}', "schema_violation"),
    (b'{"video_id": "dQw4w9WgXcQ", "schema_version": 2}', "unsupported_schema_version"),
    (json.dumps({"video_id": "dQw4w9WgXcQ", "request_id": "x" * 20_000}).encode(), "oversize"),
    (json.dumps({"video_id": VALID_ID_WITHOUT_TRANSCRIPT, "source": "local"}).encode(), "transcript_not_found"),
    (json.dumps({"video_id": BROKEN_SRT_ID, "source": "local"}).encode(), "unparseable_transcript"),
    (json.dumps({"video_id": EMPTY_VTT_ID, "source": "local"}).encode(), "unparseable_transcript"),
]

# Chunk topic: (value, DLQ reason the extract stage must give).
BAD_CHUNKS: list[tuple[bytes, str]] = [
    (b"<html>not json</html>", "invalid_json"),
    (json.dumps(_chunk(start=-5)).encode(), "schema_violation"),
    (json.dumps(_chunk(text="Tampered text.")).encode(), "chunk_id_mismatch"),
    (json.dumps(_chunk(index=3)).encode(), "schema_violation"),
    (json.dumps(_chunk(text="")).encode(), "schema_violation"),
    (json.dumps(_chunk(entities=["extra"])).encode(), "schema_violation"),
    (json.dumps(_chunk(video_id="../../etc")).encode(), "invalid_video_id"),
]



@dataclass(frozen=True)
class DeadLetter:
    headers: dict[str, str]
    value: bytes


@dataclass(frozen=True)
class CorpusRun:
    """What the corpus run left; `restore` puts the database and the aliases back to it."""

    deployment: Deployment
    store: GraphStore
    ids: tuple[str, ...]
    wall_seconds: float
    dead_letters: tuple[DeadLetter, ...]
    documents: Mapping[str, tuple[dict[str, Any], ...]]
    aliases: Mapping[str, Canonical]

    def restore(self) -> None:
        """Stop the test's workers, then every collection and alias back as the run left them."""
        self.deployment.stop_workers()
        db = self.store.db
        for name in set(db.list_collection_names()) | set(self.documents):
            db[name].delete_many({})  # not drop: the store's indexes stay
            if self.documents.get(name):
                db[name].insert_many([dict(d) for d in self.documents[name]])
        publish_aliases(self.deployment.settings, alias_changes(self.aliases, _aliases(self.deployment), {}))


def _aliases(d: Deployment) -> dict[str, Canonical]:
    table = AliasTable(d.settings).start()
    try:
        return table.snapshot()
    finally:
        table.stop()


def _freeze(d: Deployment, store: GraphStore, ids: list[str], wall: float) -> CorpusRun:
    db = store.db
    dlq = consume_all(d.settings, topics_for(d.settings).dlq)
    return CorpusRun(
        deployment=d, store=store, ids=tuple(ids), wall_seconds=wall,
        dead_letters=tuple(DeadLetter(parse_headers(m.headers()), m.value() or b"") for m in dlq),
        documents={name: tuple(db[name].find()) for name in db.list_collection_names()},
        aliases=_aliases(d))


@contextlib.contextmanager
def corpus_run(services: Services, tmp: Path) -> Iterator[CorpusRun]:
    """Every corpus video through the whole pipeline (all apps), with bad messages interleaved."""
    bad_dir = tmp / "bad-transcripts"
    bad_dir.mkdir()
    (bad_dir / f"{BROKEN_SRT_ID}.srt").write_text("1\n00:00:01,000 --> garbage\nhello\n\n2\nnonsense\n")
    (bad_dir / f"{EMPTY_VTT_ID}.vtt").write_text("WEBVTT\n\n")
    # The communities timer stays out of the way: tests run community passes explicitly.
    d = Deployment(services, tmp, {"graphrag": {"transcripts": {"local_dirs": [str(CORPUS), str(bad_dir)],
                                                                "source": "local"},
                                                "extraction": {"offline_extractor": "spacy"},
                                                "communities": {"interval_seconds": 86400}}})
    ids = [e["video_id"] for e in manifest()]
    try:
        store, wall = run_with_bad_messages(d, ids, "all corpus videos done")
        yield _freeze(d, store, ids, wall)
    finally:
        d.cleanup()


def run_with_bad_messages(d: Deployment, ids: list[str], what: str) -> tuple[GraphStore, float]:
    """``ids`` through deployment ``d``'s pipeline (all apps): half submitted by argument, the
    bad requests and chunks, the rest from a file; until every video is finished and the
    pipeline quiescent, its workers stopped after. Returns the store and the seconds from
    the worker's start to every video finished."""
    d.cli("topics", "create")
    worker = d.start_worker("all")
    started = time.monotonic()
    topics = d.settings.kafka.topic_prefix
    half = len(ids) // 2
    d.cli("submit", *ids[:half])
    produce_raw(d.settings, f"{topics}videos.requested", [(None, v) for v, _ in BAD_REQUESTS])
    produce_raw(d.settings, f"{topics}transcripts.chunks", [(None, v) for v, _ in BAD_CHUNKS])
    d.cli("submit", "--file", "-", input="\n".join(ids[half:]) + "\n")
    store = GraphStore.from_settings(d.settings)
    wait_videos_finished(store, ids, worker, timeout=900, what=what)
    wall = time.monotonic() - started
    wait_quiescent(d.settings, workers=[worker])
    d.stop_workers()  # a test that needs one starts its own
    return store, wall


#: The settings of a deployment made for `sample_run`: local transcripts, no community timer.
SAMPLE_SETTINGS: dict[str, Any] = {"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                                                "communities": {"interval_seconds": 86400}}}


def sample_run(d: Deployment) -> GraphStore:
    """The corpus sample (``corpus_sample``) through deployment ``d``'s pipeline with
    the bad messages (`run_with_bad_messages`). For a test that changes what it reads (a
    replay, a re-index) and would otherwise pay for changing and restoring the session's
    whole corpus run."""
    store, _ = run_with_bad_messages(d, [e["video_id"] for e in corpus_sample()], "the sample's videos done")
    return store
