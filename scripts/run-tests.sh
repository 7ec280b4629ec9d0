#!/usr/bin/env bash
# `make test`: lint and type-check, then run the whole suite on a *fresh* local stack, as a
# newcomer's first run has it: an empty broker and database in a new temporary state
# directory, on free loopback ports (a developer's own stack, if running, is not touched).
# Downloaded and built artefacts stay cached. Exits with pytest's status (5 = no tests is a
# failure) or 1 when ruff, mypy, the import-linter layer contracts, bandit or pip-audit found problems
# (actionlint runs in tests/deploy/test_workflows.py).
# Prints the coverage total; below pyproject's floor the run fails.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

$BIN/ruff check streams agents schemas tests stack benchmarks; lint=$?
# The explorer's browser tests drive Debian's Chromium; installed here once per machine
# (as root or with password-less sudo). Without it those tests fail and say what to install.
scripts/ensure-browser.sh || echo "warning: no Chromium: the browser tests will fail" >&2
# mypy takes half a minute of one core; it runs beside the stack's start and the tests (which
# leave a core idle much of the time) and its report is printed at the end.
mypy_log="$(mktemp "${TMPDIR:-/tmp}/graphrag-mypy.XXXXXX")"
$BIN/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
$BIN/lint-imports; layers=$?
# Security scans: bandit on the code (any finding fails the run; the accepted ones say why
# inline, `# <reason>  # nosec <test id>`), and pip-audit on the runtime lock the image
# installs, where its data source answers: PyPI's per-release JSON API (a mirror that serves
# only project pages cannot say which release is vulnerable, so the audit is skipped, saying so).
$BIN/bandit -q -r streams agents schemas; scan=$?
if $BIN/python -c 'import urllib.request as u; u.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=10)' 2>/dev/null; then
  $BIN/pip-audit --strict --require-hashes -r requirements.lock || scan=1
else
  echo "pip-audit skipped: PyPI's per-release JSON API (https://pypi.org/pypi/<name>/<version>/json) is not reachable from here" >&2
fi

GRAPHRAG_STACK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/graphrag-test-stack.XXXXXX")"
export GRAPHRAG_STACK_DIR
# shellcheck disable=SC2046  # word splitting wanted: VAR=port pairs
export $($BIN/python stack/localstack.py free-ports)
cleanup() {
  kill "$mypy_pid" 2>/dev/null
  rm -f "$mypy_log"
  $BIN/python stack/localstack.py down --wipe >/dev/null 2>&1
  rm -rf "$GRAPHRAG_STACK_DIR"
}
trap cleanup EXIT
echo "fresh test stack in $GRAPHRAG_STACK_DIR: Kafka 127.0.0.1:$GRAPHRAG_KAFKA_PORT," \
     "FerretDB 127.0.0.1:$GRAPHRAG_MONGO_PORT"
$BIN/python stack/localstack.py up --no-prometheus || exit 2

# Coverage of the tests and of every Python process they start (pyproject's
# [tool.coverage]); the total is printed and the floor (fail_under) applies to a whole-suite
# run. A run of chosen tests (`make test PYTEST_ARGS=...`) reports without the floor.
mkdir -p build/coverage
rm -f build/coverage/.coverage*
export COVERAGE_FILE="$PWD/build/coverage/.coverage"
cov=(--cov --cov-report=term --cov-report=html)
# The slowest tests, printed at the end: where the suite's time goes (issue 12 item 5).
cov+=(--durations=25 --durations-min=5)
# In parallel processes (pytest-xdist), one per core by default: an integration test spends
# much of its time waiting (on the pipeline's processes, the broker, the database, outages it
# stages), which another process fills; more processes than cores overloaded this 2-core
# machine until stall checks and timeouts fired. Tests that share a session's pipeline run go
# to one process (tests/integration/conftest.py, xdist_group); a test that stops the broker or
# the database does so on a stack of its own. GRAPHRAG_TEST_PROCESSES=0: all in this process.
cov+=(-n "${GRAPHRAG_TEST_PROCESSES:-2}" --dist loadgroup)
[ "$#" -gt 0 ] && cov+=(--cov-fail-under=0)
$BIN/pytest "${cov[@]}" "$@"; rc=$?

wait "$mypy_pid"; types=$?
echo "mypy:"; cat "$mypy_log"; rm -f "$mypy_log"

case $rc in
  0) ;;
  5) echo "error: pytest collected no tests; that is a failure, not a pass" >&2; rc=1 ;;
  *) echo "error: tests failed (pytest exit $rc)" >&2 ;;
esac
if [ "$lint" != 0 ] || [ "$types" != 0 ] || [ "$layers" != 0 ] || [ "$scan" != 0 ]; then
  echo "error: ruff (exit $lint), mypy (exit $types), lint-imports (exit $layers) or bandit/pip-audit (exit $scan) found problems" >&2
  [ "$rc" = 0 ] && rc=1
fi
exit $rc
