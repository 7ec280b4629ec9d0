"""How LLM calls are allowed to happen: rate limits, retries with backoff, a circuit breaker.

Why a breaker that *waits* instead of failing fast: during an outage of the LLM provider
the right thing for a stream processor is to stop taking new work and let messages wait
in Kafka (unacknowledged), not to dead-letter them. Callers ``await breaker.allow()``;
while the breaker is open they sleep until a single half-open probe has succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from streams.instruments import waits

log = logging.getLogger(__name__)


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed calls; probes again after ``reset_seconds``.

    Each failed probe doubles the wait (up to ``max_reset_seconds``).
    """

    threshold: int
    reset_seconds: float = 30.0
    max_reset_seconds: float = 300.0
    on_change: Callable[[CircuitState], None] | None = None
    clock: Callable[[], float] = time.monotonic
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    _opened_at: float = 0.0
    _current_reset: float = 0.0
    _probe_running: bool = False
    _changed: asyncio.Condition | None = field(default=None, repr=False)

    @property
    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _set(self, state: CircuitState) -> None:
        if state != self.state:
            log.warning("LLM circuit %s -> %s", self.state.name.lower(), state.name.lower())
            # While not closed the stage pauses on purpose: the stall detector must not fire.
            if self.state is CircuitState.CLOSED:
                waits.enter("llm circuit")
            elif state is CircuitState.CLOSED:
                waits.leave("llm circuit")
            self.state = state
            if self.on_change:
                self.on_change(state)

    async def allow(self) -> None:
        """Return when a call may go out; wait while the circuit is open or a probe runs."""
        while True:
            async with self._cond:
                if self.state is CircuitState.CLOSED:
                    return
                if self.state is CircuitState.OPEN:
                    remaining = self._opened_at + self._current_reset - self.clock()
                    if remaining <= 0 and not self._probe_running:
                        self._set(CircuitState.HALF_OPEN)
                        self._probe_running = True
                        return  # this caller is the probe
                    timeout = max(0.05, remaining) if remaining > 0 else 1.0
                else:  # half-open: one probe is out, everyone else waits for its result
                    timeout = 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._cond.wait(), timeout=timeout)

    async def record_success(self) -> None:
        async with self._cond:
            self.failures = 0
            self._probe_running = False
            self._current_reset = self.reset_seconds
            self._set(CircuitState.CLOSED)
            self._cond.notify_all()

    async def record_failure(self) -> None:
        async with self._cond:
            self.failures += 1
            if self.state is CircuitState.HALF_OPEN or self._probe_running:
                self._current_reset = min(self.max_reset_seconds, max(self.reset_seconds, self._current_reset * 2))
                self._opened_at = self.clock()
                self._probe_running = False
                self._set(CircuitState.OPEN)
            elif self.state is CircuitState.CLOSED and self.failures >= self.threshold:
                self._current_reset = self.reset_seconds
                self._opened_at = self.clock()
                self._set(CircuitState.OPEN)
            self._cond.notify_all()


@dataclass
class TokenBucket:
    """``capacity`` units, refilled continuously at ``capacity`` per ``period`` seconds.

    It starts full, so in its first ``period`` it lets up to twice ``capacity`` through:
    right for a token budget that calls reserve and settle, not for a request rate (see
    :func:`request_pacer`).
    """

    capacity: float
    period: float = 60.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _level: float = 0.0  # may be negative: a debt that settle() ran up
    _updated: float | None = None  # None: not used yet (full)
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    def _refill(self) -> None:
        now = self.clock()
        if self._updated is None:
            self._level, self._updated = self.capacity, now
            return
        self._level = min(self.capacity, self._level + (now - self._updated) * self.capacity / self.period)
        self._updated = now

    async def acquire(self, amount: float) -> float:
        """Take ``amount`` (at most the capacity); returns the seconds spent waiting."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        amount = min(amount, self.capacity)
        waited = 0.0
        async with self._lock:  # first come, first served
            while True:
                self._refill()
                # A hair short after sleeping exactly the delay is float rounding, not a shortfall.
                if self._level >= amount - 1e-9 * self.capacity:
                    self._level -= amount
                    return waited
                delay = (amount - self._level) * self.period / self.capacity
                await self.sleep(delay)
                waited += delay

    def settle(self, estimated: float, actual: float) -> None:
        """Correct an estimate once the real usage is known (may go into debt)."""
        self._refill()
        self._level -= actual - estimated


def request_pacer(requests_per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> TokenBucket:
    """The requests-per-minute limit as a bucket of one second's requests, refilled at
    ``rpm / 60`` a second.

    A bucket of ``rpm`` requests lets ``rpm`` out at once and as many again within the
    minute, and providers enforce their limit over shorter windows than a minute too (a 429
    for the burst). This one holds at most ``rpm`` plus one second's worth in any 60 s, and
    a waiting call woken late (a busy event loop) does not lose its turn for good: with a
    bucket of one request every late wake-up was time lost (6.6 of 10 calls/s at 600 RPM on
    a loaded machine).
    """
    burst = max(1.0, requests_per_minute / 60.0)
    return TokenBucket(burst, period=60.0 * burst / requests_per_minute, clock=clock, sleep=sleep)


def handlers_for(max_concurrent_operations: int) -> int:
    """How many inputs a stage that calls the LLM handles at once: twice its call slots.

    A handler holds a slot only for the call; before and after it reads and writes the
    answer cache and sends its output and waits for the broker's ack. With one handler per
    slot every slot stood empty for that time: traced at limit 32 on a loaded machine, a
    handler spent 2.1 s in its call and 1.5 s around it (cache read 0.27 s, write 0.30 s,
    send and ack 0.96 s), so the server saw 12 of 32 calls in flight. With twice as many, a
    handler is ready for each slot that frees. (Their fetched chunks wait in a buffer that
    serves the partitions in turn, agents/faust_fair.py, so no partition waits behind the
    backlog of another.)
    """
    return 2 * max_concurrent_operations


@dataclass
class SpendCap:
    """Rolling spend windows (seconds, US dollars): a call waits while any window is used up.

    Why wait and not fail: a cap is a budget, not an error; the caller's message stays
    unacknowledged and goes on once the oldest spend leaves the window. Spend is kept in
    ``bucket``-second sums (a day is 8,640 of them at 10 s), so a spend leaves its window
    up to one bucket late, never early. Calls already in flight when a window fills still
    finish: the overshoot is at most what ``max_concurrent_operations`` calls cost.
    """

    limits: tuple[tuple[float, float], ...]
    bucket: float = 10.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    on_wait: Callable[[bool], None] | None = None
    _spent: deque[list[float]] = field(default_factory=deque)

    def __len__(self) -> int:
        """How many spend buckets are kept."""
        return len(self._spent)

    def record(self, cost: float) -> None:
        start = self.clock() // self.bucket * self.bucket
        if self._spent and self._spent[-1][0] == start:
            self._spent[-1][1] += cost
        else:
            self._spent.append([start, cost])

    def spent(self, window: float) -> float:
        """Dollars spent in the last ``window`` seconds (whole buckets)."""
        now = self.clock()
        return sum(c for start, c in self._spent if start + self.bucket > now - window)

    def wait_seconds(self) -> float:
        """0 when a call may go out; else how long until every window is under its limit."""
        now = self.clock()
        longest = max((w for w, _ in self.limits), default=0.0)
        while self._spent and self._spent[0][0] + self.bucket <= now - longest:
            self._spent.popleft()
        wait = 0.0
        for window, limit in self.limits:
            inside = [(start, c) for start, c in self._spent if start + self.bucket > now - window]
            total = sum(c for _, c in inside)
            for start, c in inside:  # oldest first: when does enough of it leave?
                if total < limit:
                    break
                total -= c
                wait = max(wait, start + self.bucket + window - now)
        return wait

    async def allow(self) -> None:
        """Return when a call may go out under every window."""
        delay = self.wait_seconds()
        if delay <= 0:
            return
        log.warning("LLM spend cap reached (%s); calls wait %.0fs for the window to allow more",
                    ", ".join(f"${self.spent(w):.2f} of ${limit:.2f} in {w / 3600:g}h" for w, limit in self.limits),
                    delay)
        waits.enter("llm spend cap")  # a pause on purpose: not a stall
        if self.on_wait:
            self.on_wait(True)
        try:
            while delay > 0:
                await self.sleep(min(delay, 60.0))
                delay = self.wait_seconds()
        finally:
            waits.leave("llm spend cap")
            if self.on_wait:
                self.on_wait(False)
        log.info("LLM spend cap: the window allows calls again")


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After wins when it is longer."""
    delay = random.uniform(0, min(cap, base * 2 ** attempt))  # backoff jitter, not a secret  # nosec B311
    if retry_after is not None:
        delay = max(delay, min(retry_after, 300.0))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare for APIs)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
