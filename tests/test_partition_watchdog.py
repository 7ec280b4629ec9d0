"""The decision behind the partition watchdog (agents/faust_recovery.py): which partitions
fetched records that never reached an agent. The restart tests in
test_entity_resolution.py exercise it against the real broker."""

from __future__ import annotations

from faust.types import TP

from agents.faust_recovery import PartitionState, stalled_partitions

A, B = TP("graph.extractions", 0), TP("graph.extractions", 1)


def test_a_partition_fetched_past_its_commit_with_no_progress_is_stalled() -> None:
    st = PartitionState(position=3, committed=2, in_flight=False)
    assert stalled_partitions({A: st}, {A: st}) == [A]


def test_first_sight_is_not_enough() -> None:
    assert stalled_partitions({A: PartitionState(3, 2, False)}, {}) == []


def test_a_message_in_flight_is_progress_not_a_stall() -> None:
    st = PartitionState(3, 2, in_flight=True)
    assert stalled_partitions({A: st}, {A: st}) == []


def test_a_commit_or_a_fetch_between_checks_is_progress() -> None:
    assert stalled_partitions({A: PartitionState(3, 3, False)}, {A: PartitionState(3, 2, False)}) == []
    assert stalled_partitions({A: PartitionState(4, 2, False)}, {A: PartitionState(3, 2, False)}) == []


def test_caught_up_partitions_are_never_stalled() -> None:
    st = PartitionState(5, 5, False)
    assert stalled_partitions({A: st, B: PartitionState(1, 0, False)}, {A: st, B: PartitionState(1, 0, False)}) == [B]
