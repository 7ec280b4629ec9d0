"""Answering questions from the graph, with ``video_id@mm:ss`` citations.

Everything is read from a :class:`~streams.query.snapshot.GraphSnapshot` (the graph in
memory, refreshed when it changes) and its :class:`~streams.query.index.QueryIndex`: a
question costs no store round trip.

local:  find the entities the question names (names, aliases, fuzzy), or when it names none
        the entities whose names and descriptions BM25 ranks highest for it; expand their
        neighbourhood, rank relations and the chunks that mention them (most mentions,
        then BM25 over the chunk's text).
global: rank community reports by how well they match the question, then combine their
        findings (map over communities, reduce to one answer).

With an LLM the answer is written from that context and cites it as [n]; offline the
ranked context itself is the answer. A citation is only ever made to a stored chunk whose
text names an entity of the answer, at the moment that name is spoken.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.model.citations import Citation, shorten
from streams.query.snapshot import GraphSnapshot

Doc = dict[str, Any]

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


def match_entities(graph: GraphSnapshot, question: str, limit: int = 6) -> list[Doc]:
    """Entities the question names: exact names/aliases first (longest first), then fuzzy;
    when it names none, those BM25 finds by their names and descriptions."""
    scored = graph.index.named(question) or graph.index.entity_text.search(question, limit)
    ranked = sorted(scored, key=lambda eid: (-scored[eid], -int(graph.entities[eid].get("mention_count", 0)), eid))
    return [{"_id": eid, **graph.entities[eid]} for eid in ranked[:limit]]


def _cited_chunks(graph: GraphSnapshot, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Citation]:
    """(chunk_id, entity_id) -> a citation where the chunk's text really contains the mention's
    surface form: the earliest such mention of that entity in that chunk."""
    out: dict[tuple[str, str], Citation] = {}
    for chunk_id, eid in pairs:
        if (chunk_id, eid) in out:
            continue
        text = graph.chunk_texts.get(chunk_id)
        if text is None:
            continue
        folded = text.casefold()
        for m in graph.mentions_by_chunk.get(chunk_id, ()):
            if m["entity_id"] == eid and m.get("surface", "").casefold() in folded:
                out[(chunk_id, eid)] = Citation(video_id=m["video_id"], seconds=float(m.get("start", 0)),
                                                chunk_id=chunk_id)
                break
    return out


def local_context(graph: GraphSnapshot, entities: list[Doc], max_relations: int = 12,
                  max_chunks: int = 5, question: str = "") -> dict[str, Any]:
    ids = [e["_id"] for e in entities]
    rels = {r["_id"]: r for eid in ids for r in graph.relations_by_entity.get(eid, ())}
    top = sorted(rels.values(), key=lambda r: (-float(r.get("weight", 0)), r["_id"]))[:max_relations]
    # The strongest evidence of each relation, cited where an endpoint is named in the chunk.
    evidence = {r["_id"]: sorted(graph.evidence_by_relation.get(r["_id"], ()),
                                 key=lambda e: (-int(e.get("strength", 0)), e["_id"])) for r in top}
    pairs = [(e["chunk_id"], r[side]) for r in top for e in evidence[r["_id"]] for side in ("source_id", "target_id")]
    # Chunks that mention the most matched entities.
    mention_counts: Counter[str] = Counter()
    for eid in ids:
        for m in graph.mentions_by_entity.get(eid, ()):
            mention_counts[m["chunk_id"]] += 1
            pairs.append((m["chunk_id"], eid))
    cites = _cited_chunks(graph, pairs)
    relation_rows = []
    for r in top:
        cite = next((cites[(e["chunk_id"], r[side])] for e in evidence[r["_id"]] for side in ("source_id", "target_id")
                     if (e["chunk_id"], r[side]) in cites), None)
        relation_rows.append({"source": graph.name(r["source_id"]), "type": r.get("type", ""),
                              "target": graph.name(r["target_id"]), "description": r.get("description", ""),
                              "weight": r.get("weight", 0), "citation": cite})
    by_chunk: dict[str, Citation] = {}
    for (chunk_id, eid), c in cites.items():
        if eid in ids and chunk_id not in by_chunk:
            by_chunk[chunk_id] = c
    # Ties in mentions go to the chunk whose text BM25 ranks higher for the question.
    relevance = graph.index.chunk_text.search(question, 200) if question else {}
    top_chunks = sorted(by_chunk, key=lambda c: (-mention_counts[c], -relevance.get(c, 0.0), c))[:max_chunks]
    sources = [{"citation": by_chunk[c], "text": graph.chunk_texts.get(c, "")} for c in top_chunks]
    return {"relations": relation_rows, "sources": sources}


def excerpt(text: str, names: list[str], width: int = 240) -> str:
    """About ``width`` characters of ``text`` around the first place one of ``names`` occurs."""
    hits = [m.start() for n in names if n for m in [re.search(re.escape(n), text, re.IGNORECASE)] if m]
    start = max(0, min(hits, default=0) - width // 3)
    snippet = text[start:start + width].strip()
    return ("…" if start else "") + snippet + ("…" if start + width < len(text) else "")


def _entity_row(e: Doc) -> dict[str, Any]:
    return {"id": e["_id"], "name": e["name"], "type": e.get("type"), "aliases": e.get("aliases", [])}


def answer_local(graph: GraphSnapshot, question: str) -> Answer:
    entities = match_entities(graph, question)
    if not entities:
        return Answer(question, "local", "No entity of the graph is named or described in the question.", [])
    ctx = local_context(graph, entities, question=question)
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
    return Answer(question, "local", "\n".join(lines), _unique(citations), [_entity_row(e) for e in entities])


def rank_communities(graph: GraphSnapshot, question: str, limit: int = 5) -> list[Doc]:
    """Communities by how many content words their report shares with the question (and rating)."""
    ranked = []
    for i, overlap in graph.index.community_overlaps(question).items():
        c = graph.communities[i]
        report = c.get("report") or {}
        ranked.append((overlap + float(report.get("rating", 0)) / 10, -int(c.get("level", 0)), c))
    ranked.sort(key=lambda t: (-t[0], -t[1], t[2]["_id"]))
    return [c for _, _, c in ranked[:limit]]


def answer_global(graph: GraphSnapshot, question: str) -> Answer:
    communities = rank_communities(graph, question)
    if not communities:
        return Answer(question, "global", "No community summary matches the question.", [])
    lines: list[str] = []
    citations: list[Citation] = []
    answer_entities: dict[str, Doc] = {}
    for c in communities:
        report = c.get("report") or {}
        lines.append(f"{report.get('title', c['_id'])} (rating {report.get('rating', 0)}): "
                     f"{shorten(report.get('summary', ''), 400)}")
        for f in report.get("findings", [])[:3]:
            pairs = [(ev["chunk_id"], eid) for ev in f.get("evidence", []) for eid in f.get("entity_ids", [])]
            found = _unique(list(_cited_chunks(graph, pairs).values()))
            if not found:
                continue
            for eid in f.get("entity_ids", []):
                if eid in graph.entities:
                    answer_entities[eid] = {"_id": eid, **graph.entities[eid]}
            refs = " ".join(f"[{x.cite}]({x.url})" for x in found[:2])
            lines.append(f"- {shorten(f.get('text', ''), 240)} {refs}")
            citations += found[:2]
    return Answer(question, "global", "\n".join(lines), _unique(citations),
                  [_entity_row(e) for e in answer_entities.values()],
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

