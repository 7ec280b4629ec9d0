"""Lookup structures for answering questions, built once per graph snapshot.

Why: a question used to read every entity and community from the store and run one
regular expression per name form (seconds on the corpus graph, FerretDB scanning each
collection). Here each name form is a key of a dict, so the names a question contains are
found by looking up its word n-grams (as many lookups as the question has words times the
longest name), fuzzy matching runs over the distinct forms once (rapidfuzz, in C), and
community reports are found through an inverted index from content words, so only the
communities that share a word with the question are scored. Questions that name no entity
are answered through BM25 (bm25s) over entity names and descriptions and over chunk text.

A snapshot's index is built from the one before it: name forms are folded again only for
entities whose name or aliases changed, and a BM25 index is rebuilt only when its texts
changed (chunk IDs are hashes of their text, so an unchanged set of chunks is unchanged text).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np
from rapidfuzz import fuzz, process

from streams.extraction.offline import STOPWORDS
from streams.resolution.normalize import normalize_name
from streams.resolution.resolve import fold

Doc = dict[str, Any]
FUZZY_CUTOFF = 88


def content_words(text: str) -> set[str]:
    """The words a question and a report are compared on (folded, no stopwords)."""
    return {w for w in fold(text).split() if len(w) > 2 and w not in STOPWORDS}


def terms(text: str) -> list[str]:
    """The words BM25 counts (folded, no stopwords, repeats kept)."""
    return [w for w in fold(text).split() if len(w) > 1 and w not in STOPWORDS]


class TextIndex:
    """BM25 over documents by ID (bm25s, numpy): a question costs one sparse dot product,
    not a pass over every text."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = dict(texts)
        self.ids = tuple(self.texts)
        self._bm25 = bm25s.BM25()
        self._vocab: Mapping[str, int] = {}
        if self.ids:
            self._bm25.index([terms(self.texts[i]) for i in self.ids], show_progress=False)
            self._vocab = self._bm25.vocab_dict

    def search(self, question: str, limit: int) -> dict[str, float]:
        """The ``limit`` best documents sharing a word with the question -> BM25 score."""
        wanted = [t for t in terms(question) if t in self._vocab]
        if not wanted or limit <= 0:
            return {}
        scores = self._bm25.get_scores(wanted)
        top = np.argsort(-scores, kind="stable")[:limit]
        return {self.ids[i]: float(scores[i]) for i in top if scores[i] > 0}

    def reused_or_rebuilt(self, texts: Mapping[str, str], *, ids_name_content: bool = False) -> TextIndex:
        """This index when ``texts`` are the ones it holds, otherwise a new one. With
        ``ids_name_content`` (IDs are hashes of the text) comparing the IDs is enough."""
        same = texts.keys() == self.texts.keys() if ids_name_content else texts == self.texts
        return self if same else TextIndex(texts)


def entity_text(entity: Doc) -> str:
    """What an entity is found by when the question does not name it: name, aliases, description."""
    return " ".join([entity.get("name", ""), *(entity.get("aliases") or []), entity.get("description") or ""])


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
    forms_by_entity: Mapping[str, tuple[tuple[str, ...], frozenset[str]]]  # id -> (name + aliases, forms)
    entity_text: TextIndex  # BM25 over names, aliases and descriptions
    chunk_text: TextIndex  # BM25 over chunk text

    @classmethod
    def build(cls, entities: Mapping[str, Doc], communities: Iterable[Doc],
              chunk_texts: Mapping[str, str] | None = None, previous: QueryIndex | None = None) -> QueryIndex:
        """The index of a graph; from ``previous`` (the last snapshot's), only what changed is redone."""
        old = previous.forms_by_entity if previous is not None else {}
        forms_by_entity: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
        for eid, e in entities.items():
            raw = (e.get("name", ""), *(e.get("aliases") or []))
            kept = old.get(eid)
            forms_by_entity[eid] = kept if kept is not None and kept[0] == raw else (raw, frozenset(name_forms(e)))
        by_form: dict[str, list[str]]
        if previous is not None:  # unfold what left or changed, fold what arrived or changed
            by_form = {f: list(ids) for f, ids in previous.entities_by_form.items()}
            gone = [eid for eid in old if eid not in forms_by_entity]
            changed = [eid for eid, f in forms_by_entity.items() if old.get(eid) is not f]
            for eid in (*gone, *changed):
                for f in old.get(eid, ((), frozenset()))[1]:
                    by_form[f] = [i for i in by_form.get(f, []) if i != eid]
            for eid in changed:
                for f in forms_by_entity[eid][1]:
                    by_form.setdefault(f, []).append(eid)
        else:
            by_form = {}
            for eid in entities:
                for f in forms_by_entity[eid][1]:
                    by_form.setdefault(f, []).append(eid)
        by_form = {f: ids for f, ids in by_form.items() if ids}
        names = {eid: e.get("name", "") for eid, e in entities.items()}
        words: list[frozenset[str]] = []
        by_word: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(communities):
            ws = frozenset(content_words(community_text(c, names)))
            words.append(ws)
            for w in ws:
                by_word[w].append(i)
        described = {eid: entity_text(e) for eid, e in entities.items()}
        texts = chunk_texts or {}
        entity_index = previous.entity_text.reused_or_rebuilt(described) if previous else TextIndex(described)
        chunk_index = (previous.chunk_text.reused_or_rebuilt(texts, ids_name_content=True) if previous
                       else TextIndex(texts))
        return cls({f: tuple(sorted(ids)) for f, ids in by_form.items()},
                   max((len(f.split()) for f in by_form), default=0), tuple(sorted(by_form)),
                   {w: tuple(ps) for w, ps in by_word.items()}, tuple(words), forms_by_entity,
                   entity_index, chunk_index)

    def named(self, question: str) -> dict[str, float]:
        """Entity id -> score for the names and aliases the question contains (100 + length of
        the longest form found), then fuzzy matches of its 1-3 word n-grams (rapidfuzz ratio).

        Each n-gram is folded as a name is (its last word made singular), so "Does Mars have
        moons?" finds Mars, whose folded form is "mar"; folding the question whole would only
        make its last word singular."""
        words = normalize_name(question, "PERSON").split()  # folded, plurals kept
        scored: dict[str, float] = {}
        grams: dict[tuple[int, int], str] = {}
        for n in range(1, max(min(self.longest_form, len(words)), min(3, len(words))) + 1):
            for i in range(len(words) - n + 1):
                grams[(i, n)] = form = fold(" ".join(words[i:i + n]))
                if n > self.longest_form:
                    continue
                for eid in self.entities_by_form.get(form, ()):
                    scored[eid] = max(scored.get(eid, 0.0), 100.0 + len(form))
        fuzzy = {g for (_, n), g in grams.items() if n <= 3}
        for g in (g for g in fuzzy if len(g) >= 5 and g not in STOPWORDS):
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
