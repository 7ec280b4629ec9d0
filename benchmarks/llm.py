"""The LLM ceiling: LLM extraction of the corpus against the local OpenAI-compatible server
(tests/fakes/fake_openai.py) with lognormal latency, at several concurrency limits and an
RPM limit, and with one and two extract processes; side by side from one run.

For each setting: LLM calls per second from the first call to the last answer, against the
ceiling min(limit / mean latency, RPM / 60) (per extract process, times the processes), their
ratio, and the ratio a perfect pipeline would reach with as many calls (simulated: every call
ready at the start; the last calls finishing one by one cost it); the same over the whole run
(submit to every video done); failed calls (error answers
of the server, dead letters, chunks stored with an extraction error); the most calls in
flight at the server against the limit; the mean number in flight between the first call
and the last answer; the ramp-up (submit to the first call) and the tail (the last answer to
every video done). With an RPM limit the server answers 429 beyond it (per trailing 60 s),
as a provider does, and the most calls it saw in any 60 s are printed beside it.

    python benchmarks/llm.py [--videos N] [--median 1.5] [--sigma 0.3] [--partitions 6]
                             [--runs 8,32,64/600,8x2] [--trace S]

A run is LIMIT, LIMIT/RPM or LIMITxPROCESSES (that many `worker --stages extract`
processes, the other stages in one more worker). Without an RPM the limiter is set far
above the ceiling (and tokens per minute always are), so that the concurrency limit binds.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import threading
import time
from dataclasses import dataclass

from _common import CORPUS, Deployment, deployment, manifest

from streams.kafka.dlq import parse_headers
from streams.store import GraphStore
from tests.fakes.fake_openai import FakeOpenAI
from tests.support import consume_all, wait_until

OTHER_STAGES = "fetch,chunk,route,resolve,assemble,sink,communities"


@dataclass(frozen=True)
class Setting:
    limit: int
    rpm: int | None = None
    processes: int = 1

    @classmethod
    def parse(cls, text: str) -> Setting:
        limit, _, procs = text.partition("x")
        limit, _, rpm = limit.partition("/")
        return cls(int(limit), int(rpm) if rpm else None, int(procs) if procs else 1)

    def __str__(self) -> str:
        return f"{self.limit}" + (f"/{self.rpm}rpm" if self.rpm else "") + (f" x{self.processes}" if self.processes > 1
                                                                           else "")


@dataclass
class Result:
    setting: Setting
    chunks: int
    calls: int
    failed: int
    max_in_flight: int
    mean_in_flight: float
    max_per_minute: int
    ramp_up: float
    call_window: float
    tail: float
    run: float


def sample_in_flight(fake: FakeOpenAI, stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        samples.append((time.time(), fake.state.in_flight))
        time.sleep(0.05)


def print_trace(d: Deployment, fake: FakeOpenAI, samples: list[tuple[float, int]], donelog: list[tuple[float, int]],
                submitted: float, done: float, step: float) -> None:
    """Every ``step`` seconds from submit: mean calls in flight, chunks produced, calls started,
    extractions produced, videos done (where the time goes)."""
    prefix = d.settings.kafka.topic_prefix
    chunks = [m.timestamp()[1] / 1000 for m in consume_all(d.settings, f"{prefix}transcripts.chunks")]
    extracted = [m.timestamp()[1] / 1000 for m in consume_all(d.settings, f"{prefix}graph.extractions")]
    started = list(fake.state.started)
    t = submitted
    print(f"{'s':>6} {'in flight':>9} {'chunks':>6} {'calls':>5} {'extracted':>9} {'videos done':>11}")
    while t < done:
        now = [n for x, n in samples if t <= x < t + step]
        print(f"{t - submitted:>6.1f} {sum(now) / max(1, len(now)):>9.1f} {sum(x < t + step for x in chunks):>6} "
              f"{sum(x < t + step for x in started):>5} {sum(x < t + step for x in extracted):>9} "
              f"{max((n for x, n in donelog if x < t + step), default=0):>11}")
        t += step


def ideal_ratio(calls: int, slots: int, median: float, sigma: float, rounds: int = 300) -> float:
    """The ratio a perfect pipeline would reach: ``calls`` calls all ready at once, each slot
    taking the next as soon as it is free (mean over ``rounds`` simulated runs). Below 1 by
    the last calls finishing one by one at the end."""
    rng = random.Random(12)
    mean = median * math.exp(sigma ** 2 / 2)
    total = 0.0
    for _ in range(rounds):
        free = [0.0] * slots
        for _ in range(calls):
            heapq.heappush(free, heapq.heappop(free) + rng.lognormvariate(math.log(median), sigma))
        total += calls / max(free) / (slots / mean)
    return total / rounds


def run(setting: Setting, ids: list[str], median: float, sigma: float, partitions: int,
        trace: float = 0.0) -> Result:
    fake = FakeOpenAI().start()
    fake.state.latency_median, fake.state.latency_sigma = median, sigma
    fake.state.rpm = setting.rpm
    d = deployment({
        "openai": {"api_key": "sk-bench", "base_url": fake.base_url, "model": "gpt-bench",
                   "requests_per_minute": setting.rpm or 1_000_000, "tokens_per_minute": 1_000_000_000},
        "graphrag": {"max_concurrent_operations": setting.limit, "extraction": {"extractor": "llm"},
                     "transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                     "communities": {"interval_seconds": 86400}},
        "kafka": {"partitions": partitions},
        "log_level": "INFO",
    })
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    try:
        if setting.processes == 1:
            workers = [d.start_worker("all")]
        else:
            workers = [d.start_worker(OTHER_STAGES)] + [d.start_worker("extract") for _ in range(setting.processes)]
        apps = 8 + setting.processes - 1
        # Every app has joined its group and been given its partitions before the clock starts.
        wait_until(lambda: sum(w.log_count("Worker ready") for w in workers) >= apps, timeout=180, interval=0.5,
                   message=lambda: "\n".join(w.log_tail(20) for w in workers))
        store = GraphStore.from_settings(d.settings)
        sampler = threading.Thread(target=sample_in_flight, args=(fake, stop, samples), daemon=True)
        sampler.start()
        submitted = time.time()
        donelog: list[tuple[float, int]] = []
        d.cli("submit", *ids)

        def finished() -> bool:
            for w in workers:
                if not w.alive():
                    raise AssertionError(f"worker {w.stages} died:\n{w.log_tail()}")
            docs = store.videos.find(ids)
            donelog.append((time.time(), sum(v["status"] == "done" for v in docs)))
            return len(docs) == len(ids) and all(v["status"] in ("done", "failed") for v in docs)

        wait_until(finished, timeout=3600, interval=0.2)
        done = time.time()
        stop.set()
        stats = fake.stats()
        first, last = stats["first_call"], stats["last_answer"]
        window = [n for t, n in samples if first <= t <= last]
        dead = [parse_headers(m.headers()) for m in consume_all(d.settings, f"{d.settings.kafka.topic_prefix}dlq")]
        errors = store.db.chunks.count_documents({"extraction_error": {"$ne": None}})
        if trace:
            print_trace(d, fake, samples, donelog, submitted, done, trace)
        return Result(setting, store.db.chunks.count_documents({}), stats["requests"],
                      stats["failed"] + len(dead) + errors, stats["max_in_flight"],
                      sum(window) / max(1, len(window)), fake.state.max_in_window(60.0),
                      first - submitted, last - first, done - last, done - submitted)
    finally:
        stop.set()
        d.cleanup()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=0, help="the first N corpus videos (default: all)")
    parser.add_argument("--median", type=float, default=1.5, help="median seconds per call (lognormal)")
    parser.add_argument("--sigma", type=float, default=0.3, help="sigma of the log of the latency")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of every topic")
    parser.add_argument("--runs", default="8,32,64/600,8x2",
                        help="settings: LIMIT, LIMIT/RPM or LIMITxPROCESSES, comma-separated")
    parser.add_argument("--trace", type=float, default=0.0, metavar="S",
                        help="also print each run's timeline in steps of S seconds")
    args = parser.parse_args()
    ids = [e["video_id"] for e in manifest()]
    ids = ids[: args.videos] if args.videos else ids
    mean = args.median * math.exp(args.sigma ** 2 / 2)
    settings = [Setting.parse(x) for x in args.runs.split(",")]
    results = [run(s, ids, args.median, args.sigma, args.partitions, args.trace) for s in settings]
    print(f"{len(ids)} videos, {args.partitions} partitions; latency lognormal median {args.median:.2f}s "
          f"sigma {args.sigma:.2f} (mean {mean:.3f}s)")
    print(f"{'setting':>13} {'chunks':>6} {'calls':>5} {'calls/s':>7} {'ceiling':>7} {'ratio':>5} "
          f"{'ideal':>5} {'run calls/s':>11} {'run ratio':>9} {'failed':>6} {'max in flight':>13} "
          f"{'mean in flight':>14} {'max/60s':>7} {'ramp-up s':>9} {'tail s':>6} {'run s':>6}")
    for r in results:
        s = r.setting
        ceiling = min(s.limit / mean, s.rpm / 60 if s.rpm else math.inf) * s.processes
        # Only where the concurrency limit binds: an RPM limit paces calls, nothing piles up at the end.
        ideal = f"{ideal_ratio(r.calls, s.limit * s.processes, median=args.median, sigma=args.sigma):.2f}" \
            if ceiling == s.limit * s.processes / mean else "-"
        rate, run_rate = r.calls / r.call_window, r.calls / r.run
        per_minute = f"{r.max_per_minute}/{s.rpm}" if s.rpm else f"{r.max_per_minute}"
        print(f"{s!s:>13} {r.chunks:>6} {r.calls:>5} {rate:>7.2f} {ceiling:>7.2f} {rate / ceiling:>5.2f} "
              f"{ideal:>5} {run_rate:>11.2f} {run_rate / ceiling:>9.2f} {r.failed:>6} "
              f"{f'{r.max_in_flight}/{s.limit * s.processes}':>13} {r.mean_in_flight:>14.1f} {per_minute:>7} "
              f"{r.ramp_up:>9.1f} {r.tail:>6.1f} {r.run:>6.1f}")
    by = {r.setting: r for r in results}
    for s in settings:
        one = by.get(Setting(s.limit, s.rpm, 1))
        if s.processes > 1 and one is not None:
            two = by[s]
            print(f"{s.processes} extract processes vs 1 at limit {s.limit}: calls/s "
                  f"{(two.calls / two.call_window) / (one.calls / one.call_window):.2f}x, "
                  f"whole run {(two.calls / two.run) / (one.calls / one.run):.2f}x")


if __name__ == "__main__":
    main()
