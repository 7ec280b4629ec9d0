"""Which dependencies this process is deliberately waiting for right now.

A stage that waits out an outage (the LLM circuit is open, the database does not answer)
keeps its input unacknowledged on purpose, so its lag grows without progress. The stall
detector (``agents/stall.py``) must tell that pause from a stall, and reads it here.
Thread-safe: the detector runs in its own thread, the waits happen on the event loop.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active: Counter[str] = Counter()


def enter(name: str) -> None:
    with _lock:
        _active[name] += 1


def leave(name: str) -> None:
    with _lock:
        _active[name] -= 1
        if _active[name] <= 0:
            del _active[name]


@contextmanager
def waiting_for(name: str) -> Iterator[None]:
    enter(name)
    try:
        yield
    finally:
        leave(name)


def active() -> list[str]:
    """The dependencies being waited for (empty: nothing is paused on purpose)."""
    with _lock:
        return sorted(_active)
