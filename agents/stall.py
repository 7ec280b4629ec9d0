"""Stall detection: a stuck app fails its liveness probe and exits, so that it is restarted.

faust-streaming 0.15 can end up with an input partition that has lag and never moves
again (records fetched but never delivered to the agent, an agent that crashes on every
message, an event loop starved by a metadata loop: ``../shared/notes/faust-streaming.md``).
Repairing that from the outside (seeking behind Faust's read offset) makes Faust drop the
re-fetched records, so this module does not repair: it detects and lets the process die.

The check runs in its own thread and asks the broker, not Faust, for the truth: the
group's committed offsets and the log-end offsets of the partitions assigned to this
process. A partition with lag whose committed offset has not moved for
``graphrag.stall_seconds``, while the message at that offset is not being handled, is
stalled; so is an event loop whose heartbeat stopped for as long. (A handler that hangs
on its message is bounded by its own timeouts: LLM and database calls, the producer's
request timeout.) A deliberate pause (the LLM circuit is open, the database is retried:
:mod:`streams.instruments.waits`) is not a stall. On a stall the process counts it, fails ``/livez``
and exits with :data:`STALL_EXIT_CODE`; ``worker --stages all`` restarts the stage and
Kubernetes restarts the pod. Work that was not committed is redelivered, which every
stage tolerates (they are idempotent).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from streams.instruments import waits
from streams.instruments.metrics import STALLED_PARTITIONS, STALLS
from streams.kafka.clients import make_admin
from streams.monitoring.health import Health
from streams.monitoring.lag import measure_lag
from streams.settings import Settings

log = logging.getLogger("graphrag.stall")

#: Exit status of a process that stopped itself because it stalled (EX_SOFTWARE).
STALL_EXIT_CODE = 70

Partition = tuple[str, int]


@dataclass(frozen=True)
class Offsets:
    """What the broker says of one input partition at one check."""

    committed: int  # the group's next offset to handle (the log start when nothing is committed)
    end: int        # the log-end offset

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass
class StallDetector:
    """Pure bookkeeping: which partitions had lag and no progress for ``stall_seconds``."""

    stall_seconds: float
    _since: dict[Partition, tuple[int, float]] = field(default_factory=dict)

    def observe(self, now: float, offsets: Mapping[Partition, Offsets], *, paused: bool = False,
                busy: Iterable[Partition] = ()) -> list[Partition]:
        """Record one check; returns the stalled partitions (sorted).

        A partition's clock starts when it was last seen without lag, with a new committed
        offset, newly assigned, with its head message being handled right now (``busy``:
        a slow batch or call is work, not a stall), or while the process was paused on
        purpose.
        """
        stalled = []
        working = set(busy)
        for tp, off in offsets.items():
            seen = self._since.get(tp)
            if paused or off.lag == 0 or tp in working or seen is None or seen[0] != off.committed:
                self._since[tp] = (off.committed, now)
            elif now - seen[1] >= self.stall_seconds:
                stalled.append(tp)
        for tp in set(self._since) - set(offsets):
            del self._since[tp]
        return sorted(stalled)


Assignment = Callable[[], Iterable[Partition]]
OffsetsReader = Callable[[list[Partition]], Mapping[Partition, Offsets]]
#: (topic, partition, offset) of every message delivered to an agent and not yet acknowledged.
InFlight = Callable[[], Iterable[tuple[str, int, int]]]


def _nothing_in_flight() -> list[tuple[str, int, int]]:
    return []


def broker_offsets(settings: Settings, group: str) -> OffsetsReader:
    """Committed and log-end offsets of some of a group's partitions, from the admin API."""
    admin = make_admin(settings)  # one client for every check

    def read(partitions: list[Partition]) -> dict[Partition, Offsets]:
        topics = tuple(sorted({t for t, _ in partitions}))
        wanted = set(partitions)
        rows = measure_lag(settings, {group: topics}, admin=admin)
        return {(r.topic, r.partition): Offsets(r.log_end - r.lag, r.log_end)
                for r in rows if (r.topic, r.partition) in wanted}

    return read


class StallWatch:
    """The thread that checks one app every few seconds and stops the process on a stall."""

    def __init__(self, stage: str, stall_seconds: float, assignment: Assignment, offsets: OffsetsReader,
                 health: Health | None = None, *, in_flight: InFlight = _nothing_in_flight,
                 interval: float | None = None, exit_delay: float = 20.0,
                 exit: Callable[[int], None] = os._exit) -> None:
        self.stage = stage
        self.detector = StallDetector(stall_seconds)
        self.assignment, self.offsets, self.health, self.in_flight = assignment, offsets, health, in_flight
        self.interval = interval if interval is not None else max(1.0, min(10.0, stall_seconds / 6))
        self.exit_delay, self._exit = exit_delay, exit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StallWatch:
        self._thread = threading.Thread(target=self._run, name=f"{self.stage}-stall-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reason = self.check(time.monotonic())
            except Exception as exc:  # a broker hiccup or a rebalance: check again next time
                log.info("stall check skipped: %r", exc)
                continue
            if reason:
                self._fail(reason)
                return

    def check(self, now: float) -> str | None:
        """One check; returns why the process is stalled, or None."""
        if self.health is not None and not self.health.alive():
            return f"the event loop has not turned for {time.monotonic() - self.health.last_beat:.0f}s"
        partitions = sorted(set(self.assignment()))
        offsets = self.offsets(partitions) if partitions else {}
        paused_for = waits.active()
        handling = set(self.in_flight())
        busy = [tp for tp, off in offsets.items() if (tp[0], tp[1], off.committed) in handling]
        stalled = self.detector.observe(now, offsets, paused=bool(paused_for), busy=busy)
        STALLED_PARTITIONS.labels(self.stage).set(len(stalled))
        if not stalled:
            return None
        for topic, _ in stalled:
            STALLS.labels(self.stage, topic).inc()
        shown = ", ".join(f"{t}[{p}] (lag {offsets[(t, p)].lag} at offset {offsets[(t, p)].committed})"
                          for t, p in stalled)
        return (f"{len(stalled)} input partition(s) had lag and no progress for "
                f"{self.detector.stall_seconds:.0f}s: {shown}")

    def _fail(self, reason: str) -> None:
        log.error("stage %s is stalled: %s; failing /livez and exiting with %d so that it is restarted",
                  self.stage, reason, STALL_EXIT_CODE)
        if self.health is not None:
            self.health.fail(reason)
        time.sleep(self.exit_delay)  # longer than a scrape interval: Prometheus sees the count
        self._exit(STALL_EXIT_CODE)
