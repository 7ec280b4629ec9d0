"""HTTP API latency per endpoint on the corpus graph: p50/p95 over many requests, and the
same reads in-process from the store and from the server's in-memory snapshot, side by side.

The whole corpus goes through the real pipeline (offline extractor) into a fresh database,
a community run follows, then `graphrag-streams serve` answers requests from one client
over loopback (keep-alive). Each endpoint is asked --requests times with varying
arguments (different entities, communities, videos, questions) after a warm-up.

    .venv/bin/python benchmarks/api.py [--requests 50] [--query-requests 10] [--keep NAME]

--keep NAME builds the graph into database NAME once and keeps it; later runs with the same
NAME measure that graph again without rebuilding it.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from _common import CORPUS, ROOT, deployment, index_corpus, percentile

from streams.api import reads
from streams.query.snapshot import load_snapshot
from streams.store import GraphStore
from tests.integration.demo_api import free_port
from tests.support import wait_quiescent, wait_until

TARGET_P95_MS = 300  # entity, community and video endpoints (the target)


def _build_graph(d: Any) -> GraphStore:
    store, worker, ids, wall = index_corpus(d)
    wait_quiescent(d.settings, workers=[worker])
    worker.stop()
    t1 = time.monotonic()
    d.cli("communities", "run", timeout=1800)
    counts = store.reads.counts()
    print(f"corpus graph: {len(ids)} videos in {wall:.0f}s, community run {time.monotonic() - t1:.0f}s; "
          f"{counts['chunks']} chunks, {counts['entities']} entities, {counts['relations']} relations, "
          f"{store.coll('communities').count_documents({})} communities")
    return store


def _cases(store: GraphStore, n: int) -> dict[str, Callable[[int], str]]:
    """Endpoint label -> request path for the i-th request (arguments vary with i)."""
    entities = [e["_id"] for e in store.coll("entities").find({}, {"_id": 1}).sort("mention_count", -1).limit(n)]
    names = [e["name"] for e in store.coll("entities").find({"_id": {"$in": entities}}, {"name": 1})]
    communities = [c["_id"] for c in store.communities.find(limit=n)]
    videos = [v["_id"] for v in store.videos.find()]
    questions = [f"What about {name}?" for name in names]

    def pick(items: list[str]) -> Callable[[int], str]:
        return lambda i: items[i % len(items)]

    e, c, v, q, s = pick(entities), pick(communities), pick(videos), pick(questions), pick(names)
    return {
        "GET /api/entities?search=": lambda i: "/api/entities?" + str(httpx.QueryParams({"search": s(i)[:6]})),
        "GET /api/entities/{id}": lambda i: f"/api/entities/{e(i)}",
        "GET /api/entities/{id}/neighbourhood": lambda i: f"/api/entities/{e(i)}/neighbourhood",
        "GET /api/communities": lambda i: "/api/communities?limit=50",
        "GET /api/communities/{id}": lambda i: f"/api/communities/{c(i)}",
        "GET /api/videos": lambda i: "/api/videos",
        "GET /api/videos/{id}": lambda i: f"/api/videos/{v(i)}",
        "GET /api/query local": lambda i: "/api/query?" + str(httpx.QueryParams({"q": q(i), "mode": "local"})),
        "GET /api/query global": lambda i: "/api/query?" + str(httpx.QueryParams({"q": q(i), "mode": "global"})),
        "GET /api/graph/export json": lambda i: "/api/graph/export?format=json",
    }


def _store_vs_snapshot(store: GraphStore, n: int) -> None:
    """The same reads in-process, from the store (a scan per query on FerretDB) and from the
    in-memory snapshot the server keeps: why the server keeps one."""
    t = time.perf_counter()
    snap = load_snapshot(store)
    print(f"\nsnapshot of the graph loaded in {(time.perf_counter() - t) * 1000:.0f} ms; in-process reads, p50 ms:")
    entities = [e["_id"] for e in store.coll("entities").find({}, {"_id": 1}).sort("mention_count", -1).limit(n)]
    communities = [c["_id"] for c in store.communities.find(limit=n)]
    videos = [v["_id"] for v in store.videos.find()][:n]
    cases: list[tuple[str, list[str], Callable[..., Any]]] = [
        ("entity detail", entities, reads.entity_detail), ("neighbourhood", entities, reads.neighbourhood),
        ("community detail", communities, reads.community_detail), ("video detail", videos, reads.video_detail)]
    print(f"  {'read':<18} {'store':>9} {'snapshot':>9} {'ratio':>7}")
    for label, ids, read in cases:
        p50 = []
        for source in (None, snap):
            times = []
            for i in ids:
                t = time.perf_counter()
                read(store, source, i)
                times.append((time.perf_counter() - t) * 1000)
            p50.append(percentile(times, 50))
        print(f"  {label:<18} {p50[0]:>9.1f} {p50[1]:>9.1f} {p50[0] / p50[1]:>6.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50, help="requests per endpoint (default 50)")
    parser.add_argument("--query-requests", type=int, default=10,
                        help="requests for each query mode (default 10; answers take seconds today)")
    parser.add_argument("--keep", metavar="NAME", help="build into (or reuse) database NAME and keep it")
    args = parser.parse_args()
    d = deployment({"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                                 "communities": {"interval_seconds": 86400}}}, name=args.keep)
    server: subprocess.Popen[bytes] | None = None
    try:
        store = GraphStore.from_settings(d.settings)
        if args.keep and store.coll("communities").estimated_document_count():
            counts = store.reads.counts()
            print(f"reusing the kept graph {args.keep}: {counts['entities']} entities, "
                  f"{counts['relations']} relations")
        else:
            d.create_topics()
            store = _build_graph(d)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--port", str(port)], cwd=ROOT,
                                  env={**d.env, "GRAPHRAG_LOG_LEVEL": "WARNING"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            return False

        _store_vs_snapshot(store, 20)
        wait_until(ready, timeout=60, interval=0.2, message="serve")
        print(f"\n{'endpoint':<40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target p95 < {TARGET_P95_MS} ms")
        with httpx.Client(base_url=url, timeout=60) as client:
            for label, path in _cases(store, args.requests).items():
                for i in range(3):  # warm-up
                    client.get(path(i)).raise_for_status()
                times = []
                for i in range(args.query_requests if "/api/query" in label else args.requests):
                    t = time.perf_counter()
                    client.get(path(i)).raise_for_status()
                    times.append((time.perf_counter() - t) * 1000)
                p95 = percentile(times, 95)
                targeted = any(k in label for k in ("/api/entities/", "/api/communities", "/api/videos"))
                verdict = ("met" if p95 < TARGET_P95_MS else "MISSED") if targeted else "-"
                print(f"{label:<40} {percentile(times, 50):>8.1f} {p95:>8.1f} {max(times):>8.1f}  {verdict}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        if args.keep:
            d.stop_workers()
        else:
            d.cleanup()


if __name__ == "__main__":
    main()
