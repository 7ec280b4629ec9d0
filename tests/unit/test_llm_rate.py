"""The LLM request rate (streams/llm/policy.py request_pacer) on a clock the test moves: no
60 s window holds more than requests_per_minute requests plus one second's worth, from the
first one on, calls that wait go out at exactly rpm / 60 a second, and one woken late does
not lose its turn; the client uses it. The extract stage's
handlers: twice the call slots (handlers_for). A token debt is paid before the next call."""

from __future__ import annotations

import asyncio

from streams.llm.client import LLMClient
from streams.llm.policy import TokenBucket, handlers_for, request_pacer
from streams.settings import load_settings
from tests.support import ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def send_times(bucket: TokenBucket, clock: Clock, n: int) -> list[float]:
    """When each of ``n`` waiting calls may go out, seconds after the first try."""
    start = clock.now

    async def all_of_them() -> list[float]:
        out = []
        for _ in range(n):
            await bucket.acquire(1)
            out.append(clock.now - start)
        return out

    return asyncio.run(all_of_them())


def most_in_a_minute(times: list[float]) -> int:
    return max(sum(1 for t in times if s <= t < s + 60.0) for s in times)


def test_no_minute_holds_more_than_the_rpm_from_the_start() -> None:
    clock = Clock()
    times = send_times(request_pacer(600, clock=clock, sleep=clock.sleep), clock, 1200)
    assert most_in_a_minute(times) <= 600 + 10
    # Waiting calls go out at the limit's rate: after the first second's 10, 10 a second.
    assert abs(times[-1] - (1200 - 10) * 0.1) < 1e-6


def test_a_call_woken_late_does_not_lose_its_turn() -> None:
    """An event loop that wakes each waiting call 50 ms late still gets 10 calls a second
    out at 600 RPM (with a bucket of one request each delay was time lost: 6.7 a second)."""
    clock = Clock()

    async def late_sleep(seconds: float) -> None:
        clock.now += seconds + 0.05

    times = send_times(request_pacer(600, clock=clock, sleep=late_sleep), clock, 610)
    assert times[-1] < 60.0 + 1.0


def test_a_bucket_of_a_minute_lets_twice_the_rpm_through_its_first_minute() -> None:
    """Why the pacer: what the client had, a bucket of rpm refilled over a minute, starts
    full and lets 600 out at once and 600 more within the minute."""
    clock = Clock()
    times = send_times(TokenBucket(600, clock=clock, sleep=clock.sleep), clock, 1200)
    assert most_in_a_minute(times) > 1000


def test_the_client_paces_requests() -> None:
    settings = load_settings(ROOT / "config" / "development.yaml", env={"OPENAI_API_KEY": "sk-test"})
    settings = settings.model_copy(update={"openai": settings.openai.model_copy(update={"requests_per_minute": 120})})
    client = LLMClient(settings)
    assert (client.requests.capacity, client.requests.period) == (2.0, 1.0)  # 2 a second, one second's worth
    asyncio.run(client.aclose())


def test_twice_as_many_handlers_as_call_slots() -> None:
    assert [handlers_for(n) for n in (1, 8, 32)] == [2, 16, 64]


def test_a_debt_is_paid_before_the_next_call() -> None:
    """settle() may put the token budget into debt (a call used more than estimated); the
    next call waits for it to be paid off, it is not taken for an unused, full bucket."""
    clock = Clock()
    tokens = TokenBucket(6000, clock=clock, sleep=clock.sleep)  # 100 tokens a second
    assert asyncio.run(tokens.acquire(3000)) == 0.0
    tokens.settle(estimated=3000, actual=9000)  # 3000 left - 6000 more used: 3000 in debt
    assert abs(asyncio.run(tokens.acquire(1000)) - 40.0) < 1e-6  # 4000 tokens at 100 a second
