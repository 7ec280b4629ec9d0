"""Answers from the graph in memory (streams/query/index.py, streams/query/answers.py).

The index finds a name by looking up the question's word n-grams instead of running one
regular expression per name form: it must find exactly the names some span of the question's
words folds to (whole words, aliases, the longest form scoring highest), plus fuzzy matches; community
reports are scored through an inverted index, exactly as a comparison with every report.
"""

from __future__ import annotations

import random

from streams.query.answers import answer_global, answer_local, match_entities
from streams.query.index import QueryIndex, community_text, content_words, name_forms
from streams.query.snapshot import GraphSnapshot
from streams.resolution.normalize import normalize_name
from streams.resolution.resolve import fold

Doc = dict[str, object]


def entity(eid: str, name: str, *aliases: str, mentions: int = 1) -> tuple[str, Doc]:
    return eid, {"_id": eid, "name": name, "aliases": list(aliases), "type": "CONCEPT", "mention_count": mentions}


def index_of(*entities: tuple[str, Doc], communities: tuple[Doc, ...] = ()) -> QueryIndex:
    return QueryIndex.build(dict(entities), communities)


def exact(index: QueryIndex, question: str) -> dict[str, float]:
    return {eid: s for eid, s in index.named(question).items() if s >= 100}


def test_a_name_is_found_only_as_whole_words() -> None:
    idx = index_of(entity("art", "Art"), entity("bh", "Black Hole"))
    assert exact(idx, "Who was at the party?") == {}
    assert exact(idx, "Is art history hard?") == {"art": 103.0}
    assert exact(idx, "What happens inside black holes?") == {"bh": 110.0}  # the plural folds like the name
    assert exact(idx, "Is a black cat a hole?") == {}


def test_a_name_whose_form_is_folded_singular_is_found_anywhere_in_the_question() -> None:
    idx = index_of(entity("mars", "Mars"), entity("bh", "Black Holes"))
    assert exact(idx, "Does Mars have moons?") == {"mars": 103.0}  # "Mars" folds to "mar"
    assert exact(idx, "What is said about Mars?") == {"mars": 103.0}
    assert exact(idx, "Do black holes evaporate?") == {"bh": 110.0}


def test_aliases_are_found_and_the_longest_form_scores() -> None:
    idx = index_of(entity("un", "United Nations", "UN General Assembly"), entity("ga", "General Assembly"))
    found = exact(idx, "what did the un general assembly decide")
    assert found == {"un": 100.0 + len("un general assembly"), "ga": 100.0 + len("general assembly")}


def test_short_names_and_stopwords_are_left_out_and_fuzzy_matches_come_after() -> None:
    idx = index_of(entity("ai", "AI"), entity("ein", "Albert Einstein"), entity("the", "The"))
    assert name_forms({"name": "AI"}) == set() and name_forms({"name": "The"}) == set()
    scored = idx.named("what did albert einstien say")
    assert 88 <= scored["ein"] < 100 and set(scored) == {"ein"}


def test_the_lookup_finds_what_a_regular_expression_per_form_finds() -> None:
    rnd = random.Random(5)
    vocab = ["black", "hole", "star", "stars", "quantum", "field", "theory", "gravity", "light", "dark", "matter",
             "contract", "law", "court", "energy", "wave", "string", "party", "art", "arts"]
    entities = [entity(f"e{i}", " ".join(rnd.sample(vocab, rnd.randint(1, 3)))) for i in range(60)]
    idx = index_of(*entities)
    for _ in range(300):
        question = " ".join(rnd.choices([*vocab, "what", "is", "a", "the", "about"], k=rnd.randint(2, 9))) + "?"
        words = normalize_name(question, "PERSON").split()
        spans = {fold(" ".join(words[i:j])) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        expected: dict[str, float] = {}
        for eid, e in entities:
            for f in name_forms(e) & spans:
                expected[eid] = max(expected.get(eid, 0.0), 100.0 + len(f))
        assert exact(idx, question) == expected, question


def test_community_overlaps_are_those_of_every_report() -> None:
    names = {"a": "Dark Matter", "b": "Vera Rubin"}
    communities = (
        {"_id": "c1", "members": ["a", "b"], "report": {"title": "Galaxies", "summary": "Rotation curves",
                                                         "findings": [{"text": "Stars orbit too fast"}]}},
        {"_id": "c2", "members": [], "report": {"title": "Contracts", "summary": "Offer and acceptance"}},
        {"_id": "c3", "members": ["b"], "report": {}},
    )
    idx = QueryIndex.build({k: {"name": v} for k, v in names.items()}, communities)
    for question in ("Why do stars orbit galaxies so fast?", "What did Vera Rubin find about dark matter?",
                     "Is an offer a contract?", "nothing shared here"):
        words = content_words(question)
        expected = {i: len(words & content_words(community_text(c, names))) for i, c in enumerate(communities)}
        assert idx.community_overlaps(question) == {i: n for i, n in expected.items() if n}


def _graph() -> GraphSnapshot:
    entities = dict([entity("rubin", "Vera Rubin", mentions=3), entity("dm", "Dark Matter", mentions=5)])
    rel = {"_id": "r1", "source_id": "rubin", "target_id": "dm", "type": "STUDIED", "weight": 4,
           "description": "She measured rotation curves."}
    mentions = {
        "rubin": [{"_id": "m1", "entity_id": "rubin", "chunk_id": "v1:0", "video_id": "v1", "start": 12.0,
                   "surface": "Vera Rubin"},
                  {"_id": "m0", "entity_id": "rubin", "chunk_id": "v1:0", "video_id": "v1", "start": 3.0,
                   "surface": "Rubin"},
                  {"_id": "m2", "entity_id": "rubin", "chunk_id": "v1:1", "video_id": "v1", "start": 40.0,
                   "surface": "Vera Rubin"}],  # v1:1 does not say it: never cited
        "dm": [{"_id": "m3", "entity_id": "dm", "chunk_id": "v1:0", "video_id": "v1", "start": 20.0,
                "surface": "dark matter"}],
    }
    chunks = {"v1": [{"_id": "v1:0", "video_id": "v1", "index": 0}, {"_id": "v1:1", "video_id": "v1", "index": 1}]}
    texts = {"v1:0": "Rubin found that Vera Rubin's galaxies need dark matter.", "v1:1": "Something else."}
    evidence = {"r1": [{"_id": "ev1", "relation_id": "r1", "chunk_id": "v1:0", "source_id": "rubin",
                        "target_id": "dm", "strength": 7}]}
    community = {"_id": "c1", "level": 0, "members": ["rubin", "dm"],
                 "report": {"title": "Dark matter and galaxies", "summary": "Rubin's rotation curves.", "rating": 7,
                            "findings": [{"text": "Galaxies spin too fast.", "entity_ids": ["rubin"],
                                          "evidence": [{"chunk_id": "v1:0"}]}]}}
    return GraphSnapshot(("sig",), entities, {"rubin": [rel], "dm": [rel]}, mentions, [community],
                         {"rubin": [community], "dm": [community]}, chunks, texts, 0.0, evidence)


def test_a_local_answer_cites_the_earliest_mention_the_chunk_really_says() -> None:
    graph = _graph()
    assert [e["_id"] for e in match_entities(graph, "What did Vera Rubin study?")] == ["rubin"]
    answer = answer_local(graph, "What did Vera Rubin study?")
    assert [(c.chunk_id, c.seconds) for c in answer.citations] == [("v1:0", 3.0)]
    assert "Vera Rubin studied Dark Matter" in answer.text


def test_a_global_answer_ranks_reports_from_the_index() -> None:
    answer = answer_global(_graph(), "Why do galaxies spin so fast?")
    assert [c["id"] for c in answer.communities] == ["c1"]
    assert [(c.chunk_id, c.seconds) for c in answer.citations] == [("v1:0", 3.0)]
    assert answer_global(_graph(), "contracts and courts").communities == []


def test_bm25_finds_an_entity_by_its_description_when_the_question_names_none() -> None:
    entities = {"kep": {"name": "Kepler", "description": "A space telescope that found exoplanets by transits."},
                "rub": {"name": "Vera Rubin", "description": "Astronomer who measured galaxy rotation curves."},
                "law": {"name": "Contract Law", "description": "Offer, acceptance and consideration."}}
    idx = QueryIndex.build(entities, ())
    assert idx.named("Which telescope found exoplanets?") == {}
    found = idx.entity_text.search("Which telescope found exoplanets?", 5)
    assert list(found) == ["kep"] and found["kep"] > 0
    assert idx.entity_text.search("rotation curves of galaxies", 5).keys() == {"rub"}
    assert idx.entity_text.search("nothing in common here", 5) == {}
    assert QueryIndex.build({}, ()).entity_text.search("telescope", 5) == {}  # an empty graph


def test_a_question_that_names_no_entity_is_answered_from_the_descriptions() -> None:
    graph = _graph()
    graph.entities["dm"]["description"] = "Invisible mass that holds galaxies together."
    graph = GraphSnapshot(graph.signature, graph.entities, graph.relations_by_entity, graph.mentions_by_entity,
                          graph.communities, graph.communities_by_entity, graph.chunks_by_video, graph.chunk_texts,
                          0.0, graph.evidence_by_relation)
    assert [e["_id"] for e in match_entities(graph, "What holds galaxies together?")] == ["dm"]
    answer = answer_local(graph, "What holds galaxies together?")
    assert answer.citations and "Dark Matter" in answer.text
    assert answer_local(graph, "Who won the football cup?").citations == []


def test_chunks_with_as_many_mentions_are_ranked_by_bm25_for_the_question() -> None:
    texts = {"a": "Mars has two moons and red dust storms.", "b": "Mars and its moon Phobos, which orbits fast."}
    idx = QueryIndex.build({}, (), texts)
    assert list(idx.chunk_text.search("Which moon of Mars orbits fast?", 5)) == ["b", "a"]
    mars = {"mars": {"name": "Mars", "mention_count": 2}}
    mentions = {"mars": [{"_id": f"m{c}", "entity_id": "mars", "chunk_id": c, "video_id": "v", "start": float(i),
                          "surface": "Mars"} for i, c in enumerate(texts)]}
    graph = GraphSnapshot(("sig",), mars, {}, mentions, [], {}, {"v": [{"_id": c, "index": i}
                                                                       for i, c in enumerate(texts)]}, texts, 0.0)
    # One mention each: the chunk about the question's words comes first, whichever it is.
    for question, first in (("How fast does the moon of Mars orbit?", "b"), ("Are there dust storms on Mars?", "a")):
        assert [c.chunk_id for c in answer_local(graph, question).citations] == [first, *({"a", "b"} - {first})]


def test_an_index_built_from_the_previous_one_equals_one_built_afresh() -> None:
    rnd = random.Random(11)
    words = ["black", "hole", "star", "quantum", "field", "gravity", "light", "dark", "matter", "court", "wave"]

    def graph() -> dict[str, Doc]:
        return {f"e{i}": {"name": " ".join(rnd.sample(words, rnd.randint(1, 3))),
                          "aliases": [rnd.choice(words)] if rnd.random() < 0.3 else [],
                          "description": " ".join(rnd.sample(words, 4))} for i in rnd.sample(range(80), 50)}

    chunks = {f"c{i}": " ".join(rnd.sample(words, 6)) for i in range(20)}
    index = QueryIndex.build(graph(), (), chunks)
    for _ in range(20):
        entities = graph()  # some entities gone, some new, some renamed
        again = QueryIndex.build(entities, (), chunks, previous=index)
        fresh = QueryIndex.build(entities, (), chunks)
        assert again.entities_by_form == fresh.entities_by_form and again.forms == fresh.forms
        assert again.longest_form == fresh.longest_form
        assert again.chunk_text is index.chunk_text  # the same chunks: the same BM25 index
        for q in ("black hole light", "dark matter", "quantum gravity wave"):
            assert again.named(q) == fresh.named(q)
            assert again.entity_text.search(q, 5) == fresh.entity_text.search(q, 5)
        index = again
    assert QueryIndex.build(entities, (), chunks, previous=index).entity_text is index.entity_text
    assert QueryIndex.build(entities, (), {**chunks, "new": "light"}, previous=index).chunk_text is not index.chunk_text
