"""The extractor interface: one chunk in, entities and relations out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from schemas import ExtractedEntity, ExtractedRelation, TranscriptChunk


@dataclass(frozen=True)
class ExtractionResult:
    entities: list[ExtractedEntity]
    relations: list[ExtractedRelation]
    # Provider-specific facts worth keeping with the record (model, tokens, cache hit...).
    meta: dict[str, str | int | float | bool] = field(default_factory=dict)


class ExtractionFailed(Exception):
    """Extraction failed permanently for this chunk (the chunk goes to the DLQ).

    ``raw`` keeps what the model answered, so the DLQ record shows what went wrong.
    """

    def __init__(self, reason: str, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.raw = raw


@runtime_checkable
class Extractor(Protocol):
    """Finds entities and relations in one chunk of transcript text."""

    #: Short identifier stored with every result ("offline-plain", "openai:gpt-4o-mini", ...).
    name: str
    #: Version of the prompt or rules; part of every cache key and every stored record.
    prompt_version: str

    async def extract(self, chunk: TranscriptChunk) -> ExtractionResult: ...

    async def aclose(self) -> None: ...
