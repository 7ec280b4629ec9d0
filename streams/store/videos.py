"""The ``videos`` collection: per-stage progress from status events, stored-chunk counters
that only grow (``$max``), and the overall state derived from both.

A video's stored chunks are counted from a ledger in its own document, the set of the chunk
indexes the sink stored (``$addToSet``: a redelivered batch adds nothing), rather than from
the chunks collection: that meant reading every stored chunk of a batch's videos, text and
all, on every batch (on FerretDB 0.05-0.36 s of a batch's 0.4-2.1 s in benchmarks/pipeline.py).
A document without the ledger (written before it) gets it once from the chunks collection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING, DeleteOne, UpdateOne

from schemas import VideoStatusEvent
from streams.store.mongo import Collections, Doc, Mongo

#: The ledger's fields: chunk indexes stored, those of them stored with an extraction error,
#: and the mark of a document whose ledger is complete (set when the document is created).
STORED, FAILED, LEDGER = "stored_chunks", "failed_chunks", "chunk_ledger"
#: What a reader of video documents gets: everything but the ledger's lists.
WITHOUT_LEDGER = {STORED: 0, FAILED: 0}


@dataclass(frozen=True)
class StoredChunk:
    """A chunk the sink stored, as its video's ledger records it."""

    video_id: str
    index: int
    failed: bool


def video_state(doc: Doc) -> str:
    """A video's overall state, derived from its stage progress and counters."""
    stages = doc.get("stages") or {}
    if any((s or {}).get("state") == "failed" for s in stages.values()):
        return "failed"
    chunk_count = doc.get("chunk_count")
    stored = doc.get("chunks_stored", 0)
    if chunk_count is not None and stored >= chunk_count:
        return "done"
    if stored > 0:
        return "extracting"
    for stage, label in (("chunk", "chunked"), ("fetch", "fetched")):
        if (stages.get(stage) or {}).get("state") == "done":
            return label
    if (stages.get("fetch") or {}).get("state") == "started":
        return "fetching"
    return "requested"


class VideoProgress(Collections):
    """Where each video is: two writers (status events, the sink's chunk counts) never move
    a video backwards."""

    def __init__(self, mongo: Mongo) -> None:
        super().__init__(mongo)
        self._refresh_lock = threading.Lock()

    def apply_status_events(self, events: Sequence[VideoStatusEvent]) -> list[Doc]:
        """Record stage progress; returns the videos that became done.

        A video's events in the batch become one update, folded in order (a later event's
        fields replace an earlier one's, the earliest request time stays): what applying them
        one by one would leave, in a third of the writes (a video has ~3 events)."""
        folded: dict[str, tuple[Doc, list[datetime]]] = {}
        for ev in events:
            set_, requested = folded.setdefault(ev.video_id, ({}, []))
            prefix = f"stages.{ev.stage}"
            set_.update({f"{prefix}.state": ev.state, f"{prefix}.at": ev.at, f"{prefix}.detail": ev.detail})
            if ev.chunk_count is not None:
                set_["chunk_count"] = ev.chunk_count
            if ev.title is not None:
                set_["title"] = ev.title
            if ev.source is not None:
                set_["source"] = ev.source
            if ev.requested_at is not None:
                requested.append(ev.requested_at)
        ops: list[UpdateOne | DeleteOne] = []
        for video_id, (set_, requested) in folded.items():
            update: Doc = {"$set": set_, "$setOnInsert": {"chunks_stored": 0, "chunks_failed": 0, STORED: [],
                                                          FAILED: [], LEDGER: True}}
            if requested:
                update["$min"] = {"requested_at": min(requested)}
            ops.append(UpdateOne({"_id": video_id}, update, upsert=True))
        self.mongo.bulk("videos", ops)
        return self.refresh(folded)

    def record_stored(self, chunks: Iterable[StoredChunk]) -> list[Doc]:
        """Add stored chunks to their videos' ledgers (creating a video's document if no status
        event did yet) and refresh the counters. Returns the videos that became done."""
        by_video: dict[str, tuple[set[int], set[int]]] = {}
        for c in chunks:
            stored, failed = by_video.setdefault(c.video_id, (set(), set()))
            stored.add(c.index)
            if c.failed:
                failed.add(c.index)
        self.mongo.bulk("videos", [
            UpdateOne({"_id": vid}, {"$addToSet": {STORED: {"$each": sorted(stored)},
                                                   FAILED: {"$each": sorted(failed)}},
                                     "$setOnInsert": {LEDGER: True}}, upsert=True)
            for vid, (stored, failed) in by_video.items()
        ])
        return self.refresh(by_video)

    def refresh(self, video_ids: Iterable[str]) -> list[Doc]:
        """Update stored-chunk counters from the ledgers; mark videos done. Returns videos that became done."""
        ids = sorted(set(video_ids))
        if not ids:
            return []
        with self._refresh_lock:
            docs = {d["_id"]: d for d in self.coll("videos").find({"_id": {"$in": ids}})}
            self._complete_ledgers([d for d in docs.values() if not d.get(LEDGER)])
            counted = {vid: (len(doc.get(STORED) or ()), len(doc.get(FAILED) or ())) for vid, doc in docs.items()}
            self.mongo.bulk("videos", [  # only what grew: a status event's refresh mostly writes nothing
                UpdateOne({"_id": vid}, {"$max": {"chunks_stored": stored, "chunks_failed": failed}})
                for vid, (stored, failed) in counted.items()
                if stored > docs[vid].get("chunks_stored", 0) or failed > docs[vid].get("chunks_failed", 0)
            ])
            completed = []
            now = datetime.now(UTC)
            for vid, doc in docs.items():
                doc["chunks_stored"] = max(doc.get("chunks_stored", 0), counted[vid][0])
                doc["chunks_failed"] = max(doc.get("chunks_failed", 0), counted[vid][1])
                if "done_at" in doc or video_state(doc) != "done":
                    continue
                res = self.coll("videos").update_one({"_id": doc["_id"], "done_at": {"$exists": False}},
                                                     {"$set": {"done_at": now}})
                if res.modified_count:
                    completed.append({k: v for k, v in doc.items() if k not in WITHOUT_LEDGER} | {"done_at": now})
            return completed

    def _complete_ledgers(self, docs: Sequence[Doc]) -> None:
        """Ledgers for documents written before there were any: from the chunks collection,
        once (``docs`` are updated in place)."""
        if not docs:
            return
        found: Mapping[str, Doc] = {d["_id"]: d for d in docs}
        stored: dict[str, set[int]] = {vid: set() for vid in found}
        failed: dict[str, set[int]] = {vid: set() for vid in found}
        for c in self.coll("chunks").find({"video_id": {"$in": list(found)}},
                                          {"video_id": 1, "index": 1, "extraction_error": 1}):
            stored[c["video_id"]].add(c["index"])
            if c.get("extraction_error"):
                failed[c["video_id"]].add(c["index"])
        self.mongo.bulk("videos", [
            UpdateOne({"_id": vid}, {"$addToSet": {STORED: {"$each": sorted(stored[vid])},
                                                   FAILED: {"$each": sorted(failed[vid])}},
                                     "$set": {LEDGER: True}})
            for vid in found
        ])
        for vid, doc in found.items():
            doc[STORED] = sorted(stored[vid] | set(doc.get(STORED) or ()))
            doc[FAILED] = sorted(failed[vid] | set(doc.get(FAILED) or ()))
            doc[LEDGER] = True

    def find(self, video_ids: Sequence[str] | None = None) -> list[Doc]:
        query: Doc = {"_id": {"$in": list(video_ids)}} if video_ids else {}
        docs = list(self.coll("videos").find(query, WITHOUT_LEDGER).sort("_id", ASCENDING))
        for d in docs:
            d["status"] = video_state(d)
        return docs
