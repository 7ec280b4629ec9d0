#!/usr/bin/env bash
# `make demo`: the main job end to end on the local defaults, no API key needed.
#   stack up (Kafka, FerretDB, Prometheus when available) -> topics -> worker (all stages)
#   and lag exporter in the background -> submit the sample videos -> wait with progress ->
#   show the graph, communities and answers -> start the explorer (graphrag-streams serve) and
#   print its URL. The stack, the worker, the exporter and the explorer keep running.
# `scripts/demo.sh stop` stops the demo's worker, lag exporter and explorer.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${GRAPHRAG_STACK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/graphrag-streams/stack}"
PIDFILE="$STATE/demo-worker.pid"
LOG="$STATE/demo-worker.log"
EXPORTER_PIDFILE="$STATE/demo-lag-exporter.pid"
EXPORTER_LOG="$STATE/demo-lag-exporter.log"
API_PIDFILE="$STATE/demo-api.pid"
API_LOG="$STATE/demo-api.log"
API_URL="http://127.0.0.1:${GRAPHRAG_API_PORT:-8000}"
PROMETHEUS_URL="http://127.0.0.1:${GRAPHRAG_PROMETHEUS_PORT:-9090}"
SAMPLES="${GRAPHRAG_TRANSCRIPTS_DIR:-samples/transcripts}"
export GRAPHRAG_TRANSCRIPTS_DIR="$SAMPLES"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
worker_running() { running "$PIDFILE"; }
exporter_running() { running "$EXPORTER_PIDFILE"; }
api_running() { running "$API_PIDFILE"; }
api_ready() {
  python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=2)' \
    "$API_URL" >/dev/null 2>&1
}

# stop_demo_process PIDFILE NAME: SIGTERM, wait up to 30s, then forget the pid.
stop_demo_process() {
  if running "$1"; then
    kill -TERM "$(cat "$1")" && echo "stopping the demo $2 (pid $(cat "$1"))"
    for _ in $(seq 60); do running "$1" || break; sleep 0.5; done
  else
    echo "the demo $2 is not running"
  fi
  rm -f "$1"
}

prometheus_ready() {
  python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/-/ready", timeout=2)' \
    "$PROMETHEUS_URL" >/dev/null 2>&1
}

if [ "${1:-}" = "stop" ]; then
  stop_demo_process "$PIDFILE" worker
  stop_demo_process "$EXPORTER_PIDFILE" "lag exporter"
  stop_demo_process "$API_PIDFILE" "explorer (graphrag-streams serve)"
  exit 0
fi

say "1/5 local stack (Kafka + FerretDB, provisioned on first use; Prometheus when available)"
python stack/localstack.py up

say "2/5 topics"
graphrag-streams topics create

say "3/5 worker: every stage, one process each (log: $LOG); lag exporter (log: $EXPORTER_LOG)"
mkdir -p "$STATE"
if worker_running; then
  echo "reusing the demo worker already running (pid $(cat "$PIDFILE"))"
else
  setsid graphrag-streams worker --stages all >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  echo "worker started (pid $(cat "$PIDFILE")); stage i serves /metrics on port 9400+i"
fi
if exporter_running; then
  echo "reusing the demo lag exporter already running (pid $(cat "$EXPORTER_PIDFILE"))"
else
  setsid graphrag-streams lag-exporter >>"$EXPORTER_LOG" 2>&1 < /dev/null &
  echo $! > "$EXPORTER_PIDFILE"
  echo "lag exporter started (pid $(cat "$EXPORTER_PIDFILE")); /metrics on port 9410"
fi

say "4/5 submit the sample videos in $SAMPLES"
graphrag-streams submit --transcripts "$SAMPLES"
if ! graphrag-streams wait --transcripts "$SAMPLES" --timeout 600 --interval 2; then
  echo "the videos did not finish; last lines of the worker log:" >&2
  tail -40 "$LOG" >&2
  exit 1
fi
graphrag-streams status

say "5/5 what was built"
graphrag-streams graph --top 8

say "communities (merge pass, detection, summaries; the worker also runs this on a timer)"
graphrag-streams communities run
graphrag-streams communities list --top 3 --level 0

say "a local answer: graphrag-streams query \"What are the moons of Mars?\""
graphrag-streams query "What are the moons of Mars?" --mode local

say "a global answer: graphrag-streams query \"What happens to the universe and black holes?\" --mode global"
graphrag-streams query "What happens to the universe and black holes?" --mode global

say "the graph explorer and HTTP API: graphrag-streams serve (log: $API_LOG)"
if api_running; then
  echo "reusing the demo's explorer already running (pid $(cat "$API_PIDFILE"))"
else
  setsid graphrag-streams serve >>"$API_LOG" 2>&1 < /dev/null &
  echo $! > "$API_PIDFILE"
fi
for _ in $(seq 60); do api_ready && break; api_running || break; sleep 0.5; done
if ! api_ready; then
  echo "the explorer did not start; last lines of its log:" >&2
  tail -20 "$API_LOG" >&2
  exit 1
fi

cat <<EOF

Done. The stack, the worker, the lag exporter and the explorer keep running:
  $API_URL/         the graph explorer: search, neighbourhoods, evidence, communities, ask
  $API_URL/docs     the HTTP API (OpenAPI)
  graphrag-streams submit VIDEO_ID     index another video (a file in $SAMPLES, or YouTube when online)
  graphrag-streams status              progress per video
  graphrag-streams query "..."         ask the graph (--mode local|global, --json)
  graphrag-streams dlq                 what was rejected, and why
  make demo-stop                       stop the worker, the lag exporter and the explorer
  make stack-down                      stop Kafka, FerretDB and Prometheus (data kept; make stack-wipe deletes it)

Where to look:
  graphrag-streams lag                 lag, lag seconds and desired replicas per stage, in the terminal
EOF
if prometheus_ready; then
  cat <<EOF
  Prometheus                           $PROMETHEUS_URL (scrapes the workers on 9400+ and the lag exporter on
                                       9410 every 5s; alert rules: helm/graphrag-streams/files/prometheus/alerts.yml)
    lag per group/topic/partition      $PROMETHEUS_URL/graph?g0.expr=graphrag_consumer_lag_messages
    replicas KEDA would choose         $PROMETHEUS_URL/graph?g0.expr=graphrag_desired_replicas
EOF
else
  cat <<EOF
  Prometheus                           not running: the local stack skipped it (install the Debian package
                                       'prometheus', e.g. scripts/ensure-prometheus.sh as root, then
                                       python stack/localstack.py up); queries to try there:
                                       graphrag_consumer_lag_messages, graphrag_desired_replicas
EOF
fi
cat <<EOF
  Grafana dashboards                   helm/graphrag-streams/files/dashboards/*.json (GraphRAG lag, GraphRAG
                                       pipeline): not part of the local stack; docker-compose runs Grafana with
                                       them (http://127.0.0.1:3000), the Helm chart ships them as ConfigMaps
                                       for the Grafana sidecar
EOF
