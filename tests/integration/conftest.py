"""Fixtures on the real services, and the rules of this folder's collection.

Integration tests run against real services, chosen by one option:

    GRAPHRAG_TEST_BACKEND=native          (default) the project's local stack: the Apache
                                          Kafka broker and FerretDB, started here if needed
    GRAPHRAG_TEST_BACKEND=testcontainers  Kafka and MongoDB containers (needs Docker)

Every test in this folder is an integration test: one that lacks the `integration` marker
gets it here, so `make test-unit` (-m "not integration") never selects a test of this
folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.corpus_run import CorpusRun
from tests.support import ROOT, Deployment, DeploymentFactory, LocalStack, Services, only_once_per_session

HERE = Path(__file__).resolve().parent


# Session fixtures that run a pipeline: under xdist (`make test`), every test that takes one
# goes to the same process (--dist loadgroup), so each runs once per session, not once per process.
SHARED_RUNS = {"corpus_run": "corpus-run", "restored_graph": "corpus-run", "demo_api": "demo-api"}


# tryfirst: the markers are on every item before -m deselects by markers and before xdist
# reads the groups.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees the whole session's items, not only this folder's.
    for item in items:
        if item.path.resolve().is_relative_to(HERE) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        groups = {SHARED_RUNS[name] for name in getattr(item, "fixturenames", ()) if name in SHARED_RUNS}
        for group in groups:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    backend = os.environ.get("GRAPHRAG_TEST_BACKEND", "native")
    if backend == "testcontainers":
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, MongoDbContainer("mongo:7.0") as mongo:
            yield Services(kafka.get_bootstrap_server(), mongo.get_connection_url())
        return
    if backend != "native":
        raise pytest.UsageError(f"GRAPHRAG_TEST_BACKEND={backend!r}: use 'native' or 'testcontainers'")
    # Idempotent: returns at once when `make test` (or the developer) already started it.
    proc = subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), "up", "--no-prometheus"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not start the local stack:\n{proc.stderr}")
    kafka_port = int(os.environ.get("GRAPHRAG_KAFKA_PORT", "9092"))
    mongo_port = int(os.environ.get("GRAPHRAG_MONGO_PORT", "27017"))
    yield Services(f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}")


@pytest.fixture(scope="session")
def corpus_run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    """The whole corpus through the pipeline once per session, frozen (tests/integration/corpus_run.py).

    Read-only: a test that changes its graph or topics takes `restored_graph` as well."""
    from tests.integration.corpus_run import corpus_run as run

    only_once_per_session(tmp_path_factory, "corpus_run")
    with run(services, tmp_path_factory.mktemp("corpus")) as result:
        yield result


@pytest.fixture
def restored_graph(corpus_run: CorpusRun) -> Iterator[CorpusRun]:
    """The corpus run, for a test that changes it: afterwards its workers are stopped and the
    database and aliases are put back as the run left them, pass or fail."""
    yield corpus_run
    corpus_run.restore()


@pytest.fixture
def own_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """A second local stack of its own, on free ports, that has served nothing: a newcomer's
    broker and database whatever the session's stack has served, and one a test may stop
    and start without disturbing tests running beside it (xdist). When the test failed, the
    end of the broker's and the database's logs is printed (the stack is wiped)."""
    stack = LocalStack(tmp_path / "stack")
    try:
        stack.up()
        yield stack
    finally:
        logs = tmp_path / "stack-logs"
        stack.down(keep_logs_in=logs)
        report = getattr(request.node, "graphrag_call_report", None)
        if report is not None and report.failed:
            for log in sorted(logs.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                print(f"--- last {min(len(lines), 80)} lines of the own stack's {log.name} ---")
                print("\n".join(lines[-80:]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps the test's own report on it, for fixtures that report more when it failed."""
    report = yield
    if report.when == "call":
        item.graphrag_call_report = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def fresh_services(own_stack: LocalStack) -> Services:
    return own_stack.services


@pytest.fixture(scope="session")
def demo_api(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The sample videos' graph behind `graphrag-streams serve` (tests/integration/demo_api.py)."""
    from tests.integration.demo_api import demo_api as serve

    only_once_per_session(tmp_path_factory, "demo_api")
    with serve(services, tmp_path_factory.mktemp("demo-api")) as api:
        yield api


@pytest.fixture
def deployment_factory(services: Services, tmp_path: Path) -> Iterator[DeploymentFactory]:
    """Make isolated deployments (own topics, groups, database); cleaned up afterwards."""
    made: list[Deployment] = []

    def make(overrides: dict[str, Any] | None = None) -> Deployment:
        d = Deployment(services, tmp_path / f"d{len(made)}", overrides or {})
        made.append(d)
        return d

    yield make
    for d in made:
        for w in d.workers:
            if w.proc is not None and not w.alive():  # died on its own, not stopped by the test
                print(f"--- worker {w.stages} exited {w.proc.returncode}; log tail ---\n{w.log_tail()}")
        d.cleanup()
