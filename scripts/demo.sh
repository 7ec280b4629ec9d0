#!/usr/bin/env bash
# `make demo`: the main job end to end on the local defaults, no API key needed.
#   stack up -> topics -> worker (all stages, background) -> submit the sample videos ->
#   wait with progress -> show the graph. The stack and the worker keep running.
# `scripts/demo.sh stop` stops the demo's worker.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${GRAPHRAG_STACK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/graphrag-streams/stack}"
PIDFILE="$STATE/demo-worker.pid"
LOG="$STATE/demo-worker.log"
SAMPLES="${GRAPHRAG_TRANSCRIPTS_DIR:-samples/transcripts}"
export GRAPHRAG_TRANSCRIPTS_DIR="$SAMPLES"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

worker_running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${1:-}" = "stop" ]; then
  if worker_running; then
    kill -TERM "$(cat "$PIDFILE")" && echo "stopping the demo worker (pid $(cat "$PIDFILE"))"
    for _ in $(seq 60); do worker_running || break; sleep 0.5; done
    rm -f "$PIDFILE"
  else
    echo "the demo worker is not running"
  fi
  exit 0
fi

say "1/5 local stack (Kafka + FerretDB; provisioned on first use)"
python stack/localstack.py up

say "2/5 topics"
graphrag-streams topics create

say "3/5 worker: every stage, one process each (log: $LOG)"
mkdir -p "$STATE"
if worker_running; then
  echo "reusing the demo worker already running (pid $(cat "$PIDFILE"))"
else
  setsid graphrag-streams worker --stages all >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  echo "started (pid $(cat "$PIDFILE"))"
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

cat <<EOF

Done. The stack and the worker keep running:
  graphrag-streams submit VIDEO_ID     index another video (a file in $SAMPLES, or YouTube when online)
  graphrag-streams status              progress per video
  graphrag-streams dlq                 what was rejected, and why
  make demo-stop                       stop the worker
  make stack-down                      stop Kafka and FerretDB (data kept; make stack-wipe deletes it)
EOF
