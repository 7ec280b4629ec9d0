"""Running stages: one stage per process (as in Kubernetes), or several under a supervisor.

``graphrag-streams worker --stages fetch`` runs the fetch app in this process.
``--stages all`` (development) starts one child process per stage and stops them all
together: each stage keeps its own consumer group, metrics port and failure domain, just
as it has in a cluster.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

import faust

from agents.runtime import StageRuntime, make_app
from streams import __version__
from streams.config import Settings
from streams.health import Health, kafka_check, mongo_check, serve
from streams.kafka import ensure_topics
from streams.metrics import WORKER_INFO
from streams.topics import ALL_APPS, Stage, group_id

log = logging.getLogger("graphrag.worker")

_MODULES = {
    Stage.FETCH: "agents.fetch",
    Stage.CHUNK: "agents.chunk",
    Stage.EXTRACT: "agents.extract",
    Stage.RESOLVE: "agents.resolve",
    Stage.SINK: "agents.sink",
    Stage.COMMUNITIES: "agents.communities",
}


def parse_stages(spec: str) -> list[Stage]:
    """``all`` or a comma-separated list of stage names, in pipeline order, no duplicates."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError("no stage given")
    if names == ["all"]:
        return list(ALL_APPS)
    unknown = [n for n in names if n not in {s.value for s in Stage}]
    if unknown:
        raise ValueError(f"unknown stage(s): {', '.join(unknown)}; choose from all, "
                         + ", ".join(s.value for s in ALL_APPS))
    return [s for s in ALL_APPS if s.value in names]


def build_app(stage: Stage, settings: Settings) -> faust.App:
    app = make_app(stage, settings)
    rt = StageRuntime(stage, settings, app)
    import_module(_MODULES[stage]).register(rt)
    return app


def uses_mongo(stage: Stage, settings: Settings) -> bool:
    """Apps whose work needs MongoDB: sink, communities, and extract when it caches LLM answers."""
    return stage in (Stage.SINK, Stage.COMMUNITIES) or (
        stage is Stage.EXTRACT and settings.llm_enabled and settings.graphrag.enable_caching)


def start_health_endpoint(stage: Stage, settings: Settings, app: faust.App) -> Health | None:
    """/metrics, /livez, /readyz on monitoring.metrics_port; the Faust loop keeps it alive."""
    mon = settings.monitoring
    if not settings.graphrag.enable_monitoring or mon.metrics_port == 0:
        return None
    checks = {"kafka": kafka_check(settings)}
    if uses_mongo(stage, settings):
        checks["mongodb"] = mongo_check(settings)
    health = Health(checks)
    serve(health, mon.metrics_host, mon.metrics_port)
    WORKER_INFO.info({"stage": stage.value, "group": group_id(settings, stage),
                      "environment": settings.environment, "version": __version__})

    async def heartbeat() -> None:
        health.beat()

    app.timer(interval=5.0)(heartbeat)
    return health


def run_stage(stage: Stage, settings: Settings) -> int:
    """Run one stage in this process until SIGINT/SIGTERM."""
    # Faust ignores a source topic that is missing when it starts, for good.
    ensure_topics(settings)
    app = build_app(stage, settings)
    start_health_endpoint(stage, settings, app)
    level = {"DEBUG": "info", "INFO": "info", "WARNING": "warning", "ERROR": "error"}[settings.log_level]
    worker = faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    log.info("stage %s starting (group %s)", stage.value, app.conf.id)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def supervise(stages: Sequence[Stage], config_path: Path | None, *, metrics_port: int = 0,
              poll: float = 0.5) -> int:
    """Run each stage in a child process; if one exits, stop the others and report it.

    Children get metrics ports ``metrics_port``, ``metrics_port + 1``, ... in pipeline
    order (0 keeps their endpoints off).
    """
    children: dict[Stage, subprocess.Popen[bytes]] = {}
    for i, stage in enumerate(stages):
        cmd = [sys.executable, "-m", "streams.cli"]
        if config_path:
            cmd += ["--config", str(config_path)]
        port = metrics_port + i if metrics_port else 0
        cmd += ["worker", "--stages", stage.value, "--metrics-port", str(port)]
        children[stage] = subprocess.Popen(cmd, env=dict(os.environ))
        log.info("started stage %s (pid %d, metrics port %s)", stage.value, children[stage].pid, port or "off")

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while not stopping:
            exited = [(s, p.returncode) for s, p in children.items() if p.poll() is not None]
            if exited:
                stage, rc = exited[0]
                print(f"graphrag-streams: stage {stage.value} exited with code {rc}; stopping the others",
                      file=sys.stderr)
                code = rc or 1
                break
            time.sleep(poll)
    finally:
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in children.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
    return code
