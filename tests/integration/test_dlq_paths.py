"""Every dead-letter path of the README end to end, on the real broker and FerretDB: the
sink's `store_rejected` (the batch split so only the bad record is dead-lettered), the
chunk stage's `empty_transcript`, the extract stage's `llm_invalid_output` and
`llm_rejected` (the OpenAI fake answering badly), with every DLQ header checked by value
against the original record, and the worker going on after each. Then the circuit breaker
at the extract stage: the LLM fails, the circuit opens (messages wait unacknowledged,
nothing is dead-lettered), the LLM recovers and the work completes with nothing lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaException

from agents.worker import parse_stages
from schemas import GraphUpdate, ResolvedEntity, ResolvedRelation, TranscriptChunk, TranscriptFetched
from schemas.events import utcnow
from streams.kafka.dlq import CONNECT_PREFIX, parse_headers
from streams.kafka.offsets import LEADERSHIP_ERRORS
from streams.kafka.topics import Stage
from streams.model.ids import chunk_id, entity_id, relation_id
from streams.monitoring.lag import measure_lag, stage_groups, total_lag
from streams.store import GraphStore
from tests.fakes.fake_openai import FakeOpenAI
from tests.support import (
    ROOT,
    Deployment,
    DeploymentFactory,
    assert_no_stall,
    consume_all,
    evidence_mismatches,
    extractions_by_chunk,
    free_port_block,
    produce_raw,
    served_metric,
    wait_quiescent,
    wait_until,
)

pytestmark = pytest.mark.integration

SAMPLES = ROOT / "samples" / "transcripts"
LLM_VIDEO = "8nHBGFKLHZQ"  # the smallest sample transcript: a few chunks
SCHEMA_VIOLATION = json.dumps({"entities": [{"name": "x"}], "relations": "none"})  # what the fake answers


def assert_dead_letter(d: Deployment, record: Any, *, topic: str, stage: str, reason: str,
                       error_class: str) -> dict[str, str]:
    """The DLQ record carries the original bytes and key, and headers whose values are those
    of the original record (found in its topic by its bytes); returns the headers."""
    h = parse_headers(record.headers())
    originals = [m for m in consume_all(d.settings, topic) if m.value() == record.value()]
    assert len(originals) == 1, f"{len(originals)} records of {topic} have the dead letter's bytes"
    original = originals[0]
    assert record.key() == original.key()
    assert (h["stage"], h["reason"], h["error.class"]) == (stage, reason, error_class), h
    assert h["error.message"]
    assert h["original.topic"] == topic
    assert (h["original.partition"], h["original.offset"]) == (str(original.partition()), str(original.offset()))
    _, ts_ms = original.timestamp()
    assert ts_ms > 0 and h["original.timestamp"] == str(ts_ms), (h, original.timestamp())
    failed_at = datetime.fromisoformat(h["failed.at"])
    assert failed_at.tzinfo is not None
    assert datetime.fromtimestamp(ts_ms / 1000, UTC) <= failed_at <= datetime.now(UTC)
    assert h["attempt"] == "1"
    connect = {k[len(CONNECT_PREFIX):]: v.decode() for k, v in record.headers() if k.startswith(CONNECT_PREFIX)}
    assert (connect["topic"], connect["partition"], connect["offset"]) == (
        topic, str(original.partition()), str(original.offset()))
    assert connect["exception.class.name"] == error_class
    assert connect["exception.message"].startswith(f"{reason}: ")
    return h


def dead_letters(d: Deployment) -> list[Any]:
    return consume_all(d.settings, f"{d.settings.kafka.topic_prefix}dlq")


def settled(predicate: Callable[[], Any]) -> Callable[[], Any]:
    """A wait_until predicate that reads topics: just after `topics create` a partition may
    have no leader yet (NOT_LEADER_FOR_PARTITION), which means "not yet", not a failure."""
    def check() -> Any:
        try:
            return predicate()
        except KafkaException as exc:
            if exc.args and exc.args[0].code() in LEADERSHIP_ERRORS:
                return False
            raise
    return check


# --------------------------------------------------------------------------- sink: store_rejected

SINK_VIDEO = "dlqSinkTst0"


def graph_update(index: int, count: int, *, poison: bool = False) -> GraphUpdate:
    """Chunk ``index`` of SINK_VIDEO mentioning Mars and Phobos (orbits) with strength ``index + 1``;
    ``poison``: its chunk index does not fit the store's 8-byte integers, which it rejects."""
    text = f"Phobos orbits Mars, part {index}."
    stored_index = 2**64 + index if poison else index
    chunk = TranscriptChunk(chunk_id=chunk_id(SINK_VIDEO, stored_index, text), video_id=SINK_VIDEO,
                            index=stored_index, chunk_count=(2**64 + count) if poison else count, text=text,
                            start=10.0 * index, end=10.0 * index + 9, token_count=6, requested_at=utcnow())
    mars, phobos = entity_id("PLACE", "mars"), entity_id("PLACE", "phobos")
    return GraphUpdate(
        chunk=chunk, extractor="test", prompt_version="test",
        entities=[ResolvedEntity(entity_id=mars, name="Mars", type="PLACE", surface="Mars", start=chunk.start),
                  ResolvedEntity(entity_id=phobos, name="Phobos", type="PLACE", surface="Phobos", start=chunk.start)],
        relations=[ResolvedRelation(relation_id=relation_id(phobos, mars, "ORBITS"), source_id=phobos, target_id=mars,
                                    type="ORBITS", strength=index + 1, start=chunk.start)])


def test_store_rejected_dead_letters_only_the_rejected_record_of_a_batch(
        deployment_factory: DeploymentFactory) -> None:
    # One partition, and a batch window long enough that the pre-produced records form one batch.
    d = deployment_factory({"graphrag": {"sink": {"batch_size": 200, "batch_seconds": 3.0}}})
    topic = f"{d.settings.kafka.topic_prefix}graph.edges"
    count = 7
    updates = [graph_update(i, count, poison=(i == 3)) for i in range(count)]
    d.create_topics()
    produce_raw(d.settings, topic, [(SINK_VIDEO.encode(), u.model_dump_json().encode()) for u in updates])
    worker = d.start_worker("sink")
    store = GraphStore.from_settings(d.settings)
    valid = [u for i, u in enumerate(updates) if i != 3]

    wait_until(settled(lambda: store.db.chunks.count_documents({}) >= len(valid) and dead_letters(d)), 120,
               message=lambda: f"the valid chunks stored and a dead letter; log:\n{worker.log_tail()}")
    wait_quiescent(d.settings, workers=[worker], stages=[Stage.SINK])
    dlq = dead_letters(d)
    assert len(dlq) == 1, [parse_headers(m.headers()) for m in dlq]
    h = assert_dead_letter(d, dlq[0], topic=topic, stage="sink", reason="store_rejected",
                           error_class="OverflowError")
    assert "8-byte ints" in h["error.message"]
    assert json.loads(dlq[0].value())["chunk"]["index"] == 2**64 + 3

    # Every valid record stored exactly once, the rejected one not at all; counts from evidence.
    assert sorted(c["_id"] for c in store.db.chunks.find({}, {"_id": 1})) == sorted(u.chunk.chunk_id for u in valid)
    assert evidence_mismatches(store) == []
    mars = store.db.entities.find_one({"_id": entity_id("PLACE", "mars")})
    assert mars is not None and mars["mention_count"] == len(valid)
    orbit = store.db.relations.find_one({"source_id": entity_id("PLACE", "phobos")})
    assert orbit is not None and orbit["evidence_count"] == len(valid)
    assert orbit["weight"] == sum(u.relations[0].strength for u in valid)
    assert worker.alive()
    assert_no_stall(worker)


# --------------------------------------------------------------------------- chunk: empty_transcript

def transcript(video_id: str, texts: list[str]) -> TranscriptFetched:
    return TranscriptFetched(video_id=video_id, source="local", source_ref=f"{video_id}.srt",
                             segments=[{"start": 2.0 * i, "end": 2.0 * i + 1.5, "text": t}  # type: ignore[misc]
                                       for i, t in enumerate(texts)],
                             requested_at=utcnow(), fetched_at=utcnow())


def test_a_transcript_without_words_is_dead_lettered_by_the_chunk_stage_which_goes_on(
        deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory()
    prefix = d.settings.kafka.topic_prefix
    empty, fine = "dlqEmptyTr0", "dlqFineTrn0"
    d.create_topics()
    worker = d.start_worker("chunk")
    produce_raw(d.settings, f"{prefix}transcripts.fetched", [
        (empty.encode(), transcript(empty, [" ", "\t", " \n "]).model_dump_json().encode()),
        (fine.encode(),
         transcript(fine, ["Phobos orbits Mars.", "Deimos orbits Mars too."]).model_dump_json().encode()),
    ])

    def fine_chunks() -> list[Any]:
        return [m for m in consume_all(d.settings, f"{prefix}transcripts.chunks")
                if json.loads(m.value())["video_id"] == fine]

    wait_until(settled(lambda: dead_letters(d) and fine_chunks()), 120,
               message=lambda: f"a dead letter and the valid video's chunks; log:\n{worker.log_tail()}")
    wait_quiescent(d.settings, workers=[worker], stages=[Stage.CHUNK])
    dlq = dead_letters(d)
    assert len(dlq) == 1
    assert dlq[0].key() == empty.encode()
    assert_dead_letter(d, dlq[0], topic=f"{prefix}transcripts.fetched", stage="chunk", reason="empty_transcript",
                       error_class="BadMessage")
    statuses = [json.loads(m.value()) for m in consume_all(d.settings, f"{prefix}videos.status")]
    assert {(s["video_id"], s["state"], s["detail"]) for s in statuses if s["video_id"] == empty} == {
        (empty, "failed", "empty_transcript")}
    assert {(s["video_id"], s["state"]) for s in statuses if s["video_id"] == fine} == {(fine, "done")}
    assert "Phobos orbits Mars." in json.loads(fine_chunks()[0].value())["text"]
    assert_no_stall(worker)


# --------------------------------------------------------------------------- extract: the LLM

@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def llm_deployment(deployment_factory: DeploymentFactory, fake: FakeOpenAI, **extra: Any) -> Deployment:
    """LLM extraction against the fake, one call at a time."""
    return deployment_factory({
        "openai": {"api_key": "sk-test-not-a-real-key", "base_url": fake.base_url, "model": "gpt-test",
                   "timeout_seconds": 5, "circuit_reset_seconds": 2},
        "graphrag": {"max_concurrent_operations": 1, "retry_attempts": 0, "circuit_breaker_threshold": 3,
                     "extraction": {"extractor": "llm"},
                     "transcripts": {"local_dirs": [str(SAMPLES)], "source": "local"},
                     "communities": {"interval_seconds": 86400}},
        **extra,
    })


def video_done(store: GraphStore, video: str) -> bool:
    docs = store.videos.find([video])
    return bool(docs) and docs[0]["status"] == "done"


def test_invalid_and_rejected_llm_answers_are_dead_lettered_and_their_chunks_stored_with_the_error(
        deployment_factory: DeploymentFactory, fake: FakeOpenAI) -> None:
    d = llm_deployment(deployment_factory, fake)
    prefix = d.settings.kafka.topic_prefix
    store = GraphStore.from_settings(d.settings)
    # First chunk: an answer that does not validate, and again after the repair request;
    # last chunk: a request the API rejects (HTTP 400). Every other call is answered. Keyed by
    # text: the stage handles more chunks than it has call slots, so calls interleave.
    fake.fault_for("What would happen to you", "schema_violation", "schema_violation")
    fake.fault_for("Click here", "400")
    worker = d.start_worker("all")
    d.cli("submit", LLM_VIDEO)
    wait_until(lambda: video_done(store, LLM_VIDEO), 300, interval=2,
               message=lambda: f"{LLM_VIDEO} done; log:\n{worker.log_tail()}")
    wait_quiescent(d.settings, workers=[worker])

    dlq = {parse_headers(m.headers())["reason"]: m for m in dead_letters(d)}
    assert sorted(dlq) == ["llm_invalid_output", "llm_rejected"], sorted(dlq)
    chunks_topic = f"{prefix}transcripts.chunks"
    invalid = assert_dead_letter(d, dlq["llm_invalid_output"], topic=chunks_topic, stage="extract",
                                 reason="llm_invalid_output", error_class="ExtractionFailed")
    assert invalid["llm.raw_answer"] == SCHEMA_VIOLATION
    rejected = assert_dead_letter(d, dlq["llm_rejected"], topic=chunks_topic, stage="extract",
                                  reason="llm_rejected", error_class="ExtractionFailed")
    assert "maximum context length" in rejected["error.message"] and "llm.raw_answer" not in rejected

    # The failed chunks are stored with their error and nothing extracted; the others normally.
    video = store.videos.find([LLM_VIDEO])[0]
    assert video["chunks_stored"] == video["chunk_count"] >= 3
    docs = {c["_id"]: c for c in store.db.chunks.find({"video_id": LLM_VIDEO})}
    assert len(docs) == video["chunk_count"]
    for reason, record in dlq.items():
        doc = docs.pop(record.key().decode())
        assert doc["extraction_error"].startswith(f"{reason}: ") and doc["entity_count"] == 0, doc
    assert all(c["extraction_error"] is None for c in docs.values())
    assert sum(c["entity_count"] for c in docs.values()) > 0  # the worker went on extracting
    assert evidence_mismatches(store) == []
    assert_no_stall(worker)


# --------------------------------------------------------------------------- extract: the circuit breaker

def circuit_state(port: int) -> float | None:
    """graphrag_llm_circuit_state of the app serving /metrics on ``port`` (None: not served yet)."""
    return served_metric(port, 'graphrag_llm_circuit_state{model="gpt-test"}')


def test_the_circuit_opens_at_the_extract_stage_while_the_llm_fails_and_nothing_is_lost(
        deployment_factory: DeploymentFactory, fake: FakeOpenAI) -> None:
    apps = parse_stages("all")
    base = free_port_block(len(apps))
    d = llm_deployment(deployment_factory, fake, monitoring={"metrics_port": base})
    extract_port = base + apps.index(Stage.EXTRACT)
    store = GraphStore.from_settings(d.settings)
    fake.fault(*["500"] * 100_000)  # the LLM fails every call until the faults are cleared
    worker = d.start_worker("all")
    d.cli("submit", LLM_VIDEO)

    wait_until(lambda: circuit_state(extract_port) == 2, 120,
               message=lambda: f"the circuit open (state {circuit_state(extract_port)}); log:\n{worker.log_tail()}")
    # While open: nothing dead-lettered, nothing extracted, every chunk unacknowledged.
    chunks = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}transcripts.chunks")
    assert chunks
    assert dead_letters(d) == []
    assert consume_all(d.settings, f"{d.settings.kafka.topic_prefix}graph.extractions") == []
    lag = total_lag(measure_lag(d.settings, stage_groups(d.settings, [Stage.EXTRACT])))
    assert lag == len(chunks), (lag, len(chunks))
    assert not video_done(store, LLM_VIDEO)
    failing = fake.stats()["requests"]
    assert failing >= 3

    with fake.state.lock:  # the LLM recovers
        fake.state.faults.clear()
    wait_until(lambda: video_done(store, LLM_VIDEO), 300, interval=2,
               message=lambda: f"{LLM_VIDEO} done after recovery; log:\n{worker.log_tail()}")
    wait_quiescent(d.settings, workers=[worker])
    assert circuit_state(extract_port) == 0
    assert dead_letters(d) == []
    video = store.videos.find([LLM_VIDEO])[0]
    assert video["chunks_stored"] == video["chunk_count"] == len(chunks)
    assert store.db.chunks.count_documents({"extraction_error": {"$ne": None}}) == 0
    extractions = extractions_by_chunk(d.settings)
    assert sorted(extractions) == sorted(m.key().decode() for m in chunks)
    assert all(len(found) == 1 for found in extractions.values())
    assert evidence_mismatches(store) == []
    assert_no_stall(worker)
