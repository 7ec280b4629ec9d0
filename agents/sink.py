"""sink: ``graph.edges`` and ``videos.status`` -> MongoDB, in batches.

Batches come from ``agents/faust_batches.take_ready`` and are acknowledged only after the write
returned. A database outage is retried until the database is back (nothing is lost or
dead-lettered for it); a batch the database rejects for good is split until the
offending message is found, which alone goes to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from bson.errors import BSONError
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from agents.runtime import InputEvent, StageRuntime, retry_forever
from schemas import Event, GraphUpdate, VideoStatusEvent
from streams.instruments.metrics import END_TO_END_LATENCY, MONGO_BATCH_SIZE, MONGO_WRITE_LATENCY, VIDEOS_COMPLETED
from streams.store import GraphStore, WriteSummary

log = logging.getLogger("graphrag.sink")
E = TypeVar("E", bound=Event)


# A write error the database returns, or what the driver raises for a value it cannot encode
# as BSON (an integer beyond 8 bytes, a lone surrogate in a string): rejected for good.
PERMANENT_WRITE_ERRORS = (PyMongoError, BSONError, OverflowError, UnicodeEncodeError)


def is_transient_db_error(exc: BaseException) -> bool:
    return isinstance(exc, AutoReconnect | ConnectionFailure | NetworkTimeout | ServerSelectionTimeoutError)


class SinkStage:
    def __init__(self, rt: StageRuntime, store: GraphStore | None = None) -> None:
        self.rt = rt
        self.store = store or GraphStore.from_settings(rt.settings, app_name=f"graphrag-sink-{rt.settings.environment}")
        # One thread: writes from both agents are serialised, as FerretDB prefers.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-db")

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def ensure_indexes(self) -> None:
        await retry_forever("create indexes", lambda: self._run(self.store.ensure_indexes),
                            is_transient=is_transient_db_error)

    async def decode_batch(self, events: Sequence[InputEvent], model: type[E]) -> list[tuple[InputEvent, E]]:
        good: list[tuple[InputEvent, E]] = []
        for ev in events:
            value = await self.rt.decode_or_dead_letter(ev, model)
            if value is not None:
                good.append((ev, value))
        return good

    async def write(self, items: Sequence[tuple[InputEvent, E]], writer: Callable[[list[E]], Any],
                    operation: str) -> list[Any]:
        """Write a batch; on a permanent database error, bisect to isolate the bad message.

        Returns the writer's result for every part that was stored.
        """
        if not items:
            return []
        values = [v for _, v in items]
        started = time.perf_counter()
        try:
            result = await retry_forever(f"write {len(values)} {type(values[0]).__name__}(s)",
                                         lambda: self._run(lambda: writer(values)),
                                         is_transient=is_transient_db_error)
        except PERMANENT_WRITE_ERRORS as exc:
            if len(items) == 1:
                await self.rt.dead_letter(items[0][0], "store_rejected", f"{type(exc).__name__}: {exc}"[:1000],
                                          error_class=type(exc).__name__)
                return []
            mid = len(items) // 2
            return [*await self.write(items[:mid], writer, operation),
                    *await self.write(items[mid:], writer, operation)]
        MONGO_WRITE_LATENCY.labels(operation).observe(time.perf_counter() - started)
        return [result]

    async def handle_edges(self, events: Sequence[InputEvent]) -> None:
        items = await self.decode_batch(events, GraphUpdate)
        for summary in await self.write(items, self.store.graph.write_updates, "graph_updates"):
            assert isinstance(summary, WriteSummary)  # narrows a type; no input is checked by it  # nosec B101
            MONGO_BATCH_SIZE.labels("chunks").observe(summary.chunks)
            MONGO_BATCH_SIZE.labels("entity_mentions").observe(summary.mentions_inserted)
            MONGO_BATCH_SIZE.labels("relation_evidence").observe(summary.evidence_inserted)
            MONGO_BATCH_SIZE.labels("entities").observe(summary.entities)
            MONGO_BATCH_SIZE.labels("relations").observe(summary.relations)
            observe_completed(summary.completed)

    async def handle_status(self, events: Sequence[InputEvent]) -> None:
        items = await self.decode_batch(events, VideoStatusEvent)
        for completed in await self.write(items, self.store.videos.apply_status_events, "status_events"):
            MONGO_BATCH_SIZE.labels("videos").observe(len(items))
            observe_completed(completed)


def observe_completed(videos: Sequence[dict[str, Any]]) -> None:
    """End-to-end latency: from the request to the moment its last chunk was stored."""
    for v in videos:
        VIDEOS_COMPLETED.inc()
        requested, done = v.get("requested_at"), v.get("done_at")
        if isinstance(requested, datetime) and isinstance(done, datetime):
            if requested.tzinfo is None:
                requested = requested.replace(tzinfo=UTC)
            END_TO_END_LATENCY.observe(max(0.0, (done - requested).total_seconds()))


def register(rt: StageRuntime) -> None:
    sink = SinkStage(rt)
    cfg = rt.settings.graphrag.sink

    async def create_indexes() -> None:
        await sink.ensure_indexes()

    rt.app.task(create_indexes)
    # Every write costs the store a fixed price on top of its documents' (on FerretDB ~0.2 s
    # for a batch of 5 chunks, ~2.6 s for 200): while messages keep coming, a batch gathers
    # for batch_seconds from its first message (or fills), also while the batch before it is
    # written; once they stop coming for a quarter of that, it is written at once.
    quiet = cfg.batch_seconds / 4
    rt.run_batches(sink.handle_edges, rt.topics.graph_updates, name="sink-edges",
                   size=cfg.batch_size, within=cfg.batch_seconds, quiet=quiet)
    rt.run_batches(sink.handle_status, rt.topics.status, name="sink-status",
                   size=cfg.batch_size, within=cfg.batch_seconds, quiet=quiet)
