"""The Prometheus test harness works: a real Prometheus scrapes a prometheus_client
endpoint in this process, answers queries, loads the alert rules and parses every
dashboard query."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from streams.instruments import metrics
from tests.fakes.prometheus_harness import (
    ALERTS_FILE,
    LAG_EXPORTER_JOB,
    WORKERS_JOB,
    PrometheusError,
    PrometheusHarness,
    dashboard_queries,
    free_port,
    substitute_variables,
)
from tests.support import wait_until


@pytest.fixture(scope="module")
def exporter_port() -> Iterator[int]:
    server, thread = start_http_server(0, addr="127.0.0.1")
    yield int(server.server_port)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def prom(exporter_port: int) -> Iterator[PrometheusHarness]:
    with PrometheusHarness([(WORKERS_JOB, f"127.0.0.1:{exporter_port}")]) as p:
        yield p
    assert p.workdir is None  # cleaned up


def test_query_returns_the_scraped_counter(prom: PrometheusHarness) -> None:
    stage = f"harness-{uuid.uuid4().hex[:6]}"
    metrics.EVENTS_IN.labels(stage=stage, topic="graphrag.videos.requested").inc(3)
    prom.wait_for_targets_up()

    result = prom.wait_for(f'graphrag_events_in_total{{stage="{stage}"}}', timeout=30)

    assert len(result) == 1
    series = result[0]
    assert series["metric"]["job"] == WORKERS_JOB
    assert series["metric"]["topic"] == "graphrag.videos.requested"
    assert float(series["value"][1]) == 3.0
    assert prom.query(f'up{{job="{WORKERS_JOB}"}}')[0]["value"][1] == "1"
    assert prom.query('graphrag_events_in_total{stage="never-seen"}') == []


def test_query_errors_raise(prom: PrometheusHarness) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query("sum by (stage (graphrag_events_in_total)")


def test_alert_rules_are_loaded_and_evaluated(prom: PrometheusHarness) -> None:
    names = {r["name"] for g in prom.rule_groups() for r in g["rules"] if r["type"] == "alerting"}
    assert "GraphRAGLagExporterDown" in names and "GraphRAGWorkerDown" in names
    # No lag exporter is scraped here, so absent(up{job="graphrag-lag-exporter"}) holds:
    # the rule goes pending within a few evaluations (it fires only after 2 minutes).
    prom.wait_for(f'ALERTS{{alertname="GraphRAGLagExporterDown", job="{LAG_EXPORTER_JOB}"}}', timeout=30)


def test_every_dashboard_query_is_valid_promql(prom: PrometheusHarness) -> None:
    queries = prom.dashboard_queries()
    assert len(queries) >= 20
    errors = []
    for q in queries:
        try:
            prom.query(q.expr)
        except PrometheusError as e:
            errors.append(f"{q.dashboard} / {q.panel} [{q.ref_id}]: {e}")
    assert not errors, "\n".join(errors)


def test_variable_substitution() -> None:
    raw = 'sum by (stage) (rate(graphrag_events_in_total{stage=~"$stage", topic=~"${topic:regex}"}[$__rate_interval]))'
    assert substitute_variables(raw) == 'sum by (stage) (rate(graphrag_events_in_total{stage=~".*", topic=~".*"}[1m]))'
    assert substitute_variables("increase(x[$__range])") == "increase(x[1h])"
    assert substitute_variables('x{stage=~"$stage"}', {"stage": "extract"}) == 'x{stage=~"extract"}'
    with pytest.raises(ValueError, match="regex matcher"):
        substitute_variables('x{stage="$stage"}')
    with pytest.raises(ValueError, match="unknown Grafana macro"):
        substitute_variables("rate(x[$__nonsense])")
    assert all("$" not in q.expr and "[[" not in q.expr for q in dashboard_queries())


def test_start_fails_clearly_on_a_broken_rule_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(\n")
    with pytest.raises(PrometheusError):
        PrometheusHarness([(WORKERS_JOB, f"127.0.0.1:{free_port()}")], rule_files=[bad]).start()
    assert ALERTS_FILE.is_file()


# ----------------------------------------------------------------- synthetic exporters

def _clone(registry: CollectorRegistry) -> dict[str, Any]:
    """The metrics of streams/instruments/metrics.py, defined afresh in `registry` (by attribute name)."""
    out: dict[str, Any] = {}
    for attr, obj in vars(metrics).items():
        if not isinstance(obj, MetricWrapperBase):
            continue
        kwargs: dict[str, Any] = {"name": obj._name, "documentation": obj._documentation,
                                  "labelnames": obj._labelnames, "registry": registry}
        if isinstance(obj, Histogram):
            kwargs["buckets"] = obj._upper_bounds
        out[attr] = type(obj)(**kwargs)
    return out


def _feed(w: dict[str, Any], x: dict[str, Any], step: int) -> None:
    """One round of activity, shaped like the contract (labels and label values)."""
    for stage, (src, dst) in {"fetch": ("videos.requested", "transcripts.fetched"),
                              "extract": ("transcripts.chunks", "graph.extractions"),
                              "sink": ("graph.edges", "videos.status")}.items():
        w["EVENTS_IN"].labels(stage=stage, topic=f"graphrag.{src}").inc(10)
        w["EVENTS_OUT"].labels(stage=stage, topic=f"graphrag.{dst}").inc(10)
        w["FAILURES"].labels(stage=stage, reason="invalid_event").inc()
        w["DLQ_RECORDS"].labels(stage=stage, reason="invalid_event").inc()
        w["STAGE_LATENCY"].labels(stage=stage).observe(0.2)
        w["IN_FLIGHT"].labels(stage=stage).set(step)
        # Every worker reports its supervisor restarts at start and its stall check's count
        # on every check; graphrag_stalls_total stays absent: nothing stalls (the panels on
        # it must show 0 anyway).
        w["WORKER_RESTARTS"].labels(stage=stage).set(0)
        w["STALLED_PARTITIONS"].labels(stage=stage).set(0)
    w["END_TO_END_LATENCY"].observe(42)
    w["VIDEOS_COMPLETED"].inc()
    for outcome in ("ok", "retry", "error"):
        w["LLM_REQUESTS"].labels(model="gpt-4o-mini", outcome=outcome).inc()
    for kind in ("prompt", "completion"):
        w["LLM_TOKENS"].labels(model="gpt-4o-mini", kind=kind).inc(100)
    w["LLM_LATENCY"].labels(model="gpt-4o-mini").observe(1.5)
    w["LLM_COST"].labels(model="gpt-4o-mini").inc(0.01)
    w["LLM_IN_FLIGHT"].set(1)
    for result in ("hit", "miss"):
        w["LLM_CACHE"].labels(result=result).inc()
    w["CIRCUIT_STATE"].labels(model="gpt-4o-mini").set(0)
    w["LLM_SPEND_CAP_WAITING"].labels(model="gpt-4o-mini").set(0)  # 0 from start when a cap is set
    w["MONGO_BATCH_SIZE"].labels(collection="entities").observe(50)
    w["MONGO_WRITE_LATENCY"].labels(operation="bulk_write").observe(0.05)

    for p in ("0", "1"):
        labels = {"group": "graphrag-extract", "topic": "graphrag.transcripts.chunks", "partition": p}
        x["LOG_END_OFFSET"].labels(topic=labels["topic"], partition=p).set(100 * step)
        x["COMMITTED_OFFSET"].labels(**labels).set(90 * step)
        x["LAG_MESSAGES"].labels(**labels).set(10 * step)
        x["LAG_SECONDS"].labels(**labels).set(5 * step)
    x["TOPIC_PARTITIONS"].labels(topic="graphrag.transcripts.chunks").set(2)
    x["DESIRED_REPLICAS"].labels(stage="extract").set(1)
    x["LAG_BUDGET"].set(300)
    x["LAG_SCRAPE_ERRORS"].inc()


def test_every_dashboard_panel_returns_data_from_contract_shaped_series() -> None:
    """With a worker and a lag exporter exporting every metric of streams/instruments/metrics.py (in
    registries of their own, not this process's), every panel query returns a number."""
    worker_reg, exporter_reg = CollectorRegistry(), CollectorRegistry()
    w, x = _clone(worker_reg), _clone(exporter_reg)
    w["WORKER_INFO"].info({"stage": "extract", "group": "graphrag-extract", "environment": "test",
                           "version": "0.1.0"})
    servers = [start_http_server(0, addr="127.0.0.1", registry=r) for r in (worker_reg, exporter_reg)]
    try:
        (ws, _), (xs, _) = servers
        targets = [(WORKERS_JOB, f"127.0.0.1:{ws.server_port}"), (LAG_EXPORTER_JOB, f"127.0.0.1:{xs.server_port}")]
        with PrometheusHarness(targets) as prom:
            _feed(w, x, 1)
            prom.wait_for_targets_up()
            prom.wait_for('graphrag_consumer_lag_messages{partition="1"}')
            for step in (2, 3):  # rates need samples that differ: each step is scraped before the next
                _feed(w, x, step)
                prom.wait_for(f"graphrag_consumer_lag_messages == {10 * step}")

            def empty_panels() -> list[str]:
                empty = []
                for q in prom.dashboard_queries():
                    values = [float(s["value"][1]) for s in prom.query(q.expr)]
                    if not any(math.isfinite(v) for v in values):
                        empty.append(f"{q.dashboard} / {q.panel} [{q.ref_id}]: {q.expr} -> {values}")
                return empty

            # Rules and rates catch up within a few evaluations; a panel that never gets data fails.
            wait_until(lambda: not empty_panels(), timeout=30, interval=0.5,
                       message=lambda: "panels with data:\n" + "\n".join(empty_panels()))
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
