"""The commit rule that replaces faust-streaming 0.15.3's (agents/faust_commit.py).

Upstream commits 37 for committed=34, acked=[35, 36]: message 34 (in flight, or fetched
and dropped) is lost after the next restart (faust-streaming#606).
"""

from __future__ import annotations

from agents.faust_commit import SafeCommitApp, SafeCommitConsumer, committable_offset


def test_a_run_that_starts_at_the_committed_offset_is_committed() -> None:
    assert committable_offset([34, 35, 36], 34, [], []) == (37, 3)
    assert committable_offset([34, 35, 40, 41], 34, [], []) == (36, 2)  # a gap inside: up to it


def test_an_unhandled_message_at_the_head_is_never_committed_over() -> None:
    assert committable_offset([35, 36], 34, [], []) == (None, 0)      # upstream: 37
    assert committable_offset([36, 37], 34, [], []) == (None, 0)


def test_a_gap_faust_recorded_from_one_past_the_commit_may_be_skipped() -> None:
    # A retention-trimmed or compacted topic: Faust fills the recorded gap [35, 40) into acked.
    assert committable_offset([35, 36, 37, 38, 39, 40], 34, [35], []) == (41, 6)


def test_never_past_a_message_in_flight() -> None:
    # Nothing committed yet (no head check possible): the in-flight message caps the run.
    assert committable_offset([1, 2, 3], None, [], [0]) == (None, 0)
    assert committable_offset([0, 1, 3, 4], None, [], [2]) == (2, 2)
    assert committable_offset([5, 6, 7], 5, [], [7]) == (7, 2)


def test_nothing_acked_nothing_to_commit() -> None:
    assert committable_offset([], 3, [], []) == (None, 0)


def test_the_apps_use_the_safe_consumer() -> None:
    from agents.runtime import make_app
    from streams.kafka.topics import Stage
    from streams.settings import load_settings
    from tests.support import ROOT

    app = make_app(Stage.EXTRACT, load_settings(ROOT / "config" / "development.yaml", env={}))
    assert isinstance(app, SafeCommitApp)
    assert app.transport.Consumer is SafeCommitConsumer
