"""The HTTP endpoint every process serves: /metrics, /livez and /readyz.

Liveness means the process's event loop is still turning (a heartbeat it must refresh)
and the process has not found itself stalled (agents/stall.py);
readiness means its dependencies answer right now (Kafka, and MongoDB where the process
writes to it). Checks run in the HTTP thread with short timeouts and are cached for a
few seconds, so a probe never waits on a slow dependency for long.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streams.kafka.clients import make_admin
from streams.settings import Settings
from streams.store.mongo import connect

log = logging.getLogger(__name__)

Check = Callable[[], bool]


def kafka_check(settings: Settings, timeout: float = 3.0) -> Check:
    admin = make_admin(settings)

    def check() -> bool:
        try:
            return bool(admin.list_topics(timeout=timeout).brokers)
        except Exception:
            return False

    return check


def mongo_check(settings: Settings) -> Check:
    client = connect(settings, app_name="graphrag-health")

    def check() -> bool:
        try:
            client.admin.command("ping")
            return True
        except Exception:
            return False

    return check


@dataclass
class Health:
    """Liveness heartbeat and readiness checks of one process."""

    checks: dict[str, Check] = field(default_factory=dict)
    stale_after: float = 60.0
    cache_seconds: float = 5.0
    _beat: float = field(default_factory=time.monotonic)
    _cached: tuple[float, dict[str, bool]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    _failed: str | None = None

    @property
    def failure(self) -> str | None:
        return self._failed

    def beat(self) -> None:
        self._beat = time.monotonic()

    @property
    def last_beat(self) -> float:
        return self._beat

    def fail(self, reason: str) -> None:
        """Mark the process dead for good (it is about to exit: a stall, see agents/stall.py)."""
        self._failed = reason

    def alive(self) -> bool:
        return self._failed is None and time.monotonic() - self._beat < self.stale_after

    def readiness(self) -> dict[str, bool]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.cache_seconds:
                self._cached = (now, {name: check() for name, check in self.checks.items()})
            return dict(self._cached[1])


class _Handler(BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/livez":
            ok = self.health.alive()
            body: dict[str, Any] = {"alive": ok}
            if self.health.failure:
                body["reason"] = self.health.failure
            self._json(200 if ok else 503, body)
        elif path == "/readyz":
            status = self.health.readiness()
            ok = all(status.values())
            self._json(200 if ok else 503, {"ready": ok, "checks": status})
        else:
            self._json(404, {"error": "not found", "paths": ["/metrics", "/livez", "/readyz"]})

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # probes every few seconds would flood the log


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (``server_address`` has the port)."""
    handler = type("HealthHandler", (_Handler,), {"health": health})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http-metrics", daemon=True).start()
    log.info("serving /metrics, /livez, /readyz on %s:%d", host, server.server_address[1])
    return server
