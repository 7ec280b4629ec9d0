"""The ``videos`` collection: per-stage progress from status events, stored-chunk counters
that only grow (``$max``), and the overall state derived from both."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING, DeleteOne, UpdateOne

from schemas import VideoStatusEvent
from streams.store.mongo import Collections, Doc, Mongo, batched


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
        """Record stage progress; returns the videos that became done."""
        ops: list[UpdateOne | DeleteOne] = []
        for ev in events:
            prefix = f"stages.{ev.stage}"
            set_: Doc = {f"{prefix}.state": ev.state, f"{prefix}.at": ev.at, f"{prefix}.detail": ev.detail}
            if ev.chunk_count is not None:
                set_["chunk_count"] = ev.chunk_count
            if ev.title is not None:
                set_["title"] = ev.title
            if ev.source is not None:
                set_["source"] = ev.source
            update: Doc = {"$set": set_, "$setOnInsert": {"chunks_stored": 0, "chunks_failed": 0}}
            if ev.requested_at is not None:
                update["$min"] = {"requested_at": ev.requested_at}
            ops.append(UpdateOne({"_id": ev.video_id}, update, upsert=True))
        # One command per video keeps a video's events in order (ordered bulk).
        for part in batched(ops, self.mongo.max_ops):
            self.coll("videos").bulk_write(list(part), ordered=True)
        return self.refresh({ev.video_id for ev in events})

    def refresh(self, video_ids: Iterable[str]) -> list[Doc]:
        """Update stored-chunk counters; mark videos done. Returns videos that became done."""
        ids = sorted(set(video_ids))
        if not ids:
            return []
        with self._refresh_lock:
            stored: Counter[str] = Counter()
            failed: Counter[str] = Counter()
            for c in self.coll("chunks").find({"video_id": {"$in": ids}}, {"video_id": 1, "extraction_error": 1}):
                stored[c["video_id"]] += 1
                if c.get("extraction_error"):
                    failed[c["video_id"]] += 1
            self.mongo.bulk("videos", [
                UpdateOne({"_id": vid}, {"$max": {"chunks_stored": stored[vid], "chunks_failed": failed[vid]}})
                for vid in ids if stored[vid]
            ])
            completed = []
            now = datetime.now(UTC)
            for doc in self.coll("videos").find({"_id": {"$in": ids}, "done_at": {"$exists": False}}):
                if video_state(doc) == "done":
                    res = self.coll("videos").update_one({"_id": doc["_id"], "done_at": {"$exists": False}},
                                                         {"$set": {"done_at": now}})
                    if res.modified_count:
                        completed.append({**doc, "done_at": now})
            return completed

    def find(self, video_ids: Sequence[str] | None = None) -> list[Doc]:
        query: Doc = {"_id": {"$in": list(video_ids)}} if video_ids else {}
        docs = list(self.coll("videos").find(query).sort("_id", ASCENDING))
        for d in docs:
            d["status"] = video_state(d)
        return docs
