"""Batches that take what is waiting (agents/faust_batches.py).

Faust's ``take_events(max_, within)`` hands a batch over only when it is full or ``within``
has passed: a backlog smaller than ``max_`` waited out the timer after every batch (the
sink idled a second between writes with 100-odd updates buffered). The stream here is the
part of a ``faust.Stream`` that ``take_ready`` uses, driven the way Faust drives it: a
passive drainer task runs the processors on each event of the channel, with the event as
the stream's current event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.faust_batches import take_ready


class Channel:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def empty(self) -> bool:
        return self.queue.empty()


class Stream:
    def __init__(self) -> None:
        self.channel = Channel()
        self.enable_acks = True
        self.current_event: str | None = None
        self.should_stop = False
        self._processors: list[Callable[[Any], Awaitable[Any]]] = []
        self.acked: list[str] = []
        self._drainer: asyncio.Task[None] | None = None

    def add_processor(self, fn: Callable[[Any], Awaitable[Any]]) -> None:
        self._processors.append(fn)

    def _enable_passive(self, channel: Channel) -> None:
        async def drain() -> None:
            while True:
                event = await channel.queue.get()
                self.current_event = event
                for fn in self._processors:
                    await fn(event)
        self._drainer = asyncio.get_running_loop().create_task(drain())

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def wait_for_stopped(self, event: asyncio.Event, *, timeout: float | None = None) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def ack(self, event: str) -> None:
        self.acked.append(event)

    def put(self, *events: str) -> None:
        for e in events:
            self.channel.queue.put_nowait(e)


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


async def batches(stream: Stream, max_: int, within: float, quiet: float | None, count: int,
                  on_batch: Callable[[list[str]], Awaitable[None]] | None = None) -> list[tuple[list[str], float]]:
    """The first ``count`` batches, with when each was handed over (s from the start)."""
    out: list[tuple[list[str], float]] = []
    t0 = time.monotonic()
    gen = take_ready(stream, max_, within=within, quiet=quiet)
    async for batch in gen:
        out.append((list(batch), time.monotonic() - t0))
        if on_batch is not None:
            await on_batch(batch)
        if len(out) == count:
            break
    await gen.aclose()  # type: ignore[attr-defined]
    return out


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def test_a_waiting_backlog_is_taken_at_once_not_after_the_timer() -> None:
    async def scenario() -> list[tuple[list[str], float]]:
        stream = Stream()
        stream.put(*names("m", 30))
        return await batches(stream, max_=200, within=10.0, quiet=0.02, count=1)

    [(batch, at)] = run(scenario())
    assert batch == names("m", 30)
    assert at < 2.0  # take_events: 10 s (neither full nor due)


def test_a_batch_never_holds_more_than_its_maximum_and_keeps_the_order() -> None:
    async def scenario() -> list[tuple[list[str], float]]:
        stream = Stream()
        stream.put(*names("m", 25))
        return await batches(stream, max_=10, within=10.0, quiet=0.02, count=3)

    got = run(scenario())
    assert [b for b, _ in got] == [names("m", 25)[:10], names("m", 25)[10:20], names("m", 25)[20:]]


def test_events_are_acknowledged_only_once_their_batch_was_handled() -> None:
    stream = Stream()

    async def handler(batch: list[str]) -> None:
        assert stream.acked == []  # nothing of this batch (or of a later one) before it is done
        await asyncio.sleep(0.05)

    async def scenario() -> None:
        stream.put(*names("m", 5))
        await batches(stream, max_=200, within=10.0, quiet=0.02, count=1, on_batch=handler)

    run(scenario())
    assert stream.acked == names("m", 5)
    assert stream.enable_acks is True  # the stream's own setting is back


def test_what_arrives_while_a_batch_is_handled_gathers_for_the_next() -> None:
    stream = Stream()

    async def handler(batch: list[str]) -> None:
        if batch[0] == "a0":
            stream.put(*names("b", 7))  # arrives during the handling, which outlasts ``within``
            await asyncio.sleep(0.6)

    async def scenario() -> list[tuple[list[str], float]]:
        stream.put(*names("a", 3))
        return await batches(stream, max_=200, within=0.5, quiet=None, count=2, on_batch=handler)

    (first, _), (second, at) = run(scenario())
    assert first == names("a", 3)
    assert second == names("b", 7)
    # The first batch at 0.5 s, handled until 1.1 s; the second was due at 1.0 s (0.5 s after its
    # first event), so it goes as soon as the handler is done (take_events: 0.5 s later, 1.6 s).
    assert 1.05 <= at < 1.4


def test_without_quiet_a_batch_waits_out_within_from_its_first_event() -> None:
    async def scenario() -> list[tuple[list[str], float]]:
        stream = Stream()
        stream.put("m0")
        return await batches(stream, max_=200, within=0.6, quiet=None, count=1)

    [(batch, at)] = run(scenario())
    assert batch == ["m0"]
    assert 0.55 <= at < 1.5


def test_with_quiet_a_lone_event_goes_once_nothing_more_came() -> None:
    async def scenario() -> list[tuple[list[str], float]]:
        stream = Stream()
        stream.put("m0")
        return await batches(stream, max_=200, within=10.0, quiet=0.05, count=1)

    [(batch, at)] = run(scenario())
    assert batch == ["m0"]
    assert at < 1.0
