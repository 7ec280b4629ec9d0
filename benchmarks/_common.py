"""Shared set-up for benchmarks: an isolated deployment on the local stack (tests.support)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import CORPUS, Deployment, Services, manifest  # noqa: E402

__all__ = ["CORPUS", "ROOT", "Deployment", "deployment", "manifest", "percentile"]


def deployment(overrides: dict[str, Any], name: str | None = None) -> Deployment:
    """Start the local stack if needed and make an isolated deployment in a temp dir
    (``name``: a fixed topic prefix and database, to come back to a kept one)."""
    subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), "up", "--no-prometheus"], check=True,
                   capture_output=True)
    services = Services("127.0.0.1:9092", "mongodb://127.0.0.1:27017")
    if name is None:
        return Deployment(services, Path(tempfile.mkdtemp()), overrides)
    return Deployment(services, Path(tempfile.mkdtemp()), overrides, name=name)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
