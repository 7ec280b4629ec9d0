"""Versioned pydantic models for every topic: the contract between stages."""

from schemas.events import (
    TOPIC_MODELS,
    VIDEO_ID_PATTERN,
    ChunkExtraction,
    Event,
    ExtractedEntity,
    ExtractedRelation,
    GraphUpdate,
    ResolvedEntity,
    ResolvedRelation,
    TranscriptChunk,
    TranscriptFetched,
    TranscriptSegment,
    VideoRequested,
    VideoStatusEvent,
    is_video_id,
)

__all__ = [
    "TOPIC_MODELS",
    "VIDEO_ID_PATTERN",
    "ChunkExtraction",
    "Event",
    "ExtractedEntity",
    "ExtractedRelation",
    "GraphUpdate",
    "ResolvedEntity",
    "ResolvedRelation",
    "TranscriptChunk",
    "TranscriptFetched",
    "TranscriptSegment",
    "VideoRequested",
    "VideoStatusEvent",
    "is_video_id",
]
