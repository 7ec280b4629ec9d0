"""Prometheus metrics: every name the workers and the lag exporter export, in one place.

The Grafana dashboards and the alert rules (``helm/graphrag-streams/files/``) refer to these
names; tests check that every metric they use is defined here and every metric here is shown.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
E2E_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

# --------------------------------------------------------------------------- workers

WORKER_INFO = Info("graphrag_worker", "A running stage worker (one series per process).")
EVENTS_IN = Counter("graphrag_events_in", "Messages a stage consumed.", ["stage", "topic"])
EVENTS_OUT = Counter("graphrag_events_out", "Messages a stage produced.", ["stage", "topic"])
FAILURES = Counter("graphrag_failures", "Messages a stage could not process, by reason.", ["stage", "reason"])
STALLS = Counter("graphrag_stalls",
                 "Input partitions found with lag and no progress for graphrag.stall_seconds; the process "
                 "then fails /livez and exits so that it is restarted (agents/stall.py).", ["stage", "topic"])
STALLED_PARTITIONS = Gauge("graphrag_stalled_partitions", "Input partitions of this process stalled right now.",
                           ["stage"])
WORKER_RESTARTS = Gauge("graphrag_worker_restarts",
                        "Times the supervisor (`worker --stages all`) restarted this stage before this process.",
                        ["stage"])
DLQ_RECORDS = Counter("graphrag_dlq_records", "Records a stage wrote to the dead-letter topic.",
                      ["stage", "reason"])
STAGE_LATENCY = Histogram("graphrag_stage_latency_seconds",
                          "Time a stage spent on one message (or one batch for the sink).", ["stage"],
                          buckets=LATENCY_BUCKETS)
END_TO_END_LATENCY = Histogram("graphrag_end_to_end_latency_seconds",
                               "From a video's request to its last chunk stored.", buckets=E2E_BUCKETS)
IN_FLIGHT = Gauge("graphrag_in_flight", "Messages a stage is working on right now.", ["stage"])
VIDEOS_COMPLETED = Counter("graphrag_videos_completed", "Videos whose every chunk is stored.")

# --------------------------------------------------------------------------- LLM

LLM_REQUESTS = Counter("graphrag_llm_requests", "LLM API calls by outcome (ok, retry, error).",
                       ["model", "outcome"])
LLM_TOKENS = Counter("graphrag_llm_tokens", "LLM tokens used.", ["model", "kind"])
LLM_LATENCY = Histogram("graphrag_llm_request_latency_seconds", "LLM API call latency.", ["model"],
                        buckets=LATENCY_BUCKETS)
LLM_COST = Counter("graphrag_llm_cost_usd", "Estimated LLM cost in US dollars.", ["model"])
LLM_IN_FLIGHT = Gauge("graphrag_llm_in_flight", "LLM calls in flight in this process.")
LLM_CACHE = Counter("graphrag_llm_cache_requests", "LLM cache lookups by result (hit, miss).", ["result"])
LLM_SPEND_CAP_WAITING = Gauge("graphrag_llm_spend_cap_waiting",
                              "LLM calls waiting because a spend cap (openai.max_cost_per_*) is reached.",
                              ["model"])
CIRCUIT_STATE = Gauge("graphrag_llm_circuit_state", "LLM circuit breaker: 0 closed, 1 half-open, 2 open.",
                      ["model"])

# --------------------------------------------------------------------------- MongoDB

MONGO_BATCH_SIZE = Histogram("graphrag_mongo_write_batch_size", "Documents per MongoDB write batch.",
                             ["collection"], buckets=BATCH_BUCKETS)
MONGO_WRITE_LATENCY = Histogram("graphrag_mongo_write_latency_seconds", "MongoDB write latency per batch.",
                                ["operation"], buckets=LATENCY_BUCKETS)

# --------------------------------------------------------------------------- lag exporter

LAG_MESSAGES = Gauge("graphrag_consumer_lag_messages", "Log-end offset minus committed offset.",
                     ["group", "topic", "partition"])
LAG_SECONDS = Gauge("graphrag_consumer_lag_seconds",
                    "Estimated time the group is behind (see streams/monitoring/lag.py).",
                    ["group", "topic", "partition"])
COMMITTED_OFFSET = Gauge("graphrag_consumer_committed_offset", "The group's committed offset.",
                         ["group", "topic", "partition"])
LOG_END_OFFSET = Gauge("graphrag_log_end_offset", "The partition's log-end offset.", ["topic", "partition"])
TOPIC_PARTITIONS = Gauge("graphrag_topic_partitions", "Partitions of a pipeline topic.", ["topic"])
DESIRED_REPLICAS = Gauge("graphrag_desired_replicas",
                         "Replicas KEDA's Kafka scaler would choose for a stage.", ["stage"])
LAG_BUDGET = Gauge("graphrag_lag_budget_seconds", "The environment's lag budget (monitoring.lag_budget_seconds).")
LAG_SCRAPE_ERRORS = Counter("graphrag_lag_exporter_errors", "Failed lag measurements.")
