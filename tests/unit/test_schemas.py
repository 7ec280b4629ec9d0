"""Topic contracts: the pydantic models, the codec's reason codes and the committed JSON Schema files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

from schemas import (
    TOPIC_MODELS,
    VIDEO_ID_PATTERN,
    ChunkExtraction,
    Event,
    TranscriptFetched,
    TranscriptSegment,
    VideoRequested,
    VideoStatusEvent,
    is_video_id,
)
from schemas.events import MentionBatch, MentionResolved, MentionsResolved, utcnow
from schemas.generate import OUT_DIR, render, stale_files
from streams.extraction.offline import PROMPT_VERSION, extract_offline
from streams.kafka.codec import decode, decode_request, encode
from streams.kafka.dlq import BadMessage
from streams.resolution.resolve import mention_requests, resolve_extraction, resolve_mention
from streams.settings import ResolutionSettings
from streams.transcripts.chunking import chunk_transcript
from streams.transcripts.parse import parse_transcript
from tests.support import CORPUS, ROOT, manifest

MAX = 16_384
ENTRIES = manifest()


# --------------------------------------------------------------------------- generated files


def test_committed_json_schemas_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, "-m", "schemas.generate", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in OUT_DIR.glob("*.json")) == sorted(f"{t}.v1.json" for t in TOPIC_MODELS)


def test_stale_detection_finds_changed_missing_and_extra_files(tmp_path: Path) -> None:
    out = tmp_path / "jsonschema"
    shutil.copytree(OUT_DIR, out)
    assert stale_files(out) == []

    changed = out / "videos.requested.v1.json"
    schema = json.loads(changed.read_text())
    schema["properties"]["video_id"]["maxLength"] = 12
    changed.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert stale_files(out) == ["videos.requested.v1.json"]

    (out / "graph.edges.v1.json").unlink()
    (out / "old.topic.v1.json").write_text("{}\n")
    assert stale_files(out) == ["graph.edges.v1.json", "old.topic.v1.json", "videos.requested.v1.json"]


def test_stale_detection_on_an_empty_directory(tmp_path: Path) -> None:
    assert stale_files(tmp_path / "absent") == sorted(render())


# --------------------------------------------------------------------------- video IDs


@pytest.mark.parametrize("video_id", [e["video_id"] for e in ENTRIES])
def test_every_corpus_video_id_is_valid(video_id: str) -> None:
    assert VideoRequested(video_id=video_id).video_id == video_id
    assert is_video_id(video_id)


@pytest.mark.parametrize("bad", [
    "abc",  # too short
    "dQw4w9WgXcQQ",  # too long
    "dQw4w9WgXcZ",  # Z cannot be the last character of a 64-bit ID
    "dQw4w9WgXc!",
    "../../etc/p",  # path traversal, 11 characters
    "../../etc",
    "dQw4w9 gXcQ",
    "",
    "dQw4w9WgXcQ\n",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
])
def test_invalid_video_ids_are_rejected(bad: str) -> None:
    assert not is_video_id(bad)
    with pytest.raises(pydantic.ValidationError):
        VideoRequested(video_id=bad)


def test_request_defaults_and_strictness() -> None:
    r = VideoRequested(video_id="Pw0IZg7_4mo")
    assert r.schema_version == 1 and r.source == "auto" and r.languages == ["en"]
    assert r.requested_at.tzinfo is not None
    with pytest.raises(pydantic.ValidationError):
        VideoRequested(video_id="Pw0IZg7_4mo", languages=["english!"])
    with pytest.raises(pydantic.ValidationError):
        VideoRequested.model_validate({"video_id": "Pw0IZg7_4mo", "priority": 1})
    with pytest.raises(pydantic.ValidationError):
        TranscriptSegment(start=5.0, end=4.0, text="backwards")


# --------------------------------------------------------------------------- codec reason codes


def _reason(value: bytes | None, max_bytes: int = MAX) -> str:
    with pytest.raises(BadMessage) as info:
        decode_request(value, max_bytes=max_bytes)
    return info.value.reason


@pytest.mark.parametrize(("value", "reason"), [
    (b"this is not json {", "invalid_json"),
    (b"<html>not json</html>", "invalid_json"),
    (b"\xff\xfe\xfd not utf-8", "invalid_encoding"),
    (b"", "empty_message"),
    (None, "empty_message"),
    (b"[1, 2, 3]", "schema_violation"),
    (b'"Pw0IZg7_4mo"', "schema_violation"),
    (b'{"source": "local"}', "schema_violation"),
    (b'{"video_id": "dQw4w9WgXcQ", "colour": "red"}', "schema_violation"),
    (b'{"video_id": "abc"}', "invalid_video_id"),
    (b'{"video_id": "../../etc/p"}', "invalid_video_id"),
    (b"dQw4w9WgXcZ", "invalid_video_id"),
    (b'{"video_id": "dQw4w9WgXcQ", "schema_version": 2}', "unsupported_schema_version"),
    (b'{"video_id": "dQw4w9WgXcQ", "schema_version": "1"}', "unsupported_schema_version"),
])
def test_decode_request_reason_codes(value: bytes | None, reason: str) -> None:
    assert _reason(value) == reason


def test_oversize_is_rejected_before_parsing() -> None:
    big = json.dumps({"video_id": "dQw4w9WgXcQ", "request_id": "x" * 20_000}).encode()
    assert _reason(big) == "oversize"
    # The limit is the configured one, not a fixed size.
    small = b'{"video_id": "dQw4w9WgXcQ"}'
    assert _reason(small, max_bytes=len(small) - 1) == "oversize"
    assert decode_request(small, max_bytes=len(small)).video_id == "dQw4w9WgXcQ"


@pytest.mark.parametrize("value", [b"dQw4w9WgXcQ", b"  dQw4w9WgXcQ\n", b"-6uLaTEbhbs"])
def test_a_bare_video_id_is_a_request(value: bytes) -> None:
    r = decode_request(value, max_bytes=MAX)
    assert r.video_id == value.decode().strip()
    assert r.source == "auto" and r.languages == ["en"]


def test_decode_rejects_a_message_of_another_topic() -> None:
    status = VideoStatusEvent(video_id="Pw0IZg7_4mo", stage="fetch", state="done", at=utcnow())
    with pytest.raises(BadMessage) as info:
        decode(VideoRequested, encode(status), max_bytes=MAX)
    assert info.value.reason == "schema_violation"
    assert "stage" in str(info.value)


def test_missing_video_id_is_a_schema_violation_not_an_invalid_id() -> None:
    with pytest.raises(BadMessage) as info:
        decode(VideoStatusEvent, b'{"stage": "fetch", "state": "done", "at": "2024-01-01T00:00:00Z"}',
               max_bytes=MAX)
    assert info.value.reason == "schema_violation"
    assert "video_id" in str(info.value)


# --------------------------------------------------------------------------- round trips


def _realistic_instances() -> dict[str, Event]:
    """One message per topic, made from a real corpus transcript by the real pipeline functions."""
    entry = next(e for e in ENTRIES if e["video_id"] == "Pw0IZg7_4mo")
    segments = parse_transcript((CORPUS / entry["path"]).read_text(encoding="utf-8"), entry["format"])
    now = utcnow()
    request = VideoRequested(video_id="Pw0IZg7_4mo", source="local", languages=["en", "en-GB"],
                             request_id="req-1", requested_at=now)
    fetched = TranscriptFetched(video_id="Pw0IZg7_4mo", source="local", source_ref=str(CORPUS / entry["path"]),
                                language="en", title="The moons of Mars explained",
                                segments=[TranscriptSegment(start=s.start, end=s.end, text=s.text) for s in segments],
                                requested_at=now, fetched_at=now + timedelta(seconds=1))
    chunk = chunk_transcript(fetched, tokens=120, overlap=20)[0]
    found = extract_offline(chunk.text)
    extraction = ChunkExtraction(chunk=chunk, entities=found.entities, relations=found.relations,
                                 extractor="offline-plain", prompt_version=PROMPT_VERSION)
    update = resolve_extraction(extraction)
    assert update.entities and update.relations and chunk.timeline
    status = VideoStatusEvent(video_id="Pw0IZg7_4mo", stage="chunk", state="done", detail="3 chunks",
                              chunk_count=3, title="The moons of Mars explained", source="local",
                              requested_at=now, at=now)
    mention = mention_requests(extraction, block_chars=2)[0]
    canonical, how, _ = resolve_mention({}, mention.name, mention.type, ResolutionSettings())
    resolved = MentionResolved(chunk_id=mention.chunk_id, mention=mention.mention, entity_id=canonical.entity_id,
                               type=canonical.type, canonical_name=canonical.name, how=how)
    return {"videos.requested": request, "transcripts.fetched": fetched, "transcripts.chunks": chunk,
            "graph.extractions": extraction, "graph.edges": update, "videos.status": status,
            "resolve.mentions": MentionBatch(chunk_id=mention.chunk_id, mentions=[mention]),
            "resolve.resolved": MentionsResolved(chunk_id=mention.chunk_id, answers=[resolved])}


INSTANCES = _realistic_instances()


def test_every_topic_has_a_round_trip_instance() -> None:
    assert set(INSTANCES) == set(TOPIC_MODELS)


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_encode_decode_round_trip(topic: str) -> None:
    model = TOPIC_MODELS[topic]
    event = INSTANCES[topic]
    assert isinstance(event, model)
    data = encode(event)
    assert decode(model, data, max_bytes=8_388_608) == event
    assert encode(decode(model, data, max_bytes=8_388_608)) == data


# --------------------------------------------------------------------------- JSON Schema files

# jsonschema is not installed in this environment (`pip show jsonschema`), so the committed
# files are checked with this small validator for exactly the keywords they use; a keyword it
# does not know fails the test instead of being ignored.
_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "format", "x-topic"}
_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _errors(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = "$") -> list[str]:
    errs: list[str] = []
    for key, rule in schema.items():
        if key in _ANNOTATIONS or key in ("$defs", "properties", "prefixItems"):
            continue
        if key == "$ref":
            assert rule.startswith("#/$defs/"), rule
            errs += _errors(root["$defs"][rule.rsplit("/", 1)[1]], value, root, at)
        elif key == "type":
            if rule == "integer":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif rule == "number":
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, _TYPES[rule])
            if not ok:
                return [f"{at}: not of type {rule}"]
        elif key == "required":
            errs += [f"{at}: missing {k}" for k in rule if isinstance(value, dict) and k not in value]
        elif key == "additionalProperties":
            assert rule is False, f"{at}: only additionalProperties: false is expected"
            if isinstance(value, dict):
                errs += [f"{at}: unexpected {k}" for k in value if k not in schema.get("properties", {})]
        elif key == "anyOf":
            if all(_errors(s, value, root, at) for s in rule):
                errs.append(f"{at}: matches none of anyOf")
        elif key == "enum":
            errs += [] if value in rule else [f"{at}: {value!r} not in enum"]
        elif key == "const":
            errs += [] if value == rule else [f"{at}: {value!r} != {rule!r}"]
        elif key == "pattern":
            errs += [] if re.search(rule, value) else [f"{at}: does not match {rule}"]
        elif key in ("minLength", "minItems"):
            errs += [] if len(value) >= rule else [f"{at}: shorter than {rule}"]
        elif key in ("maxLength", "maxItems"):
            errs += [] if len(value) <= rule else [f"{at}: longer than {rule}"]
        elif key == "minimum":
            errs += [] if value >= rule else [f"{at}: below {rule}"]
        elif key == "maximum":
            errs += [] if value <= rule else [f"{at}: above {rule}"]
        elif key == "items":
            for i, item in enumerate(value):
                errs += _errors(rule, item, root, f"{at}[{i}]")
        else:
            raise AssertionError(f"{at}: JSON Schema keyword {key!r} is not understood by this test")
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errs += _errors(sub, value[k], root, f"{at}.{k}")
    if isinstance(value, list):
        for i, sub in enumerate(schema.get("prefixItems", [])):
            if i < len(value):
                errs += _errors(sub, value[i], root, f"{at}[{i}]")
    return errs


def _schema(topic: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((OUT_DIR / f"{topic}.v1.json").read_text())
    return schema


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_real_messages_validate_against_the_committed_schema(topic: str) -> None:
    schema = _schema(topic)
    message = json.loads(encode(INSTANCES[topic]))
    assert _errors(schema, message, schema) == []


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_schema_files_are_strict(topic: str) -> None:
    schema = _schema(topic)
    assert schema["x-topic"] == f"<prefix>{topic}"
    assert schema["$id"].endswith(f"/{topic}.v1.json")
    assert schema["properties"]["schema_version"]["const"] == 1
    for name, sub in [("(root)", schema), *schema.get("$defs", {}).items()]:
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, name
    message = json.loads(encode(INSTANCES[topic]))
    assert _errors(schema, {**message, "unexpected_field": 1}, schema) == ["$: unexpected unexpected_field"]
    missing = schema["required"][0]
    assert f"$: missing {missing}" in _errors(schema, {k: v for k, v in message.items() if k != missing}, schema)


def test_schema_rejects_the_same_bad_video_ids_as_the_model() -> None:
    schema = _schema("videos.requested")
    assert schema["required"] == ["video_id"]
    assert schema["properties"]["video_id"]["pattern"] == VIDEO_ID_PATTERN
    for bad in ("dQw4w9WgXcZ", "../../etc/p", "abc"):
        assert _errors(schema, {"video_id": bad}, schema), bad
    assert _errors(schema, {"video_id": "-6uLaTEbhbs"}, schema) == []
    assert _errors(schema, {"video_id": "dQw4w9WgXcQ", "schema_version": 2}, schema)
