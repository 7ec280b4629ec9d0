"""Batches that take what is waiting instead of waiting out a timer: a batching generator
for faust-streaming 0.15.3 streams, in place of ``Stream.take_events``.

``take_events(max_, within)`` hands over a batch only when it holds ``max_`` events or when
``within`` seconds have passed since it last handed one over. A stage whose backlog is
smaller than ``max_`` therefore idles ``within`` seconds after every batch while the backlog
waits: the sink (200, 1 s) wrote a batch, sat idle for a second with 100-odd graph updates
buffered, wrote them, sat idle again; over the corpus that was ~4 s of its ~15 s
(``benchmarks/pipeline.py``, the sink's write times logged).

:func:`take_ready` hands over a batch as soon as it is full, or the stream has nothing more
waiting for ``quiet`` seconds, or ``within`` seconds after the batch's first event: a
backlog is taken at once, whole, up to ``max_``, and while the handler works on a batch the
next one gathers. What take_events promises is kept: events are acknowledged only after the
handler is done with their batch (the generator resumes), a batch never holds more than
``max_``, and the stream's ack setting is restored at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def take_ready(stream: Any, max_: int, *, within: float,
                     quiet: float | None = None) -> AsyncIterator[list[Any]]:
    """Batches of the events of ``stream`` (a ``faust.Stream``): see the module's docstring."""
    loop = asyncio.get_running_loop()
    pending: list[Any] = []  # Faust events taken from the stream, not yet handed over
    first_at = 0.0  # when the first of them came
    arrived = asyncio.Event()  # set by every event taken
    full = asyncio.Event()  # pending holds max_
    room = asyncio.Event()  # pending was handed over: the stream may go on
    channel = stream.channel
    acks_were_enabled: bool = stream.enable_acks

    async def take(value: Any) -> Any:
        # The stream's processor, run by its passive drainer once per event (as in take_events).
        nonlocal first_at
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_ready: an event without current_event")
        if not pending:
            first_at = loop.time()
        pending.append(event)
        arrived.set()
        if len(pending) >= max_:
            full.set()
            room.clear()
            await stream.wait(room)  # never more than max_ in a batch
        return value

    def due() -> bool:
        return full.is_set() or loop.time() >= first_at + within

    stream.enable_acks = False  # acknowledged here, once the handler is done with the batch
    stream.add_processor(take)
    stream._enable_passive(channel)
    try:
        while not stream.should_stop:
            if not pending:
                arrived.clear()
                await stream.wait_for_stopped(arrived)  # no timer while there is nothing
                continue
            if not due():
                arrived.clear()
                left = first_at + within - loop.time()
                if quiet is None:
                    await stream.wait_for_stopped(full, timeout=left)
                    continue
                await stream.wait_for_stopped(arrived, timeout=min(quiet, left))
                if not due() and (arrived.is_set() or not channel.empty()):
                    continue  # more came or is waiting: let it join
            batch = list(pending)
            pending.clear()
            full.clear()
            room.set()  # the next batch gathers while the handler works on this one
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
    finally:
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(take)
