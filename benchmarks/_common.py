"""Shared set-up for benchmarks: an isolated deployment on the local stack (tests.support)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import time  # noqa: E402

from stack.localstack import ferretdb_service, kafka_service  # noqa: E402
from streams.store import GraphStore  # noqa: E402
from tests.support import CORPUS, Deployment, Services, WorkerProcess, deep_merge, manifest, wait_until  # noqa: E402

__all__ = ["CORPUS", "ROOT", "Deployment", "cpu_seconds", "deployment", "index_corpus", "manifest", "percentile",
           "stack_pids"]


def deployment(overrides: dict[str, Any], name: str | None = None) -> Deployment:
    """Start the local stack if needed and make an isolated deployment in a temp dir
    (``name``: a fixed topic prefix and database, to come back to a kept one)."""
    subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), "up", "--no-prometheus"], check=True,
                   capture_output=True)
    # The stack's ports, as `localstack.py up` reads them (a second stack: `localstack.py free-ports`).
    services = Services(f"127.0.0.1:{os.environ.get('GRAPHRAG_KAFKA_PORT', '9092')}",
                        f"mongodb://127.0.0.1:{os.environ.get('GRAPHRAG_MONGO_PORT', '27017')}")
    # The product's offline default (spaCy where installed), not the tests' plain rules.
    overrides = deep_merge({"graphrag": {"extraction": {"offline_extractor": "auto"}}}, overrides)
    if name is None:
        return Deployment(services, Path(tempfile.mkdtemp()), overrides)
    return Deployment(services, Path(tempfile.mkdtemp()), overrides, name=name)


def index_corpus(d: Deployment) -> tuple[GraphStore, WorkerProcess, list[str], float]:
    """Every corpus video through a worker of all stages (started here, left running) until
    each is done or failed: (store, worker, video IDs, seconds from submit to the last)."""
    ids = [e["video_id"] for e in manifest()]
    worker = d.start_worker("all")
    store = GraphStore.from_settings(d.settings)
    t0 = time.monotonic()
    d.cli("submit", *ids)
    wait_until(lambda: len(store.videos.find(ids)) == len(ids)
               and all(v["status"] in ("done", "failed") for v in store.videos.find(ids)), timeout=1800, interval=1)
    return store, worker, ids, time.monotonic() - t0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_pids() -> dict[str, int]:
    """The Kafka broker and FerretDB of the stack in use (GRAPHRAG_STACK_DIR), from its pid files."""
    pids = {"kafka": kafka_service().pid(), "ferretdb": ferretdb_service().pid()}
    return {name: pid for name, pid in pids.items() if pid is not None}
