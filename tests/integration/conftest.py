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

from tests.support import ROOT, Deployment, DeploymentFactory, Services

HERE = Path(__file__).resolve().parent
# Modules sharing the session's corpus run, in the order they must see it: the replay
# test compares the graph with itself before and after, and forget/resubmit comes later.
CORPUS_RUN_ORDER = ("test_pipeline_integration.py", "test_communities.py", "test_reindex.py")
# Runs first, while the broker `make test` started has served no consumer group yet.
FIRST = ("test_fresh_start.py",)


def _here(item: pytest.Item) -> bool:
    return item.path.resolve().is_relative_to(HERE)


# tryfirst: the marker is on every item before -m deselects by markers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees the whole session's items, not only this folder's.
    for item in items:
        if _here(item) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return CORPUS_RUN_ORDER.index(name) if _here(item) and name in CORPUS_RUN_ORDER else -1

    # A stable sort: the fresh-start test first, other modules keep their places, the
    # corpus-run modules go last, in order.
    items.sort(key=lambda i: (not (_here(i) and i.path.name in FIRST), rank(i) >= 0, rank(i)))


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
def corpus_run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole corpus through the pipeline once per session (tests/integration/corpus_run.py)."""
    from tests.integration.corpus_run import corpus_run as run

    with run(services, tmp_path_factory.mktemp("corpus")) as result:
        yield result


@pytest.fixture(scope="session")
def demo_api(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The sample videos' graph behind `graphrag-streams serve` (tests/integration/demo_api.py)."""
    from tests.integration.demo_api import demo_api as serve

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
