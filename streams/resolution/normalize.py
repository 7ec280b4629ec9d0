"""Entity-name normalisation: the key under which surface forms of one name meet.

"The ant colonies", "ant colony" and "Ant Colony's" must land on one key, and "Jones"
must stay "jones". The rules are deliberately simple and predictable (Unicode NFKC, case,
punctuation, whitespace, possessives, a leading article, simple plurals of common nouns);
fuzzy matching in the resolver handles what they leave.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_POSSESSIVE = re.compile(r"(?<=\w)'s\b|(?<=s)'(?=\s|$)")
_DOTTED_ACRONYM = re.compile(r"\b(?:[a-z]\.){2,}")
_NON_WORD = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+")

# Endings that look plural but usually are not (Phobos, virus, analysis, gas, ...). Proper
# nouns ("Mars", "Jones") are protected by their type instead (PROPER_NOUN_TYPES).
_SINGULAR_ENDINGS = ("ss", "us", "is", "os", "as", "ys")
# Names of these types are proper nouns: "Jones", "Athens" and "Williams" are no plurals.
PROPER_NOUN_TYPES = frozenset({"PERSON", "ORGANIZATION", "LOCATION", "EVENT", "WORK"})
_INVARIANT = frozenset({"species", "series", "news", "physics", "mathematics", "economics",
                        "politics", "ethics", "genetics", "data", "media"})


def singular(word: str) -> str:
    """Strip a simple English plural from one lowercase word."""
    if len(word) <= 3 or word in _INVARIANT or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zzes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(_SINGULAR_ENDINGS):
        return word[:-1]
    return word


#: Names recur in every chunk that mentions them, and a merge pass normalises each one
#: dozens of times (blocks, IDs, relation endpoints): both functions are pure, so cached.
_CACHED = 1 << 16


@lru_cache(maxsize=_CACHED)
def normalize_name(name: str, entity_type: str = "CONCEPT") -> str:
    """The normalised key of an entity name ("" when nothing word-like is left).

    Plurals are folded only for common-noun types (see ``PROPER_NOUN_TYPES``).
    """
    text = unicodedata.normalize("NFKC", name).translate(_APOSTROPHES).casefold().strip()
    text = _POSSESSIVE.sub("", text)
    text = _DOTTED_ACRONYM.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _NON_WORD.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    text = _LEADING_ARTICLE.sub("", text)
    if not text:
        return ""
    if normalize_type(entity_type) in PROPER_NOUN_TYPES:
        return text
    words = text.split(" ")
    words[-1] = singular(words[-1])
    return " ".join(words)


@lru_cache(maxsize=_CACHED)
def normalize_type(entity_type: str) -> str:
    """Entity and relation types: upper snake case ("work of art" -> "WORK_OF_ART")."""
    t = unicodedata.normalize("NFKC", entity_type).strip().upper()
    return re.sub(r"[^A-Z0-9]+", "_", t).strip("_") or "UNKNOWN"
