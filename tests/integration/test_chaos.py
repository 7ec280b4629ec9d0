"""Faults on the real stack, each during a run of a sixth of the corpus (``corpus_sample``:
what a fault must not break does not grow with the data, and each run costs its size).

Faults: kill -9 of every app process in turn (the supervisor of `worker --stages all`
restarts it), the Kafka broker stopped and started, FerretDB stopped for 15 s (offline
extractor; each on a local stack of its own, `own_stack`, so stopping its broker or database
disturbs no test running beside it); the LLM server down until the stage has waited it out
for stall_seconds with the circuit open and its half-open probes failing (LLM extractor, against a local server that
speaks OpenAI's API and answers each chunk deterministically). After each, compared with a
clean run of the same corpus and extractor in this module:

* every video is done, with the same chunk count and every chunk stored;
* the same chunk documents (IDs are hashes of content);
* the same extraction of every chunk, and only that one (a redelivered chunk is extracted
  again into the same result; an outage never leaves a chunk with a partial or failed one);
* nothing dead-lettered (the corpus has no bad input, so the clean run has none);
* counts reconciled from evidence, so redelivery after a fault counts nothing twice: every
  entity's ``mention_count`` equals its mention documents, every relation's
  ``evidence_count`` its evidence documents.

* after a merge pass on each side, the whole graph: every document of ``chunks``,
  ``entities``, ``relations``, ``entity_mentions`` and ``relation_evidence``, field by field
  (IDs, names, types, counts, weights, descriptions, times). In-stream resolution depends on
  the order in which names reach a block, so before the pass two clean runs differ; the pass
  resolves every chunk again from its stored extraction, from the set of names alone
  (streams/resolution/merge.py), so after it the graph is a function of the set of chunks. Two clean
  runs with 1 and 3 partitions are compared the same way. Not compared: ``videos`` (times
  and stage details) and ``entity_redirects`` (a record of what the stream guessed).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.jobs.merge_pass import run_merge_pass
from streams.kafka.topics import ALL_APPS
from streams.store import GraphStore
from tests.fakes.fake_openai import FakeOpenAI
from tests.support import (
    CORPUS,
    NO_RATE_LIMITS,
    Deployment,
    LocalStack,
    Services,
    assert_no_stall,
    consume_all,
    corpus_sample,
    evidence_mismatches,
    extractions_by_chunk,
    once_per_session,
    stall_lines,
    supervised_children,
    wait_llm_outage_waited_out,
    wait_quiescent,
    wait_until,
)

pytestmark = pytest.mark.integration

Fault = Callable[[Deployment, Any], str]


def kill_every_stage(d: Deployment, worker: Any) -> str:
    for stage in ALL_APPS:
        before = wait_until(lambda s=stage.value: supervised_children(worker).get(s), timeout=60,
                            message=f"a running {stage.value} process")
        ready = worker.log_count("Worker ready")
        os.kill(before, signal.SIGKILL)
        wait_until(lambda s=stage.value, old=before: supervised_children(worker).get(s) not in (None, old), timeout=60,
                   message=lambda s=stage.value: f"{s} restarted; log:\n{worker.log_tail()}")
        # The next kill once the restarted app is back at work (its Faust recovery done).
        wait_until(lambda n=ready: worker.log_count("Worker ready") > n, timeout=120, interval=0.5,
                   message=lambda s=stage.value: f"{s} ready again; log:\n{worker.log_tail()}")
    return f"kill -9 of each of {len(ALL_APPS)} apps in turn"


def _down_for(stack: LocalStack, service: str, seconds: float) -> None:
    """Stop one service of the stack and start it again, whatever happens between."""
    try:
        stack.run("stop", service)
        time.sleep(seconds)
    finally:
        stack.up()


def restart_broker(stack: LocalStack) -> Fault:
    def fault(d: Deployment, worker: Any) -> str:
        _down_for(stack, "kafka", 5)
        return "Kafka broker stopped, 5 s down, started"
    return fault


def stop_ferretdb(stack: LocalStack) -> Fault:
    def fault(d: Deployment, worker: Any) -> str:
        _down_for(stack, "ferretdb", 15)
        return "FerretDB stopped for 15 s"
    return fault


FAULTS: dict[str, Callable[[LocalStack], Fault]] = {
    "kill_every_stage": lambda stack: kill_every_stage,
    "restart_broker": restart_broker,
    "stop_ferretdb": stop_ferretdb,
}


LLM_LIMIT = 4  # max_concurrent_operations of the LLM runs


def _llm_config(fake: FakeOpenAI) -> dict[str, Any]:
    return {"openai": {"api_key": "sk-test-not-a-real-key", "base_url": fake.base_url, "model": "gpt-test",
                       "timeout_seconds": 5, "circuit_reset_seconds": 5, **NO_RATE_LIMITS},
            "graphrag": {"extraction": {"extractor": "llm"}, "max_concurrent_operations": LLM_LIMIT,
                         "retry_attempts": 1, "circuit_breaker_threshold": 3,
                         # the outage lasts longer than this (waiting out an open circuit is not a stall)
                         "stall_seconds": 30}}


def llm_outage(fake: FakeOpenAI) -> Fault:
    def fault(d: Deployment, worker: Any) -> str:
        opened = worker.log_count("LLM circuit closed -> open")
        fake.stop()
        down_at = time.monotonic()
        served = fake.stats()["requests"]  # after stop: calls in flight at that moment finish
        # Down until the stage has waited it out (circuit open, failed probes) for stall_seconds.
        wait_llm_outage_waited_out(worker, opened, down_at, longer_than=d.settings.graphrag.stall_seconds)
        # While down: no call served, nothing dead-lettered, no app stopped itself as stalled,
        # and work left waiting, not given up.
        assert fake.stats()["requests"] == served, "requests were served during the outage"
        assert consume_all(d.settings, f"{d.settings.kafka.topic_prefix}dlq") == []
        assert_no_stall(worker)
        store = GraphStore.from_settings(d.settings)
        assert not all(v["status"] == "done" for v in store.videos.find()), "no work was left waiting"
        fake.start()  # same port
        return f"LLM server down for {time.monotonic() - down_at:.0f} s (circuit open, probes failed)"
    return fault


def _run(services: Services, tmp: Path, fault: Fault | None, config: dict[str, Any] | None = None,
         fault_when: Callable[[GraphStore], bool] | None = None, measured: bool = True) -> dict[str, Any]:
    """The corpus sample through a worker of all stages, ``fault`` injected mid-run: when
    ``fault_when(store)`` holds (default: once the sink has stored 20 chunks). Not
    ``measured``: coverage does not trace its processes (a run without a fault executes
    nothing the session's corpus run does not)."""
    base = {"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                         "communities": {"interval_seconds": 86400},
                         "stall_seconds": 60}}
    overrides = config or {}
    d = Deployment(services, tmp, {**overrides, "graphrag": {**base["graphrag"], **overrides.get("graphrag", {})}},
                   measured=measured)
    ids = [e["video_id"] for e in corpus_sample()]
    try:
        worker = d.start_worker("all")
        started = time.monotonic()
        d.cli("submit", *ids)
        store = GraphStore.from_settings(d.settings)
        what, fault_at = "none", None
        if fault is not None:
            # Mid-run: by default once the sink has stored a few chunks.
            when = fault_when or (lambda st: st.reads.counts().get("chunks", 0) >= 20)
            wait_until(lambda: when(store), timeout=300, interval=0.5, message="the moment for the fault")
            fault_at = time.monotonic()
            what = fault(d, worker)

        def finished() -> bool:
            if not worker.alive():
                raise AssertionError(f"the worker died:\n{worker.log_tail()}")
            try:
                docs = store.videos.find(ids)
            except Exception:  # the database may be coming back
                return False
            return len(docs) == len(ids) and all(x["status"] in ("done", "failed") for x in docs)

        wait_until(finished, timeout=900, interval=2, message=lambda: f"every video done; log:\n{worker.log_tail()}")
        done = time.monotonic()
        wait_quiescent(d.settings, workers=[worker])
        before_merge = _graph(store)
        merge = run_merge_pass(d.settings, store)
        return {
            "fault": what,
            "wall": done - started,
            "recovered_after": done - fault_at if fault_at else None,
            "videos": {v["_id"]: (v["status"], v.get("chunk_count"), v.get("chunks_stored"))
                       for v in store.videos.find()},
            "chunks": {c["_id"]: (c["video_id"], c["index"], c["text"]) for c in store.db.chunks.find()},
            "extractions": extractions_by_chunk(d.settings),
            "dlq": len(consume_all(d.settings, f"{d.settings.kafka.topic_prefix}dlq")),
            "counts": store.reads.counts(),
            "miscounted": evidence_mismatches(store),
            "stalls": stall_lines(worker),
            "before_merge": before_merge,
            "graph": _graph(store),
            "merge": merge,
        }
    finally:
        d.cleanup()


def _graph(store: GraphStore) -> dict[str, dict[str, Any]]:
    """The compared collections, by document ID."""
    return {name: {d["_id"]: d for d in docs} for name, docs in store.reads.snapshot().items() if name != "videos"}


def graph_differences(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """Per collection, (IDs only in a, IDs only in b, shared IDs with different documents); empty when equal."""
    out = {}
    for name in sorted(a.keys() | b.keys()):
        x, y = a.get(name, {}), b.get(name, {})
        diff = (len(x.keys() - y.keys()), len(y.keys() - x.keys()), sum(x[k] != y[k] for k in x.keys() & y.keys()))
        if any(diff):
            out[name] = diff
    return out


@pytest.fixture(scope="module")
def clean(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The clean run every fault is compared with: one per session, shared by the xdist
    processes that run this module's tests side by side."""
    return once_per_session(tmp_path_factory, "chaos-clean",
                            lambda: _run(services, tmp_path_factory.mktemp("clean"), None, measured=False))


def _assert_same_graph(run: dict[str, Any], clean: dict[str, Any]) -> None:
    print(f"\n{run['fault']}: every video done after {run['wall']:.1f}s (clean run {clean['wall']:.1f}s), "
          f"{run['recovered_after']:.1f}s after the fault; graph {run['counts']} (clean {clean['counts']})")
    assert all(status == "done" for status, _, _ in clean["videos"].values())
    assert run["videos"] == clean["videos"]
    assert run["chunks"] == clean["chunks"]
    assert all(len(found) == 1 for found in clean["extractions"].values())
    assert set(clean["extractions"]) == set(clean["chunks"])
    assert run["extractions"] == clean["extractions"]
    assert run["dlq"] == clean["dlq"] == 0
    assert run["miscounted"] == [] and clean["miscounted"] == []
    assert clean["stalls"] == []
    print(f"  before the merge passes (only here, only clean, differing): "
          f"{graph_differences(run['before_merge'], clean['before_merge']) or 'none'}; after: "
          f"{graph_differences(run['graph'], clean['graph']) or 'none'}; {run['merge'].chunks_rewritten} "
          f"and {clean['merge'].chunks_rewritten} chunks rewritten by the passes")
    assert run["merge"].chunks_without_extraction == clean["merge"].chunks_without_extraction == 0
    assert graph_differences(run["graph"], clean["graph"]) == {}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_graph_survives_a_fault(fault: str, clean: dict[str, Any], own_stack: LocalStack,
                                    tmp_path: Path) -> None:
    _assert_same_graph(_run(own_stack.services, tmp_path, FAULTS[fault](own_stack)), clean)


def test_one_graph_whatever_the_partition_count(clean: dict[str, Any], services: Services, tmp_path: Path) -> None:
    """The clean run has 3 partitions per topic; this one has 1, so names meet their blocks
    in another order."""
    run = _run(services, tmp_path, None, {"kafka": {"partitions": 1}}, measured=False)
    run["fault"], run["recovered_after"] = "1 partition instead of 3", 0.0
    _assert_same_graph(run, clean)


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    server.state.delay = 0.05  # calls overlap, and the corpus's take seconds, not milliseconds
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clean_llm(services: Services, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> dict[str, Any]:
    return _run(services, tmp_path_factory.mktemp("clean-llm"), None, _llm_config(fake_llm), measured=False)


def test_the_graph_survives_an_llm_outage(clean_llm: dict[str, Any], fake_llm: FakeOpenAI, services: Services,
                                          tmp_path: Path) -> None:
    # While most of the sample is still to be extracted: after 20 of its calls (one per chunk, ~60).
    run = _run(services, tmp_path, llm_outage(fake_llm), _llm_config(fake_llm),
               fault_when=lambda _: fake_llm.stats()["requests"] >= 20)
    assert {e for found in run["extractions"].values() for e in found} and all(
        '"extractor": "openai:' in e for found in run["extractions"].values() for e in found)
    _assert_same_graph(run, clean_llm)
    assert run["stalls"] == []  # waiting out an open circuit is not a stall
    assert fake_llm.stats()["max_in_flight"] <= LLM_LIMIT
