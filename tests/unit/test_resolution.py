"""Per-chunk entity resolution: canonical IDs, endpoint matching, types and spoken-at times."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest

from schemas import (
    ChunkExtraction,
    ExtractedEntity,
    ExtractedRelation,
    GraphUpdate,
    TranscriptChunk,
    TranscriptFetched,
    TranscriptSegment,
)
from schemas.events import utcnow
from streams.extraction.offline import extract_offline
from streams.model.ids import entity_id, relation_id
from streams.resolution.normalize import normalize_name
from streams.resolution.resolve import Canonical, canonical_type, resolve_extraction
from streams.settings import DEFAULT_ENTITY_TYPES
from streams.transcripts.chunking import chunk_transcript, locate
from streams.transcripts.parse import Segment, parse_transcript
from tests.support import CORPUS

VIDEO = "Pw0IZg7_4mo"


@cache
def _segments() -> tuple[Segment, ...]:
    return tuple(parse_transcript((CORPUS / "Kurzgesagt/Pw0IZg7_4mo.vtt").read_text(encoding="utf-8"), "vtt"))


@cache
def _chunks(tokens: int = 300) -> tuple[TranscriptChunk, ...]:
    now = utcnow()
    fetched = TranscriptFetched(video_id=VIDEO, source="local", source_ref="Kurzgesagt/Pw0IZg7_4mo.vtt",
                                segments=[TranscriptSegment(start=s.start, end=s.end, text=s.text)
                                          for s in _segments()],
                                requested_at=now, fetched_at=now)
    return tuple(chunk_transcript(fetched, tokens=tokens, overlap=20))


def _resolve(entities: Sequence[tuple[str, str]], relations: Sequence[tuple[str, str, str, int]] = (),
             chunk: TranscriptChunk | None = None, **kwargs: Any) -> GraphUpdate:
    extraction = ChunkExtraction(
        chunk=chunk or _chunks()[0],
        entities=[ExtractedEntity(name=n, type=t, description=f"about {n}") for n, t in entities],
        relations=[ExtractedRelation(source=s, target=d, type=t, strength=k) for s, d, t, k in relations],
        extractor="test", prompt_version="v1")
    return resolve_extraction(extraction, **kwargs)


def test_case_variants_collapse_to_one_entity() -> None:
    update = _resolve([("Phobos", "LOCATION"), ("PHOBOS", "LOCATION"), ("phobos", "location"),
                       ("Mars", "LOCATION")])
    assert [e.name for e in update.entities] == ["Phobos", "Mars"]  # the first surface form names it
    assert update.entities[0].entity_id == entity_id("LOCATION", "phobos")
    assert update.entities[1].entity_id == entity_id("LOCATION", "mars")


def test_plural_and_article_variants_of_a_concept_collapse() -> None:
    update = _resolve([("ant colonies", "CONCEPT"), ("The Ant Colony", "CONCEPT"), ("ant colony's", "CONCEPT")])
    assert len(update.entities) == 1
    assert update.entities[0].entity_id == entity_id("CONCEPT", "ant colony")


def test_ids_are_deterministic_and_independent_of_order() -> None:
    ents = [("Phobos", "LOCATION"), ("Deimos", "LOCATION"), ("Mars", "LOCATION")]
    rels = [("Phobos", "Mars", "orbits", 7), ("Deimos", "Mars", "orbits", 6)]
    a = _resolve(ents, rels)
    assert a == _resolve(ents, rels)
    b = _resolve(list(reversed(ents)), list(reversed(rels)))
    assert {e.entity_id for e in a.entities} == {e.entity_id for e in b.entities}
    assert {r.relation_id for r in a.relations} == {r.relation_id for r in b.relations}
    phobos, mars = entity_id("LOCATION", "phobos"), entity_id("LOCATION", "mars")
    assert relation_id(phobos, mars, "ORBITS") in {r.relation_id for r in a.relations}


def test_same_name_with_different_types_are_different_entities() -> None:
    update = _resolve([("Mars", "LOCATION"), ("Mars", "ORGANIZATION")])
    assert len({e.entity_id for e in update.entities}) == 2


def test_relations_resolve_names_by_variant_spelling() -> None:
    update = _resolve(
        [("Ant Colonies", "CONCEPT"), ("Judge Richard Posner", "PERSON"), ("Mars", "LOCATION")],
        [("the ant colony's", "MARS", "studies", 5),  # article, possessive, singular, case
         ("judge richard posner\u2019s", "Ant Colonies", "describes", 4)])
    colony, posner, mars = (entity_id("CONCEPT", "ant colony"), entity_id("PERSON", "judge richard posner"),
                            entity_id("LOCATION", "mars"))
    assert {(r.source_id, r.type, r.target_id) for r in update.relations} == {
        (colony, "STUDIES", mars), (posner, "DESCRIBES", colony)}


def test_relations_with_unknown_endpoints_or_self_loops_are_dropped() -> None:
    update = _resolve(
        [("Phobos", "LOCATION"), ("Mars", "LOCATION")],
        [("Phobos", "Jupiter", "orbits", 5),  # Jupiter is not an entity of this chunk
         ("Venus", "Mars", "near", 5),
         ("Phobos", "PHOBOS", "is", 9),  # a self loop through a case variant
         ("Mars", "Mars", "is", 9),
         ("Phobos", "Mars", "orbits", 8)])
    assert [(r.type, r.strength) for r in update.relations] == [("ORBITS", 8)]
    ids = {e.entity_id for e in update.entities}
    assert all(r.source_id in ids and r.target_id in ids for r in update.relations)


def test_duplicate_relations_keep_the_strongest() -> None:
    update = _resolve([("Phobos", "LOCATION"), ("Mars", "LOCATION")],
                      [("Phobos", "Mars", "orbits", 3), ("phobos", "mars", "ORBITS", 9),
                       ("Phobos", "Mars", "orbits", 5)])
    assert [(r.type, r.strength) for r in update.relations] == [("ORBITS", 9)]


def test_unknown_types_become_concept_when_a_type_list_is_given() -> None:
    ents = [("Phobos", "PLANETARY_MOON"), ("Mars", "location"), ("gravity", "physical force")]
    typed = {e.name: e.type for e in _resolve(ents, entity_types=DEFAULT_ENTITY_TYPES).entities}
    assert typed == {"Phobos": "CONCEPT", "Mars": "LOCATION", "gravity": "CONCEPT"}
    untyped = {e.name: e.type for e in _resolve(ents).entities}
    assert untyped == {"Phobos": "PLANETARY_MOON", "Mars": "LOCATION", "gravity": "PHYSICAL_FORCE"}


def test_canonical_type_without_concept_in_the_list() -> None:
    assert canonical_type("moon", ["PERSON", "LOCATION"]) == "LOCATION"  # first allowed type, sorted
    assert canonical_type("person", ["PERSON", "LOCATION"]) == "PERSON"


def test_names_without_word_characters_are_skipped() -> None:
    update = _resolve([("!!!", "CONCEPT"), ("Mars", "LOCATION")], [("!!!", "Mars", "is", 5)])
    assert [e.name for e in update.entities] == ["Mars"] and update.relations == []


@pytest.mark.parametrize("name", ["Phobos", "Deimos", "Luxembourg", "Malta", "Moon", "potatoes"])
def test_start_is_when_the_name_is_first_spoken(name: str) -> None:
    """Checked against the caption segments themselves, not against the chunk timeline."""
    chunk = _chunks()[0]
    assert chunk.start == _segments()[0].start and name in chunk.text
    spoken = next(s.start for s in _segments() if name.casefold() in s.text.casefold())
    update = _resolve([(name, "CONCEPT")], chunk=chunk)
    assert update.entities[0].start == pytest.approx(spoken)
    assert update.entities[0].start == locate(chunk.text, chunk.timeline, name, chunk.start)


def test_relation_start_is_the_earlier_endpoint_and_unknown_surfaces_fall_back_to_chunk_start() -> None:
    chunk = _chunks()[0]
    update = _resolve([("Luxembourg", "LOCATION"), ("Deimos", "CONCEPT"), ("Olympus Mons", "LOCATION")],
                      [("Luxembourg", "Deimos", "near", 3), ("Olympus Mons", "Luxembourg", "near", 3)],
                      chunk=chunk)
    starts = {e.name: e.start for e in update.entities}
    assert starts["Deimos"] < starts["Luxembourg"]
    assert starts["Olympus Mons"] == chunk.start  # never spoken in this chunk
    by_source = {r.source_id: r.start for r in update.relations}
    assert by_source[entity_id("LOCATION", "luxembourg")] == starts["Deimos"]
    assert by_source[entity_id("LOCATION", "olympus mons")] == chunk.start


def test_start_follows_the_timeline_in_a_later_chunk() -> None:
    chunks = _chunks(tokens=40)
    later = next(c for c in chunks if c.index > 0 and "Jupiter" in c.text)
    update = _resolve([("Jupiter", "LOCATION")], chunk=later)
    assert later.start <= update.entities[0].start <= later.end
    assert update.entities[0].start == locate(later.text, later.timeline, "Jupiter", later.start)


def test_resolving_real_offline_output_keeps_every_relation_grounded() -> None:
    for chunk in _chunks(tokens=60):
        found = extract_offline(chunk.text)
        extraction = ChunkExtraction(chunk=chunk, entities=found.entities, relations=found.relations,
                                     extractor="offline-plain", prompt_version="offline-plain-v1")
        update = resolve_extraction(extraction, entity_types=DEFAULT_ENTITY_TYPES)
        ids = {e.entity_id for e in update.entities}
        assert len(ids) == len(update.entities)
        for e in update.entities:
            assert e.entity_id == entity_id(e.type, normalize_name(e.name, e.type))
            assert chunk.start <= e.start <= chunk.end
        for r in update.relations:
            assert r.source_id in ids and r.target_id in ids and r.source_id != r.target_id
        assert update.chunk == chunk and update.extractor == "offline-plain"


def test_resolved_mentions_merge_entities() -> None:
    """What the resolver decided (here: both Posner mentions are one person) wins over fresh IDs."""
    posner = Canonical(entity_id("PERSON", "richard posner"), "PERSON", "Richard Posner")
    update = _resolve([("Judge Richard Posner", "PERSON"), ("Posner", "PERSON"), ("Mars", "LOCATION")],
                      [("Posner", "Judge Richard Posner", "is", 5), ("Posner", "Mars", "studies", 5)],
                      resolved={0: posner, 1: posner})
    assert [e.entity_id for e in update.entities] == [posner.entity_id, entity_id("LOCATION", "mars")]
    assert update.entities[0].name == "Richard Posner" and update.entities[0].surface == "Judge Richard Posner"
    assert [(r.source_id, r.type) for r in update.relations] == [(posner.entity_id, "STUDIES")]  # no self loop


def test_of_two_names_of_one_entity_the_one_naming_it_is_kept() -> None:
    """After a merge both "Posner" and "Richard Posner" resolve to one entity; the mention kept
    is the one naming the entity, in any order (as the merge pass keeps the survivor's own)."""
    posner = Canonical(entity_id("PERSON", "posner"), "PERSON", "Posner")
    for names in (["Richard Posner", "Posner"], ["Posner", "Richard Posner"]):
        update = _resolve([(n, "PERSON") for n in names], resolved={0: posner, 1: posner})
        assert [e.surface for e in update.entities] == ["Posner"]


def test_an_assembly_completes_once_its_extraction_and_every_mention_are_in_and_keeps_its_table_shape() -> None:
    from agents.assemble import Assembly
    from schemas import MentionResolved
    from streams.resolution.resolve import mention_requests

    extraction = ChunkExtraction(
        chunk=_chunks()[0], extractor="test", prompt_version="v1",
        entities=[ExtractedEntity(name="Posner", type="PERSON"), ExtractedEntity(name="Chicago", type="LOCATION")],
        relations=[ExtractedRelation(source="Posner", target="Chicago", type="LIVES_IN", strength=5)])
    requests = mention_requests(extraction, entity_types=DEFAULT_ENTITY_TYPES)
    answers = [MentionResolved(chunk_id=r.chunk_id, mention=r.mention, entity_id=entity_id(r.type, r.name),
                               type=r.type, canonical_name=r.name, how="new") for r in requests]
    state = Assembly()
    assert state.to_table() == {} and state.complete(entity_types=DEFAULT_ENTITY_TYPES, block_chars=2) is None
    state = state.with_resolved(answers[0])
    # The table holds what running deployments' changelogs hold: "mention": [id, type, name].
    table = state.to_table()
    assert table == {"resolved": {str(answers[0].mention): [answers[0].entity_id, "PERSON", "Posner"]}}
    state = Assembly.from_table(table)
    state = Assembly.from_table({**state.to_table(), "extraction": extraction.model_dump(mode="json")})
    assert state.complete(entity_types=DEFAULT_ENTITY_TYPES, block_chars=2) is None  # one mention still out
    update = state.with_resolved(answers[1]).complete(entity_types=DEFAULT_ENTITY_TYPES, block_chars=2)
    assert update is not None
    assert {e.name for e in update.entities} == {"Posner", "Chicago"} and len(update.relations) == 1


def test_a_chunks_mentions_travel_one_batch_per_resolver_partition_each_keyed_to_land_there() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from streams.kafka.topics import key_partition
    from streams.resolution.resolve import mention_batches, mention_requests

    chunk = _chunks()[0]
    names = ["Posner", "Chicago", "Oliver Hart", "European Union", "Mars", "Phobos", "Deimos", "Asaph Hall",
             "NASA", "Kepler", "Galileo", "Jupiter"]
    extraction = ChunkExtraction(chunk=chunk, extractor="test", prompt_version="v1",
                                 entities=[ExtractedEntity(name=n, type="CONCEPT") for n in names])
    requests = mention_requests(extraction, entity_types=DEFAULT_ENTITY_TYPES)
    batches = mention_batches(requests, lambda block: key_partition(block, 3))
    assert 1 < len(batches) <= 3
    assert sorted(m.mention for b in batches for m in b.mentions) == [r.mention for r in requests]  # each once
    for b in batches:
        assert b.chunk_id == chunk.chunk_id
        key_home = key_partition(b.mentions[0].block, 3)
        # Every block of a batch is owned by the partition its key sends it to ...
        assert {key_partition(m.block, 3) for m in b.mentions} == {key_home}
        # ... and that is the partition Faust's producer (aiokafka) picks for the key.
        assert DefaultPartitioner()(b.mentions[0].block.encode(), [0, 1, 2], [0, 1, 2]) == key_home
    assert len({key_partition(b.mentions[0].block, 3) for b in batches}) == len(batches)  # one per partition


def test_the_resolve_topics_read_a_batch_and_the_lone_message_of_an_earlier_version() -> None:
    import json

    from schemas import MentionBatch, MentionRequest, MentionResolved, MentionsResolved
    from streams.kafka.codec import decode_mentions, decode_resolved, encode
    from streams.kafka.dlq import BadMessage

    cid, other = "a" * 24, "b" * 24
    one = MentionRequest(chunk_id=cid, mention=3, name="Posner", type="PERSON", block="po")
    assert decode_mentions(encode(one), max_bytes=10_000) == MentionBatch(chunk_id=cid, mentions=[one])
    batch = MentionBatch(chunk_id=cid, mentions=[one, one.model_copy(update={"mention": 4})])
    assert decode_mentions(encode(batch), max_bytes=10_000) == batch
    answer = MentionResolved(chunk_id=cid, mention=3, entity_id="c" * 24, type="PERSON", canonical_name="Posner",
                             how="new")
    assert decode_resolved(encode(answer), max_bytes=10_000) == MentionsResolved(chunk_id=cid, answers=[answer])
    # A batch naming another chunk's mention is bad input (dead-lettered with this reason), not resolved.
    stray = batch.model_dump(mode="json")
    stray["mentions"][1]["chunk_id"] = other
    with pytest.raises(BadMessage) as info:
        decode_mentions(json.dumps(stray).encode(), max_bytes=10_000)
    assert info.value.reason == "schema_violation" and other in str(info.value)
    with pytest.raises(BadMessage):
        decode_resolved(json.dumps({"chunk_id": cid, "answers": []}).encode(), max_bytes=10_000)
