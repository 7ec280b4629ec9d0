"""Every Grafana panel returns data in a real end-to-end run (issue 5, item 4).

One isolated deployment runs `worker --stages all` (one process per app, app i on
metrics port base+i: base..base+7 for the seven pipeline stages and communities) with LLM extraction
against tests/fakes/fake_openai, plus the lag exporter as its own process; a real Prometheus
(tests/fakes/prometheus_harness.py) scrapes all of them every second with the repo's alert
rules loaded. The run submits corpus videos in two waves
(the first creates every series, the second makes the counters and histograms move while
Prometheus watches, so rates and quantiles are defined; it re-submits the first video,
whose chunks then hit the LLM cache), produces bad messages on the ingest topic (failure
and DLQ series) and scripts one HTTP 500 from the LLM (retry series). Then every panel
query of every dashboard is evaluated as an instant query, the way a stat panel asks,
right after the second wave: each must return a finite value (the stall and restart
panels too: nothing stalls or restarts here, and they show 0 rather than no data).

Not produced here: graphrag_llm_requests_total{outcome="error"} is counted only for an
HTTP 400 (streams/llm/client.py, LLMClient._send), never for a call whose retries are
spent (the 500 here is retried and then succeeds), so the "LLM error ratio" panel has to
(and does) show 0 without that series.
"""

from __future__ import annotations

import json
import math
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.worker import parse_stages
from streams.store import GraphStore
from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.prometheus_harness import (
    DASHBOARDS_DIR,
    LAG_EXPORTER_JOB,
    WORKERS_JOB,
    PrometheusHarness,
    dashboard_queries,
)
from tests.support import ROOT, Deployment, DeploymentFactory, produce_raw, wait_quiescent, wait_until

pytestmark = pytest.mark.integration

# The processes `worker --stages all` starts, in the order of their metrics ports.
APPS = parse_stages("all")
FIRST_WAVE = ["4ClLMrfYmmw"]  # small corpus transcripts (2-4 kB each)
SECOND_WAVE = ["FaB41TtgS54", "-8mO37wHNHo", "F3QpgXBtDeo"]
BAD_REQUESTS = [b"this is not json {", b'{"video_id": "abc"}']  # -> invalid_json, invalid_video_id

# Alerts that may be *pending* (never firing: every rule has `for:` >= 2m, longer than the
# run) and why. Anything else pending, or anything firing, fails the test.
JUSTIFIED_PENDING = {
    # Lag grows while a wave of work enters the pipeline: deriv(lag[5m]) > 0 with lag > 0.
    "GraphRAGConsumerLagGrowing",
    # absent(up{job="graphrag-lag-exporter"}) holds until Prometheus's first scrape.
    "GraphRAGLagExporterDown",
}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(n: int) -> int:
    """A base port with base .. base+n-1 all free (outside the usual ephemeral range)."""
    for _ in range(200):
        base = random.randrange(20000, 30000 - n)
        if all(_port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no block of {n} free ports found")


def free_port(exclude: range) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in exclude:
            return port


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        # Every LLM call takes a little while, so each wave spans several scrapes.
        f.state.delay = 0.15
        yield f


class LagExporter:
    """`graphrag-streams lag-exporter --port PORT` in its own process, for one deployment."""

    def __init__(self, d: Deployment, port: int) -> None:
        self.port = port
        self.log_path = d.tmp / "lag-exporter.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "lag-exporter", "--port", str(port)],
                                     cwd=ROOT, env=d.env, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def panel_kinds() -> dict[tuple[str, str], str]:
    """(dashboard title, panel title) -> panel type, for the failure message."""
    kinds = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        stack = list(board.get("panels", []))
        while stack:
            p = stack.pop()
            stack.extend(p.get("panels", []))
            kinds[(board["title"], p["title"])] = p.get("type", "")
    return kinds


def finite_values(result: list[Any]) -> list[float]:
    out = []
    for series in result:
        value = series["value"][1] if isinstance(series, dict) else series[1]
        if math.isfinite(float(value)):
            out.append(float(value))
    return out


def test_every_dashboard_panel_returns_data_in_an_end_to_end_run(
        deployment_factory: DeploymentFactory, corpus: Path, fake: FakeOpenAI) -> None:
    t0 = time.monotonic()
    base = free_port_block(len(APPS))
    exporter_port = free_port(range(base, base + len(APPS)))
    d = deployment_factory({
        "monitoring": {"metrics_port": base, "lag_interval_seconds": 1},  # the exporter's port: --port
        "openai": {"api_key": "sk-test", "base_url": fake.base_url},
        "graphrag": {"extraction": {"extractor": "llm"},
                     "transcripts": {"local_dirs": [str(corpus)], "source": "local"}},
    })
    d.cli("topics", "create")
    fake.fault("500")  # the first LLM call fails once and is retried (outcome="retry")
    worker = d.start_worker("all")
    exporter = LagExporter(d, exporter_port)
    targets = [(WORKERS_JOB, f"127.0.0.1:{base + i}") for i in range(len(APPS))]
    targets.append((LAG_EXPORTER_JOB, f"127.0.0.1:{exporter_port}"))
    store = GraphStore.from_settings(d.settings)
    ingest = f"{d.settings.kafka.topic_prefix}videos.requested"

    def done(ids: list[str]) -> bool:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        docs = store.videos.find(ids)
        return len(docs) == len(ids) and all(v["status"] == "done" for v in docs)

    try:
        with PrometheusHarness(targets) as prom:
            prom.wait_for_targets_up(timeout=90)

            # Wave 1: creates every series (counters appear on their first increment).
            d.cli("submit", *FIRST_WAVE)
            produce_raw(d.settings, ingest, [(None, v) for v in BAD_REQUESTS])
            wait_until(lambda: done(FIRST_WAVE), timeout=180, interval=0.5,
                       message=lambda: f"wave 1 done; worker log:\n{worker.log_tail()}")
            prom.wait_for("sum(graphrag_videos_completed_total) >= 1", timeout=30)
            prom.wait_for('sum(graphrag_dlq_records_total{stage="fetch"}) >= 2', timeout=30)
            # A few scrapes with the counters at rest (counted by Prometheus, not by a sleep).
            scrapes = 'sum(count_over_time(up{job="' + WORKERS_JOB + '"}[10m]))'
            at_rest = float(prom.query(scrapes)[0]["value"][1]) + 3 * len(APPS)
            prom.wait_for(f"{scrapes} >= {at_rest}", timeout=30)

            # Wave 2: the same series move while Prometheus scrapes every second. The first
            # wave's video again: its chunks are answered from the LLM cache (hits).
            d.cli("submit", *SECOND_WAVE, *FIRST_WAVE)
            produce_raw(d.settings, ingest, [(None, v) for v in BAD_REQUESTS])
            all_ids = FIRST_WAVE + SECOND_WAVE
            wait_until(lambda: done(all_ids), timeout=300, interval=0.5,
                       message=lambda: f"wave 2 done; worker log:\n{worker.log_tail()}")
            wait_quiescent(d.settings, timeout=120, stable_for=2, workers=[worker])
            prom.wait_for(f"sum(graphrag_videos_completed_total) >= {len(all_ids)}", timeout=30)
            prom.wait_for('sum(graphrag_dlq_records_total{stage="fetch"}) >= 4', timeout=30)
            prom.wait_for('sum(graphrag_llm_cache_requests_total{result="hit"}) > 0', timeout=30)
            # The exporter has seen the drained pipeline, and Prometheus scraped that.
            prom.wait_for("sum(graphrag_consumer_lag_messages) == 0", timeout=60)
            try:
                prom.wait_for('sum(graphrag_llm_requests_total{outcome="retry"}) >= 1', timeout=30)
            except TimeoutError as err:
                raise AssertionError(f"the scripted 500 left no retry: {fake.stats()}") from err
            assert exporter.proc.poll() is None, exporter.log_tail()

            # Every panel query of every dashboard, evaluated now.
            kinds = panel_kinds()
            queries = dashboard_queries()
            assert len(queries) >= 20

            def empty_panels() -> list[str]:
                empty = []
                for q in queries:
                    result = prom.query(q.expr)
                    if not finite_values(result):
                        values = [s.get("value") for s in result if isinstance(s, dict)]
                        empty.append(f"{q.dashboard} / {q.panel} [{q.ref_id}] ({kinds.get((q.dashboard, q.panel))}): "
                                     f"{q.expr} -> {values or 'no series'}")
                return empty

            # Rates and recording rules catch up within a few scrapes; a panel that never gets data fails.
            wait_until(lambda: not empty_panels(), timeout=30, interval=1,
                       message=lambda: "panel queries with data:\n" + "\n".join(empty_panels()))

            # The alert rules are loaded and evaluate without errors.
            groups = prom.rule_groups()
            assert {g["name"] for g in groups} >= {"graphrag-lag", "graphrag-pipeline", "graphrag-targets"}
            rules = [r for g in groups for r in g["rules"]]
            assert len([r for r in rules if r["type"] == "alerting"]) >= 8
            broken = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
            assert not broken, broken
            alerts = prom.alerts()
            firing = [(a["labels"], a.get("value")) for a in alerts if a["state"] == "firing"]
            assert not firing, f"alerts firing: {firing}"
            unexplained = [(a["labels"], a.get("value")) for a in alerts
                           if a["labels"]["alertname"] not in JUSTIFIED_PENDING]
            assert not unexplained, f"alerts pending without a reason: {unexplained}"

            # The two scrape jobs carry what the dashboards expect of them.
            up = {(s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in prom.query("up")}
            assert up == {(job, addr): "1" for job, addr in targets}, up
            print(f"\n{len(queries)} panel queries with data; {len(alerts)} alert(s) pending "
                  f"({sorted({a['labels']['alertname'] for a in alerts})}); LLM requests {fake.stats()}; "
                  f"{time.monotonic() - t0:.0f}s")
    finally:
        exporter.stop()
        worker.stop()
