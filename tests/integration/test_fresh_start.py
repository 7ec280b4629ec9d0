"""The newcomer's path, on the stack `make test` starts from nothing (scripts/run-tests.sh).

Exactly what `make demo` runs: the development config, `topics create`, `worker --stages
all`, the shipped samples, `submit` and `wait`. It runs first in the session (conftest),
so under `make test` the broker has served no group yet: the case that hung every first
`make demo` while every test passed on a used broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from streams.kafka.topics import group_prefix
from tests.support import ROOT, Services, remove_data

SAMPLES = ROOT / "samples" / "transcripts"
DEADLINE = 120.0


def _cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_the_demo_path_finishes_every_sample_video_within_120s(services: Services, tmp_path: object) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    groups_before = admin.list_consumer_groups(request_timeout=10).result().valid
    existing = admin.list_topics(timeout=10).topics
    # The demo's own names, unless a developer's demo already uses them on this broker.
    prefix = "graphrag." if not any(t.startswith("graphrag.") for t in existing) else f"fresh{uuid.uuid4().hex[:6]}."
    database = f"graphrag_fresh_{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_", "OPENAI_", "KAFKA_", "MONGODB_"))}
    env.update({"GRAPHRAG_ENV": "development", "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
                "MONGODB_URI": services.mongo_uri, "GRAPHRAG_MONGODB_DATABASE": database,
                "GRAPHRAG_TOPIC_PREFIX": prefix, "GRAPHRAG_TRANSCRIPTS_DIR": str(SAMPLES),
                # metrics off: a developer's demo worker may hold 9400+ (the only deviation)
                "GRAPHRAG_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1",
                # Faust's local files per group: not those of a developer's demo worker
                "XDG_STATE_HOME": str(tmp_path)})
    print(f"broker had {len(groups_before)} consumer group(s) before this test (0 = a newcomer's broker)")
    log = open(os.path.join(str(tmp_path), "worker.log"), "wb")  # noqa: SIM115 - closed below
    worker = None
    try:
        created = _cli(env, "topics", "create")
        assert created.returncode == 0, created.stderr
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--stages", "all"], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started = time.monotonic()
        submitted = _cli(env, "submit", "--transcripts", str(SAMPLES))
        assert submitted.returncode == 0, submitted.stderr
        waited = _cli(env, "wait", "--transcripts", str(SAMPLES), "--timeout", str(DEADLINE),
                      timeout=DEADLINE + 60)
        took = time.monotonic() - started
        print(f"every sample video done {took:.1f}s after submit")
        log.flush()
        with open(log.name, errors="replace") as f:
            tail = "\n".join(f.read().splitlines()[-40:])
        assert waited.returncode == 0, f"{waited.stdout}\n{waited.stderr}\nworker log:\n{tail}"
        assert took <= DEADLINE
        assert worker.poll() is None, tail
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        log.close()
        remove_data(services, (prefix, f"{group_prefix(prefix)}-"), database)
