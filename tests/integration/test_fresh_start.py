"""The newcomer's path, on a stack started from nothing for this test (`fresh_services`).

Exactly what `make demo` runs: the development config and its own topic and database
names, `topics create`, `worker --stages all`, the shipped samples, `submit` and `wait`, on
a broker that has served no consumer group: the case that hung every first `make demo`
while every test passed on a used broker. Its own stack, so it holds in any test order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, Services

SAMPLES = ROOT / "samples" / "transcripts"
DEADLINE = 120.0


def _cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_the_demo_path_finishes_every_sample_video_within_120s(fresh_services: Services, tmp_path: object) -> None:
    from confluent_kafka.admin import AdminClient

    services = fresh_services
    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    assert admin.list_consumer_groups(request_timeout=10).result().valid == []  # a newcomer's broker
    assert [t for t in admin.list_topics(timeout=10).topics if not t.startswith("__")] == []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_", "OPENAI_", "KAFKA_", "MONGODB_"))}
    env.update({"GRAPHRAG_ENV": "development", "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
                "MONGODB_URI": services.mongo_uri, "GRAPHRAG_TRANSCRIPTS_DIR": str(SAMPLES),
                # metrics off: a developer's demo worker may hold 9400+ (the only deviation)
                "GRAPHRAG_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1",
                # Faust's local files per group: not those of a developer's demo worker
                "XDG_STATE_HOME": str(tmp_path)})
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
        # `wait --timeout` is the deadline: it exits non-zero unless every video is done by then.
        assert waited.returncode == 0, f"{waited.stdout}\n{waited.stderr}\nworker log:\n{tail}"
        assert worker.poll() is None, tail
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        log.close()  # the stack and its data go with fresh_services
