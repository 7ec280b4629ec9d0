#!/usr/bin/env bash
# `make test`: start the local stack (unless it already runs), run the whole suite, stop
# the stack again if this script started it, and exit with pytest's status.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

started_here=0
if ! $BIN/python stack/localstack.py status >/dev/null 2>&1; then
  $BIN/python stack/localstack.py up || exit 2
  started_here=1
fi

$BIN/ruff check streams agents schemas tests stack benchmarks; lint=$?
$BIN/mypy; types=$?

$BIN/pytest "$@"; rc=$?

if [ "$started_here" = 1 ]; then
  $BIN/python stack/localstack.py down
fi

case $rc in
  0) ;;
  5) echo "error: pytest collected no tests; that is a failure, not a pass" >&2; rc=1 ;;
  *) echo "error: tests failed (pytest exit $rc)" >&2 ;;
esac
if [ "$lint" != 0 ] || [ "$types" != 0 ]; then
  echo "error: ruff (exit $lint) or mypy (exit $types) found problems" >&2
  [ "$rc" = 0 ] && rc=1
fi
exit $rc
