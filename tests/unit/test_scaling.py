"""The scaling signal (KEDA's Kafka scaler formula) and the lag-seconds estimate."""

from __future__ import annotations

import pytest

from streams.monitoring.lag import LagSecondsEstimator, PartitionLag
from streams.monitoring.scaling import desired_replicas
from streams.settings import ScalingSettings

S = ScalingSettings(lag_threshold=100, activation_lag_threshold=10, min_replicas=0, max_replicas=8)


@pytest.mark.parametrize(("lag", "partitions", "want"), [
    (0, 6, 0),          # idle: scale to zero (min_replicas 0)
    (10, 6, 0),         # at the activation threshold: still inactive
    (11, 6, 1),         # just active: one replica
    (100, 6, 1),        # exactly one replica's worth
    (101, 6, 2),        # ceil
    (450, 6, 5),
    (10_000, 6, 6),     # capped at the partitions
    (10_000, 12, 8),    # capped at max_replicas
    (10_000, 0, 0),     # no partitions (topic missing): min
])
def test_desired_replicas_edges(lag: int, partitions: int, want: int) -> None:
    assert desired_replicas(lag, partitions, S) == want


def test_min_replicas_when_scale_to_zero_is_not_allowed() -> None:
    s = ScalingSettings(lag_threshold=50, activation_lag_threshold=0, min_replicas=2, max_replicas=10)
    assert desired_replicas(0, 6, s) == 2
    assert desired_replicas(1, 6, s) == 2
    assert desired_replicas(400, 6, s) == 6
    # min above the partition count is capped too: replicas beyond partitions would idle
    assert desired_replicas(0, 1, s) == 1


def test_lag_counts_uncommitted_partitions_from_log_start() -> None:
    assert PartitionLag("g", "t", 0, None, 5, 12).lag == 7
    assert PartitionLag("g", "t", 0, 10, 5, 12).lag == 2
    assert PartitionLag("g", "t", 0, 12, 5, 12).lag == 0


def test_lag_seconds_interpolates_between_samples() -> None:
    est = LagSecondsEstimator()
    for t, end in [(0, 0), (10, 100), (20, 200), (30, 200), (40, 200)]:
        est.record("t", 0, end, now=t)
    # offset 150 was written halfway between t=10 and t=20
    assert est.seconds_behind("t", 0, committed=150, log_end=200, now=40) == pytest.approx(25)
    assert est.seconds_behind("t", 0, committed=200, log_end=200, now=40) == 0
    # older than the history: a lower bound (now - first sample past it)
    est2 = LagSecondsEstimator()
    est2.record("t", 0, 500, now=100)
    assert est2.seconds_behind("t", 0, committed=10, log_end=500, now=160) == pytest.approx(60)


def test_lag_seconds_history_is_bounded() -> None:
    est = LagSecondsEstimator(window_seconds=50)
    for t in range(0, 1000, 5):
        est.record("t", 0, t, now=t)
    kept = est._history[("t", 0)]
    assert len(kept) <= 12 and kept[-1] == (995, 995)
    # a plateau keeps only its first and latest sample
    flat = LagSecondsEstimator()
    for t in range(10):
        flat.record("t", 0, 42, now=t)
    assert list(flat._history[("t", 0)]) == [(0, 42), (9, 42)]
