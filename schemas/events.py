"""Events on every topic: the contract between stages and with producers in other languages.

Every model is strict (unknown fields rejected) and carries ``schema_version``; a consumer
that meets a version it does not know dead-letters the message instead of guessing. JSON
Schema files generated from these models live in ``schemas/jsonschema/`` (see
``python -m schemas.generate``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# YouTube video IDs are 11 characters of URL-safe base64 encoding a 64-bit number, so the
# last character carries only 4 bits and is one of 16 letters.
VIDEO_ID_PATTERN = r"^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$"
_VIDEO_ID = re.compile(VIDEO_ID_PATTERN)


def _check_video_id(value: str) -> str:
    if not _VIDEO_ID.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not a YouTube video ID (11 characters of A-Z a-z 0-9 _ -, "
            "the last one of AEIMQUYcgkosw048)"
        )
    return value


VideoId = Annotated[
    str,
    Field(min_length=11, max_length=11, json_schema_extra={"pattern": VIDEO_ID_PATTERN}),
    AfterValidator(_check_video_id),
]
Seconds = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]
# An IETF-style language tag as YouTube uses them: "en", "pt-BR", "zh_Hans".
LanguageCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")]
ShortText = Annotated[str, Field(min_length=1, max_length=300)]


def is_video_id(value: str) -> bool:
    return bool(_VIDEO_ID.fullmatch(value))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every topic's message: strict, immutable, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
    schema_version: Literal[1] = 1


# --------------------------------------------------------------------------- ingest


class VideoRequested(Event):
    """A user asks for a video to be indexed (topic ``<prefix>videos.requested``, key = video_id).

    Producers may also send the bare 11-character video ID as the message value.
    """

    video_id: VideoId
    source: Literal["auto", "youtube", "local"] = "auto"
    languages: list[LanguageCode] = Field(
        default_factory=lambda: ["en"], min_length=1, max_length=10
    )
    requested_at: datetime = Field(default_factory=utcnow)
    request_id: Annotated[str, Field(max_length=100)] | None = None


# --------------------------------------------------------------------------- transcripts


class TranscriptSegment(BaseModel):
    """One caption line with its time span in seconds from the start of the video."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: Seconds
    end: Seconds
    text: Annotated[str, Field(min_length=1, max_length=5000)]

    @model_validator(mode="after")
    def _ordered(self) -> TranscriptSegment:
        if self.end < self.start:
            raise ValueError(f"segment ends ({self.end}) before it starts ({self.start})")
        return self


class TranscriptFetched(Event):
    """A whole transcript, fetched and cleaned (topic ``<prefix>transcripts.fetched``)."""

    video_id: VideoId
    source: Literal["youtube", "local"]
    source_ref: Annotated[str, Field(max_length=500)]
    language: str | None = None
    title: str | None = None
    segments: list[TranscriptSegment] = Field(min_length=1)
    requested_at: datetime
    fetched_at: datetime


class TranscriptChunk(Event):
    """A timed window of a transcript (topic ``<prefix>transcripts.chunks``, key = chunk_id).

    ``chunk_id`` is derived from (video_id, index, text), so a replayed chunk has the same
    ID and every later write keyed by it is idempotent.
    """

    chunk_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    video_id: VideoId
    index: int = Field(ge=0)
    chunk_count: int = Field(ge=1)
    text: Annotated[str, Field(min_length=1, max_length=20_000)]
    start: Seconds
    end: Seconds
    token_count: int = Field(ge=1)
    #: (character offset in text, seconds) where each caption segment starts in the chunk.
    timeline: list[tuple[Annotated[int, Field(ge=0)], Seconds]] = Field(default_factory=list, max_length=5000)
    requested_at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> TranscriptChunk:
        if self.index >= self.chunk_count:
            raise ValueError(f"index {self.index} is not below chunk_count {self.chunk_count}")
        if self.end < self.start:
            raise ValueError(f"chunk ends ({self.end}) before it starts ({self.start})")
        offsets = [off for off, _ in self.timeline]
        if offsets != sorted(offsets) or (offsets and offsets[-1] >= len(self.text)):
            raise ValueError("timeline offsets must ascend and lie inside the text")
        return self


# --------------------------------------------------------------------------- extraction


class ExtractedEntity(BaseModel):
    """An entity as the extractor saw it in one chunk (not yet resolved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ShortText
    type: Annotated[str, Field(min_length=1, max_length=40)]
    description: Annotated[str, Field(max_length=2000)] = ""


class ExtractedRelation(BaseModel):
    """A directed relation between two entities named in the same chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: ShortText
    target: ShortText
    type: Annotated[str, Field(min_length=1, max_length=60)]
    description: Annotated[str, Field(max_length=2000)] = ""
    strength: int = Field(default=5, ge=1, le=10)


class ChunkExtraction(Event):
    """What the extractor found in one chunk (topic ``<prefix>graph.extractions``).

    ``error`` is set (and the lists are empty) when extraction failed permanently for a
    valid chunk: the chunk still reaches the store so the video can complete, and the
    failure itself is in the DLQ.
    """

    chunk: TranscriptChunk
    entities: list[ExtractedEntity] = Field(default_factory=list)
    relations: list[ExtractedRelation] = Field(default_factory=list)
    extractor: str
    prompt_version: str
    error: str | None = None


# --------------------------------------------------------------------------- resolved graph


class ResolvedEntity(BaseModel):
    """An entity mention mapped to its canonical ID."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entity_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    name: ShortText
    type: str
    surface: ShortText
    description: str = ""
    #: When the mention is spoken (seconds into the video).
    start: Seconds


class ResolvedRelation(BaseModel):
    """A relation between two canonical entities, as evidenced by one chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    relation_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    source_id: str
    target_id: str
    type: str
    description: str = ""
    strength: int = Field(ge=1, le=10)
    #: When the evidence is spoken (seconds into the video).
    start: Seconds


class ExtractedGraph(BaseModel):
    """A chunk's entities and relations exactly as the extractor gave them, before resolution.

    Stored with the chunk so that the merge pass can resolve every chunk again from what
    was extracted, whatever the in-stream resolver guessed at the time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    entities: list[ExtractedEntity] = Field(default_factory=list)
    relations: list[ExtractedRelation] = Field(default_factory=list)


class GraphUpdate(Event):
    """Everything the store needs for one chunk (topic ``<prefix>graph.edges``, key = video_id)."""

    chunk: TranscriptChunk
    entities: list[ResolvedEntity] = Field(default_factory=list)
    relations: list[ResolvedRelation] = Field(default_factory=list)
    extractor: str
    prompt_version: str
    error: str | None = None
    #: The extraction these were resolved from (None from producers that predate it: such a
    #: chunk keeps its stored resolution through merge passes).
    extracted: ExtractedGraph | None = None


# --------------------------------------------------------------------------- resolution (internal)


class MentionRequest(Event):
    """One entity of one chunk, on its way to the resolver that owns its blocking key
    (internal topic ``<prefix>resolve.mentions``, key = blocking key)."""

    chunk_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    mention: int = Field(ge=0)  # position in the chunk's entity list
    name: ShortText
    type: Annotated[str, Field(min_length=1, max_length=40)]
    block: Annotated[str, Field(max_length=20)]


class MentionResolved(Event):
    """The canonical entity of one mention (internal topic ``<prefix>resolve.resolved``, key = chunk_id)."""

    chunk_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    mention: int = Field(ge=0)
    entity_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    type: Annotated[str, Field(min_length=1, max_length=40)]
    canonical_name: ShortText
    how: Literal["new", "exact", "alias", "fuzzy"]


class MentionBatch(Event):
    """A chunk's mentions whose blocks one resolver partition owns (internal topic
    ``<prefix>resolve.mentions``, key = the first mention's blocking key: the blocks of a
    batch hash to one partition, so the key puts the batch where each of them belongs).

    One message per chunk and partition instead of one per mention: the per-message cost of
    the route, resolve and assemble apps and of the broker. (A lone ``MentionRequest`` on the
    topic, from a route app of an earlier version, is read as a batch of one.)"""

    chunk_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    mentions: list[MentionRequest] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_chunk(self) -> MentionBatch:
        _all_of_chunk(self.chunk_id, (m.chunk_id for m in self.mentions), "mentions")
        return self


class MentionsResolved(Event):
    """The canonical entities of one ``MentionBatch`` (internal topic ``<prefix>resolve.resolved``,
    key = chunk_id). (A lone ``MentionResolved`` is read as a batch of one.)"""

    chunk_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    answers: list[MentionResolved] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_chunk(self) -> MentionsResolved:
        _all_of_chunk(self.chunk_id, (a.chunk_id for a in self.answers), "answers")
        return self


def _all_of_chunk(chunk_id: str, ids: Iterable[str], what: str) -> None:
    strays = sorted(set(ids) - {chunk_id})
    if strays:
        raise ValueError(f"{what} of another chunk ({', '.join(strays[:3])}) in the batch of {chunk_id}")


class EntityAlias(BaseModel):
    """A merge decision: mentions whose folded name is the message key belong to this entity
    (compacted topic ``<prefix>entities.aliases``; a null value retracts it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    entity_id: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
    type: str
    name: ShortText
    reason: str = ""


# --------------------------------------------------------------------------- progress


class VideoStatusEvent(Event):
    """Progress of one video through a stage (topic ``<prefix>videos.status``, key = video_id)."""

    video_id: VideoId
    stage: Literal["fetch", "chunk", "extract", "resolve", "sink"]
    state: Literal["started", "done", "failed"]
    detail: Annotated[str, Field(max_length=2000)] = ""
    chunk_count: int | None = Field(default=None, ge=0)
    title: str | None = None
    source: str | None = None
    requested_at: datetime | None = None
    at: datetime


#: Every topic's message model, by the logical topic name used in ``streams.kafka.topics``.
TOPIC_MODELS: dict[str, type[Event]] = {
    "videos.requested": VideoRequested,
    "transcripts.fetched": TranscriptFetched,
    "transcripts.chunks": TranscriptChunk,
    "graph.extractions": ChunkExtraction,
    "graph.edges": GraphUpdate,
    "videos.status": VideoStatusEvent,
    "resolve.mentions": MentionBatch,
    "resolve.resolved": MentionsResolved,
}
