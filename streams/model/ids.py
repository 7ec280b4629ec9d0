"""Deterministic identifiers: the basis of idempotency.

Every record the pipeline writes is keyed by a hash of what it is, never by when it was
seen, so a replayed or redelivered message produces the same keys and changes nothing.
"""

from __future__ import annotations

import hashlib

_SEP = "\x1f"  # ASCII unit separator: cannot occur in normalised names or IDs


def stable_id(kind: str, *parts: object) -> str:
    """A 96-bit hex digest of the parts, namespaced by kind."""
    payload = _SEP.join([kind, *(str(p) for p in parts)]).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:24]


def chunk_id(video_id: str, index: int, text: str) -> str:
    return stable_id("chunk", video_id, index, text)


def entity_id(entity_type: str, normalized_name: str) -> str:
    return stable_id("entity", entity_type.upper(), normalized_name)


def relation_id(source_id: str, target_id: str, relation_type: str) -> str:
    return stable_id("relation", source_id, target_id, relation_type.upper())


def mention_id(chunk: str, entity: str) -> str:
    """One mention record per (chunk, entity): counting mentions counts chunks."""
    return stable_id("mention", chunk, entity)


def evidence_id(chunk: str, relation: str) -> str:
    return stable_id("evidence", chunk, relation)
