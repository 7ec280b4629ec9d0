"""Running stages: one stage per process (as in Kubernetes), or several under a supervisor.

``graphrag-streams worker --stages fetch`` runs the fetch app in this process.
``--stages all`` (development) starts one child process per stage, restarts one that
dies (with backoff, as Kubernetes restarts a pod) and stops them all together: each
stage keeps its own consumer group, metrics port and failure domain, just as it has in
a cluster. Children are forks of the supervisor, so they start with its imports and
settings already loaded (`ps` shows each as ``graphrag-streams worker --stages <stage>``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import faust
from setproctitle import setproctitle

from agents.runtime import StageRuntime, check_faust_connection, make_app
from agents.stall import StallWatch, broker_offsets
from streams import __version__
from streams.instruments.metrics import WORKER_INFO, WORKER_RESTARTS
from streams.kafka.clients import KafkaConnectionError, TopicsNotReady, check_topics
from streams.kafka.topics import ALL_APPS, Stage, group_id, topics_for
from streams.monitoring.health import Health, kafka_check, mongo_check, serve
from streams.settings import Settings

log = logging.getLogger("graphrag.worker")

_MODULES = {
    Stage.FETCH: "agents.fetch",
    Stage.CHUNK: "agents.chunk",
    Stage.EXTRACT: "agents.extract",
    Stage.ROUTE: "agents.route",
    Stage.RESOLVE: "agents.resolve",
    Stage.ASSEMBLE: "agents.assemble",
    Stage.SINK: "agents.sink",
    Stage.COMMUNITIES: "agents.communities",
}

#: A stage's exit status when it cannot start for a reason a restart does not fix (a
#: missing topic, a bad configuration): the supervisor stops instead of restarting it.
EXIT_NOT_STARTABLE = 2
#: ... when the brokers did not answer at start (they may be starting): restarted with backoff.
EXIT_BROKER_UNREACHABLE = 1
#: Set by the supervisor for a restarted child: how many times it restarted that stage.
RESTARTS_ENV = "GRAPHRAG_WORKER_RESTARTS"


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


def start_health(stage: Stage, settings: Settings, app: faust.App) -> Health:
    """The process's liveness (see :func:`keep_beating`) and, unless monitoring is off,
    /metrics, /livez and /readyz on monitoring.metrics_port."""
    health = Health(stale_after=settings.graphrag.stall_seconds)
    mon = settings.monitoring
    if not settings.graphrag.enable_monitoring or mon.metrics_port == 0:
        return health
    health.checks["kafka"] = kafka_check(settings)
    if uses_mongo(stage, settings):
        health.checks["mongodb"] = mongo_check(settings)
    serve(health, mon.metrics_host, mon.metrics_port)
    WORKER_INFO.info({"stage": stage.value, "group": group_id(settings, stage),
                      "environment": settings.environment, "version": __version__})
    WORKER_RESTARTS.labels(stage.value).set(int(os.environ.get(RESTARTS_ENV, "0") or 0))
    return health


def keep_beating(loop: asyncio.AbstractEventLoop, health: Health, interval: float = 2.0) -> None:
    """Refresh the heartbeat from the event loop itself, from its first turn on.

    Not a Faust timer: those start only once table recovery has completed, so a slow
    first rebalance would look like a dead loop.
    """

    def beat() -> None:
        health.beat()
        loop.call_later(interval, beat)

    loop.call_soon(beat)


T = TypeVar("T")


def _from_consumer(app: faust.App, read: Callable[[Any], list[T]]) -> Callable[[], list[T]]:
    """A reader of the app's consumer state for the stall thread: nothing before the
    consumer exists (never create it from that thread), a retry when a set changes under us."""

    def safe_read() -> list[T]:
        consumer = getattr(app, "_consumer", None)
        if consumer is None:
            return []
        for _ in range(3):
            try:
                return read(consumer)
            except RuntimeError:  # "Set changed size during iteration": a rebalance, an ack
                continue
        return []

    return safe_read


def assigned_inputs(app: faust.App, stage: Stage, settings: Settings) -> Callable[[], list[tuple[str, int]]]:
    """The input partitions assigned to this process right now."""
    inputs = set(topics_for(settings).inputs(stage))
    return _from_consumer(app, lambda c: [(tp.topic, tp.partition) for tp in list(c.assignment())
                                          if tp.topic in inputs])


def in_flight_messages(app: faust.App) -> Callable[[], list[tuple[str, int, int]]]:
    """(topic, partition, offset) of the messages this app's agents hold unacknowledged."""
    return _from_consumer(app, lambda c: [(m.tp.topic, m.tp.partition, m.offset) for m in list(c.unacked)
                                          if not m.acked])


def run_stage(stage: Stage, settings: Settings) -> int:
    """Run one stage in this process until SIGINT/SIGTERM (or a stall: agents/stall.py)."""
    try:
        check_topics(settings, stage)  # librdkafka: connects (TLS, SASL) and checks the topics
        check_faust_connection(settings)  # aiokafka: the same credentials the way Faust uses them
    except TopicsNotReady as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTABLE
    except KafkaConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        # Refused credentials will be refused again; a broker that did not answer may be
        # starting: exit as a failure, so that the stage is restarted (with backoff).
        return EXIT_NOT_STARTABLE if exc.refused else EXIT_BROKER_UNREACHABLE
    try:
        app = build_app(stage, settings)
    except ValueError as exc:  # a setting the process cannot honour (an extractor not installed)
        print(f"error: stage {stage.value}: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTABLE
    health = start_health(stage, settings, app)
    if topics_for(settings).inputs(stage):
        StallWatch(stage.value, settings.graphrag.stall_seconds, assigned_inputs(app, stage, settings),
                   broker_offsets(settings, group_id(settings, stage)), health,
                   in_flight=in_flight_messages(app)).start()
    level = {"DEBUG": "info", "INFO": "info", "WARNING": "warning", "ERROR": "error"}[settings.log_level]
    worker = faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    keep_beating(worker.loop, health)
    log.info("stage %s starting (group %s)", stage.value, app.conf.id)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


@dataclass
class Backoff:
    """Restart delays for a stage that keeps dying: 1 s, 2 s, 4 s ... up to ``cap``; reset
    once a run lasted ``healthy_after`` seconds."""

    base: float = 1.0
    cap: float = 60.0
    healthy_after: float = 120.0
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.healthy_after:
            self.failures = 0
        delay = min(self.cap, self.base * 2.0 ** self.failures)
        self.failures += 1
        return delay


#: How the supervisor starts a stage: a fork of itself. An exec'd ``python -m streams.cli
#: worker --stages <stage>`` spent about a second of CPU per stage importing again what the
#: supervisor has imported (faust, aiohttp, pymongo, the stages); a fork starts with it. The
#: supervisor runs no thread and holds no client when it forks (check_topics' admin client
#: is gone by then), so the child inherits nothing half-done.
_FORK = multiprocessing.get_context("fork")


def _run_supervised(stage: Stage, settings: Settings, restarts: int) -> None:
    """A supervised stage's process: the default signal handlers back (the supervisor's
    only set its own flag), its stage in its title, then the stage until it stops."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ[RESTARTS_ENV] = str(restarts)
    setproctitle(f"graphrag-streams worker --stages {stage.value}")
    sys.exit(run_stage(stage, settings))


@dataclass
class Child:
    stage: Stage
    settings: Settings
    proc: BaseProcess | None = None
    started: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)

    def start(self) -> None:
        self.proc = _FORK.Process(target=_run_supervised, args=(self.stage, self.settings, self.restarts),
                                  name=f"stage-{self.stage.value}")
        self.proc.start()
        self.started, self.restart_at = time.monotonic(), None


def supervise(stages: Sequence[Stage], settings: Settings, *, poll: float = 0.5) -> int:
    """Run each stage in a child process, restarting one that dies (with backoff).

    Children get metrics ports ``monitoring.metrics_port``, ``+ 1``, ... in pipeline order
    (0 keeps their endpoints off). A child that exits with :data:`EXIT_NOT_STARTABLE` (a
    missing topic, a bad configuration) stops them all: a restart would not help.
    SIGTERM/SIGINT stop every child.
    """
    metrics_port = settings.monitoring.metrics_port
    children: list[Child] = []
    for i, stage in enumerate(stages):
        port = metrics_port + i if metrics_port else 0
        own = settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update={"metrics_port": port})})
        child = Child(stage, own)
        child.start()
        children.append(child)
        log.info("started stage %s (pid %d, metrics port %s)", stage.value, child.proc.pid if child.proc else 0,
                 port or "off")

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while not stopping:
            now = time.monotonic()
            for c in children:
                if c.proc is not None and not c.proc.is_alive():
                    rc = c.proc.exitcode
                    c.proc.close()
                    c.proc = None
                    if rc == EXIT_NOT_STARTABLE:
                        print(f"graphrag-streams: stage {c.stage.value} cannot start (exit {rc}); "
                              "stopping the others", file=sys.stderr)
                        code = rc
                        stopping = True
                        break
                    delay = c.backoff.next_delay(now - c.started)
                    c.restart_at = now + delay
                    print(f"graphrag-streams: stage {c.stage.value} exited with code {rc}; "
                          f"restarting it in {delay:.0f}s", file=sys.stderr)
                elif c.proc is None and c.restart_at is not None and now >= c.restart_at:
                    c.restarts += 1
                    c.start()
                    log.info("restarted stage %s (pid %d, restart %d)", c.stage.value,
                             c.proc.pid if c.proc else 0, c.restarts)
            if not stopping:
                time.sleep(poll)
    finally:
        running = [c.proc for c in children if c.proc is not None and c.proc.is_alive()]
        for p in running:
            p.terminate()  # SIGTERM: each stage stops its Faust worker cleanly
        deadline = time.monotonic() + 30
        for p in running:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
    return code
