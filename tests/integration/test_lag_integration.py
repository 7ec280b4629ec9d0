"""The lag exporter against Kafka's own `kafka-consumer-groups --describe`, the scaling signal
under a backlog, and the workers' /metrics, /livez and /readyz endpoints."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from stack.localstack import JVM_QUICK
from streams.monitoring.lag import LagMonitor, LagReport, PartitionLag, StageLag, measure_lag, stage_groups
from streams.store import GraphStore
from tests.support import ROOT, Deployment, DeploymentFactory, produce_raw, wait_quiescent, wait_until

pytestmark = pytest.mark.integration

SMALL_VIDEO = "4ClLMrfYmmw"  # a 2 kB Kurzgesagt transcript


@functools.cache
def _kafka_classpath() -> str:
    """The cached Kafka distribution's classpath (asked once: the draining loop runs the tool often)."""
    return subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), "kafka-classpath"],
                          capture_output=True, text=True, check=True).stdout.strip()


def kafka_tool_describe(d: Deployment, *groups: str) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    """Run Kafka's ConsumerGroupCommand (--describe) for ``groups`` (one JVM for all: each
    start costs seconds of CPU) and parse its tables: group -> (topic, partition) -> row."""
    tool = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    out = subprocess.run(["java", *JVM_QUICK, "-cp", _kafka_classpath(), tool,
                          "--bootstrap-server", d.settings.kafka.bootstrap_servers, "--describe",
                          *(a for g in groups for a in ("--group", g))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    tables: dict[str, dict[tuple[str, int], dict[str, Any]]] = {g: {} for g in groups}
    header: list[str] | None = None
    for line in out.stdout.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
        elif header and len(cols) >= 6 and cols[0] in tables:
            rec = dict(zip(header, cols, strict=False))
            tables[cols[0]][(rec["TOPIC"], int(rec["PARTITION"]))] = {
                "committed": None if rec["CURRENT-OFFSET"] == "-" else int(rec["CURRENT-OFFSET"]),
                "log_end": int(rec["LOG-END-OFFSET"]),
                "lag": None if rec["LAG"] == "-" else int(rec["LAG"]),
            }
    return tables


def ours_by_partition(rows: list[PartitionLag], group: str) -> dict[tuple[str, int], PartitionLag]:
    return {(r.topic, r.partition): r for r in rows if r.group == group}


def assert_same(r: PartitionLag, t: dict[str, Any], where: object) -> None:
    """Kafka prints "-" for the lag of a partition the group never committed on; we count
    that lag from the log start (what a consumer with auto.offset.reset=earliest has to read)."""
    assert (r.committed, r.log_end) == (t["committed"], t["log_end"]), where
    if t["committed"] is None:
        assert t["lag"] is None and r.lag == r.log_end - r.log_start, where
    else:
        assert r.lag == t["lag"], where


def test_exporter_matches_kafka_consumer_groups_at_rest_and_while_draining(
        deployment_factory: DeploymentFactory, corpus: Any) -> None:
    d = deployment_factory({"graphrag": {"transcripts": {"local_dirs": [str(corpus)], "source": "local"},
                                         "scaling": {"lag_threshold": 20, "activation_lag_threshold": 0,
                                                     "min_replicas": 0, "max_replicas": 10}}})
    d.cli("topics", "create")
    worker = d.start_worker("all")
    d.cli("submit", SMALL_VIDEO, "-8mO37wHNHo", "FaB41TtgS54")
    wait_quiescent(d.settings, workers=[worker])
    store = GraphStore.from_settings(d.settings)
    assert {v["status"] for v in store.videos.find()} == {"done"}

    # 1. Quiescent: the two tables agree exactly, for every group, topic and partition.
    rows = measure_lag(d.settings)
    tables = kafka_tool_describe(d, *stage_groups(d.settings))
    for group, tool in tables.items():
        ours = ours_by_partition(rows, group)
        assert tool, f"kafka-consumer-groups shows nothing for {group}"
        for key, t in tool.items():
            if key[0] not in {k[0] for k in ours}:
                continue  # a Faust table's changelog: state, not an input the stage lags on
            assert_same(ours[key], t, (group, key))
        for key, r in ours.items():
            if key not in tool:  # the tool omits partitions the group never committed on
                assert r.committed is None and r.lag == 0, (group, key)
    print("\nquiescent:", json.dumps({g: {f"{t}[{p}]": v for (t, p), v in tool.items()}
                                      for g, tool in tables.items()}, indent=1))

    # 2. A backlog on the ingest topic with the workers stopped: exact agreement, and the
    #    scaling signal asks for every partition's worth of fetch replicas.
    d.stop_workers()
    n = 600
    produce_raw(d.settings, f"{d.settings.kafka.topic_prefix}videos.requested",
                [(SMALL_VIDEO.encode(), SMALL_VIDEO.encode())] * n)
    monitor = LagMonitor(d.settings)
    report = monitor.measure()
    fetch = _fetch_lag(report)
    assert fetch.lag == n
    # Nobody consumes: the oldest waiting request gets older, and lag seconds says so.
    waiting = wait_until(lambda: (f := _fetch_lag(monitor.measure())).lag_seconds > 0 and f, timeout=30,
                         interval=0.5, message="a positive lag in seconds for the stopped fetch stage")
    assert waiting.lag == n
    assert fetch.desired_replicas == d.settings.kafka.partitions  # ceil(600/20)=30, capped at 3 partitions
    group = fetch.group
    tool = kafka_tool_describe(d, group)[group]
    ours = ours_by_partition(measure_lag(d.settings), group)
    for key, t in tool.items():
        assert_same(ours[key], t, (group, key))

    # 3. While the backlog drains, Kafka's numbers lie between ours just before and after.
    worker = d.start_worker("fetch")
    compared = 0
    seconds_while_draining: list[tuple[int, float]] = []  # (lag, lag seconds) per measurement
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        during = _fetch_lag(monitor.measure())
        seconds_while_draining.append((during.lag, during.lag_seconds))
        before = ours_by_partition(measure_lag(d.settings), group)
        tool = kafka_tool_describe(d, group)[group]
        after = ours_by_partition(measure_lag(d.settings), group)
        if sum(r.lag for r in before.values()) == 0:
            break
        for key, t in tool.items():
            b, a = before[key], after[key]
            assert (b.committed or 0) <= (t["committed"] or 0) <= (a.committed or 0), key
            assert b.log_end <= t["log_end"] <= a.log_end, key
        compared += 1
    assert compared >= 1, "the backlog drained before it could be compared"
    wait_until(lambda: sum(r.lag for r in measure_lag(d.settings) if r.group == group) == 0, timeout=300)
    drained = _fetch_lag(monitor.measure())
    assert drained.lag == 0 and drained.desired_replicas == 0
    # The replayed requests waited: lag seconds was positive whenever some were left, and
    # back to 0 once the backlog drained.
    backlog = [(lag, sec) for lag, sec in seconds_while_draining if lag > 0]
    assert backlog and all(sec > 0 for _, sec in backlog), seconds_while_draining
    assert drained.lag_seconds == 0.0
    worker.stop()


def _fetch_lag(report: LagReport) -> StageLag:
    return next(s for s in report.stages if s.stage.value == "fetch")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""  # not listening (yet)


def test_worker_endpoints_report_metrics_liveness_and_readiness(deployment_factory: DeploymentFactory) -> None:
    port = _free_port()
    d = deployment_factory({"monitoring": {"metrics_port": port}})
    d.cli("topics", "create")
    worker = d.start_worker("fetch")
    wait_until(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=60,
               message=lambda: f"fetch readiness; log:\n{worker.log_tail()}")
    produce_raw(d.settings, f"{d.settings.kafka.topic_prefix}videos.requested", [(None, b"not json")])
    wait_until(lambda: 'graphrag_dlq_records_total{reason="invalid_json",stage="fetch"} 1.0'
               in _get(f"http://127.0.0.1:{port}/metrics")[1], timeout=60)
    body = _get(f"http://127.0.0.1:{port}/metrics")[1]
    assert 'graphrag_events_in_total{stage="fetch"' in body
    assert 'graphrag_worker_info{' in body and 'stage="fetch"' in body
    assert _get(f"http://127.0.0.1:{port}/livez")[0] == 200
    assert _get(f"http://127.0.0.1:{port}/nope")[0] == 404


def test_sink_is_not_ready_while_the_database_is_unreachable(deployment_factory: DeploymentFactory) -> None:
    port, dead = _free_port(), _free_port()
    d = deployment_factory({"monitoring": {"metrics_port": port}})
    d.cli("topics", "create")
    # The same deployment, but the sink's MongoDB URI points at a port nobody listens on.
    broken = deployment_factory({"monitoring": {"metrics_port": port},
                                 "mongodb": {"uri": f"mongodb://127.0.0.1:{dead}", "server_selection_timeout_ms": 500},
                                 "kafka": {"topic_prefix": d.settings.kafka.topic_prefix}})
    worker = broken.start_worker("sink")
    code, body = wait_until(lambda: (r := _get(f"http://127.0.0.1:{port}/readyz"))[0] and r, timeout=60,
                            message=lambda: f"sink endpoint; log:\n{worker.log_tail()}")
    assert code == 503
    assert json.loads(body)["checks"] == {"kafka": True, "mongodb": False}
    assert _get(f"http://127.0.0.1:{port}/livez")[0] == 200  # alive, just not ready
