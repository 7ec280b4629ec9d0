"""Stall detection (agents/stall.py) and the supervisor's restarts (agents/worker.py): the
pure parts, tested directly.

Against a real consumer group and real child processes: tests/integration/test_stall.py.
"""

from __future__ import annotations

import time

from agents.stall import STALL_EXIT_CODE, Offsets, StallDetector, StallWatch
from agents.worker import Backoff
from streams.instruments import waits
from streams.monitoring.health import Health

A, B = ("t", 0), ("t", 1)


def test_lag_without_progress_for_stall_seconds_is_a_stall() -> None:
    d = StallDetector(stall_seconds=30)
    assert d.observe(0, {A: Offsets(5, 9)}) == []
    assert d.observe(29, {A: Offsets(5, 9)}) == []
    assert d.observe(30, {A: Offsets(5, 9)}) == [A]


def test_progress_or_no_lag_restarts_the_clock() -> None:
    d = StallDetector(stall_seconds=30)
    d.observe(0, {A: Offsets(5, 9), B: Offsets(3, 3)})
    assert d.observe(20, {A: Offsets(6, 9), B: Offsets(3, 3)}) == []  # A moved, B has no lag
    assert d.observe(45, {A: Offsets(6, 9), B: Offsets(3, 3)}) == []  # A: 25 s since it moved
    assert d.observe(50, {A: Offsets(6, 9), B: Offsets(3, 8)}) == [A]  # B: lag since it was last seen at 45
    assert d.observe(74, {A: Offsets(9, 9), B: Offsets(3, 8)}) == []
    assert d.observe(75, {A: Offsets(9, 9), B: Offsets(3, 8)}) == [B]


def test_a_deliberate_pause_is_not_a_stall_and_a_reassigned_partition_starts_fresh() -> None:
    d = StallDetector(stall_seconds=30)
    d.observe(0, {A: Offsets(5, 9)})
    assert d.observe(40, {A: Offsets(5, 9)}, paused=True) == []
    assert d.observe(69, {A: Offsets(5, 9)}) == []
    assert d.observe(70, {A: Offsets(5, 9)}) == [A]
    d.observe(71, {})  # revoked
    assert d.observe(200, {A: Offsets(5, 9)}) == []  # assigned again: a new clock


def test_a_head_message_being_handled_is_work_not_a_stall() -> None:
    d = StallDetector(stall_seconds=30)
    d.observe(0, {A: Offsets(5, 9)})
    assert d.observe(40, {A: Offsets(5, 9)}, busy=[A]) == []  # a slow batch or call on offset 5
    assert d.observe(69, {A: Offsets(5, 9)}) == []
    assert d.observe(70, {A: Offsets(5, 9)}) == [A]


def test_the_watch_asks_whether_the_head_offset_is_in_flight() -> None:
    offsets = {A: Offsets(5, 9), B: Offsets(2, 4)}
    in_flight = [("t", 0, 5), ("t", 1, 3)]  # A's head is being handled; B's head (2) is not
    watch = StallWatch("sink", 10, lambda: [A, B], lambda tps: {tp: offsets[tp] for tp in tps},
                       in_flight=lambda: in_flight, exit=lambda code: None)
    assert watch.check(0) is None
    reason = watch.check(10) or ""
    assert "t[1] (lag 2 at offset 2)" in reason and "t[0]" not in reason


def test_waits_are_counted_per_dependency() -> None:
    assert waits.active() == []
    with waits.waiting_for("db"), waits.waiting_for("db"):
        waits.enter("llm circuit")
        assert waits.active() == ["db", "llm circuit"]
        waits.leave("llm circuit")
    assert waits.active() == []


def test_the_llm_circuit_breaker_marks_its_open_time_as_a_pause() -> None:
    import asyncio

    from streams.llm.policy import CircuitBreaker

    async def scenario() -> list[list[str]]:
        cb = CircuitBreaker(threshold=1, reset_seconds=0.01)
        seen = [waits.active()]
        await cb.record_failure()
        seen.append(waits.active())
        await asyncio.sleep(0.02)
        await cb.allow()  # half-open: still paused until the probe succeeds
        seen.append(waits.active())
        await cb.record_success()
        seen.append(waits.active())
        return seen

    assert asyncio.run(scenario()) == [[], ["llm circuit"], ["llm circuit"], []]


def test_a_stalled_watch_fails_livez_and_exits() -> None:
    exits: list[int] = []
    health = Health()
    offsets = {A: Offsets(0, 4)}
    watch = StallWatch("fetch", 10, lambda: [A], lambda tps: {tp: offsets[tp] for tp in tps}, health,
                       exit_delay=0, exit=exits.append)
    assert watch.check(0) is None
    reason = watch.check(10)
    assert reason is not None and "t[0] (lag 4 at offset 0)" in reason
    watch._fail(reason)
    assert exits == [STALL_EXIT_CODE] and not health.alive() and health.failure == reason


def test_an_event_loop_that_stopped_turning_is_a_stall() -> None:
    health = Health(stale_after=0.05)
    watch = StallWatch("chunk", 10, lambda: [], lambda tps: {}, health, exit=lambda code: None)
    assert watch.check(0) is None
    time.sleep(0.1)
    assert "event loop has not turned" in (watch.check(1) or "")


def test_backoff_doubles_up_to_a_cap_and_resets_after_a_healthy_run() -> None:
    b = Backoff(base=1, cap=8, healthy_after=60)
    assert [b.next_delay(1) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert b.next_delay(61) == 1
