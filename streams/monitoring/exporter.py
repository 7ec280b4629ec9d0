"""The lag exporter: per group/topic/partition lag, lag seconds and each stage's desired replicas.

Prometheus scrapes it; Grafana's lag dashboards and the alert rules read it; its
``graphrag_desired_replicas`` shows what KEDA will do with the same numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from streams.instruments.metrics import (
    COMMITTED_OFFSET,
    DESIRED_REPLICAS,
    LAG_BUDGET,
    LAG_MESSAGES,
    LAG_SCRAPE_ERRORS,
    LAG_SECONDS,
    LOG_END_OFFSET,
    TOPIC_PARTITIONS,
)
from streams.monitoring.health import Health, kafka_check, serve
from streams.monitoring.lag import LagMonitor, LagReport
from streams.settings import Settings

log = logging.getLogger(__name__)


def publish(report: LagReport) -> None:
    """Set the exporter's gauges from one measurement."""
    seen_topics: dict[str, int] = defaultdict(int)
    for r, seconds in report.partitions:
        labels = (r.group, r.topic, str(r.partition))
        LAG_MESSAGES.labels(*labels).set(r.lag)
        LAG_SECONDS.labels(*labels).set(seconds)
        COMMITTED_OFFSET.labels(*labels).set(r.committed if r.committed is not None else -1)
        LOG_END_OFFSET.labels(r.topic, str(r.partition)).set(r.log_end)
        seen_topics[r.topic] = max(seen_topics[r.topic], r.partition + 1)
    for topic, n in seen_topics.items():
        TOPIC_PARTITIONS.labels(topic).set(n)
    for s in report.stages:
        DESIRED_REPLICAS.labels(s.stage.value).set(s.desired_replicas)


def run_exporter(settings: Settings, *, once: bool = False, stop: threading.Event | None = None) -> None:
    """Serve /metrics and refresh the lag every monitoring.lag_interval_seconds."""
    mon = settings.monitoring
    LAG_BUDGET.set(mon.lag_budget_seconds)
    health = Health({"kafka": kafka_check(settings)}, stale_after=max(60.0, 4 * mon.lag_interval_seconds))
    if mon.lag_exporter_port:
        serve(health, mon.metrics_host, mon.lag_exporter_port)
    monitor = LagMonitor(settings)
    stop = stop or threading.Event()
    while not stop.is_set():
        started = time.monotonic()
        health.beat()  # alive = the loop turns; whether Kafka answers is readiness
        try:
            publish(monitor.measure())
        except Exception as exc:
            LAG_SCRAPE_ERRORS.inc()
            log.warning("lag measurement failed: %s: %s", type(exc).__name__, exc)
        if once:
            return
        stop.wait(max(0.0, mon.lag_interval_seconds - (time.monotonic() - started)))
