"""Alert rules and Grafana dashboards: promtool checks and unit tests, every metric name
they use is defined in streams/instruments/metrics.py (or is prometheus_client's own process metric),
the stall and restart alerts and panels exist, the consumer groups and topics in the
alert tests are the pipeline's, and the dashboards are well-formed and fresh."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from streams.instruments import metrics
from streams.kafka.topics import ALL_APPS, Stage, Topics, group_prefix
from tests.fakes.prometheus_harness import (
    ALERTS_FILE,
    DASHBOARDS_DIR,
    ENSURE_SCRIPT,
    ROOT,
    dashboard_queries,
    find_binaries,
)

ALERTS_TEST_FILE = ALERTS_FILE.with_name("alerts.test.yml")
GENERATOR = ROOT / "scripts" / "gen_dashboards.py"
BUILTIN_METRICS = {"up"}  # series Prometheus itself writes for every target
# prometheus_client's process collector, in the default REGISTRY every /metrics serves
# (streams/monitoring/health.py): a restarted process on the same address has a new start time.
PROCESS_METRICS = {"process_start_time_seconds"}
PREFIX = "graphrag."  # the topic prefix the alert tests use (config/*.yaml)

# What issue 5 asks the rules to cover; each name must stay defined (and tested).
REQUIRED_ALERTS = {
    "GraphRAGConsumerLagGrowing",  # lag growing for N minutes, per group
    "GraphRAGConsumerLagAboveBudget",  # lag in seconds above the environment's budget
    "GraphRAGDeadLetterRateHigh",
    "GraphRAGLLMErrorRatioHigh",
    "GraphRAGLLMCircuitOpen",
    "GraphRAGLLMSpendCapReached",  # calls wait for openai.max_cost_per_hour / per_day
    "GraphRAGWorkerDown",
    "GraphRAGStageWithoutWorkers",
    "GraphRAGLagExporterDown",
    "GraphRAGStageStalled",  # a worker found an input partition stalled and exited (agents/stall.py)
    "GraphRAGStageRestarting",  # a stage's workers keep being restarted
}


# --------------------------------------------------------------------------- helpers

def load_alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def load_dashboards() -> dict[str, dict[str, Any]]:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in files}


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MODIFIER_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (function names, labels and keywords excluded)."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = _MODIFIER_LIST.sub(" ", s)  # by (...), on (...), group_left (...)
    return {m for m in _IDENT.findall(s) if m not in _KEYWORDS}


def defined_metric_names() -> set[str]:
    """Every series name streams/instruments/metrics.py exports, with prometheus_client's suffixes."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
                "histogram": ("_bucket", "_sum", "_count", "_created"), "summary": ("", "_sum", "_count", "_created")}
    registered = {family.name for family in REGISTRY.collect()}
    names: set[str] = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                assert family.name in registered, f"{family.name} is not registered in prometheus_client's REGISTRY"
                names.update(family.name + s for s in suffixes[family.type])
    return names


def referenced_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (dashboards: panels and variables; alerts: exprs and templates)."""
    used: dict[str, set[str]] = {}

    def add(expr: str, where: str) -> None:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)

    for q in dashboard_queries():
        add(q.expr, f"{q.dashboard} / {q.panel}")
    for fname, board in load_dashboards().items():
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                m = re.match(r"\s*label_values\(\s*([^,]+),", query)
                add(m.group(1) if m else query, f"{fname} variable {var['name']}")
    for rule in load_alert_rules():
        add(rule["expr"], f"alert {rule['alert']}")
        for text in rule.get("annotations", {}).values():
            for q in re.findall(r'query\s+"((?:\\.|[^"\\])*)"', text):
                add(q, f"alert {rule['alert']} annotation")
    return used


@pytest.fixture(scope="module")
def promtool() -> Path:
    return find_binaries() / "promtool"


# --------------------------------------------------------------------------- promtool

def test_ensure_prometheus_is_idempotent_and_quiet() -> None:
    first = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert again.stderr == ""
    bindir = Path(again.stdout.strip())
    assert again.stdout == f"{bindir}\n"
    assert (bindir / "prometheus").is_file() and (bindir / "promtool").is_file()
    assert Path(shutil.which("promtool") or "").parent == bindir


def test_promtool_check_rules(promtool: Path) -> None:
    proc = subprocess.run([str(promtool), "check", "rules", str(ALERTS_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(load_alert_rules())} rules found" in proc.stdout


def test_promtool_test_rules(promtool: Path) -> None:
    proc = subprocess.run([str(promtool), "test", "rules", str(ALERTS_TEST_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules_fails_when_a_rule_breaks(promtool: Path, tmp_path: Path) -> None:
    """The unit tests are not vacuous: loosen one threshold and they fail."""
    shutil.copy(ALERTS_TEST_FILE, tmp_path / ALERTS_TEST_FILE.name)
    rules = ALERTS_FILE.read_text()
    assert "* 60 > 1\n" in rules
    (tmp_path / ALERTS_FILE.name).write_text(rules.replace("* 60 > 1\n", "* 60 > 0\n"))
    proc = subprocess.run([str(promtool), "test", "rules", str(tmp_path / ALERTS_TEST_FILE.name)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "GraphRAGDeadLetterRateHigh" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_silent_test_case() -> None:
    names = {r["alert"] for r in load_alert_rules()}
    doc = yaml.safe_load(ALERTS_TEST_FILE.read_text())
    assert doc["rule_files"] == [ALERTS_FILE.name]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for t in case.get("alert_rule_test", []):
            exp = t.get("exp_alerts") or []
            (firing if exp else silent).add(t["alertname"])
            for alert in exp:  # a firing case pins the labels and the annotations
                assert alert.get("exp_labels", {}).get("severity"), (t["alertname"], alert)
                assert set(alert.get("exp_annotations", {})) >= {"summary", "description"}, t["alertname"]
    assert names - firing == set(), "alerts with no test case that fires them"
    assert names - silent == set(), "alerts with no test case where they stay silent"
    assert (firing | silent) - names == set(), "test cases for alerts that do not exist"


def test_alert_rules_carry_severity_and_annotations() -> None:
    rules = load_alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS
    for r in rules:
        assert r.get("labels", {}).get("severity") in {"warning", "critical"}, r["alert"]
        assert r.get("annotations", {}).get("summary"), r["alert"]
        assert r.get("annotations", {}).get("description"), r["alert"]
        assert r.get("for"), f"{r['alert']}: no `for`, it would fire on one bad sample"
    by_name = {r["alert"]: r for r in rules}
    # Environment-agnostic: the budget is the exporter's gauge, never a number in the file.
    assert "graphrag_lag_budget_seconds" in by_name["GraphRAGConsumerLagAboveBudget"]["expr"]
    assert 'up{job="graphrag-workers"} == 0' in by_name["GraphRAGWorkerDown"]["expr"]
    assert 'up{job="graphrag-lag-exporter"}' in by_name["GraphRAGLagExporterDown"]["expr"]
    # The stall counter lives in a process that exits seconds after counting: its series
    # starts at 1 and vanishes, which increase()/rate() never see. The unit tests pin that.
    stalled = by_name["GraphRAGStageStalled"]["expr"]
    assert "max_over_time(graphrag_stalls_total[" in stalled
    assert "increase(" not in stalled and "rate(" not in stalled
    restarting = by_name["GraphRAGStageRestarting"]["expr"]
    assert "changes(graphrag_worker_restarts[" in restarting  # `worker --stages all`'s supervisor
    assert 'changes(process_start_time_seconds{job="graphrag-workers"}[' in restarting  # kubelet, docker
    for name in ("GraphRAGStageStalled", "GraphRAGStageRestarting"):
        assert "{{ $labels.stage }}" in by_name[name]["annotations"]["summary"], name


def test_alert_tests_use_the_pipelines_groups_topics_and_stages() -> None:
    """The series in alerts.test.yml name real consumer groups, stages and topics, and a
    group's lag is on a topic its stage consumes (no stale `graphrag-resolve` on
    graph.extractions after resolution became route, resolve and assemble)."""
    doc = yaml.safe_load(ALERTS_TEST_FILE.read_text())
    stem = group_prefix(PREFIX)
    groups = {f"{stem}-{s.value}": s for s in ALL_APPS}
    topics = Topics(PREFIX)
    known_topics = set(topics.all())
    seen_groups = set()
    for case in doc["tests"]:
        for series in case["input_series"]:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', series["series"]))
            if "stage" in labels:
                assert labels["stage"] in {s.value for s in ALL_APPS}, (case["name"], series["series"])
            if "topic" in labels:
                assert labels["topic"] in known_topics, (case["name"], series["series"])
                if "stage" in labels:
                    assert labels["topic"] in topics.inputs(Stage(labels["stage"])), (case["name"], series["series"])
            if "group" in labels:
                assert labels["group"] in groups, (case["name"], series["series"])
                seen_groups.add(labels["group"])
                if "topic" in labels:
                    assert labels["topic"] in topics.inputs(groups[labels["group"]]), (case["name"], series["series"])
                if "stage" in labels:
                    assert groups[labels["group"]].value == labels["stage"], (case["name"], series["series"])
    assert seen_groups, "no consumer group in the alert tests: the label parsing is broken"
    assert f"{stem}-{Stage.ROUTE.value}" in seen_groups


# --------------------------------------------------------------------------- metric names

def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (stage, le) (rate(graphrag_stage_latency_seconds_bucket'
            '{stage=~"$stage", le!="+Inf"}[5m] offset 1m))) > on () group_left max(graphrag_lag_budget_seconds) '
            'unless count by (stage) (graphrag_worker_info) or absent(up{job="x"}) * 1e3 or vector(0)')
    assert metric_names(expr) == {"graphrag_stage_latency_seconds_bucket", "graphrag_lag_budget_seconds",
                                  "graphrag_worker_info", "up"}
    assert metric_names("sum(rate(graphrag_events_in[1m])) by (topic)") == {"graphrag_events_in"}


def test_defined_metric_names_account_for_suffixes() -> None:
    defined = defined_metric_names()
    assert {"graphrag_events_in_total", "graphrag_stage_latency_seconds_bucket",
            "graphrag_stage_latency_seconds_count", "graphrag_worker_info", "graphrag_in_flight",
            "graphrag_consumer_lag_messages"} <= defined
    assert "graphrag_events_in" not in defined  # prometheus_client exports graphrag_events_in_total
    assert "graphrag_worker" not in defined


def test_process_metrics_are_exported() -> None:
    """The process metrics the restart alert and panel use come with prometheus_client."""
    exported = {family.name for family in REGISTRY.collect()}
    assert exported >= PROCESS_METRICS, PROCESS_METRICS - exported


def test_every_metric_in_dashboards_and_alerts_is_defined() -> None:
    used = referenced_metric_names()
    assert used, "no metric names found: the extraction is broken"
    unknown = {name: sorted(where) for name, where in used.items()
               if name not in defined_metric_names() and name not in BUILTIN_METRICS | PROCESS_METRICS}
    assert unknown == {}, f"metric names not defined in streams/instruments/metrics.py: {unknown}"
    assert "graphrag_partition_rewinds_total" not in used, "the partition watchdog is gone"


def test_every_defined_metric_is_on_a_dashboard() -> None:
    on_dashboards = set()
    for q in dashboard_queries():
        on_dashboards |= metric_names(q.expr)
    families = {f.name for obj in vars(metrics).values() if isinstance(obj, MetricWrapperBase)
                for f in obj.describe()}
    unseen = {f for f in families if not any(n == f or n.startswith(f + "_") for n in on_dashboards)}
    assert unseen == set(), f"metrics no dashboard shows: {sorted(unseen)}"


# --------------------------------------------------------------------------- dashboards

def test_dashboards_are_fresh() -> None:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_generator_check_detects_stale_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, capture_output=True)
    assert subprocess.run([sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)]).returncode == 0
    target = tmp_path / "graphrag-lag.json"
    target.write_text(target.read_text().replace("Lag by topic", "Lag per topic"))
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "graphrag-lag.json" in proc.stderr


def _datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                yield v
            yield from _datasource_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _datasource_refs(v)


def test_dashboards_are_well_formed() -> None:
    boards = load_dashboards()
    assert {b["title"] for b in boards.values()} >= {"GraphRAG lag", "GraphRAG pipeline"}
    uids = [b.get("uid") for b in boards.values()]
    assert all(uids) and len(uids) == len(set(uids))
    for fname, board in boards.items():
        assert board["schemaVersion"] >= 38, fname
        variables = {v["name"]: v for v in board["templating"]["list"]}
        ds = variables.get("datasource")
        assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", fname
        # No hard-coded data source: every reference is the variable (or Grafana's built-in
        # annotation source).
        for ref in _datasource_refs({k: v for k, v in board.items() if k != "annotations"}):
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, (fname, ref)

        panels = list(walk_panels(board["panels"]))
        ids = [p["id"] for p in panels]
        titles = [p["title"] for p in panels]
        assert len(ids) == len(set(ids)), f"{fname}: duplicate panel ids"
        assert len(titles) == len(set(titles)), f"{fname}: duplicate panel titles"
        for p in panels:
            if p["type"] == "row":  # a row only groups panels
                assert not p.get("targets"), (fname, p["title"])
                continue
            exprs = [t.get("expr", "").strip() for t in p.get("targets", [])]
            assert exprs and all(exprs), f"{fname} / {p['title']}: a target without an expr"
            assert p.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, (fname, p["title"])
            pos = p["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, (fname, p["title"])


def test_dashboards_show_what_issue_5_asks_for() -> None:
    exprs: dict[str, str] = {}
    for q in dashboard_queries():
        exprs[q.dashboard] = exprs.get(q.dashboard, "") + "\n" + q.raw
    lag, pipeline = exprs["GraphRAG lag"], exprs["GraphRAG pipeline"]
    for needle in ("sum by (topic) (graphrag_consumer_lag_messages", "sum by (group) (graphrag_consumer_lag_messages",
                   "sum by (group, topic, partition) (graphrag_consumer_lag_messages", "graphrag_consumer_lag_seconds",
                   "graphrag_desired_replicas", "count by (stage) (graphrag_worker_info", "graphrag_log_end_offset",
                   "graphrag_consumer_committed_offset"):
        assert needle in lag, needle
    for needle in ("graphrag_events_in_total", "graphrag_events_out_total", "graphrag_failures_total",
                   "graphrag_dlq_records_total", "histogram_quantile(0.5, sum by (stage, le) (rate("
                   "graphrag_stage_latency_seconds_bucket", "histogram_quantile(0.95, sum by (le) (rate("
                   "graphrag_end_to_end_latency_seconds_bucket", "graphrag_llm_tokens_total",
                   "graphrag_llm_cost_usd_total", 'graphrag_llm_cache_requests_total{result="hit"}',
                   "graphrag_llm_circuit_state", "graphrag_mongo_write_batch_size_bucket",
                   "graphrag_mongo_write_latency_seconds_bucket"):
        assert needle in pipeline, needle
    # Stalls and restarts (agents/stall.py, the `worker --stages all` supervisor).
    for needle in ("max_over_time(graphrag_stalls_total",
                   "sum by (stage, topic) (max_over_time(graphrag_stalls_total",
                   "sum by (stage) (graphrag_stalled_partitions", "sum(graphrag_stalled_partitions",
                   "max by (stage) (graphrag_worker_restarts",
                   'changes(process_start_time_seconds{job="graphrag-workers"}'):
        assert needle in pipeline, needle
    assert "graphrag_partition_rewinds" not in pipeline + lag


def test_stall_and_restart_panels_show_zero_rather_than_no_data() -> None:
    """graphrag_stalls_total has no series until a stall; the panels on it fall back to a
    series that every worker exports, so they show 0 (per stage) instead of "No data"
    (tests/integration/test_observability_e2e.py evaluates every panel on a run without stalls)."""
    panels = {q.panel: q.raw for q in dashboard_queries() if q.dashboard == "GraphRAG pipeline"}
    for title in ("Stalls seen (range)", "Worker restarts (range)", "Stalled partitions now",
                  "Supervisor restarts (now)"):
        assert panels[title].rstrip().endswith("or vector(0)"), title
    assert "or on (stage) 0 * max by (stage) (graphrag_worker_restarts" in panels["Stalls by stage and topic"]
