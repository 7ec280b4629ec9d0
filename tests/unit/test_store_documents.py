"""The pure rules that build stored documents from evidence (streams/store/documents.py)."""

from __future__ import annotations

from streams.store.documents import MAX_ALIASES, MAX_DESCRIPTIONS, entity_doc, relation_doc, summarize_descriptions


def _mention(surface: str, video: str = "v1", description: str = "") -> dict[str, object]:
    return {"type": "LOCATION", "surface": surface, "video_id": video, "description": description}


def test_entity_name_is_the_most_used_surface_and_a_tie_prefers_title_case() -> None:
    doc = entity_doc([_mention("PHOBOS"), _mention("phobos"), _mention("Phobos", "v2")])
    assert doc["name"] == "Phobos"
    assert doc["aliases"] == ["Phobos", "phobos", "PHOBOS"]  # then lower case, then all caps
    doc = entity_doc([_mention("PHOBOS"), _mention("PHOBOS", "v2"), _mention("Phobos")])
    assert doc["name"] == "PHOBOS"  # frequency first
    assert (doc["mention_count"], doc["video_count"]) == (3, 2)


def test_entity_aliases_and_descriptions_stay_bounded() -> None:
    mentions = [_mention(f"Name {i}", description=f"description {i % 9}") for i in range(3 * MAX_ALIASES)]
    doc = entity_doc(mentions)
    assert len(doc["aliases"]) == MAX_ALIASES
    assert len(doc["descriptions"]) == MAX_DESCRIPTIONS
    assert len(doc["description"]) <= 400


def test_relation_weight_is_the_sum_of_its_evidence_strengths() -> None:
    evidence = [{"source_id": "a", "target_id": "b", "type": "ORBITS", "strength": s, "video_id": v,
                 "description": d} for s, v, d in ((3, "v1", "x"), (5, "v1", "y"), (2, "v2", "y"))]
    doc = relation_doc(evidence)
    assert (doc["weight"], doc["evidence_count"], doc["video_count"]) == (10, 3, 2)
    assert doc["description"] == "y" and doc["descriptions"] == ["y", "x"]  # most frequent first


def test_summarized_description_joins_while_it_fits() -> None:
    assert summarize_descriptions(["A moon.", "Small"]) == "A moon. Small"
    assert summarize_descriptions(["first", "second"]) == "first; second"
    long = "x" * 500
    assert summarize_descriptions([long]) == "x" * 399 + "…"
