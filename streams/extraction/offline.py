"""The offline extractor: no network, no API key, deterministic.

Entities are proper names (runs of capitalised words and acronyms, typed by cue words)
and key phrases (content words and word pairs repeated in the chunk). Relations join
entities named in the same sentence and are labelled with the verb between them when
there is one, so "Phobos orbits Mars" gives ``ORBIT`` (the verb's base form) rather than a
bare co-occurrence.
Machine transcripts are mostly lower case, which limits proper-name recall; the spaCy
variant (``nlp`` extra) does better, the LLM best.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass

from schemas import ExtractedEntity, ExtractedRelation, TranscriptChunk
from streams.extraction.base import ExtractionResult
from streams.model.names import PERSONAL_TITLES

PROMPT_VERSION = "offline-plain-v1"

_SENTENCES = re.compile(r"(?<=[.?!])\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")

STOPWORDS = frozenset("""
a about above after again against all almost also although always am among an and another any anyone
anything are around as at away back be because been before being below between both but by can
cannot could did do does doing done don down during each either else enough even ever every everyone
everything few first for from further get gets getting go goes going gone good got great had has
have having he her here hers herself him himself his how however i if in into is isn it its itself
just kind know last less let like little lot lots make makes many may maybe me might more most much
must my myself need never new next no nor not nothing now of off often oh ok okay on once one only
or other others our ours ourselves out over own part people per perhaps please pretty put quite
rather really right said same say says see seem seems she should since so some something sometimes
still such sure take than that thats the their theirs them themselves then there these they thing
things think this those though through thus time times to together too toward towards two uh um
under until up upon us use used very want was way ways we well were what whatever when where whether
which while who whom whose why will with within without would yeah yes yet you your yours yourself
yourselves actually basically called come comes different doesn even going gonna kind lot mean means
maybe okay quite says sort stuff talk talking tell thing things try trying wanna whole word words
year years day days today let's i'm it's that's there's don't can't we're they're you're isn't
aren't wasn't weren't doesn't didn't won't wouldn't couldn't shouldn't i've we've they've you've i'd
we'd they'd he's she's what's who's here's also called instead around almost enough already versus
three four five six seven eight nine ten hundred thousand million billion trillion second third
fourth fifth half percent another able sure true false large small big tiny huge close strong weak
high low long short early late real whole simple hard easy possible important different certain
""".split())

# Capitalised words that start sentences or fill speech but name nothing.
_NOT_NAMES = frozenset("""
i i'm i've i'd i'll so and but or the a an this that these those it its if when while what why how
who where which there here then now well yes no oh okay ok um uh yeah because for from with without
we you they he she my our your their his her some many most all any each every one two three maybe
also just let let's today mr mrs ms dr professor president
""".split())

_CONNECTORS = frozenset({"of", "de", "von", "van", "der", "la", "du", "del", "the", "and"})

_TYPE_CUES: dict[str, frozenset[str]] = {
    "ORGANIZATION": frozenset("""
        university institute institution company corporation corp inc ltd association associates
        foundation agency council court party bank committee department ministry college school
        academy society union league commission organization laboratory lab group network
        administration
    """.split()),
    "LOCATION": frozenset("""
        city river mountain mountains ocean sea lake island islands valley county state states
        republic kingdom empire street desert forest bay gulf canyon planet earth mars moon sun
        jupiter saturn neptune uranus venus mercury pluto america europe africa asia australia
        antarctica china india japan russia germany france england britain canada mexico brazil
        washington london paris york
    """.split()),
    "EVENT": frozenset("""
        war revolution olympics crisis election summit conference prize depression pandemic
        festival
    """.split()),
    "WORK": frozenset("""
        act code restatement book novel film movie album law treaty constitution amendment
        theory journal studies review
    """.split()),
}

# Verbs that make a relation label; matched on their base form.
_VERBS = frozenset("""
be have contain orbit cause create make use produce become include define require lead eat build
kill protect grow need form discover invent found write study show prove explain describe destroy
attack support oppose control own run win lose fight help change affect increase reduce drive power
feed live consist emerge evolve develop release absorb trap hit collide capture reflect emit convert
break imply impose apply govern deal sign sue breach enforce hold rule decide argue claim allow
prevent protect marry teach work lead join found fund regulate invade rule
""".split())


def _base_verb(word: str) -> str | None:
    w = word.lower().strip("'’")
    for cand in (w, w[:-1] if w.endswith("s") else "", w[:-2] if w.endswith("es") else "",
                 w[:-2] if w.endswith("ed") else "", w[:-1] if w.endswith("ed") else "",
                 w[:-3] if w.endswith("ing") else "", w[:-3] + "y" if w.endswith("ies") else ""):
        if cand and cand in _VERBS:
            return cand
    if w in {"is", "are", "was", "were"}:
        return "be"
    if w in {"has", "had"}:
        return "have"
    return None


@dataclass
class _Mention:
    name: str
    type: str
    sentence: int
    position: int


def _type_of(words: list[str], preceded_by_title: bool) -> str:
    lowered = [w.lower().strip("'’") for w in words]
    if preceded_by_title:
        return "PERSON"
    for etype in ("ORGANIZATION", "EVENT", "WORK", "LOCATION"):
        cues = _TYPE_CUES[etype]
        if lowered[-1] in cues or (etype == "LOCATION" and len(lowered) == 1 and lowered[0] in cues):
            return etype
    if len(words) == 1 and words[0].isupper() and len(words[0]) >= 2:
        return "ORGANIZATION"
    if 2 <= len(words) <= 3 and all(w[0].isupper() and w.lower() not in STOPWORDS for w in words):
        return "PERSON"
    return "CONCEPT"


def _proper_names(sentence: str, s_index: int, mid_sentence_caps: set[str]) -> list[_Mention]:
    tokens = list(_WORD.finditer(sentence))
    mentions: list[_Mention] = []
    i = 0
    while i < len(tokens):
        word = tokens[i].group(0)
        if not word[0].isupper() or (word.lower() in _NOT_NAMES and not word.isupper()):
            i += 1
            continue
        run = [word]
        j = i + 1
        while j < len(tokens):
            nxt = tokens[j].group(0)
            if nxt[0].isupper() and nxt.lower() not in _NOT_NAMES:
                run.append(nxt)
                j += 1
            elif (nxt.lower() in _CONNECTORS and j + 1 < len(tokens)
                  and tokens[j + 1].group(0)[0].isupper() and nxt.lower() != "and"):
                run.extend([nxt, tokens[j + 1].group(0)])
                j += 2
            else:
                break
        at_start = i == 0
        single = len(run) == 1
        # A lone capitalised word at the start of a sentence is only a name if the chunk
        # also capitalises it mid-sentence (or it is an acronym).
        if not (at_start and single and run[0] not in mid_sentence_caps and not run[0].isupper()):
            prev = tokens[i - 1].group(0).lower().rstrip(".") if i > 0 else ""
            name = re.sub(r"['’]s?$", "", " ".join(run))
            if len(name) >= 2 and name.lower() not in STOPWORDS:
                mentions.append(_Mention(name, _type_of(run, prev in PERSONAL_TITLES), s_index, tokens[i].start()))
        i = j
    return mentions


def _key_phrases(sentences: list[str], limit: int, name_words: set[str]) -> list[str]:
    """Content words and adjacent pairs repeated in the chunk, most frequent first.

    Words that belong to a proper name found in the chunk are left to that name.
    """
    unigrams: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    for s in sentences:
        words = [w.lower().strip("'’") for w in _WORD.findall(s)]
        content = [w if (len(w) >= 4 and w not in STOPWORDS and w.isalpha() and not w.endswith("ly")
                         and w not in name_words and _base_verb(w) is None) else "" for w in words]
        unigrams.update(w for w in content if w)
        bigrams.update(f"{a} {b}" for a, b in itertools.pairwise(content) if a and b)
    phrases = [b for b, n in bigrams.most_common() if n >= 2]
    covered = {w for b in phrases for w in b.split()}
    phrases += [u for u, n in unigrams.most_common() if n >= 2 and u not in covered]
    return phrases[:limit]


class OfflineExtractor:
    """Rule-based extraction; see the module docstring."""

    name = "offline-plain"
    prompt_version = PROMPT_VERSION

    def __init__(self, max_entities: int = 40, max_relations: int = 60) -> None:
        self.max_entities = max_entities
        self.max_relations = max_relations

    async def extract(self, chunk: TranscriptChunk) -> ExtractionResult:
        return extract_offline(chunk.text, self.max_entities, self.max_relations)

    async def aclose(self) -> None:
        return None


def extract_offline(text: str, max_entities: int = 40, max_relations: int = 60) -> ExtractionResult:
    sentences = [s.strip() for s in _SENTENCES.split(text) if s.strip()]
    mid_caps = {m.group(0) for s in sentences for m in list(_WORD.finditer(s))[1:] if m.group(0)[0].isupper()}

    mentions: list[_Mention] = []
    for si, s in enumerate(sentences):
        mentions.extend(_proper_names(s, si, mid_caps))
    names_lower = {m.name.lower() for m in mentions}
    name_words = {w for n in names_lower for w in n.split()}
    for phrase in _key_phrases(sentences, limit=max_entities, name_words=name_words):
        if phrase in names_lower:
            continue
        pattern = re.compile(rf"\b{re.escape(phrase)}\b", re.I)
        for si, s in enumerate(sentences):
            for found in pattern.finditer(s):
                mentions.append(_Mention(phrase, "CONCEPT", si, found.start()))

    # One entity per (case-insensitive) name; its description is the first sentence naming it.
    entities: dict[str, ExtractedEntity] = {}
    for m in sorted(mentions, key=lambda m: (m.sentence, m.position)):
        key = m.name.lower()
        if key not in entities and len(entities) < max_entities:
            entities[key] = ExtractedEntity(name=m.name, type=m.type,
                                            description=sentences[m.sentence][:300])

    by_sentence: dict[int, list[_Mention]] = {}
    for m in mentions:
        if m.name.lower() in entities:
            by_sentence.setdefault(m.sentence, []).append(m)

    pair_sentences: Counter[tuple[str, str, str]] = Counter()
    first_sentence: dict[tuple[str, str, str], int] = {}
    for si, ms in by_sentence.items():
        ms = sorted(ms, key=lambda m: m.position)
        sentence = sentences[si]
        seen_pairs: set[tuple[str, str]] = set()
        for a_i, a in enumerate(ms[:8]):
            for b in ms[a_i + 1:8]:
                ka, kb = a.name.lower(), b.name.lower()
                if ka == kb or (ka, kb) in seen_pairs:
                    continue
                seen_pairs.add((ka, kb))
                between = sentence[a.position + len(a.name):b.position]
                verb = next((v for v in (_base_verb(w) for w in _WORD.findall(between)) if v), None)
                rel_type = verb.upper() if verb and verb not in {"be", "have"} else (
                    "IS" if verb == "be" else "HAS" if verb == "have" else "RELATED_TO")
                key3 = (ka, kb, rel_type)
                pair_sentences[key3] += 1
                first_sentence.setdefault(key3, si)

    relations: list[ExtractedRelation] = []
    for (ka, kb, rel_type), n in pair_sentences.most_common(max_relations):
        relations.append(ExtractedRelation(
            source=entities[ka].name,
            target=entities[kb].name,
            type=rel_type,
            description=sentences[first_sentence[(ka, kb, rel_type)]][:300],
            strength=min(10, 2 + 2 * n + (2 if rel_type != "RELATED_TO" else 0)),
        ))
    return ExtractionResult(list(entities.values()), relations, {"extractor": "offline-plain"})
