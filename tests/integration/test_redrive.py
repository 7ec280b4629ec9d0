"""`dlq replay` against the real broker with a fetch worker: a missing transcript that is
redriven after the file appears, and an invalid message that fails again until its
attempts run out.

The pure rules: tests/unit/test_redrive.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.dlq import CONNECT_PREFIX, parse_headers
from tests.support import ROOT, DeploymentFactory, consume_all, produce_raw, wait_until

VIDEO = "16W7c0mb-rE"


def _replay(d: Any, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(d.cli("dlq", "replay", "--json", *args).stdout)
    return out


@pytest.mark.integration
def test_dlq_replay_redrives_fixed_records_and_gives_up_on_those_that_keep_failing(
        deployment_factory: DeploymentFactory, tmp_path: Path) -> None:
    transcripts = tmp_path / "transcripts"
    transcripts.mkdir()
    d = deployment_factory({"graphrag": {"transcripts": {"source": "local", "local_dirs": [str(transcripts)]}}})
    prefix = d.settings.kafka.topic_prefix
    worker = d.start_worker("fetch")
    produce_raw(d.settings, f"{prefix}videos.requested",
                [(VIDEO.encode(), json.dumps({"video_id": VIDEO, "source": "local"}).encode()),
                 (b"junk", b"{not json")])

    def dlq() -> list[Any]:
        return consume_all(d.settings, f"{prefix}dlq")

    wait_until(lambda: len(dlq()) == 2, 120, message=lambda: f"2 dead letters; worker log:\n{worker.log_tail()}")
    reasons = sorted(parse_headers(m.headers())["reason"] for m in dlq())
    assert reasons == ["invalid_json", "transcript_not_found"]
    assert all(parse_headers(m.headers())["attempt"] == "1" for m in dlq())

    # A dry run lists both and sends nothing.
    dry = _replay(d, "--dry-run")
    assert (dry["selected"], dry["redriven"]) == (2, 0)
    assert len(consume_all(d.settings, f"{prefix}videos.requested")) == 2

    # The transcript appears; redriving that video's dead letter now succeeds.
    shutil.copy(ROOT / "samples" / "transcripts" / f"{VIDEO}.srt", transcripts / f"{VIDEO}.srt")
    done = _replay(d, "--video", VIDEO, "--since", "1h")
    assert (done["redriven"], done["not_matching"]) == (1, 1)
    requested = consume_all(d.settings, f"{prefix}videos.requested")
    assert len(requested) == 3
    redriven = next(m for m in requested if any(k.startswith("graphrag.redrive.") for k, _ in m.headers() or []))
    assert redriven.key() == VIDEO.encode()
    headers = {k: v.decode() for k, v in redriven.headers()}
    not_found = next(m for m in dlq() if parse_headers(m.headers())["reason"] == "transcript_not_found")
    assert headers["graphrag.redrive.dlq.offset"] == str(not_found.offset())
    assert headers["graphrag.redrive.attempt"] == "1"
    wait_until(lambda: any(m.key() == VIDEO.encode() for m in consume_all(d.settings, f"{prefix}transcripts.fetched")),
               120, message="the redriven video's transcript")
    assert len(dlq()) == 2  # it did not fail again

    # The invalid message fails again: its new dead letter counts attempt 2 and names the first.
    again = _replay(d, "--reason", "invalid_json", "--max-attempts", "2")
    assert again["redriven"] == 1
    wait_until(lambda: len(dlq()) == 3, 120, message="the second dead letter of the invalid message")
    first_junk = next(m for m in dlq() if m.key() == b"junk")
    junk = [m for m in dlq() if m.key() == b"junk"]
    assert len(junk) == 2
    second = max(junk, key=lambda m: parse_headers(m.headers())["attempt"])
    h = parse_headers(second.headers())
    assert h["attempt"] == "2" and h["reason"] == "invalid_json"
    assert (h["redriven.from.partition"], h["redriven.from.offset"]) == (str(first_junk.partition()),
                                                                          str(first_junk.offset()))
    assert second.value() == b"{not json"
    connect = {k: v.decode() for k, v in second.headers() if k.startswith(CONNECT_PREFIX)}
    assert connect[CONNECT_PREFIX + "topic"] == f"{prefix}videos.requested"
    assert connect[CONNECT_PREFIX + "stage"] == "VALUE_CONVERTER"

    # Now it has failed as often as allowed: nothing is sent, and nothing loops.
    stop = _replay(d, "--reason", "invalid_json", "--max-attempts", "2")
    assert (stop["redriven"], stop["exhausted"], stop["superseded"]) == (0, 1, 1)
    assert len(consume_all(d.settings, f"{prefix}videos.requested")) == 4

    text = d.cli("dlq", "replay", "--reason", "invalid_json", "--max-attempts", "2", "--dry-run")
    assert "exhausted (failed 2 times, --max-attempts 2)" in text.stdout
    assert "0 record(s) would be redriven; 1 exhausted" in text.stderr
    listed = d.cli("dlq").stdout
    assert "attempt 2" in listed and "invalid_json" in listed
    bad = d.cli("dlq", "replay", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "'yesterday' is not an ISO 8601 time" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.integration
def test_the_cli_producer_partitions_keys_as_the_stage_apps_do(deployment_factory: DeploymentFactory) -> None:
    """A redrive (or any message the CLI produces) to a keyed internal topic must land on the
    partition whose owner holds that key's state: the one aiokafka (Faust) picks, murmur2.
    librdkafka's default (CRC32) put a redriven resolve.pending record beside none of its
    resolved mentions, so its chunk would never be assembled."""
    from aiokafka.partitioner import DefaultPartitioner

    from streams.kafka.clients import OutgoingMessage, make_producer, produce_and_confirm

    d = deployment_factory({})
    d.create_topics()
    topic = f"{d.settings.kafka.topic_prefix}resolve.pending"
    keys = [f"{i:024x}".encode() for i in range(40)]
    produce_and_confirm(make_producer(d.settings), [OutgoingMessage(topic, k, b"{}") for k in keys])
    landed = {m.key(): m.partition() for m in consume_all(d.settings, topic)}
    partitions = list(range(d.settings.kafka.partitions))
    faust_partition = {k: DefaultPartitioner()(k, partitions, partitions) for k in keys}
    assert landed == faust_partition
    assert len(set(landed.values())) == len(partitions)  # the keys spread: the check can tell them apart
