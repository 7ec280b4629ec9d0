#!/usr/bin/env python3
"""Generate the Grafana dashboards in helm/graphrag-streams/files/dashboards/.

    python scripts/gen_dashboards.py           write the JSON files
    python scripts/gen_dashboards.py --check   exit 1 if a file is missing or stale

The JSON files are committed (the Helm chart ships them as they are); edit this script,
never the JSON, and run it again. tests/deploy/test_alerts.py fails while the files are stale.

Every panel and variable uses the `${datasource}` variable (type prometheus), so the
dashboards import into any Grafana without a hard-coded data source uid. Metric names are
written out in full here, on purpose: a test checks each against streams/instruments/metrics.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "helm" / "graphrag-streams" / "files" / "dashboards"

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
WIDTH = 24

Json = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Json:
    t: Json = {"datasource": DS, "refId": ref, "expr": expr, "editorMode": "code",
               "legendFormat": legend or "__auto", "range": not instant, "instant": instant}
    return t


def refs(targets: list[tuple[str, str]], instant: bool = False) -> list[Json]:
    return [target(expr, legend, chr(ord("A") + i), instant) for i, (expr, legend) in enumerate(targets)]


class Layout:
    """Hands out panel ids and grid positions: panels flow left to right in rows."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "id": self._id(), "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel: Json, w: int, h: int) -> None:
        if self.x + w > WIDTH:
            self._newline()
        panel = {"id": self._id(), **panel, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def timeseries(title: str, targets: list[tuple[str, str]], unit: str = "short", description: str = "",
               stack: bool = False, min0: bool = True) -> Json:
    custom: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                    "spanNulls": False, "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults: Json = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "targets": refs(targets),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, targets: list[tuple[str, str]], unit: str = "short", description: str = "",
         thresholds: list[tuple[float | None, str]] | None = None,
         mappings: list[Json] | None = None, decimals: int | None = None) -> Json:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    defaults: Json = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                      "mappings": mappings or [], "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": refs(targets, instant=True),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                        "orientation": "auto", "textMode": "auto"}}


def table(title: str, targets: list[tuple[str, str]], description: str = "") -> Json:
    return {"type": "table", "title": title, "description": description, "datasource": DS,
            "targets": [{**t, "format": "table"} for t in refs(targets, instant=True)],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True},
            "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]}


def quantiles(metric: str, by: str, selector: str = "", legend_prefix: str = "") -> list[tuple[str, str]]:
    """p50 and p95 of a histogram, one series per value of `by` (empty: overall)."""
    group = f"{by}, le" if by else "le"
    label = f"{{{{{by}}}}} " if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RI}])))",
             f"{legend_prefix}{label}p{int(q * 100)}") for q in (0.5, 0.95)]


def datasource_var() -> Json:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
            "regex": "", "skipUrlSync": False}


def query_var(name: str, label: str, query: str) -> Json:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0, "includeAll": True, "allValue": ".*", "multi": True, "options": [],
            "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1}


def dashboard(uid: str, title: str, description: str, panels: list[Json], variables: list[Json]) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["graphrag"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": [{"title": "GraphRAG", "type": "dashboards", "tags": ["graphrag"], "asDropdown": False,
                   "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": variables},
        "panels": panels,
    }


# --------------------------------------------------------------------------- GraphRAG lag

def lag_dashboard() -> Json:
    sel = '{group=~"$group", topic=~"$topic"}'
    tsel = '{topic=~"$topic"}'
    lay = Layout()

    lay.row("Lag")
    lay.add(stat("Total lag (messages)", [(f"sum(graphrag_consumer_lag_messages{sel})", "lag")],
                 thresholds=[(None, "green"), (1000, "orange"), (10000, "red")],
                 description="Log-end offset minus committed offset, summed over the selected groups "
                             "and topics."), 6, 5)
    lay.add(stat("Worst lag (seconds)", [(f"max(graphrag_consumer_lag_seconds{sel})", "lag")], unit="s",
                 description="The largest estimated time behind of any selected group/topic/partition; "
                             "red above the environment's lag budget is the LagAboveBudget alert."), 6, 5)
    lay.add(stat("Lag budget", [("max(graphrag_lag_budget_seconds)", "budget")], unit="s",
                 description="monitoring.lag_budget_seconds of this environment, as the exporter reports it."),
            6, 5)
    lay.add(stat("Consumer groups lagging",
                 [(f"count(sum by (group) (graphrag_consumer_lag_messages{sel}) > 0) or vector(0)", "groups")],
                 thresholds=[(None, "green"), (1, "orange")]), 6, 5)
    lay.add(timeseries("Lag by topic (messages)",
                       [(f"sum by (topic) (graphrag_consumer_lag_messages{sel})", "{{topic}}")]), 12, 8)
    lay.add(timeseries("Lag by group (messages)",
                       [(f"sum by (group) (graphrag_consumer_lag_messages{sel})", "{{group}}")]), 12, 8)
    lay.add(timeseries("Lag by partition (messages)",
                       [(f"sum by (group, topic, partition) (graphrag_consumer_lag_messages{sel})",
                         "{{group}} {{topic}}[{{partition}}]")],
                       description="One series per group, topic and partition: a single hot partition "
                                   "shows up here and not in the sums."), 24, 9)
    lay.add(timeseries("Lag in seconds by group",
                       [(f"max by (group) (graphrag_consumer_lag_seconds{sel})", "{{group}}"),
                        ("max(graphrag_lag_budget_seconds)", "budget")], unit="s",
                       description="Estimated from recent offset/time samples (see streams/monitoring/lag.py); the "
                                   "budget line is the environment's lag budget."), 12, 8)
    lay.add(timeseries("Lag in seconds by partition",
                       [(f"max by (group, topic, partition) (graphrag_consumer_lag_seconds{sel})",
                         "{{group}} {{topic}}[{{partition}}]")], unit="s"), 12, 8)

    lay.row("Scaling")
    lay.add(timeseries("Desired vs running replicas per stage",
                       [('graphrag_desired_replicas{stage=~"$stage"}', "{{stage}} desired"),
                        ('count by (stage) (graphrag_worker_info{stage=~"$stage"})', "{{stage}} running")],
                       description="Desired: what KEDA's Kafka scaler would choose from the lag (lag "
                                   "threshold, activation threshold, capped at the partition count). "
                                   "Running: worker processes reporting graphrag_worker_info."), 16, 8)
    lay.add(table("Replicas per stage",
                  [('max by (stage) (graphrag_desired_replicas{stage=~"$stage"})', "desired"),
                   ('count by (stage) (graphrag_worker_info{stage=~"$stage"})', "running")]), 8, 8)
    lay.add(timeseries("Partitions per topic", [(f"max by (topic) (graphrag_topic_partitions{tsel})", "{{topic}}")],
                       description="The ceiling on useful replicas for the stage consuming the topic."), 12, 7)
    lay.add(timeseries("Lag exporter health",
                       [('up{job="graphrag-lag-exporter"}', "up {{instance}}"),
                        (f"sum(rate(graphrag_lag_exporter_errors_total[{RI}])) * 60", "errors/min")]), 12, 7)

    lay.row("Offsets")
    lay.add(timeseries("Log-end offset by topic",
                       [(f"sum by (topic) (graphrag_log_end_offset{tsel})", "{{topic}}")], min0=False), 12, 8)
    lay.add(timeseries("Committed offset by group and topic",
                       [(f"sum by (group, topic) (graphrag_consumer_committed_offset{sel})", "{{group}} {{topic}}")],
                       min0=False), 12, 8)
    lay.add(timeseries("Produced vs committed (messages/s)",
                       [(f"sum by (topic) (rate(graphrag_log_end_offset{tsel}[{RI}]))", "{{topic}} produced"),
                        (f"sum by (group, topic) (rate(graphrag_consumer_committed_offset{sel}[{RI}]))",
                         "{{group}} committed")],
                       description="Growth of the log-end offsets against the groups' commits: lag grows "
                                   "while a topic is produced faster than committed."), 24, 8)

    variables = [
        datasource_var(),
        query_var("group", "Consumer group", "label_values(graphrag_consumer_lag_messages, group)"),
        query_var("topic", "Topic", 'label_values(graphrag_consumer_lag_messages{group=~"$group"}, topic)'),
        query_var("stage", "Stage", "label_values(graphrag_desired_replicas, stage)"),
    ]
    return dashboard("graphrag-lag", "GraphRAG lag",
                     "Consumer lag per group, topic and partition, lag in seconds against the budget, "
                     "and the scaling signal (desired vs running replicas).", lay.panels, variables)


# ---------------------------------------------------------------------- GraphRAG pipeline

# Ratios whose numerator counter has no series until its first increment (no cache hit
# yet, no failed LLM call yet): `or` supplies a zero numerator, so the panel shows 0% while
# there is traffic instead of "No data"; without traffic (denominator 0 or absent) it
# still shows nothing.
CACHE_HIT_RATE = (f'(sum(rate(graphrag_llm_cache_requests_total{{result="hit"}}[{RI}])) or vector(0)) '
                  f"/ sum(rate(graphrag_llm_cache_requests_total[{RI}]))")
LLM_ERROR_RATIO = (f'(sum by (model) (rate(graphrag_llm_requests_total{{outcome="error"}}[{RI}])) '
                   f"or 0 * sum by (model) (rate(graphrag_llm_requests_total[{RI}]))) "
                   f"/ sum by (model) (rate(graphrag_llm_requests_total[{RI}]))")


# A stalled worker counts the stall and exits seconds later: its graphrag_stalls_total series
# appears at 1 and is gone, so increase() never sees it; the raw value, over time, does.
# `or on (stage)` fills a 0 for every stage without one (graphrag_worker_restarts exists in
# every worker process), so the panel shows the stages, not "No data".
STALLS_SEEN = 'count(max_over_time(graphrag_stalls_total{stage=~"$stage"}[$__range]) > 0) or vector(0)'
STALLS_BY_TOPIC = (f'sum by (stage, topic) (max_over_time(graphrag_stalls_total{{stage=~"$stage"}}[{RI}])) '
                   f'or on (stage) 0 * max by (stage) (graphrag_worker_restarts{{stage=~"$stage"}})')
# A restarted process on the same address (supervisor child port, pod IP, compose container)
# has a new start time; a new pod is a new series, so scaling and rollouts are not counted.
PROCESS_RESTARTS = ('sum(changes(process_start_time_seconds{job="graphrag-workers"}[$__range])) '
                    "or vector(0)")


def pipeline_dashboard() -> Json:
    st = '{stage=~"$stage"}'
    lay = Layout()

    lay.row("Throughput")
    lay.add(stat("Videos completed", [("sum(increase(graphrag_videos_completed_total[$__range]))", "videos")],
                 decimals=0, description="Videos whose every chunk is stored, in the selected time range."),
            6, 6)
    lay.add(stat("Running workers", [(f"count(graphrag_worker_info{st})", "workers")],
                 thresholds=[(None, "red"), (1, "green")]), 6, 6)
    # `or vector(0)`: these counters have no series before the first failure; show 0, not "No data".
    lay.add(stat("Failures (range)",
                 [(f"sum(increase(graphrag_failures_total{st}[$__range])) or vector(0)", "failures")],
                 decimals=0, thresholds=[(None, "green"), (1, "orange")]), 6, 6)
    lay.add(stat("DLQ records (range)",
                 [(f"sum(increase(graphrag_dlq_records_total{st}[$__range])) or vector(0)", "dlq")],
                 decimals=0, thresholds=[(None, "green"), (1, "red")]), 6, 6)
    lay.add(timeseries("Events in per stage (messages/s)",
                       [(f"sum by (stage) (rate(graphrag_events_in_total{st}[{RI}]))", "{{stage}}")],
                       unit="ops"), 12, 8)
    lay.add(timeseries("Events out per stage (messages/s)",
                       [(f"sum by (stage) (rate(graphrag_events_out_total{st}[{RI}]))", "{{stage}}")],
                       unit="ops"), 12, 8)
    lay.add(timeseries("Events out by topic (messages/s)",
                       [(f"sum by (stage, topic) (rate(graphrag_events_out_total{st}[{RI}]))",
                         "{{stage}} → {{topic}}")],
                       unit="ops"), 12, 8)
    lay.add(timeseries("Videos completed per minute",
                       [(f"sum(rate(graphrag_videos_completed_total[{RI}])) * 60", "videos/min")]), 6, 8)
    lay.add(timeseries("In flight per stage",
                       [(f"sum by (stage) (graphrag_in_flight{st})", "{{stage}}")],
                       description="Messages each stage is working on right now."), 6, 8)

    lay.row("Errors")
    lay.add(timeseries("Failures by stage and reason (per s)",
                       [(f"sum by (stage, reason) (rate(graphrag_failures_total{st}[{RI}]))",
                         "{{stage}} {{reason}}")], unit="ops"), 12, 8)
    lay.add(timeseries("DLQ records by stage and reason (per s)",
                       [(f"sum by (stage, reason) (rate(graphrag_dlq_records_total{st}[{RI}]))",
                         "{{stage}} {{reason}}")], unit="ops"), 12, 8)

    lay.row("Stalls and restarts")
    lay.add(stat("Stalled partitions now",
                 [(f"sum(graphrag_stalled_partitions{st}) or vector(0)", "stalled")],
                 decimals=0, thresholds=[(None, "green"), (1, "red")],
                 description="Input partitions with lag and no progress for graphrag.stall_seconds, as "
                             "the workers' stall checks see them now. A worker that finds one exits "
                             "seconds later to be restarted (agents/stall.py)."), 6, 6)
    lay.add(stat("Stalls seen (range)", [(STALLS_SEEN, "stalls")],
                 decimals=0, thresholds=[(None, "green"), (1, "orange")],
                 description="Worker processes that reported a stall (graphrag_stalls_total) in the "
                             "selected range. The process exits about 5 s after counting it, so a "
                             "scrape can miss one; the restarts beside it are the complete count."), 6, 6)
    lay.add(stat("Worker restarts (range)", [(PROCESS_RESTARTS, "restarts")],
                 decimals=0, thresholds=[(None, "green"), (1, "orange"), (3, "red")],
                 description="New worker processes on a known address in the selected range, whoever "
                             "restarted them (`worker --stages all`'s supervisor, docker, the kubelet): "
                             "changes of process_start_time_seconds. New pods are not restarts."), 6, 6)
    lay.add(stat("Supervisor restarts (now)",
                 [(f"sum(graphrag_worker_restarts{st}) or vector(0)", "restarts")],
                 decimals=0, thresholds=[(None, "green"), (1, "orange")],
                 description="Sum over the running workers of graphrag_worker_restarts: how often "
                             "`worker --stages all` restarted each stage before its current process. "
                             "Always 0 for one stage per process (Kubernetes, compose)."), 6, 6)
    lay.add(timeseries("Stalls by stage and topic",
                       [(STALLS_BY_TOPIC, "{{stage}} {{topic}}")], unit="short",
                       description="1 while a worker of that stage reports a stalled input partition of "
                                   "that topic (briefly: it then exits); 0 for the stages without one."),
            8, 8)
    lay.add(timeseries("Stalled partitions by stage",
                       [(f"sum by (stage) (graphrag_stalled_partitions{st})", "{{stage}}")],
                       description="Input partitions each stage's stall checks found stalled (lag and "
                                   "no committed progress for graphrag.stall_seconds)."), 8, 8)
    lay.add(timeseries("Worker restarts by stage",
                       [(f"max by (stage) (graphrag_worker_restarts{st})", "{{stage}}")],
                       description="Restarts of each stage by `worker --stages all`'s supervisor before "
                                   "its current process (graphrag_worker_restarts). Kubernetes and "
                                   "compose restarts show in \"Worker restarts (range)\"."), 8, 8)

    lay.row("Latency")
    lay.add(timeseries("Stage latency p50 / p95",
                       quantiles("graphrag_stage_latency_seconds", "stage", st), unit="s",
                       description="Time a stage spends on one message (one batch for the sink)."), 12, 8)
    lay.add(timeseries("End-to-end latency p50 / p95",
                       quantiles("graphrag_end_to_end_latency_seconds", ""), unit="s",
                       description="From a video's request to its last chunk stored (measured by the sink)."),
            12, 8)

    lay.row("LLM")
    lay.add(timeseries("LLM calls by model and outcome (per s)",
                       [(f"sum by (model, outcome) (rate(graphrag_llm_requests_total[{RI}]))",
                         "{{model}} {{outcome}}")], unit="ops"), 8, 8)
    lay.add(timeseries("LLM tokens by model and kind (per s)",
                       [(f"sum by (model, kind) (rate(graphrag_llm_tokens_total[{RI}]))", "{{model}} {{kind}}")]),
            8, 8)
    lay.add(timeseries("LLM cost (USD/hour)",
                       [(f"sum by (model) (rate(graphrag_llm_cost_usd_total[{RI}])) * 3600", "{{model}}")],
                       unit="currencyUSD"), 8, 8)
    lay.add(stat("LLM cost (range)", [("sum(increase(graphrag_llm_cost_usd_total[$__range]))", "USD")],
                 unit="currencyUSD", decimals=2), 6, 6)
    lay.add(stat("LLM calls in flight", [("sum(graphrag_llm_in_flight)", "in flight")]), 6, 6)
    lay.add(stat("LLM cache hit rate", [(CACHE_HIT_RATE, "hit rate")],
                 unit="percentunit", decimals=1,
                 thresholds=[(None, "orange"), (0.5, "green")]), 6, 6)
    lay.add(stat("LLM circuit state", [("max by (model) (graphrag_llm_circuit_state)", "{{model}}")],
                 thresholds=[(None, "green"), (1, "orange"), (2, "red")],
                 mappings=[{"type": "value", "options": {
                     "0": {"text": "closed", "color": "green", "index": 0},
                     "1": {"text": "half-open", "color": "orange", "index": 1},
                     "2": {"text": "open", "color": "red", "index": 2}}}],
                 description="Worst state of any worker's circuit breaker per model."), 6, 6)
    lay.add(stat("LLM calls waiting for the spend cap", [("sum by (model) (graphrag_llm_spend_cap_waiting)",
                                                           "{{model}}")],
                 thresholds=[(None, "green"), (1, "orange")],
                 description="Calls held back because openai.max_cost_per_hour or per_day is reached; "
                             "they go out when the window allows."), 6, 6)
    lay.add(timeseries("LLM request latency p50 / p95",
                       quantiles("graphrag_llm_request_latency_seconds", "model"), unit="s"), 8, 8)
    lay.add(timeseries("LLM error ratio",
                       [(LLM_ERROR_RATIO, "{{model}}")],
                       unit="percentunit", description="Failed calls among all calls; the alert fires above 10%."),
            8, 8)
    lay.add(timeseries("LLM cache hit rate over time", [(CACHE_HIT_RATE, "hit rate")],
                       unit="percentunit"), 8, 8)

    lay.row("MongoDB")
    lay.add(timeseries("Mongo write batch size p50 / p95",
                       quantiles("graphrag_mongo_write_batch_size", "collection")), 8, 8)
    lay.add(timeseries("Mongo documents written per collection (per s)",
                       [(f"sum by (collection) (rate(graphrag_mongo_write_batch_size_sum[{RI}]))", "{{collection}}")],
                       unit="ops"), 8, 8)
    lay.add(timeseries("Mongo write latency p50 / p95",
                       quantiles("graphrag_mongo_write_latency_seconds", "operation"), unit="s"), 8, 8)

    lay.row("Workers")
    lay.add(table("Worker processes",
                  [(f"count by (stage, group, environment, version) (graphrag_worker_info{st})", "")],
                  description="Worker processes by stage, consumer group, environment and version."), 12, 7)
    lay.add(timeseries("Worker scrape targets up",
                       [('sum(up{job="graphrag-workers"})', "up"),
                        ('count(up{job="graphrag-workers"})', "targets")]), 12, 7)

    variables = [datasource_var(), query_var("stage", "Stage", "label_values(graphrag_worker_info, stage)")]
    return dashboard("graphrag-pipeline", "GraphRAG pipeline",
                     "Throughput, errors and DLQ, latency, LLM use and cost, cache, circuit breaker and "
                     "MongoDB writes of the GraphRAG stream workers.", lay.panels, variables)


def render() -> dict[str, str]:
    """File name -> file content."""
    boards = {"graphrag-lag.json": lag_dashboard(), "graphrag-pipeline.json": pipeline_dashboard()}
    return {name: json.dumps(board, indent=2, ensure_ascii=False) + "\n" for name, board in boards.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a dashboard file is missing or stale")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    files = render()
    if args.check:
        stale = [n for n, text in files.items()
                 if not (args.out / n).is_file() or (args.out / n).read_text(encoding="utf-8") != text]
        extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in files) if args.out.is_dir() else []
        for n in stale:
            print(f"stale or missing: {args.out / n} (run python scripts/gen_dashboards.py)", file=sys.stderr)
        for n in extra:
            print(f"not generated by this script: {args.out / n}", file=sys.stderr)
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n, text in files.items():
        (args.out / n).write_text(text, encoding="utf-8")
        print(args.out / n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
