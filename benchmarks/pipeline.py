"""The whole corpus through the real pipeline (offline extractor) on the local stack.

Prints: the store's batched write rate alone (benchmarks/sink_writes.py's measurement, on
the corpus's graph updates, into a fresh database of the same store), measured before and
after the pipeline runs, next to the pipeline's end-to-end chunks/s (from the moment the
requests are produced to the last video done) and its ratio to the two's mean; the largest lag each stage's group had
while the corpus ran, sampled every 2 s; the peak RSS of every stage process; wall time
and throughput, end-to-end latency per video (request -> last chunk stored), graph size,
DLQ records; entity resolution before/after (raw names, in-stream,
merge pass) with the share of entity pairs sharing a normalised name; then the time to
replay every topic from offset 0 and whether the graph stayed identical.

    python benchmarks/pipeline.py [--no-replay] [--offline-extractor rules] [--trace S]

``--trace S`` also prints, every S seconds from the requests, how many messages each stage's
output topic held and how many chunks were stored (where the time goes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

from _common import CORPUS, ROOT, cpu_seconds, deployment, manifest, percentile, stack_pids
from confluent_kafka import Producer
from sink_writes import batched_rate, updates

from schemas import ChunkExtraction
from stack.localstack import JVM_QUICK
from streams.jobs.merge_pass import run_merge_pass
from streams.kafka.clients import OutgoingMessage, ensure_topics, make_admin, make_producer, produce_and_confirm
from streams.kafka.submission import request_messages
from streams.kafka.topics import TopicSpec
from streams.monitoring.lag import measure_lag, stage_groups
from streams.resolution.merge import EntityInfo, unmerged_same_name_share
from streams.resolution.normalize import normalize_type
from streams.settings import Settings
from streams.store import GraphStore
from tests.support import (
    WorkerProcess,
    consume_all,
    reset_groups_to_earliest,
    supervised_children,
    wait_quiescent,
    wait_until,
)


def _kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory field (VmRSS, VmHWM: the peak) in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_by_process(worker: WorkerProcess) -> dict[str, float]:
    """CPU seconds so far of every process the pipeline runs on: each stage, the worker's
    supervisor, the broker, FerretDB, and this benchmark (its lag sampler)."""
    pids = {**supervised_children(worker), **stack_pids()}
    if worker.proc is not None:
        pids["supervisor"] = worker.proc.pid
    out = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out["benchmark"] = sum(os.times()[:2])
    return out


class Sampler(threading.Thread):
    """Every ``interval`` s while the corpus runs: each group's total lag and each stage
    process's RSS (the process's own peak, VmHWM, is read too: it also covers between samples)."""

    def __init__(self, settings: Settings, worker: WorkerProcess, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.settings, self.worker, self.interval = settings, worker, interval
        self.max_lag: dict[str, int] = defaultdict(int)
        self.peak_kib: dict[str, int] = defaultdict(int)
        self.halt = threading.Event()

    def run(self) -> None:
        admin = make_admin(self.settings)
        while not self.halt.is_set():
            self.sample_rss()
            try:
                total: dict[str, int] = defaultdict(int)
                for r in measure_lag(self.settings, admin=admin):
                    total[r.group] += r.lag
                for group, lag in total.items():
                    self.max_lag[group] = max(self.max_lag[group], lag)
            except Exception as exc:  # a slow answer under load: the next sample counts
                print(f"  (lag sample failed: {exc})", file=sys.stderr)
            self.halt.wait(self.interval)

    def sample_rss(self) -> None:
        for stage, pid in supervised_children(self.worker).items():
            self.peak_kib[stage] = max(self.peak_kib[stage], _kib(pid, "VmRSS"), _kib(pid, "VmHWM"))


TRACED = ("videos.requested", "videos.status", "transcripts.fetched", "transcripts.chunks", "graph.extractions",
          "resolve.pending", "resolve.mentions", "resolve.resolved", "graph.edges")


def print_trace(settings: Settings, submitted: float, stored: list[tuple[float, int]], step: float) -> None:
    """Every ``step`` seconds from the requests: the messages each stage had produced by then
    (by their timestamps) and the chunks stored (sampled as the clock polled)."""
    produced = {t: [m.timestamp()[1] / 1000 for m in consume_all(settings, f"{settings.kafka.topic_prefix}{t}")]
                for t in TRACED}
    print(f"{'s':>5} " + " ".join(f"{t.split('.')[-1]:>10}" for t in TRACED) + f" {'stored':>6}")
    t = submitted
    while t < stored[-1][0]:
        counts = " ".join(f"{sum(x < t + step for x in produced[n]):>10}" for n in TRACED)
        print(f"{t - submitted:>5.{2 if step < 0.1 else 1}f} {counts}"
              + f" {max((n for x, n in stored if x < t + step), default=0):>6}")
        t += step


def warm_producer(settings: Settings) -> Producer:
    """A producer that has its idempotent producer ID: a new librdkafka producer asks for one
    only on a 500 ms timer when no broker connection is up yet (its debug log: "Coordinator
    not up"), so its first records reach the broker 0.5 s after they are produced. That is
    the client starting, as a CLI interpreter would, not the pipeline: one record to a scratch
    topic of this run takes it before the clock starts."""
    topic = f"{settings.kafka.topic_prefix}benchmark.warmup"
    ensure_topics(settings, [TopicSpec(topic, 1, settings.kafka.replication_factor)])
    producer = make_producer(settings)
    produce_and_confirm(producer, [OutgoingMessage(topic, None, b"warm-up")])
    return producer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument("--offline-extractor", choices=["auto", "spacy", "rules"], default="auto",
                        help="extraction.offline_extractor (auto: spaCy where installed)")
    parser.add_argument("--trace", type=float, default=0.0, metavar="S",
                        help="also print the run's timeline in steps of S seconds")
    args = parser.parse_args()
    d = deployment({"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                                 "extraction": {"offline_extractor": args.offline_extractor},
                                 "communities": {"interval_seconds": 86400}}})
    ids = [e["video_id"] for e in manifest()]
    chars = sum(e["chars"] for e in manifest())
    try:
        print(f"load average {os.getloadavg()[0]:.2f} at the start ({os.cpu_count()} CPUs)")
        # The store alone first, with nothing else of this run going: the corpus's graph updates
        # (the same parse, chunk, offline extraction and resolve functions) in the sink's batches.
        corpus_updates = updates(len(ids))
        t_store, _, _ = batched_rate(d, corpus_updates, d.settings.graphrag.sink.batch_size)
        store_rate = len(corpus_updates) / t_store
        d.cli("topics", "create")
        worker = d.start_worker("all")
        store = GraphStore.from_settings(d.settings)
        time.sleep(8)  # let the apps join their groups before the clock starts
        sampler = Sampler(d.settings, worker)
        sampler.start()
        cpu0 = cpu_by_process(worker)
        # What `submit` does, in this process: the clock measures the pipeline from the moment
        # the requests are produced, not a CLI interpreter starting (~1 s here).
        messages = request_messages(d.settings, ids)
        producer = warm_producer(d.settings)
        t0, submitted = time.monotonic(), time.time()
        produce_and_confirm(producer, messages)
        stored: list[tuple[float, int]] = []

        def finished() -> bool:
            docs = store.videos.find(ids)
            stored.append((time.time(), sum(v.get("chunks_stored", 0) for v in docs)))
            return len(docs) == len(ids) and all(v["status"] in ("done", "failed") for v in docs)

        wait_until(finished, timeout=1800, interval=0.2)
        wall = time.monotonic() - t0
        finished_at = time.time()
        cpu1 = cpu_by_process(worker)
        sampler.halt.set()
        sampler.join()
        sampler.sample_rss()
        wait_quiescent(d.settings, workers=[worker])
        # The store alone again, right after (the stages idle: ~0.1 of a core): this machine's
        # speed drifts by tens of percent within minutes, so the pipeline is compared with the
        # mean of a measurement before and one after it.
        t_store_after, _, _ = batched_rate(d, corpus_updates, d.settings.graphrag.sink.batch_size)
        store_rate_after = len(corpus_updates) / t_store_after
        store_mean = (store_rate + store_rate_after) / 2
        videos = store.videos.find(ids)
        counts = store.reads.counts()
        e2e_rate = counts["chunks"] / wall
        print(f"store's batched path alone (sink_writes, batches of {d.settings.graphrag.sink.batch_size}): "
              f"{len(corpus_updates)} chunk updates in {t_store:.1f}s before the pipeline = {store_rate:.2f} "
              f"chunks/s, in {t_store_after:.1f}s after it = {store_rate_after:.2f} chunks/s; "
              f"end to end: {counts['chunks']} chunks in {wall:.1f}s = {e2e_rate:.2f} chunks/s; "
              f"ratio {e2e_rate / store_mean:.2f} of their mean (target >= 0.5; "
              f"{e2e_rate / store_rate:.2f} of before, {e2e_rate / store_rate_after:.2f} of after)")
        print("largest lag while the corpus ran (messages, all partitions of a group's inputs): " + ", ".join(
            f"{g.rsplit('-', 1)[-1]} {sampler.max_lag.get(g, 0)}" for g in stage_groups(d.settings)))
        print("peak RSS per stage process (VmHWM): " + ", ".join(
            f"{stage} {kib / 1024:.0f} MB" for stage, kib in sampler.peak_kib.items())
              + f"; max {max(sampler.peak_kib.values(), default=0) / 1024:.0f} MB (target <= 400 MB)")
        cpu = {name: cpu1[name] - cpu0.get(name, 0.0) for name in cpu1}
        print(f"CPU seconds while the corpus ran ({wall:.1f}s x {os.cpu_count()} CPUs = "
              f"{wall * (os.cpu_count() or 1):.0f} available): " + ", ".join(
                  f"{name} {sec:.1f}" for name, sec in sorted(cpu.items(), key=lambda kv: -kv[1]))
              + f"; total {sum(cpu.values()):.1f} ({sum(cpu.values()) / counts['chunks'] * 1000:.0f} ms a chunk)")
        print(f"load average {os.getloadavg()[0]:.2f} after the corpus")
        e2e = sorted((v["done_at"] - v["requested_at"]).total_seconds() for v in videos if v.get("done_at"))
        dlq = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}dlq")
        print(f"corpus: {len(ids)} videos, {chars} characters, {counts['chunks']} chunks")
        print(f"wall time to the last video done: {wall:.1f}s ({counts['chunks'] / wall:.1f} chunks/s, "
              f"{chars / wall / 1000:.1f} k characters/s); states {dict(Counter(v['status'] for v in videos))}")
        print(f"end-to-end latency per video: p50 {percentile(e2e, 50):.1f}s, p95 {percentile(e2e, 95):.1f}s, "
              f"max {max(e2e):.1f}s")
        print(f"graph: {counts['entities']} entities, {counts['relations']} relations, "
              f"{counts['entity_mentions']} mentions, {counts['relation_evidence']} relation evidence; "
              f"DLQ records {len(dlq)}")

        extractions = [ChunkExtraction.model_validate_json(m.value()) for m in
                       consume_all(d.settings, f"{d.settings.kafka.topic_prefix}graph.extractions")]
        raw = {(normalize_type(e.type), e.name.strip()) for x in extractions for e in x.entities}
        before = [EntityInfo.from_doc(x) for x in store.graph.entity_infos()]
        same_before, pairs_before = unmerged_same_name_share(before)
        report = run_merge_pass(d.settings, store)
        after = [EntityInfo.from_doc(x) for x in store.graph.entity_infos()]
        same_after, pairs_after = unmerged_same_name_share(after)
        print(f"entity resolution: {len(raw)} distinct extracted (type, name) pairs -> {len(before)} entities "
              f"in-stream -> {len(after)} after the merge pass ({len(report.merges)} merges)")
        print(f"entity pairs sharing a normalised name: {same_before} of {pairs_before} "
              f"({same_before / max(1, pairs_before):.2e}) before the merge pass, {same_after} of {pairs_after} "
              f"({same_after / max(1, pairs_after):.2e}) after")
        reasons = Counter(m.reason.split(" (")[0] for m in report.merges)
        print(f"merges by rule: {dict(reasons)}")
        for m in report.merges[:12]:
            print(f"  {m.source.name!r} ({m.source.type}) -> {m.target.name!r} ({m.target.type}): {m.reason}")

        # The exporter's numbers next to Kafka's own tool, at this quiescent point.
        print("\nlag at rest, graphrag-streams (committed / log end / lag) vs kafka-consumer-groups --describe:")
        cp = subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), "kafka-classpath"],
                            capture_output=True, text=True, check=True).stdout.strip()
        mismatches = rows = 0
        ours = {(r.group, r.topic, r.partition): r for r in measure_lag(d.settings)}
        for group in stage_groups(d.settings):
            tool = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
            out = subprocess.run(["java", *JVM_QUICK, "-cp", cp, tool,
                                  "--bootstrap-server", d.settings.kafka.bootstrap_servers, "--describe",
                                  "--group", group], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                cols = line.split()
                if len(cols) < 6 or cols[0] != group or (group, cols[1], int(cols[2])) not in ours:
                    continue
                r = ours[(group, cols[1], int(cols[2]))]
                mine = f"{'-' if r.committed is None else r.committed}/{r.log_end}/{r.lag}"
                theirs = f"{cols[3]}/{cols[4]}/{cols[5]}"
                same = (cols[3] == ("-" if r.committed is None else str(r.committed)) and cols[4] == str(r.log_end)
                        and (cols[5] == str(r.lag) or (cols[5] == "-" and r.committed is None)))
                mismatches += not same
                rows += 1
                print(f"  {group:<22} {cols[1]:<38} {cols[2]:>2}  ours {mine:<14} kafka {theirs:<14}"
                      f"{'' if same else '  DIFFERENT'}")
        print(f"  {rows} rows compared, {mismatches} different")

        if args.trace:
            print_trace(d.settings, submitted, stored, args.trace)

        if not args.no_replay:
            snapshot = store.reads.snapshot()
            d.stop_workers()
            reset_groups_to_earliest(d.settings)
            t0 = time.monotonic()
            worker = d.start_worker("all")
            wait_quiescent(d.settings, timeout=1800, workers=[worker])
            replay = time.monotonic() - t0
            after = store.reads.snapshot()
            same = after == snapshot
            for name in snapshot:
                was = {str(doc["_id"]): doc for doc in snapshot[name]}
                now = {str(doc["_id"]): doc for doc in after[name]}
                differ = [k for k in was.keys() & now.keys() if was[k] != now[k]]
                if differ or was.keys() != now.keys():
                    print(f"  {name}: {len(was.keys() - now.keys())} gone, {len(now.keys() - was.keys())} new, "
                          f"{len(differ)} changed")
                    for k in differ[:2]:
                        print("    before:", {f: v for f, v in was[k].items() if now[k].get(f) != v})
                        print("    after: ", {f: v for f, v in now[k].items() if was[k].get(f) != v})
                    for k in sorted(now.keys() - was.keys())[:2]:
                        print("    new:", str(now[k])[:300])
                    for k in sorted(was.keys() - now.keys())[:2]:
                        print("    gone:", str(was[k])[:300])
            print(f"replay of every topic from offset 0: quiescent after {replay:.1f}s "
                  f"(including ~4s of settling); graph identical: {same}")
        print(json.dumps({"submitted_at": round(submitted, 3), "finished_at": round(finished_at, 3),
                          "wall_seconds": round(wall, 1), "chunks": counts["chunks"], "dlq": len(dlq),
                          "chunks_per_s": round(e2e_rate, 2), "store_chunks_per_s": round(store_rate, 2),
                          "store_chunks_per_s_after": round(store_rate_after, 2),
                          "ratio": round(e2e_rate / store_mean, 2),
                          "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
                          "peak_rss_mb": {k: round(v / 1024) for k, v in sampler.peak_kib.items()}}))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
