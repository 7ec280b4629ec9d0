"""Lookup structures for answering questions, built once per graph snapshot.

Why: a question used to read every entity and community from the store and run one
regular expression per name form (seconds on the corpus graph, FerretDB scanning each
collection). Here each name form is a key of a dict, so the names a question contains are
found by looking up its word n-grams (as many lookups as the question has words times the
longest name), fuzzy matching runs over the distinct forms once (rapidfuzz, in C), and
community reports are found through an inverted index from content words, so only the
communities that share a word with the question are scored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process

from streams.extraction.offline import STOPWORDS
from streams.resolution.resolve import fold

Doc = dict[str, Any]
FUZZY_CUTOFF = 88


def content_words(text: str) -> set[str]:
    """The words a question and a report are compared on (folded, no stopwords)."""
    return {w for w in fold(text).split() if len(w) > 2 and w not in STOPWORDS}


def name_forms(entity: Doc) -> set[str]:
    """An entity's name and aliases as matched in questions (folded; too short or a stopword: left out)."""
    forms = set()
    for form in {entity.get("name", ""), *(entity.get("aliases") or [])}:
        f = fold(form)
        if f and f not in STOPWORDS and len(f) >= 3:
            forms.add(f)
    return forms


def community_text(community: Doc, names: Mapping[str, str]) -> str:
    """What a community is found by: its report's title, summary and findings, and its first members' names."""
    report = community.get("report") or {}
    return " ".join([report.get("title", ""), report.get("summary", ""),
                     *(f.get("text", "") for f in report.get("findings", [])),
                     *(names.get(m, "") for m in community.get("members", [])[:50])])


@dataclass(frozen=True)
class QueryIndex:
    entities_by_form: Mapping[str, tuple[str, ...]]  # folded form -> entity ids
    longest_form: int  # in words
    forms: tuple[str, ...]  # distinct forms, for fuzzy matching
    communities_by_word: Mapping[str, tuple[int, ...]]  # content word -> positions in ``communities``
    community_words: tuple[frozenset[str], ...]

    @classmethod
    def build(cls, entities: Mapping[str, Doc], communities: Iterable[Doc]) -> QueryIndex:
        by_form: dict[str, list[str]] = defaultdict(list)
        for eid, e in entities.items():
            for f in name_forms(e):
                by_form[f].append(eid)
        names = {eid: e.get("name", "") for eid, e in entities.items()}
        words: list[frozenset[str]] = []
        by_word: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(communities):
            ws = frozenset(content_words(community_text(c, names)))
            words.append(ws)
            for w in ws:
                by_word[w].append(i)
        return cls({f: tuple(ids) for f, ids in by_form.items()},
                   max((len(f.split()) for f in by_form), default=0), tuple(by_form),
                   {w: tuple(ps) for w, ps in by_word.items()}, tuple(words))

    def named(self, question: str) -> dict[str, float]:
        """Entity id -> score for the names and aliases the question contains (100 + length of
        the longest form found), then fuzzy matches of its 1-3 word n-grams (rapidfuzz ratio)."""
        q = fold(question)
        words = q.split()
        scored: dict[str, float] = {}
        for n in range(1, min(self.longest_form, len(words)) + 1):
            for i in range(len(words) - n + 1):
                form = " ".join(words[i:i + n])
                for eid in self.entities_by_form.get(form, ()):
                    scored[eid] = max(scored.get(eid, 0.0), 100.0 + len(form))
        grams = {" ".join(words[i:i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1)}
        for g in (g for g in grams if len(g) >= 5 and g not in STOPWORDS):
            for _, score, idx in process.extract(g, self.forms, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF,
                                                 limit=3):
                for eid in self.entities_by_form[self.forms[idx]]:
                    scored[eid] = max(scored.get(eid, 0.0), float(score))
        return scored

    def community_overlaps(self, question: str) -> dict[int, int]:
        """Position of each community sharing content words with the question -> how many."""
        overlaps: dict[int, int] = defaultdict(int)
        for w in content_words(question):
            for i in self.communities_by_word.get(w, ()):
                overlaps[i] += 1
        return dict(overlaps)
