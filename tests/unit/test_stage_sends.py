"""How the extract and route stages hand their output to the producer: the offline extractor's
batch goes out in one send, and route's two outputs are in flight together.

Every produce request costs the broker and the stage more CPU than the stage's own work on
a chunk; a send that waits for the one before it adds a round trip per batch
(benchmarks/pipeline.py prints the CPU of every process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from agents.extract import ExtractStage
from agents.route import RouteStage
from agents.runtime import StageRuntime
from schemas import ChunkExtraction, Event, TranscriptChunk
from streams.extraction import ExtractionFailed
from streams.extraction.base import ExtractionResult
from streams.extraction.offline import OfflineExtractor
from streams.kafka.topics import topics_for
from streams.settings import load_settings
from tests.support import ROOT
from tests.unit.test_resolution import _chunks as corpus_chunks

SETTINGS = load_settings(ROOT / "config" / "development.yaml", env={})


@dataclass
class RecordingRuntime:
    """The part of StageRuntime the two stages call; records what they send."""

    settings: Any = SETTINGS
    topics: Any = field(default_factory=lambda: topics_for(SETTINGS))
    sends: list[tuple[str, list[str]]] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def _sent(self, topic: str, keys: list[str]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)  # the broker's ack
        self.in_flight -= 1
        self.sends.append((topic, keys))

    async def send_many(self, topic: str, items: Sequence[tuple[str, Event]]) -> None:
        await self._sent(topic, [k for k, _ in items])

    async def send_raw_many(self, topic: str, items: Sequence[tuple[str, bytes]]) -> None:
        await self._sent(topic, [k for k, _ in items])

    async def send_event(self, topic: str, key: str, event: Event) -> None:
        await self._sent(topic, [key])

    async def dead_letter(self, event: Any, reason: str, message: str, **_: Any) -> None:
        self.dead.append(reason)


def _event(value: bytes = b"{}") -> Any:
    return SimpleNamespace(message=SimpleNamespace(value=value, key=None, topic="t", partition=0, offset=0))


def _transcript_chunks(n: int) -> list[TranscriptChunk]:
    """The first ``n`` chunks of a corpus video, cut as the chunk stage cuts them."""
    return list(corpus_chunks(tokens=80)[:n])


class FailsOnSecond(OfflineExtractor):
    """The rules extractor, except that the second chunk it sees fails for good."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def extract(self, chunk: TranscriptChunk) -> ExtractionResult:
        self.calls += 1
        if self.calls == 2:
            raise ExtractionFailed("invalid_answer", "no graph in it")
        return await super().extract(chunk)


def test_the_offline_extractors_batch_goes_out_in_one_send_with_its_failures_marked() -> None:
    rt = RecordingRuntime()
    stage = ExtractStage(cast(StageRuntime, rt), FailsOnSecond())
    chunks = _transcript_chunks(4)
    asyncio.run(stage.handle_batch([(_event(), c) for c in chunks]))
    assert rt.sends == [(rt.topics.extractions, [c.chunk_id for c in chunks])]
    assert rt.dead == ["invalid_answer"]


def test_route_sends_the_mentions_and_the_pending_extractions_together() -> None:
    rt = RecordingRuntime()
    chunks = _transcript_chunks(3)
    batch = []
    for c in chunks:
        result = asyncio.run(OfflineExtractor().extract(c))
        x = ChunkExtraction(chunk=c, entities=result.entities, relations=result.relations,
                            extractor="offline-plain", prompt_version="t")
        batch.append((_event(x.model_dump_json().encode()), x))
    asyncio.run(RouteStage(cast(StageRuntime, rt)).handle(batch))
    assert {topic for topic, _ in rt.sends} == {rt.topics.resolve_mentions, rt.topics.resolve_pending}
    assert rt.most_in_flight == 2  # one round trip for both, not one after the other
