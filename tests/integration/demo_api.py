"""The demo graph (the sample videos through the whole pipeline, then a community run) with
`graphrag-streams serve` in front of it: what the API and browser tests read."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from streams.store import GraphStore
from tests.support import ROOT, Deployment, Services, produce_raw, wait_until

SAMPLES = ROOT / "samples" / "transcripts"
# One undecodable request, so the pipeline page has a dead letter to count.
BAD_REQUEST = b"{not json"


@dataclass
class DemoApi:
    deployment: Deployment
    store: GraphStore
    url: str
    token: str
    log_path: Path
    video_ids: list[str]

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(self.url + path, params=params or None, timeout=30, follow_redirects=False)

    def most_mentioned(self) -> dict[str, Any]:
        return next(iter(self.store.coll("entities").find().sort([("mention_count", -1), ("_id", 1)]).limit(1)))

    def most_connected(self) -> dict[str, Any]:
        """The entity with the most relations (so neighbourhoods are not trivial)."""
        eid, _ = max(self.store.reads.entity_degrees().items(), key=lambda kv: (kv[1], kv[0]))
        doc = self.store.coll("entities").find_one({"_id": eid})
        assert doc is not None
        return doc

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def demo_api(services: Services, tmp: Path) -> Iterator[DemoApi]:
    token = "tok-" + secrets.token_hex(12)
    d = Deployment(services, tmp, {"graphrag": {"transcripts": {"local_dirs": [str(SAMPLES)], "source": "local"},
                                                "extraction": {"offline_extractor": "spacy"},
                                                "communities": {"interval_seconds": 86400}},
                                   "api": {"token": token}})
    ids = sorted(p.stem for p in SAMPLES.iterdir() if p.suffix in (".srt", ".vtt", ".json"))
    server: subprocess.Popen[bytes] | None = None
    log_path = tmp / "serve.log"
    with contextlib.ExitStack() as stack:
        stack.callback(d.cleanup)
        stack.callback(lambda: _stop(server))
        worker = d.start_worker("all")
        produce_raw(d.settings, f"{d.settings.kafka.topic_prefix}videos.requested", [(None, BAD_REQUEST)])
        d.cli("submit", "--transcripts", str(SAMPLES))
        d.cli("wait", *ids, "--timeout", "600", timeout=660)
        d.cli("communities", "run", timeout=600)
        worker.stop()
        port = free_port()
        log = stack.enter_context(open(log_path, "wb"))
        server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--port", str(port)], cwd=ROOT,
                                  env=d.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if server is not None and server.poll() is not None:
                raise AssertionError(f"serve exited {server.returncode}:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            return False

        wait_until(ready, timeout=60, interval=0.3, message="serve to answer /readyz")
        store = GraphStore.from_settings(d.settings)
        stack.callback(store.close)
        yield DemoApi(d, store, url, token, log_path, ids)


def _stop(server: subprocess.Popen[bytes] | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
