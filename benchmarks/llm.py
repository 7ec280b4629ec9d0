"""LLM extraction against the local OpenAI-compatible server (tests/fakes/fake_openai.py).

For two concurrency limits, side by side: the time to extract a set of corpus videos when
every call takes --delay seconds, the calls made, the maximum calls in flight seen by the
server; then a re-run of the same videos (answers from the cache: the calls it makes).

    python benchmarks/llm.py [--videos 8] [--delay 0.2] [--limits 1,4]
"""

from __future__ import annotations

import argparse
import time

from _common import CORPUS, deployment, manifest

from streams.store import GraphStore
from tests.fakes.fake_openai import FakeOpenAI
from tests.support import wait_quiescent, wait_until


def run(limit: int, ids: list[str], delay: float) -> dict[str, float]:
    fake = FakeOpenAI().start()
    fake.state.delay = delay
    d = deployment({
        "openai": {"api_key": "sk-bench", "base_url": fake.base_url, "model": "gpt-bench"},
        "graphrag": {"max_concurrent_operations": limit, "extraction": {"extractor": "llm"},
                     "transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                     "communities": {"interval_seconds": 86400}},
    })
    try:
        d.cli("topics", "create")
        worker = d.start_worker("all")
        store = GraphStore.from_settings(d.settings)
        time.sleep(8)
        t0 = time.monotonic()
        d.cli("submit", *ids)
        wait_until(lambda: len(store.videos.find(ids)) == len(ids)
                   and all(v["status"] == "done" for v in store.videos.find(ids)), timeout=1800, interval=1)
        wall = time.monotonic() - t0
        wait_quiescent(d.settings, workers=[worker])
        first = fake.stats()
        d.cli("submit", *ids)
        wait_quiescent(d.settings, workers=[worker])
        return {"limit": limit, "wall": wall, "chunks": store.db.chunks.count_documents({}),
                "calls": first["requests"], "max_in_flight": first["max_in_flight"],
                "rerun_calls": fake.stats()["requests"] - first["requests"]}
    finally:
        d.cleanup()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the fake API takes per call")
    parser.add_argument("--limits", default="1,4", help="max_concurrent_operations values to compare")
    args = parser.parse_args()
    ids = [e["video_id"] for e in manifest() if e["channel"] == "Kurzgesagt"][: args.videos]
    rows = [run(int(x), ids, args.delay) for x in args.limits.split(",")]
    print(f"{len(ids)} videos, fake API latency {args.delay:.2f}s per call")
    print(f"{'limit':>5} {'chunks':>7} {'calls':>6} {'max in flight':>14} {'wall s':>7} {'chunks/s':>9} "
          f"{'re-run calls':>13}")
    for r in rows:
        print(f"{r['limit']:>5} {r['chunks']:>7} {r['calls']:>6} {r['max_in_flight']:>14} {r['wall']:>7.1f} "
              f"{r['chunks'] / r['wall']:>9.2f} {r['rerun_calls']:>13}")


if __name__ == "__main__":
    main()
