"""GraphStore on the real FerretDB: idempotent writes, evidence-derived counts, re-extraction,
large batches and video completion. Each test uses its own database, dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from schemas import (
    ChunkExtraction,
    ExtractedEntity,
    ExtractedRelation,
    GraphUpdate,
    TranscriptChunk,
    TranscriptFetched,
    TranscriptSegment,
    VideoStatusEvent,
)
from schemas.events import utcnow
from streams.extraction.offline import PROMPT_VERSION, extract_offline
from streams.jobs.merge_pass import apply_merge, plan_merge
from streams.model.ids import chunk_id, entity_id
from streams.resolution.resolve import mention_requests, resolve_extraction, resolve_mention
from streams.settings import ResolutionSettings
from streams.store import GraphStore, video_state
from streams.transcripts.chunking import chunk_transcript
from streams.transcripts.parse import parse_transcript
from tests.support import CORPUS, Services

pytestmark = pytest.mark.integration

MARS = "Pw0IZg7_4mo"
POSNER = "-HxP28QcnIQ"
T0 = utcnow()


@contextlib.contextmanager
def fresh_store(services: Services, *listeners: monitoring.CommandListener) -> Iterator[GraphStore]:
    """A store on a database of its own, indexed, dropped afterwards; ``listeners`` see its commands."""
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_uri, tz_aware=True,
                                                      serverSelectionTimeoutMS=5000, event_listeners=list(listeners))
    name = f"t_store_{uuid.uuid4().hex[:10]}"
    s = GraphStore(client[name])  # default max_ops_per_command (25), as in development.yaml
    try:
        assert s.ping()
        s.ensure_indexes()
        yield s
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def store(services: Services) -> Iterator[GraphStore]:
    with fresh_store(services) as s:
        yield s


# --------------------------------------------------------------------------- building updates


def _chunk(video: str, index: int, text: str, count: int = 1, start: float = 0.0) -> TranscriptChunk:
    return TranscriptChunk(chunk_id=chunk_id(video, index, text), video_id=video, index=index, chunk_count=count,
                           text=text, start=start, end=start + 10.0, token_count=max(1, len(text.split())),
                           timeline=[(0, start)], requested_at=T0)


def _update(chunk: TranscriptChunk, entities: Sequence[tuple[str, str] | tuple[str, str, str]],
            relations: Sequence[tuple[str, str, str, int]] = (), prompt: str = "v1",
            error: str | None = None) -> GraphUpdate:
    extraction = ChunkExtraction(
        chunk=chunk,
        entities=[ExtractedEntity(name=e[0], type=e[1], description=e[2] if len(e) > 2 else "") for e in entities],
        relations=[ExtractedRelation(source=s, target=t, type=k, strength=n) for s, t, k, n in relations],
        extractor="test", prompt_version=prompt, error=error)
    return resolve_extraction(extraction)


def _corpus_updates(video: str, path: str, tokens: int = 200) -> list[GraphUpdate]:
    """The real pipeline functions on a real transcript: fetched -> chunks -> offline extraction -> resolved."""
    text = (CORPUS / path).read_text(encoding="utf-8")
    segments = [TranscriptSegment(start=s.start, end=s.end, text=s.text)
                for s in parse_transcript(text, path.rsplit(".", 1)[1])]
    fetched = TranscriptFetched(video_id=video, source="local", source_ref=path, segments=segments,
                                requested_at=T0, fetched_at=T0)
    updates = []
    for c in chunk_transcript(fetched, tokens=tokens, overlap=30):
        found = extract_offline(c.text)
        updates.append(resolve_extraction(ChunkExtraction(chunk=c, entities=found.entities,
                                                          relations=found.relations, extractor="offline-plain",
                                                          prompt_version=PROMPT_VERSION)))
    return updates


def _status(video: str, stage: str, state: str, chunk_count: int | None = None,
            detail: str = "") -> VideoStatusEvent:
    return VideoStatusEvent.model_validate({"video_id": video, "stage": stage, "state": state,
                                            "chunk_count": chunk_count, "detail": detail, "source": "local",
                                            "requested_at": T0, "at": utcnow()})


def _find_entity(store: GraphStore, etype: str, key: str) -> dict[str, Any] | None:
    return store.coll("entities").find_one({"_id": entity_id(etype, key)})


def _entity(store: GraphStore, etype: str, key: str) -> dict[str, Any]:
    doc = _find_entity(store, etype, key)
    assert doc is not None, f"no entity {etype} {key!r}"
    return doc


# --------------------------------------------------------------------------- idempotency


def test_writing_the_same_batch_twice_changes_nothing(store: GraphStore) -> None:
    updates = _corpus_updates(POSNER, "YaleCourses/-HxP28QcnIQ.srt")
    assert len(updates) > 5
    first = store.graph.write_updates(updates)
    assert first.chunks == len(updates) and first.mentions_inserted > 0 and first.evidence_inserted > 0
    before = store.reads.snapshot()
    assert before["entities"] and before["relations"]

    again = store.graph.write_updates(updates)
    assert (again.chunks, again.mentions_inserted, again.evidence_inserted, again.stale_removed) == (0, 0, 0, 0)
    assert store.reads.snapshot() == before
    # Split differently and in another order: still nothing changes.
    for u in reversed(updates):
        store.graph.write_updates([u])
    assert store.reads.snapshot() == before


def test_a_chunk_twice_in_one_batch_is_stored_once(store: GraphStore) -> None:
    c = _chunk(MARS, 0, "Phobos and Deimos orbit Mars.")
    u = _update(c, [("Phobos", "LOCATION"), ("Mars", "LOCATION")], [("Phobos", "Mars", "orbits", 6)])
    summary = store.graph.write_updates([u, u, u])
    assert summary.chunks == 1 and summary.mentions_inserted == 2 and summary.evidence_inserted == 1
    assert store.reads.counts()["chunks"] == 1


# --------------------------------------------------------------------------- reconciliation


def test_counts_and_weights_come_from_the_evidence(store: GraphStore) -> None:
    a = _chunk(MARS, 0, "Phobos orbits Mars.", count=2)
    b = _chunk(MARS, 1, "Phobos orbits Mars closely.", count=2, start=10.0)
    other = _chunk(POSNER, 0, "Posner mentions Phobos and Mars.")
    orbit = ("Phobos", "Mars", "orbits", 3)
    store.graph.write_updates([
        _update(a, [("Phobos", "LOCATION", "a moon"), ("Mars", "LOCATION")], [orbit]),
        _update(b, [("Phobos", "LOCATION", "a moon"), ("Mars", "LOCATION")], [("phobos", "mars", "ORBITS", 7)]),
    ])
    store.graph.write_updates([_update(other, [("PHOBOS", "LOCATION", "tiny"), ("Mars", "LOCATION"),
                                               ("Posner", "PERSON")], [orbit, ("Posner", "Mars", "mentions", 2)])])

    phobos = _entity(store, "LOCATION", "phobos")
    assert phobos["mention_count"] == 3 and phobos["video_count"] == 2
    assert phobos["name"] == "Phobos" and phobos["aliases"] == ["Phobos", "PHOBOS"]  # most frequent first
    # The bounded summary leads with the most frequent description.
    assert phobos["description"] == "a moon; tiny" and phobos["descriptions"] == ["a moon", "tiny"]
    assert _entity(store, "PERSON", "posner")["mention_count"] == 1

    rel = store.coll("relations").find_one({"source_id": phobos["_id"]})
    assert rel is not None
    assert rel["type"] == "ORBITS" and rel["target_id"] == entity_id("LOCATION", "mars")
    assert (rel["weight"], rel["evidence_count"], rel["video_count"]) == (3 + 7 + 3, 3, 2)
    assert store.reads.counts() == {"videos": 2, "chunks": 3, "entities": 3, "relations": 2, "entity_mentions": 7,
                              "relation_evidence": 4}


def test_reextraction_removes_stale_evidence_and_orphans(store: GraphStore) -> None:
    shared = _chunk(MARS, 0, "Phobos and Deimos orbit Mars.", count=2)
    other = _chunk(MARS, 1, "Mars is red.", count=2, start=10.0)
    store.graph.write_updates([
        _update(shared, [("Phobos", "LOCATION"), ("Deimos", "LOCATION"), ("Mars", "LOCATION")],
                [("Phobos", "Mars", "orbits", 6), ("Deimos", "Mars", "orbits", 6)]),
        _update(other, [("Mars", "LOCATION")]),
    ])
    assert store.reads.counts()["entities"] == 3 and store.reads.counts()["relations"] == 2

    # A new prompt version sees Phobos and a new entity, but no longer Deimos.
    summary = store.graph.write_updates([
        _update(shared, [("Phobos", "LOCATION"), ("Mars", "LOCATION"), ("Red Planet", "LOCATION")],
                [("Phobos", "Mars", "orbits", 6), ("Mars", "Red Planet", "is", 4)], prompt="v2")])
    assert summary.stale_removed == 2  # the Deimos mention and its evidence
    assert _find_entity(store, "LOCATION", "deimos") is None
    assert _entity(store, "LOCATION", "mars")["mention_count"] == 2
    assert _find_entity(store, "LOCATION", "red planet") is not None
    types = sorted(r["type"] for r in store.coll("relations").find())
    assert types == ["IS", "ORBITS"]
    chunk_doc = store.coll("chunks").find_one({"_id": shared.chunk_id})
    assert chunk_doc is not None and chunk_doc["prompt_version"] == "v2" and chunk_doc["entity_count"] == 3
    assert store.coll("entity_mentions").count_documents({"chunk_id": shared.chunk_id}) == 3

    # A failed re-extraction leaves the chunk with no evidence at all.
    store.graph.write_updates([_update(shared, [], prompt="v3", error="extraction_failed")])
    assert store.coll("entity_mentions").count_documents({"chunk_id": shared.chunk_id}) == 0
    assert store.reads.counts()["relations"] == 0
    assert [e["name"] for e in store.coll("entities").find()] == ["Mars"]


def test_reextraction_with_new_strength_updates_the_weight(store: GraphStore) -> None:
    """PRODUCTION BUG: same entities and relations but different attributes are ignored on re-extraction."""
    c = _chunk(MARS, 0, "Phobos orbits Mars.")
    store.graph.write_updates([_update(c, [("Phobos", "LOCATION", "old"), ("Mars", "LOCATION")],
                                       [("Phobos", "Mars", "orbits", 3)], prompt="v1")])
    store.graph.write_updates([_update(c, [("Phobos", "LOCATION", "new"), ("Mars", "LOCATION")],
                                       [("Phobos", "Mars", "orbits", 9)], prompt="v2")])
    rel = store.coll("relations").find_one()
    assert rel is not None
    assert rel["weight"] == 9, "a chunk's evidence must be exactly its latest extraction"
    assert _entity(store, "LOCATION", "phobos")["description"] == "new"
    chunk_doc = store.coll("chunks").find_one({"_id": c.chunk_id})
    assert chunk_doc is not None and chunk_doc["prompt_version"] == "v2"


# --------------------------------------------------------------------------- large batches


@pytest.mark.timeout(300)  # a deadlocked FerretDB command would otherwise hang for the global timeout
def test_batches_larger_than_one_command(store: GraphStore) -> None:
    """FerretDB deadlocks on >~100 matched updates in one command; the store must split them."""
    names = [(f"Entity {i:03d}", "CONCEPT") for i in range(160)]
    a = _chunk(MARS, 0, "chunk a", count=2)
    b = _chunk(MARS, 1, "chunk b", count=2, start=10.0)
    store.graph.write_updates([_update(a, names)])
    assert store.reads.counts()["entities"] == 160

    store.graph.write_updates([_update(b, names)])  # 160 existing entities updated at once
    counts = {e["mention_count"] for e in store.coll("entities").find({}, {"mention_count": 1})}
    assert counts == {2}

    store.graph.write_updates([_update(a, names[:10], prompt="v2")])  # 150 stale mentions removed
    store.graph.write_updates([_update(b, names[:5], prompt="v2")])  # 150 entities orphaned and deleted
    assert store.reads.counts()["entities"] == 10
    by_count = sorted(e["mention_count"] for e in store.coll("entities").find())
    assert by_count == [1] * 5 + [2] * 5

    store.graph.write_updates([_update(a, names, prompt="v3"), _update(b, names, prompt="v3")])
    assert store.reads.counts()["entities"] == 160 and store.reads.counts()["entity_mentions"] == 320


class _Commands(monitoring.CommandListener):
    """The commands a client sends, as (command name, collection), and how many statements
    (documents, updates, deletes) each (command name, collection) carried in all."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.statements: Counter[tuple[str, str]] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        key = (event.command_name, str(event.command.get(event.command_name)))
        self.seen.append(key)
        for field in ("documents", "updates", "deletes"):
            self.statements[key] += len(event.command.get(field, []))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_new_entities_and_relations_are_inserted_not_upserted(services: Services) -> None:
    """The first write of a graph creates most of its entities and relations: they go in as
    inserts (FerretDB on SQLite: tens of thousands/s against a few hundred upserts/s); only
    documents that exist and changed are updated."""
    commands = _Commands()
    with fresh_store(services, commands) as store:
        updates = _corpus_updates(POSNER, "YaleCourses/-HxP28QcnIQ.srt")
        commands.seen.clear()
        summary = store.graph.write_updates(updates)
        counts = store.reads.counts()
        assert summary.entities == counts["entities"] > 0 and summary.relations == counts["relations"] > 0
        for coll in ("entities", "relations"):
            assert ("insert", coll) in commands.seen
            assert ("update", coll) not in commands.seen, f"new {coll} were upserted"

        # A later chunk naming stored entities: those are updated, not inserted again.
        before = store.reads.snapshot()
        c = _chunk(POSNER, 999, "Posner again", count=1000)
        known = [(e["name"], e["type"]) for e in before["entities"][:3]]
        commands.seen.clear()
        store.graph.write_updates([_update(c, known)])
        assert ("update", "entities") in commands.seen and ("insert", "entities") not in commands.seen
        after = {d["_id"]: d["mention_count"] for d in store.coll("entities").find()}
        assert [after[e["_id"]] for e in before["entities"][:3]] == [
            e["mention_count"] + 1 for e in before["entities"][:3]]


# --------------------------------------------------------------------------- videos


def test_status_then_chunks_marks_the_video_done_exactly_once(store: GraphStore) -> None:
    updates = _corpus_updates(MARS, "Kurzgesagt/Pw0IZg7_4mo.vtt", tokens=80)
    n = len(updates)
    assert n >= 2
    assert store.videos.apply_status_events([_status(MARS, "fetch", "started"), _status(MARS, "fetch", "done"),
                                      _status(MARS, "chunk", "done", chunk_count=n)]) == []
    assert store.graph.write_updates(updates[:-1]).completed == []
    assert store.videos.find([MARS])[0]["status"] == "extracting"

    completed = store.graph.write_updates(updates[-1:]).completed
    assert [d["_id"] for d in completed] == [MARS]
    assert store.videos.refresh([MARS]) == []
    assert store.graph.write_updates(updates).completed == []  # redelivered chunks
    assert store.videos.apply_status_events([_status(MARS, "chunk", "done", chunk_count=n)]) == []  # replayed status
    doc = store.videos.find([MARS])[0]
    assert doc["status"] == "done" and doc["chunks_stored"] == doc["chunk_count"] == n and "done_at" in doc


def test_chunks_then_status_marks_the_video_done_exactly_once(store: GraphStore) -> None:
    """The sink may see every chunk before the chunk stage's status event."""
    updates = _corpus_updates(MARS, "Kurzgesagt/Pw0IZg7_4mo.vtt", tokens=80)
    assert store.graph.write_updates(updates).completed == []  # no video document yet
    assert store.videos.apply_status_events([_status(MARS, "fetch", "done")]) == []
    assert store.videos.find([MARS])[0]["status"] == "extracting"
    completed = store.videos.apply_status_events([_status(MARS, "chunk", "done", chunk_count=len(updates))])
    assert [d["_id"] for d in completed] == [MARS]
    assert store.videos.apply_status_events([_status(MARS, "chunk", "done", chunk_count=len(updates))]) == []
    assert store.videos.refresh([MARS]) == []


def test_counting_stored_chunks_reads_no_chunk_documents(services: Services) -> None:
    """A video's progress comes from its ledger: a batch does not read back the stored chunks
    of its videos (their text and all, every batch), and a redelivery counts nothing twice."""
    updates = _corpus_updates(MARS, "Kurzgesagt/Pw0IZg7_4mo.vtt", tokens=80)
    filters = _Filters()
    with fresh_store(services, filters) as store:
        store.videos.apply_status_events([_status(MARS, "chunk", "done", chunk_count=len(updates))])
        filters.seen.clear()
        for u in (*updates[:2], *updates):  # two of them twice
            store.graph.write_updates([u])
        assert not [f for cmd, coll, f in filters.seen if coll == "chunks" and "_id" not in f]
        doc = store.videos.find([MARS])[0]
        assert doc["status"] == "done" and doc["chunks_stored"] == len(updates)
        assert "stored_chunks" not in doc  # readers get the counters, not the ledger


def test_a_video_stored_before_the_ledger_gets_it_from_its_chunks(store: GraphStore) -> None:
    """A video document written by an earlier version (counters, no ledger) is counted from
    the chunks collection once, and then completes as any other."""
    updates = _corpus_updates(MARS, "Kurzgesagt/Pw0IZg7_4mo.vtt", tokens=80)
    store.videos.apply_status_events([_status(MARS, "chunk", "done", chunk_count=len(updates))])
    store.graph.write_updates(updates[:-1])
    store.coll("videos").update_one({"_id": MARS}, {"$unset": {"stored_chunks": "", "failed_chunks": "",
                                                               "chunk_ledger": ""}})
    completed = store.graph.write_updates(updates[-1:]).completed
    assert [d["_id"] for d in completed] == [MARS]
    doc = store.coll("videos").find_one({"_id": MARS})
    assert doc is not None and sorted(doc["stored_chunks"]) == list(range(len(updates)))
    assert doc["chunks_stored"] == len(updates) and doc["chunk_ledger"] is True


def test_video_states_through_the_store(store: GraphStore) -> None:
    v = "aaaaaaaaaaA"
    chunks = [_chunk(v, i, f"Phobos text {i}", count=2, start=10.0 * i) for i in range(2)]

    def state() -> str:
        return str(store.videos.find([v])[0]["status"])

    store.videos.apply_status_events([_status(v, "fetch", "started")])
    assert state() == "fetching"
    store.videos.apply_status_events([_status(v, "fetch", "done")])
    assert state() == "fetched"
    store.videos.apply_status_events([_status(v, "chunk", "done", chunk_count=2)])
    assert state() == "chunked"
    store.graph.write_updates([_update(chunks[0], [("Phobos", "LOCATION")])])
    assert state() == "extracting"
    store.graph.write_updates([_update(chunks[1], [], error="extraction_failed")])
    doc = store.videos.find([v])[0]
    assert doc["status"] == "done" and doc["chunks_stored"] == 2 and doc["chunks_failed"] == 1

    failed = "bbbbbbbbbbE"
    store.videos.apply_status_events([_status(failed, "fetch", "started"),
                               _status(failed, "fetch", "failed", detail="transcript_not_found: none")])
    doc = store.videos.find([failed])[0]
    assert doc["status"] == "failed" and doc["stages"]["fetch"]["detail"].startswith("transcript_not_found")


def test_a_batch_of_status_events_is_one_update_per_video_and_leaves_what_one_by_one_would(
        services: Services) -> None:
    events = []
    for i, video in enumerate(("aaaaaaaaaaA", "bbbbbbbbbbE")):
        events += [_status(video, "fetch", "started"), _status(video, "fetch", "done"),
                   _status(video, "chunk", "failed", detail="first try"),
                   _status(video, "chunk", "done", chunk_count=3 + i),
                   VideoStatusEvent(video_id=video, stage="fetch", state="done", title=f"Title {i}",
                                    requested_at=T0 - timedelta(minutes=i + 1), at=utcnow())]
    commands = _Commands()
    docs = []
    with fresh_store(services) as one_by_one:
        for ev in events:
            one_by_one.videos.apply_status_events([ev])
        docs.append(one_by_one.videos.find())
    with fresh_store(services, commands) as batched:
        batched.videos.apply_status_events(events)
        docs.append(batched.videos.find())
    assert commands.statements["update", "videos"] == 2  # one per video, not one per event
    assert docs[0] == docs[1]
    assert [d["status"] for d in docs[1]] == ["chunked", "chunked"]
    assert docs[1][1]["requested_at"] == T0.replace(microsecond=T0.microsecond // 1000 * 1000) - timedelta(minutes=2)


def test_requested_at_keeps_the_earliest(store: GraphStore) -> None:
    v = "cccccccccc4"
    late = VideoStatusEvent(video_id=v, stage="fetch", state="started", requested_at=T0 + timedelta(hours=1),
                            at=utcnow())
    early = VideoStatusEvent(video_id=v, stage="fetch", state="done", requested_at=T0, at=utcnow())
    store.videos.apply_status_events([late])
    store.videos.apply_status_events([early])
    store.videos.apply_status_events([late])
    assert store.videos.find([v])[0]["requested_at"] == T0.replace(microsecond=T0.microsecond // 1000 * 1000)


@pytest.mark.parametrize(("doc", "state"), [
    ({}, "requested"),
    ({"stages": {"fetch": {"state": "started"}}}, "fetching"),
    ({"stages": {"fetch": {"state": "done"}}}, "fetched"),
    ({"stages": {"fetch": {"state": "done"}, "chunk": {"state": "done"}}, "chunk_count": 3}, "chunked"),
    ({"stages": {"chunk": {"state": "done"}}, "chunk_count": 3, "chunks_stored": 1}, "extracting"),
    ({"chunk_count": 3, "chunks_stored": 3}, "done"),
    ({"chunk_count": 0}, "done"),
    ({"stages": {"extract": {"state": "failed"}}, "chunk_count": 3, "chunks_stored": 3}, "failed"),
    ({"stages": {"fetch": None}}, "requested"),
])
def test_video_state(doc: dict[str, Any], state: str) -> None:
    assert video_state(doc) == state


def _merge_pass(store: GraphStore) -> int:
    """The merge pass's store part (aliases need a broker; not here)."""
    return apply_merge(store, plan_merge(store, ResolutionSettings(), None)).chunks_rewritten


def test_the_extractions_version_moves_with_stored_chunks_not_with_merge_rewrites(store: GraphStore) -> None:
    """What lets a community run skip the merge pass: the count moves with every stream write
    (a redelivery too: it may complete a write that died before counting) and every forget,
    never with the merge pass's own rewrites, which change resolutions, not extractions."""
    assert store.graph.extractions_version() == 0
    a = _chunk(MARS, 0, "Posner and Richard Posner", count=2)
    b = _chunk(MARS, 1, "Posner again", count=2, start=10.0)
    store.graph.write_updates([_update(a, [("Richard Posner", "PERSON")]), _update(b, [("Posner", "PERSON")])])
    assert store.graph.extractions_version() == 1
    store.graph.write_updates([_update(b, [("Posner", "PERSON")])])  # redelivered
    assert store.graph.extractions_version() == 2
    assert _merge_pass(store) == 1  # "Posner" merged into "Richard Posner": one chunk rewritten
    assert store.graph.extractions_version() == 2
    store.graph.forget_video(MARS)
    assert store.graph.extractions_version() == 4  # before and after the forget


def test_updates_made_before_a_merge_follow_it(store: GraphStore) -> None:
    """A replay (or a late message) of updates made before a merge pass leaves the merged
    graph as it is: merged entities are not brought back, evidence stays on the survivors."""
    one = _chunk("Pw0IZg7_4mo", 0, "Richard Posner met Posner on Mars.", count=3)
    two = _chunk("Pw0IZg7_4mo", 1, "Posner wrote about Mars.", count=3, start=10)
    three = _chunk("Pw0IZg7_4mo", 2, "Richard Posner and Judge Posner.", count=3, start=20)
    updates = [
        _update(one, [("Richard Posner", "PERSON"), ("Posner", "PERSON"), ("Mars", "LOCATION")],
                [("Richard Posner", "Mars", "VISITED", 5), ("Posner", "Mars", "VISITED", 3)]),
        _update(two, [("Posner", "PERSON"), ("Mars", "LOCATION")], [("Posner", "Mars", "WROTE_ABOUT", 4)]),
        _update(three, [("Richard Posner", "PERSON"), ("Posner", "PERSON")],
                [("Richard Posner", "Posner", "KNOWS", 2)]),
    ]
    store.graph.write_updates(updates)
    posner, richard = entity_id("PERSON", "posner"), entity_id("PERSON", "richard posner")
    # "Posner" is the short form of the only full name, and the more mentioned: it survives.
    assert _merge_pass(store) == 2  # chunk two names only Posner
    merged = store.reads.snapshot()
    assert _find_entity(store, "PERSON", "richard posner") is None
    assert store.db.relations.count_documents({"$or": [{"source_id": richard}, {"target_id": richard}]}) == 0
    assert store.db.relations.count_documents({"type": "KNOWS"}) == 0  # became a self-loop
    assert store.graph.entity_redirects([posner, richard]) == {richard: (posner, "PERSON")}
    assert _merge_pass(store) == 0 and store.reads.snapshot() == merged  # a second pass changes nothing

    # Split differently and in another order: still nothing changes.
    store.graph.write_updates(updates)
    assert store.reads.snapshot() == merged
    for u in reversed(updates):
        store.graph.write_updates([u])
    assert store.reads.snapshot() == merged
    # A merge of the survivor later moves the older redirect along with it.
    other = entity_id("PERSON", "judge richard posner")
    store.graph.record_redirects({posner: (other, "PERSON")})
    assert store.graph.entity_redirects([posner, richard]) == {posner: (other, "PERSON"), richard: (other, "PERSON")}


class _Filters(monitoring.CommandListener):
    """The reads and deletes a client sends, as (command name, collection, filter)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        cmd, name = event.command, event.command_name
        if name == "find":
            self.seen.append((name, str(cmd["find"]), dict(cmd.get("filter") or {})))
        elif name == "delete":
            self.seen += [(name, str(cmd["delete"]), dict(d["q"])) for d in cmd.get("deletes", [])]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_merge_pass_scans_each_graph_collection_once_and_deletes_by_id(services: Services) -> None:
    """On FerretDB a filter its index does not serve scans the whole collection: the merge
    pass reads the chunks, entities, relations and their evidence once each (the chunks that
    differ again by ``_id``, before writing them), deletes by ``_id``, and hands the graph it
    wrote to the community run, which reads it no more."""
    filters = _Filters()
    with fresh_store(services, filters) as store:
        one = _chunk(MARS, 0, "Richard Posner met Posner on Mars.", count=3)
        two = _chunk(MARS, 1, "Posner wrote about Mars.", count=3, start=10)
        three = _chunk(MARS, 2, "Richard Posner and Judge Posner.", count=3, start=20)
        store.graph.write_updates([
            _update(one, [("Richard Posner", "PERSON"), ("Posner", "PERSON"), ("Mars", "LOCATION")],
                    [("Richard Posner", "Mars", "VISITED", 5), ("Posner", "Mars", "VISITED", 3)]),
            _update(two, [("Posner", "PERSON"), ("Mars", "LOCATION")], [("Posner", "Mars", "WROTE_ABOUT", 4)]),
            _update(three, [("Richard Posner", "PERSON"), ("Posner", "PERSON")],
                    [("Richard Posner", "Posner", "KNOWS", 2)]),
        ])
        filters.seen.clear()
        writes = apply_merge(store, plan_merge(store, ResolutionSettings(), None))
        assert writes.chunks_rewritten == 2
        graph = ("chunks", "entities", "relations", "entity_mentions", "relation_evidence")
        # By _id: one value, or $in where the server's index serves it (Mongo.in_uses_index).
        by_one_id = [(command, coll, f) for command, coll, f in filters.seen
                     if set(f) == {"_id"} and (isinstance(f["_id"], str) or store.mongo.in_uses_index(coll, "_id"))]
        scans = Counter(coll for command, coll, f in filters.seen
                        if command == "find" and coll in graph and (command, coll, f) not in by_one_id)
        assert scans == dict.fromkeys(graph, 1)
        deletes = [(coll, f) for command, coll, f in filters.seen if command == "delete"]
        assert {coll for coll, _ in deletes} == {"entity_mentions", "relation_evidence", "entities", "relations"}
        assert all(set(f) == {"_id"} for _, f in deletes), deletes
        # The community run that follows uses the graph as the pass left it: as a read would see it.
        read = store.communities.read_graph()
        assert writes.graph.entities == read.entities

        def by_id(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(docs, key=lambda d: d["_id"])

        assert by_id(writes.graph.relations) == by_id(read.relations) and read.relations


def test_a_merge_pass_leaves_the_graph_of_a_set_of_chunks_whatever_came_first(services: Services) -> None:
    """Two stores fed the same chunks in opposite orders, one chunk at a time, differ before
    their merge passes (each in-stream guess kept the first name it saw) and are equal after."""
    chunks = [_chunk("Pw0IZg7_4mo", i, f"Chunk {i} about Jonathan.", count=3, start=10.0 * i) for i in range(3)]
    names = [[("Jonathan Smith", "PERSON"), ("Mars", "LOCATION")], [("Jonathon Smyth", "PERSON")],
             [("Jonathan Smyth", "PERSON"), ("mars", "CONCEPT")]]
    rels = [[("Jonathan Smith", "Mars", "VISITED", 5)], [], [("Jonathan Smyth", "mars", "STUDIED", 3)]]
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_uri, tz_aware=True)
    dbs = [f"t_order_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    try:
        snapshots = []
        for name, order in zip(dbs, ([0, 1, 2], [2, 1, 0]), strict=True):
            s = GraphStore(client[name])
            s.ensure_indexes()
            block: dict[str, list[str]] = {}
            for i in order:  # the stream's first guess, in this order
                extraction = ChunkExtraction(chunk=chunks[i], extractor="test", prompt_version="v1",
                                             entities=[ExtractedEntity(name=n, type=t) for n, t in names[i]],
                                             relations=[ExtractedRelation(source=a, target=b, type=k, strength=w)
                                                        for a, b, k, w in rels[i]])
                resolved = {}
                for r in mention_requests(extraction, block_chars=2):
                    resolved[r.mention], _, state = resolve_mention(block, r.name, r.type, ResolutionSettings())
                    block = state or block
                s.graph.write_updates([resolve_extraction(extraction, resolved=resolved)])
            snapshots.append((s.reads.snapshot(), _merge_pass(s), s.reads.snapshot()))
        (first_before, _, first_after), (second_before, _, second_after) = snapshots
        assert first_before["entities"] != second_before["entities"]
        assert first_after == second_after
        assert len(first_after["entities"]) == 2 and len(first_after["relations"]) == 2
    finally:
        for name in dbs:
            client.drop_database(name)
        client.close()


def test_document_counts_come_from_the_statistics_and_follow_every_write(store: GraphStore) -> None:
    """What the snapshot's change signature reads (streams/query/snapshot.py): exact after
    inserts and deletes, 0 for a collection that does not exist yet."""
    assert store.document_count("never_written") == 0
    coll = store.coll("counted")
    coll.insert_many([{"_id": i} for i in range(37)])
    assert store.document_count("counted") == 37
    coll.delete_many({"_id": {"$lt": 5}})
    assert store.document_count("counted") == 32


# --------------------------------------------------------------------------- the backend's indexes


@pytest.mark.parametrize("collection", ["entities", "relations", "chunks", "videos"])
def test_a_lookup_by_id_uses_the_id_index(store: GraphStore, collection: str) -> None:
    """Every write of the graph (upserts, reconciliation, progress) finds its document by
    ``_id``. FerretDB 1.24's SQLite backend spelled ``_id`` differently from its own index,
    so each such lookup scanned the whole collection; the local stack builds it patched
    (stack/localstack.py FERRETDB_PATCHES). Real MongoDB always uses its ``_id`` index."""
    store.coll(collection).insert_many([{"_id": f"doc-{i}", "n": i} for i in range(50)])
    explained = store.db.command("explain", {"find": collection, "filter": {"_id": "doc-7"}})
    if "ferretdbVersion" not in explained.get("serverInfo", {}):
        assert explained["queryPlanner"]["winningPlan"]["stage"] in ("IDHACK", "EXPRESS_IXSCAN", "FETCH")
        return
    plan = " ".join(explained["queryPlanner"]["Plan"])
    assert "USING INDEX" in plan and "__id_" in plan, plan
    assert store.coll(collection).find_one({"_id": "doc-7"}) == {"_id": "doc-7", "n": 7}


@pytest.mark.parametrize(("collection", "field"), [("entities", "_id"), ("chunks", "video_id"),
                                                ("entity_mentions", "entity_id"), ("relation_evidence", "relation_id")])
def test_an_in_lookup_on_an_indexed_field_uses_the_index(store: GraphStore, collection: str, field: str) -> None:
    """The sink reconciles every batch with ``$in`` on these fields. FerretDB 1.24 as released
    scans the collection for any filter but a single ``_id`` (so each batch cost more as the
    graph grew); the local stack's build pushes one field's equality or ``$in`` down to
    SQLite's index (stack/localstack.py FERRETDB_PATCHES), and the store uses ``$in`` where
    the server says so (``in_uses_index``)."""
    store.coll(collection).insert_many([{"_id": f"doc-{i}", **({} if field == "_id" else {field: f"key-{i % 7}"})}
                                        for i in range(50)])
    wanted = ["doc-3", "doc-4"] if field == "_id" else ["key-3", "key-4"]
    explained = store.db.command("explain", {"find": collection, "filter": {field: {"$in": wanted}}})
    assert store.mongo.in_uses_index(collection, field)
    if "ferretdbVersion" in explained.get("serverInfo", {}):
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert "USING INDEX" in plan and " SCAN " not in f" {plan} ", plan
    else:
        assert "IXSCAN" in str(explained["queryPlanner"]["winningPlan"])
    found = sorted(d["_id"] for d in store.mongo.find_in(collection, field, wanted))
    assert found == (wanted if field == "_id" else sorted(f"doc-{i}" for i in range(50) if i % 7 in (3, 4)))
    assert not store.mongo.in_uses_index(collection, "not_indexed") or "ferretdbVersion" not in explained.get(
        "serverInfo", {})


def test_lookups_the_backend_serves_from_an_index_still_find_every_match(store: GraphStore) -> None:
    """What FerretDB's pushdown selects must contain every match, as its handler filters again
    only what the query returned: a field holding an array matches by any element, strings
    with characters JSON escapes, ObjectIds; numbers beside strings are not pushed down."""
    coll = store.coll("entity_mentions")
    oid = ObjectId()
    odd = 'a<b&c>"d\\\u00e9\u2028'
    coll.insert_many([{"_id": f"m-{i}", "entity_id": f"e{i % 5}"} for i in range(40)]
                     + [{"_id": "list", "entity_id": ["e3", "zz"]}, {"_id": odd, "entity_id": odd},
                        {"_id": oid, "entity_id": oid}, {"_id": "number", "entity_id": 3}, {"_id": "missing"}])

    def ids(flt: dict[str, Any]) -> list[str]:
        return sorted(str(d["_id"]) for d in coll.find(flt))

    assert ids({"entity_id": "e3"}) == sorted([f"m-{i}" for i in range(40) if i % 5 == 3] + ["list"])
    assert ids({"entity_id": {"$in": ["zz", odd]}}) == sorted(["list", odd])
    assert ids({"_id": {"$in": ["m-1", odd, "nope"]}}) == sorted(["m-1", odd])
    assert ids({"_id": oid}) == ids({"entity_id": {"$in": [oid]}}) == [str(oid)]
    assert ids({"entity_id": {"$in": [3, "e1"]}}) == sorted([f"m-{i}" for i in range(40) if i % 5 == 1] + ["number"])
    assert coll.count_documents({"entity_id": {"$in": ["e1", "e2"]}}) == 16
    assert coll.delete_many({"_id": {"$in": ["m-1", "m-2"]}}).deleted_count == 2
    assert coll.update_many({"entity_id": "e4"}, {"$set": {"seen": True}}).modified_count == 8
    assert len(ids({"entity_id": {"$in": [f"e{i}" for i in range(5)]}})) == 38 + 1


def test_insert_or_set_sets_a_document_stored_meanwhile(store: GraphStore) -> None:
    """Reconciliation inserts documents it believes new in bulk; one another writer stored in
    between must end as an upsert would leave it (our fields set, others kept), not skipped."""
    store.coll("entities").insert_one({"_id": "b", "name": "old", "key": "kept"})
    store.mongo.insert_or_set("entities", [{"_id": "a", "name": "A"}, {"_id": "b", "name": "B"},
                                           {"_id": "c", "name": "C"}])
    assert sorted(store.coll("entities").find(), key=lambda d: d["_id"]) == [
        {"_id": "a", "name": "A"}, {"_id": "b", "name": "B", "key": "kept"}, {"_id": "c", "name": "C"}]


# --------------------------------------------------------------------------- the graph's signature


def test_every_write_to_the_graph_changes_its_signature_even_one_that_keeps_every_size(services: Services) -> None:
    from streams.query.snapshot import graph_signature

    seen = _Commands()
    with fresh_store(services, seen) as store:
        assert store.graph.graph_version() is None
        empty = graph_signature(store)
        mars = _chunk(MARS, 0, "Phobos and Deimos orbit Mars.")
        store.graph.write_updates([_update(mars, [("Phobos", "LOCATION"), ("Mars", "LOCATION")],
                                           [("Phobos", "Mars", "orbits", 6)])])
        first = graph_signature(store)
        assert first != empty and store.graph.graph_version() is not None
        assert graph_signature(store) == first  # nothing written since
        sizes = store.reads.counts()

        # Extracted again with another strength and description: every size stays, the graph changed.
        store.graph.write_updates([_update(mars, [("Phobos", "LOCATION", "A moon."), ("Mars", "LOCATION")],
                                           [("Phobos", "Mars", "orbits", 9)], prompt="v2")])
        assert store.reads.counts() == sizes
        second = graph_signature(store)
        assert second != first

        # Reading it costs reads by _id and of the last community run, not the collections' sizes.
        seen.seen.clear()
        graph_signature(store)
        assert {name for name, _ in seen.seen} == {"find"}, seen.seen

        store.graph.forget_video(MARS)
        assert graph_signature(store) != second
