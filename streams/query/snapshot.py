"""The graph held in memory for the API and for answers: no scan per request or question.

FerretDB answers every query that is not on ``_id`` by scanning the collection, so an
entity page built from ``relations``/``entity_mentions``/``communities`` queries costs
about a second on the corpus graph. A :class:`GraphSnapshot` is read in a few bulk scans
and rebuilt when the graph changed (its signature: the store's count of graph writes,
``GraphWrites.note_graph_changed``, one read by ``_id``, and the last community run),
checked every ``api.refresh_seconds``, and at the latest after
``api.snapshot_max_age_seconds``. Entities newer than the snapshot
are read from the store directly, so nothing is ever missing, only slower until the next
refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

from streams.query.index import QueryIndex
from streams.store import GraphStore

log = logging.getLogger(__name__)
Doc = dict[str, Any]
SIGNATURE_COLLECTIONS = ("chunks", "entities", "relations", "entity_mentions", "relation_evidence", "communities")
EVIDENCE_FIELDS = {"relation_id": 1, "chunk_id": 1, "source_id": 1, "target_id": 1, "strength": 1}
ENTITY_FIELDS = {"name": 1, "type": 1, "aliases": 1, "mention_count": 1, "video_count": 1, "description": 1}


@dataclass(frozen=True)
class GraphSnapshot:
    signature: tuple[Any, ...]
    entities: dict[str, Doc]
    relations_by_entity: dict[str, list[Doc]]  # strongest first
    mentions_by_entity: dict[str, list[Doc]]   # by video, then time
    communities: list[Doc]                     # largest first, as store.communities.find()
    communities_by_entity: dict[str, list[Doc]]
    chunks_by_video: dict[str, list[Doc]]      # by index
    chunk_texts: dict[str, str]                # for evidence excerpts (FerretDB scans for $in)
    build_seconds: float
    evidence_by_relation: dict[str, list[Doc]] = field(default_factory=dict)
    built_at: float = field(default_factory=time.time)
    community_by_id: dict[str, Doc] = field(init=False)
    mentions_by_chunk: dict[str, list[Doc]] = field(init=False)  # by time
    index: QueryIndex = field(init=False)  # names, aliases, report words and BM25, for answers
    previous_index: InitVar[QueryIndex | None] = None  # the last snapshot's: only changes are redone

    def __post_init__(self, previous_index: QueryIndex | None) -> None:
        object.__setattr__(self, "community_by_id", {c["_id"]: c for c in self.communities})
        by_chunk: dict[str, list[Doc]] = defaultdict(list)
        for ms in self.mentions_by_entity.values():
            for m in ms:
                by_chunk[m["chunk_id"]].append(m)
        for ms in by_chunk.values():
            ms.sort(key=lambda m: (float(m.get("start", 0)), m["_id"]))
        object.__setattr__(self, "mentions_by_chunk", dict(by_chunk))
        object.__setattr__(self, "index", QueryIndex.build(self.entities, self.communities, self.chunk_texts,
                                                           previous=previous_index))

    def name(self, entity_id: str) -> str:
        return str(self.entities.get(entity_id, {}).get("name", "?"))


def graph_signature(store: GraphStore) -> tuple[Any, ...]:
    """Changes whenever the graph is written (chunks stored, forgotten or resolved again) or
    communities run: the store's count of graph writes, one read by ``_id``. A graph written
    only by an older version has no such count: then the collections' sizes, which FerretDB
    counts by reading each collection."""
    last = store.communities.last_run()
    version = store.graph.graph_version()
    sizes = tuple(store.document_count(c) for c in SIGNATURE_COLLECTIONS) if version is None else ()
    return (store.db.name, version, *sizes, last.get("started_at") if last else None)


def load_snapshot(store: GraphStore, previous: GraphSnapshot | None = None) -> GraphSnapshot:
    """The graph as the store holds it now; ``previous`` lends its index's unchanged parts."""
    started = time.perf_counter()
    signature = graph_signature(store)
    entities = {d["_id"]: d for d in store.coll("entities").find({}, ENTITY_FIELDS)}
    relations: dict[str, list[Doc]] = defaultdict(list)
    for r in store.coll("relations").find({}, {"source_id": 1, "target_id": 1, "type": 1, "weight": 1,
                                               "description": 1}):
        relations[r["source_id"]].append(r)
        if r["target_id"] != r["source_id"]:
            relations[r["target_id"]].append(r)
    for rels in relations.values():
        rels.sort(key=lambda r: (-int(r.get("weight", 0)), r["_id"]))
    mentions: dict[str, list[Doc]] = defaultdict(list)
    for m in store.coll("entity_mentions").find({}, {"entity_id": 1, "chunk_id": 1, "video_id": 1, "start": 1,
                                                     "surface": 1}):
        mentions[m["entity_id"]].append(m)
    for ms in mentions.values():
        ms.sort(key=lambda m: (m["video_id"], float(m.get("start", 0)), m["_id"]))
    communities = store.communities.find()
    by_entity: dict[str, list[Doc]] = defaultdict(list)
    for c in communities:
        for member in c.get("members") or []:
            by_entity[member].append(c)
    chunks: dict[str, list[Doc]] = defaultdict(list)
    texts: dict[str, str] = {}
    for c in store.coll("chunks").find({}, {"video_id": 1, "index": 1, "start": 1, "end": 1, "entity_count": 1,
                                            "relation_count": 1, "extraction_error": 1, "text": 1}):
        texts[c["_id"]] = c.pop("text", "")
        chunks[c["video_id"]].append(c)
    for cs in chunks.values():
        cs.sort(key=lambda c: int(c.get("index", 0)))
    evidence: dict[str, list[Doc]] = defaultdict(list)
    for e in store.coll("relation_evidence").find({}, EVIDENCE_FIELDS):
        evidence[e["relation_id"]].append(e)
    snap = GraphSnapshot(signature, entities, dict(relations), dict(mentions), communities, dict(by_entity),
                         dict(chunks), texts, 0.0, dict(evidence),
                         previous_index=previous.index if previous is not None else None)
    object.__setattr__(snap, "build_seconds", time.perf_counter() - started)  # the index included
    return snap


class SnapshotHolder:
    """The current snapshot, rebuilt in a background thread when the graph's signature moves."""

    def __init__(self, store: GraphStore, refresh_seconds: float, max_age_seconds: float = 300.0,
                 loader: Callable[[GraphStore, GraphSnapshot | None], GraphSnapshot] = load_snapshot) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._max_age_seconds = max_age_seconds
        self._loader = loader
        self._current: GraphSnapshot | None = None
        self._lock = threading.Lock()  # one rebuild at a time: the refresher's or a question's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> GraphSnapshot | None:
        return self._current

    def refresh(self) -> bool:
        """Rebuild if the graph changed since the snapshot, or it is older than the maximum age
        (a change that leaves every size equal, such as a re-extracted chunk, shows then at
        the latest); True when a new one was made."""
        with self._lock:
            snap = self._current
            fresh = snap is not None and time.time() - snap.built_at < self._max_age_seconds
            if fresh and snap is not None and graph_signature(self._store) == snap.signature:
                return False
            self._current = self._loader(self._store, snap)
            log.info("graph snapshot: %d entities, built in %.2fs", len(self._current.entities),
                     self._current.build_seconds)
            return True

    def latest(self) -> GraphSnapshot:
        """The snapshot of the graph as it is now (rebuilt first if it changed): what answers
        read, so a question never sees an older graph than the store holds."""
        self.refresh()
        assert self._current is not None  # refresh() made one  # nosec B101
        return self._current

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="graph-snapshot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # the store is down: keep the last snapshot, try again
                log.warning("could not refresh the graph snapshot: %s", exc)
            self._stop.wait(self._refresh_seconds)
