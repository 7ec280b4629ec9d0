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
from streams.config import Settings
from streams.kafka import ensure_topics
from streams.topics import PIPELINE, Stage

log = logging.getLogger("graphrag.worker")

_MODULES = {
    Stage.FETCH: "agents.fetch",
    Stage.CHUNK: "agents.chunk",
    Stage.EXTRACT: "agents.extract",
    Stage.RESOLVE: "agents.resolve",
    Stage.SINK: "agents.sink",
}


def parse_stages(spec: str) -> list[Stage]:
    """``all`` or a comma-separated list of stage names, in pipeline order, no duplicates."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError("no stage given")
    if names == ["all"]:
        return list(PIPELINE)
    unknown = [n for n in names if n not in {s.value for s in Stage}]
    if unknown:
        raise ValueError(f"unknown stage(s): {', '.join(unknown)}; choose from all, "
                         + ", ".join(s.value for s in PIPELINE))
    return [s for s in PIPELINE if s.value in names]


def build_app(stage: Stage, settings: Settings) -> faust.App:
    app = make_app(stage, settings)
    rt = StageRuntime(stage, settings, app)
    import_module(_MODULES[stage]).register(rt)
    return app


def run_stage(stage: Stage, settings: Settings) -> int:
    """Run one stage in this process until SIGINT/SIGTERM."""
    # Faust ignores a source topic that is missing when it starts, for good.
    ensure_topics(settings)
    app = build_app(stage, settings)
    level = {"DEBUG": "info", "INFO": "info", "WARNING": "warning", "ERROR": "error"}[settings.log_level]
    worker = faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    log.info("stage %s starting (group %s)", stage.value, app.conf.id)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def supervise(stages: Sequence[Stage], config_path: Path | None, *, extra_env: dict[str, str] | None = None,
              poll: float = 0.5) -> int:
    """Run each stage in a child process; if one exits, stop the others and report it."""
    env = {**os.environ, **(extra_env or {})}
    base_port = int(env.get("GRAPHRAG_METRICS_PORT", "9400"))
    children: dict[Stage, subprocess.Popen[bytes]] = {}
    for i, stage in enumerate(stages):
        cmd = [sys.executable, "-m", "streams.cli"]
        if config_path:
            cmd += ["--config", str(config_path)]
        cmd += ["worker", "--stages", stage.value]
        # Each child gets its own metrics port: base, base+1, ...
        child_env = {**env, "GRAPHRAG_METRICS_PORT": str(base_port + i), "GRAPHRAG_SUPERVISED": "1"}
        children[stage] = subprocess.Popen(cmd, env=child_env)
        log.info("started stage %s (pid %d)", stage.value, children[stage].pid)

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
