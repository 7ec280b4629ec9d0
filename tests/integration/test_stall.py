"""Stall detection (agents/stall.py) against a real consumer group on the real broker, the
supervisor (agents/worker.py) against real child processes (kill -9), and a worker whose
topics are missing or have another partition count.

The pure parts: tests/unit/test_stall.py.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from agents.stall import StallWatch, broker_offsets
from tests.support import DeploymentFactory, produce_raw, supervised_children, wait_until


@pytest.mark.integration
def test_detection_reads_the_groups_real_offsets(deployment_factory: DeploymentFactory) -> None:
    """A group that has lag and commits nothing is stalled after stall_seconds; once it
    commits, it is not (offsets from the real broker, as the worker reads them)."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.kafka.clients import client_config

    d = deployment_factory()
    d.create_topics()
    topic = f"{d.settings.kafka.topic_prefix}videos.requested"
    group = f"{d.name}-probe"
    produce_raw(d.settings, topic, [(b"k", b"v")] * 5)
    read = broker_offsets(d.settings, group)
    parts = [(topic, p) for p in range(d.settings.kafka.partitions)]
    lagging = [tp for tp, off in read(parts).items() if off.lag]
    assert sum(read(parts)[tp].lag for tp in lagging) == 5
    watch = StallWatch("fetch", 1.0, lambda: parts, read, exit=lambda code: None)
    now = time.monotonic()
    assert watch.check(now) is None
    assert watch.check(now + 0.5) is None  # within stall_seconds
    # The watch's clock is the `now` it is given: a later check, not a sleep.
    assert "no progress" in (watch.check(now + 1.1) or "")
    c = Consumer({**client_config(d.settings.kafka), "group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, p, read(parts)[(topic, p)].end) for _, p in parts],
                 asynchronous=False)
    finally:
        c.close()
    assert all(off.lag == 0 for off in read(parts).values())
    assert watch.check(now + 2.2) is None


@pytest.mark.integration
def test_the_supervisor_restarts_a_killed_stage(deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory()
    worker = d.start_worker("fetch,chunk")
    before = wait_until(lambda: (p := supervised_children(worker)) and len(p) == 2 and p, timeout=30,
                        message="two children")
    os.kill(before["chunk"], signal.SIGKILL)
    after = wait_until(lambda: (p := supervised_children(worker)) and len(p) == 2
                       and p["chunk"] != before["chunk"] and p, timeout=30,
                       message=lambda: f"chunk restarted; log:\n{worker.log_tail()}")
    assert after["fetch"] == before["fetch"] and worker.alive()
    assert "stage chunk exited with code -9; restarting it" in worker.log_tail(200)


@pytest.mark.integration
def test_a_worker_stops_at_start_when_its_topics_are_missing(deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory()
    proc = d.cli("worker", "--stages", "route", check=False, timeout=60)
    assert proc.returncode == 2
    assert f"topic {d.settings.kafka.topic_prefix}graph.extractions does not exist" in proc.stderr
    assert "graphrag-streams topics create" in proc.stderr
    d.create_topics()
    # The same topics, read by a deployment configured for another partition count.
    other = deployment_factory({"kafka": {"topic_prefix": d.settings.kafka.topic_prefix, "partitions": 4}})
    proc = other.cli("worker", "--stages", "assemble", check=False, timeout=60)
    assert proc.returncode == 2
    assert (f"topic {d.settings.kafka.topic_prefix}resolve.pending has 3 partitions, the configuration says 4"
            in proc.stderr)
    assert f"topic {d.name}-assemble-assembly-changelog has 3 partitions" in proc.stderr
