"""Answering questions from the graph, with ``video_id@mm:ss`` citations.

local:  find the entities the question names (names, aliases, fuzzy), expand their
        neighbourhood, rank relations and the chunks that mention them.
global: rank community reports by how well they match the question, then combine their
        findings (map over communities, reduce to one answer).

With an LLM the answer is written from that context and cites it as [n]; offline the
ranked context itself is the answer. A citation is only ever made to a stored chunk whose
text names an entity of the answer, at the moment that name is spoken.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from streams.extraction.offline import STOPWORDS
from streams.model.citations import Citation, shorten
from streams.resolution.resolve import fold
from streams.store import GraphStore

QUERY_PROMPT_VERSION = "answer-v1"


@dataclass
class Answer:
    question: str
    mode: str
    text: str
    citations: list[Citation]
    entities: list[dict[str, Any]] = field(default_factory=list)
    communities: list[dict[str, Any]] = field(default_factory=list)
    generated_by: str = "context"

    def as_dict(self) -> dict[str, Any]:
        return {"question": self.question, "mode": self.mode, "answer": self.text,
                "citations": [c.as_dict() for c in self.citations], "entities": self.entities,
                "communities": self.communities, "generated_by": self.generated_by}


def _content_words(text: str) -> set[str]:
    return {w for w in fold(text).split() if len(w) > 2 and w not in STOPWORDS}


def match_entities(store: GraphStore, question: str, limit: int = 6) -> list[dict[str, Any]]:
    """Entities the question names: exact names/aliases first (longest first), then fuzzy."""
    q = fold(question)
    entities = list(store.coll("entities").find({}, {"name": 1, "aliases": 1, "type": 1, "mention_count": 1}))
    scored: dict[str, tuple[float, dict[str, Any]]] = {}
    forms: list[tuple[str, dict[str, Any]]] = []
    for e in entities:
        for form in {e.get("name", ""), *(e.get("aliases") or [])}:
            f = fold(form)
            if not f or f in STOPWORDS or len(f) < 3:
                continue
            forms.append((f, e))
            if re.search(rf"(?<!\w){re.escape(f)}(?!\w)", q):
                score = 100.0 + len(f)
                if score > scored.get(e["_id"], (0.0, e))[0]:
                    scored[e["_id"]] = (score, e)
    words = q.split()
    grams = {" ".join(words[i:i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1)}
    grams = {g for g in grams if len(g) >= 5 and g not in STOPWORDS}
    names = [f for f, _ in forms]
    for g in grams:
        for _, score, idx in process.extract(g, names, scorer=fuzz.ratio, score_cutoff=88, limit=3):
            e = forms[idx][1]
            if score > scored.get(e["_id"], (0.0, e))[0]:
                scored[e["_id"]] = (float(score), e)
    ranked = sorted(scored.values(), key=lambda se: (-se[0], -int(se[1].get("mention_count", 0)), se[1]["_id"]))
    return [e for _, e in ranked[:limit]]


def _cited_chunks(store: GraphStore, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Citation]:
    """(chunk_id, entity_id) -> a citation, for mentions whose surface the chunk text really contains."""
    if not pairs:
        return {}
    chunk_ids = sorted({c for c, _ in pairs})
    texts = {c["_id"]: c for c in store.coll("chunks").find({"_id": {"$in": chunk_ids}}, {"text": 1, "video_id": 1})}
    out: dict[tuple[str, str], Citation] = {}
    wanted = set(pairs)
    for m in store.coll("entity_mentions").find({"chunk_id": {"$in": chunk_ids}},
                                                {"chunk_id": 1, "entity_id": 1, "surface": 1, "start": 1}):
        key = (m["chunk_id"], m["entity_id"])
        chunk = texts.get(m["chunk_id"])
        if key in wanted and chunk and m.get("surface", "").casefold() in chunk["text"].casefold():
            out[key] = Citation(video_id=chunk["video_id"], seconds=float(m.get("start", 0)), chunk_id=m["chunk_id"])
    return out


def local_context(store: GraphStore, entities: list[dict[str, Any]], max_relations: int = 12,
                  max_chunks: int = 5) -> dict[str, Any]:
    ids = [e["_id"] for e in entities]
    rels = list(store.coll("relations").find({"$or": [{"source_id": {"$in": ids}}, {"target_id": {"$in": ids}}]}))
    rels.sort(key=lambda r: (-float(r.get("weight", 0)), r["_id"]))
    rels = rels[:max_relations]
    neighbour_ids = {r["source_id"] for r in rels} | {r["target_id"] for r in rels}
    wanted = sorted(neighbour_ids | set(ids))
    names = {e["_id"]: e["name"] for e in store.coll("entities").find({"_id": {"$in": wanted}}, {"name": 1})}
    # The strongest evidence of each relation, cited where an endpoint is named in the chunk.
    evidence = list(store.coll("relation_evidence").find({"relation_id": {"$in": [r["_id"] for r in rels]}},
                                                         {"relation_id": 1, "chunk_id": 1, "source_id": 1,
                                                          "target_id": 1, "strength": 1}))
    evidence.sort(key=lambda e: (-int(e.get("strength", 0)), e["_id"]))
    pairs = [(e["chunk_id"], e[side]) for e in evidence for side in ("source_id", "target_id")]
    # Chunks that mention the most matched entities.
    mention_counts: Counter[str] = Counter()
    for m in store.coll("entity_mentions").find({"entity_id": {"$in": ids}}, {"chunk_id": 1, "entity_id": 1}):
        mention_counts[m["chunk_id"]] += 1
        pairs.append((m["chunk_id"], m["entity_id"]))
    cites = _cited_chunks(store, pairs)
    relation_rows = []
    for r in rels:
        cite = next((cites[(e["chunk_id"], e[side])] for e in evidence if e["relation_id"] == r["_id"]
                     for side in ("source_id", "target_id") if (e["chunk_id"], e[side]) in cites), None)
        relation_rows.append({"source": names.get(r["source_id"], "?"), "type": r.get("type", ""),
                              "target": names.get(r["target_id"], "?"), "description": r.get("description", ""),
                              "weight": r.get("weight", 0), "citation": cite})
    by_chunk: dict[str, Citation] = {}
    for (chunk_id, eid), c in cites.items():
        if eid in ids and chunk_id not in by_chunk:
            by_chunk[chunk_id] = c
    top_chunks = sorted(by_chunk, key=lambda c: (-mention_counts[c], c))[:max_chunks]
    texts = {c["_id"]: c["text"] for c in store.coll("chunks").find({"_id": {"$in": top_chunks}}, {"text": 1})}
    sources = [{"citation": by_chunk[c], "text": texts.get(c, "")} for c in top_chunks]
    return {"relations": relation_rows, "sources": sources}


def excerpt(text: str, names: list[str], width: int = 240) -> str:
    """About ``width`` characters of ``text`` around the first place one of ``names`` occurs."""
    hits = [m.start() for n in names if n for m in [re.search(re.escape(n), text, re.IGNORECASE)] if m]
    start = max(0, min(hits, default=0) - width // 3)
    snippet = text[start:start + width].strip()
    return ("…" if start else "") + snippet + ("…" if start + width < len(text) else "")


def answer_local(store: GraphStore, question: str) -> Answer:
    entities = match_entities(store, question)
    if not entities:
        return Answer(question, "local", "No entity of the graph is named in the question.", [])
    ctx = local_context(store, entities)
    names = [e["name"] for e in entities]
    lines = [f"About {', '.join(names)}:"]
    citations: list[Citation] = []
    for r in ctx["relations"]:
        c = r["citation"]
        if c is None:
            continue
        verb = r["type"].replace("_", " ").lower()
        desc = f" — {shorten(r['description'], 160)}" if r["description"] else ""
        lines.append(f"- {r['source']} {verb} {r['target']}{desc} [{c.cite}]({c.url})")
        citations.append(c)
    if ctx["sources"]:
        lines.append("Where the videos say it:")
    for s in ctx["sources"]:
        c = s["citation"]
        lines.append(f"- {c.cite} {c.url}: \"{excerpt(s['text'], names)}\"")
        citations.append(c)
    return Answer(question, "local", "\n".join(lines), _unique(citations),
                  [{"id": e["_id"], "name": e["name"], "type": e.get("type"),
                    "aliases": e.get("aliases", [])} for e in entities])


def rank_communities(store: GraphStore, question: str, limit: int = 5) -> list[dict[str, Any]]:
    words = _content_words(question)
    names = {e["_id"]: e["name"] for e in store.coll("entities").find({}, {"name": 1})}
    ranked = []
    for c in store.communities.find():
        report = c.get("report") or {}
        text = " ".join([report.get("title", ""), report.get("summary", ""),
                         *(f.get("text", "") for f in report.get("findings", [])),
                         *(names.get(m, "") for m in c.get("members", [])[:50])])
        overlap = len(words & _content_words(text))
        if overlap:
            ranked.append((overlap + float(report.get("rating", 0)) / 10, -int(c.get("level", 0)), c))
    ranked.sort(key=lambda t: (-t[0], -t[1], t[2]["_id"]))
    return [c for _, _, c in ranked[:limit]]


def answer_global(store: GraphStore, question: str) -> Answer:
    communities = rank_communities(store, question)
    if not communities:
        return Answer(question, "global", "No community summary matches the question.", [])
    names = {e["_id"]: e for e in store.coll("entities").find({}, {"name": 1, "aliases": 1, "type": 1})}
    lines: list[str] = []
    citations: list[Citation] = []
    answer_entities: dict[str, dict[str, Any]] = {}
    for c in communities:
        report = c.get("report") or {}
        lines.append(f"{report.get('title', c['_id'])} (rating {report.get('rating', 0)}): "
                     f"{shorten(report.get('summary', ''), 400)}")
        for f in report.get("findings", [])[:3]:
            pairs = [(ev["chunk_id"], eid) for ev in f.get("evidence", []) for eid in f.get("entity_ids", [])]
            cites = _cited_chunks(store, pairs)
            found = _unique(list(cites.values()))
            if not found:
                continue
            for eid in f.get("entity_ids", []):
                if eid in names:
                    answer_entities[eid] = names[eid]
            refs = " ".join(f"[{x.cite}]({x.url})" for x in found[:2])
            lines.append(f"- {shorten(f.get('text', ''), 240)} {refs}")
            citations += found[:2]
    return Answer(question, "global", "\n".join(lines), _unique(citations),
                  [{"id": eid, "name": e["name"], "type": e.get("type"), "aliases": e.get("aliases", [])}
                   for eid, e in answer_entities.items()],
                  [{"id": c["_id"], "level": c.get("level"), "title": (c.get("report") or {}).get("title")}
                   for c in communities])


def _unique(cites: list[Citation]) -> list[Citation]:
    seen: dict[tuple[str, int], Citation] = {}
    for c in cites:
        seen.setdefault((c.chunk_id, int(c.seconds)), c)
    return list(seen.values())


async def answer_with_llm(answer: Answer, client: Any) -> Answer:
    """Let the LLM write the answer from the context; it may only cite the numbered sources."""
    if not answer.citations:
        return answer
    sources = "\n".join(f"[{i + 1}] {c.cite}" for i, c in enumerate(answer.citations))
    messages = [
        {"role": "system", "content": "Answer questions about YouTube videos using only the context given. "
                                      "Cite sources as [n] after each claim. Be concise."},
        {"role": "user", "content": f"Question: {answer.question}\n\nContext:\n{answer.text}\n\n"
                                    f"Sources:\n{sources}"},
    ]
    completion = await client.complete(messages)
    used = sorted({int(n) for n in re.findall(r"\[(\d+)\]", completion.content)
                   if 0 < int(n) <= len(answer.citations)})
    cited = [answer.citations[n - 1] for n in used] or answer.citations
    text = re.sub(r"\[(\d+)\]", lambda m: f"[{answer.citations[int(m.group(1)) - 1].cite}]"
                  if 0 < int(m.group(1)) <= len(answer.citations) else "", completion.content)
    links = "\n".join(f"- {c.cite}: {c.url}" for c in cited)
    return Answer(answer.question, answer.mode, f"{text.strip()}\n\nSources:\n{links}", cited, answer.entities,
                  answer.communities, generated_by=f"openai:{client.model}")

