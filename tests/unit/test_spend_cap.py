"""The LLM spend cap (streams/llm/policy.py SpendCap) on a clock the test moves: calls wait
while a window's spend is at its limit, exactly until the oldest spend leaves it, and the
wait is announced as a deliberate pause (not a stall) and to the metric's callback."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from streams.instruments import waits
from streams.llm.client import spend_cap
from streams.llm.policy import SpendCap
from streams.settings import load_settings
from tests.support import ROOT

HOUR, DAY = 3600.0, 86_400.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []
        self.paused_during_sleep: list[list[str]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.paused_during_sleep.append(waits.active())
        self.slept.append(seconds)
        self.now += seconds


def cap(clock: Clock, *limits: tuple[float, float], **kw: object) -> SpendCap:
    return SpendCap(limits, clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


def test_under_the_limit_nothing_waits() -> None:
    clock = Clock()
    c = cap(clock, (HOUR, 1.0))
    c.record(0.4)
    c.record(0.5)
    assert c.spent(HOUR) == pytest.approx(0.9)
    assert c.wait_seconds() == 0


def test_at_the_limit_a_call_waits_until_the_oldest_spend_leaves_the_window() -> None:
    clock = Clock(now=1_000_000.0)  # a bucket boundary (10 s buckets)
    c = cap(clock, (HOUR, 1.0))
    c.record(0.6)
    clock.now += 600
    c.record(0.4)  # 1.0 spent: the limit
    # The first 0.6 leaves one hour after its bucket ended: 3600 + 10 - 600 seconds from now.
    assert c.wait_seconds() == pytest.approx(HOUR + 10 - 600)
    clock.now += HOUR + 10 - 600
    assert c.wait_seconds() == 0 and c.spent(HOUR) == pytest.approx(0.4)


def test_the_day_window_holds_calls_after_the_hour_allows_them() -> None:
    clock = Clock()
    c = cap(clock, (HOUR, 1.0), (DAY, 2.0))
    for _ in range(4):  # 0.5 an hour, 4 hours: the hourly cap is never reached, the daily one is
        c.record(0.5)
        clock.now += HOUR
    # The last 0.5 is still in the hour (a spend leaves up to one bucket late, never early).
    assert c.spent(HOUR) == pytest.approx(0.5) and c.spent(DAY) == pytest.approx(2.0)
    wait = c.wait_seconds()
    assert wait == pytest.approx(DAY + 10 - 4 * HOUR)  # the first spend leaves the day window
    clock.now += wait
    assert c.wait_seconds() == 0


def test_allow_waits_as_a_deliberate_pause_and_reports_it() -> None:
    clock = Clock()
    states: list[bool] = []
    c = cap(clock, (HOUR, 1.0), on_wait=states.append)
    c.record(1.5)
    asyncio.run(c.allow())
    assert sum(clock.slept) == pytest.approx(HOUR + 10)  # in steps of at most a minute
    assert max(clock.slept) <= 60
    assert all(p == ["llm spend cap"] for p in clock.paused_during_sleep)  # the stall detector sees a pause
    assert waits.active() == []
    assert states == [True, False]
    asyncio.run(c.allow())  # and now at once
    assert states == [True, False] and sum(clock.slept) == pytest.approx(HOUR + 10)


def test_a_day_of_spend_is_kept_in_buckets_not_per_call() -> None:
    clock = Clock()
    c = cap(clock, (DAY, 1e9))
    for _ in range(100_000):  # 20 calls per second for well over an hour
        c.record(0.001)
        clock.now += 0.05
    assert c.wait_seconds() == 0
    assert len(c) == 500  # 5,000 s in 10 s buckets
    assert c.spent(DAY) == pytest.approx(100.0)


def test_settings_make_the_windows_and_none_when_unset() -> None:
    env = {"MONGODB_URI": "mongodb://x", "OPENAI_API_KEY": "sk-test"}
    base = load_settings(ROOT / "config" / "development.yaml", env=env)
    assert spend_cap(base) is None
    both = load_settings(ROOT / "config" / "development.yaml", env=env,
                         overrides=["openai.max_cost_per_hour=2.5", "openai.max_cost_per_day=20"])
    made = spend_cap(both)
    assert made is not None and made.limits == ((HOUR, 2.5), (DAY, 20.0))


def test_the_waiting_gauge_is_exported_at_zero_without_a_cap() -> None:
    """The dashboard panel and the alert read this series; it must exist before any cap is set."""
    env = {"MONGODB_URI": "mongodb://x", "OPENAI_API_KEY": "sk-test"}
    settings = load_settings(ROOT / "config" / "development.yaml", env=env,
                             overrides=["openai.model=gauge-without-cap"])
    assert REGISTRY.get_sample_value("graphrag_llm_spend_cap_waiting", {"model": "gauge-without-cap"}) is None
    assert spend_cap(settings) is None
    assert REGISTRY.get_sample_value("graphrag_llm_spend_cap_waiting", {"model": "gauge-without-cap"}) == 0.0
