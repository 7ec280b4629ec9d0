"""The test helpers that read the running system (tests/support.py), where a race in them
would make a test fail for a reason of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

from streams.settings import load_settings
from tests.support import ROOT, supervised_children

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_child_not_yet_retitled_is_not_taken_for_a_stage() -> None:
    """A stage process is a fork of the supervisor: until it retitles itself its command line
    is the supervisor's, ``--stages fetch,chunk``, which is no one stage's."""
    settings = load_settings(ROOT / "config" / "development.yaml", env={})
    worker: Any = SimpleNamespace(d=SimpleNamespace(settings=settings), proc=SimpleNamespace(pid=os.getpid()))
    just_forked = subprocess.Popen([*SLEEP, "worker", "--stages", "fetch,chunk"])
    retitled = subprocess.Popen([*SLEEP, "worker", "--stages", "chunk"])
    try:
        # Only these two: the test process may have children of its own (a session's worker).
        children = {stage: pid for stage, pid in supervised_children(worker).items()
                    if pid in (just_forked.pid, retitled.pid)}
    finally:
        for p in (just_forked, retitled):
            p.kill()
            p.wait()
    assert children == {"chunk": retitled.pid}
