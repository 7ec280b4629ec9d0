"""Name normalisation (the key surface forms meet under) and deterministic IDs."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest

from streams.model.ids import chunk_id, entity_id, evidence_id, mention_id, relation_id, stable_id
from streams.resolution.normalize import PROPER_NOUN_TYPES, normalize_name, normalize_type, singular
from tests.support import ROOT

# --------------------------------------------------------------------------- normalize_name


@pytest.mark.parametrize(("surface", "etype", "key"), [
    # Names from the corpus (Kurzgesagt/Pw0IZg7_4mo, YaleCourses/-HxP28QcnIQ).
    ("Phobos", "LOCATION", "phobos"),
    ("PHOBOS", "LOCATION", "phobos"),
    ("Phobos", "CONCEPT", "phobos"),  # -os is no plural
    ("Deimos", "CONCEPT", "deimos"),
    ("Mars", "LOCATION", "mars"),
    ("Mars's", "LOCATION", "mars"),
    ("Judge Richard Posner", "PERSON", "judge richard posner"),
    ("Posner's", "PERSON", "posner"),
    ("judge Posner\u2019s", "PERSON", "judge posner"),  # curly apostrophe
    ("Oliver Wendell Holmes", "PERSON", "oliver wendell holmes"),
    ("General Electric Pension Trust", "ORGANIZATION", "general electric pension trust"),
    ("Journal of Legal Studies", "WORK", "journal of legal studies"),
])
def test_proper_names(surface: str, etype: str, key: str) -> None:
    assert normalize_name(surface, etype) == key


@pytest.mark.parametrize("surface", ["ant colonies", "Ant Colonies", "the ant colonies", "The Ant Colony",
                                     "ant colony", "Ant Colony's", "ant colony\u2019s", "  ant   colonies ",
                                     "an ant colony"])
def test_common_noun_forms_meet_on_one_key(surface: str) -> None:
    assert normalize_name(surface, "CONCEPT") == "ant colony"


@pytest.mark.parametrize(("plural", "key"), [
    ("black holes", "black hole"), ("moons", "moon"), ("asteroids", "asteroid"), ("theories", "theory"),
    ("churches", "church"), ("boxes", "box"), ("classes", "class"), ("bushes", "bush"),
])
def test_plurals_of_common_nouns_are_folded(plural: str, key: str) -> None:
    assert normalize_name(plural, "CONCEPT") == key
    assert normalize_name(key, "CONCEPT") == key


@pytest.mark.parametrize("word", ["species", "physics", "economics", "news", "data", "gas", "virus",
                                  "analysis", "glass", "bus"])
def test_words_that_only_look_plural_keep_their_s(word: str) -> None:
    assert normalize_name(word, "CONCEPT") == word


@pytest.mark.parametrize("etype", sorted(PROPER_NOUN_TYPES))
def test_proper_noun_types_keep_their_s(etype: str) -> None:
    assert normalize_name("Jones", etype) == "jones"
    assert normalize_name("Williams", etype.lower()) == "williams"  # the type is normalised too
    assert normalize_name("Athens", etype) == "athens"


def test_only_the_last_word_of_a_common_noun_is_singularised() -> None:
    assert normalize_name("mortgage loans", "CONCEPT") == "mortgage loan"
    assert normalize_name("sales contracts", "CONCEPT") == "sales contract"


def test_plural_folding_is_for_common_nouns_only() -> None:
    assert normalize_name("Jones", "CONCEPT") == "jone"
    assert normalize_name("Jones", "PERSON") == "jones"
    assert normalize_name("ant colonies", "ORGANIZATION") == "ant colonies"


def test_unicode_case_and_compatibility_forms() -> None:
    assert normalize_name("\uff2d\uff41\uff52\uff53", "LOCATION") == "mars"  # full-width letters (NFKC)
    assert normalize_name("\ufb01sh", "SPECIES") == "fish"  # the "fi" ligature
    assert normalize_name("STRASSE", "LOCATION") == normalize_name("stra\u00dfe", "LOCATION")  # casefold, not lower


@pytest.mark.parametrize(("surface", "key"), [
    ("U.S.A.", "usa"),
    ("the U.S. Supreme Court", "us supreme court"),
    ("J.C. Penney", "jc penney"),
    ("Big-Bang!!", "big bang"),
    ("  the   Big\u2014Bang ", "big bang"),
    ("Market Street Associates v. Fry", "market street associates v fry"),
    ("\u201cGood Faith\u201d", "good faith"),
])
def test_acronyms_punctuation_and_whitespace(surface: str, key: str) -> None:
    assert normalize_name(surface, "ORGANIZATION") == key


def test_leading_article_only() -> None:
    assert normalize_name("The Hague", "LOCATION") == "hague"
    assert normalize_name("An Inconvenient Truth", "WORK") == "inconvenient truth"
    assert normalize_name("Theatre of the Absurd", "WORK") == "theatre of the absurd"
    assert normalize_name("Anna", "PERSON") == "anna"


@pytest.mark.parametrize("surface", ["", "   ", "!!!", "\u2019\u2019", "...", "\u2014"])
def test_nothing_word_like_gives_an_empty_key(surface: str) -> None:
    assert normalize_name(surface) == ""


def test_singular_leaves_short_and_non_alphabetic_words() -> None:
    assert singular("gas") == "gas"
    assert singular("its") == "its"
    assert singular("mp3s") == "mp3s"
    assert singular("colonies") == "colony"


@pytest.mark.parametrize(("raw", "norm"), [
    ("person", "PERSON"), (" Location ", "LOCATION"), ("work of art", "WORK_OF_ART"),
    ("part-of", "PART_OF"), ("\uff30\uff25\uff32\uff33\uff2f\uff2e", "PERSON"), ("!!", "UNKNOWN"), ("", "UNKNOWN"),
    ("orbits", "ORBITS"),
])
def test_normalize_type(raw: str, norm: str) -> None:
    assert normalize_type(raw) == norm


# --------------------------------------------------------------------------- ids


def test_known_values_pin_the_hash() -> None:
    """An accidental change of the hash scheme would re-key every stored record."""
    assert entity_id("LOCATION", "mars") == "92a3dbf27a6c23fb99c4965e"
    assert chunk_id("Pw0IZg7_4mo", 0, "Phobos and Deimos orbit Mars.") == "7ddba91e041bf3ec2341decf"


def test_ids_are_24_hex_and_deterministic_across_processes() -> None:
    here = [chunk_id("Pw0IZg7_4mo", 3, "text"), entity_id("PERSON", "richard posner"),
            relation_id("a" * 24, "b" * 24, "orbit"), mention_id("c" * 24, "d" * 24),
            evidence_id("c" * 24, "e" * 24)]
    for value in here:
        assert re.fullmatch("[0-9a-f]{24}", value), value
    code = ("from streams.model.ids import *; print(chunk_id('Pw0IZg7_4mo', 3, 'text'), "
            "entity_id('PERSON', 'richard posner'), relation_id('a'*24, 'b'*24, 'orbit'), "
            "mention_id('c'*24, 'd'*24), evidence_id('c'*24, 'e'*24))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}, timeout=60, check=True)
        assert out.stdout.split() == here


def test_type_case_does_not_matter_but_type_does() -> None:
    assert entity_id("location", "mars") == entity_id("LOCATION", "mars")
    assert entity_id("LOCATION", "mars") != entity_id("CONCEPT", "mars")
    assert relation_id("a", "b", "orbit") == relation_id("a", "b", "ORBIT")
    assert relation_id("a", "b", "ORBIT") != relation_id("b", "a", "ORBIT")  # relations are directed


def test_kinds_and_part_boundaries_never_collide_in_a_sample() -> None:
    names = ["mars", "phobos", "deimos", "ant colony", "richard posner", "a", "ab", "", "1"]
    ids: dict[str, tuple[object, ...]] = {}

    def add(value: str, what: tuple[object, ...]) -> None:
        assert value not in ids, f"{what} collides with {ids.get(value)}"
        ids[value] = what

    for n in names:
        for t in ("PERSON", "LOCATION", "CONCEPT"):
            add(entity_id(t, n), ("entity", t, n))
        add(stable_id("entity", n), ("entity-1", n))
    for a, b in itertools.permutations(names[:5], 2):
        add(relation_id(a, b, "ORBIT"), ("relation", a, b))
        add(mention_id(a, b), ("mention", a, b))
        add(evidence_id(a, b), ("evidence", a, b))
    for i, n in enumerate(names):
        add(chunk_id("Pw0IZg7_4mo", i, n), ("chunk", i, n))
        add(chunk_id("Pw0IZg7_4mo", i + 100, n), ("chunk", i + 100, n))
    # Where the parts are split matters, not only their concatenation.
    add(stable_id("x", "ab", "c"), ("x", "ab", "c"))
    add(stable_id("x", "a", "bc"), ("x", "a", "bc"))
    add(stable_id("x", "abc"), ("x", "abc"))
    add(stable_id("x", 1, 23), ("x", 1, 23))
    add(stable_id("x", 12, 3), ("x", 12, 3))
