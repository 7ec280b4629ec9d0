"""The stack's FerretDB wrapper (stack/ferretdb): the backend is chosen with -handler (SQLite
by default, PostgreSQL with -postgresql-url), as benchmarks/sink_writes.py --store compares them."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.support import ROOT

pytestmark = pytest.mark.integration


def _localstack() -> Any:
    """stack/localstack.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("localstack", ROOT / "stack" / "localstack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("localstack", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _binary() -> Path:
    """The wrapper as `localstack.py up` builds it (cached, keyed by its sources)."""
    return Path(_localstack().provision_ferretdb())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_handler_is_chosen_on_the_command_line(tmp_path: Path) -> None:
    binary = _binary()
    port = _free_port()
    proc = subprocess.Popen([str(binary), f"-listen=127.0.0.1:{port}", f"-data-dir={tmp_path / 'data'}",
                             "-handler=sqlite"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client: MongoClient[dict[str, object]] = MongoClient(f"mongodb://127.0.0.1:{port}",
                                                             serverSelectionTimeoutMS=30_000)
        try:
            client.t.c.insert_one({"_id": 1})
            assert client.t.c.find_one({"_id": 1}) == {"_id": 1}
        finally:
            client.close()
        assert any(p.name.startswith("t") for p in (tmp_path / "data").iterdir())  # SQLite files of database t
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    bad = subprocess.run([str(binary), f"-listen=127.0.0.1:{_free_port()}", f"-data-dir={tmp_path / 'data'}",
                          "-handler=nosuch"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert 'unknown handler "nosuch"' in bad.stderr


def test_the_wrappers_own_go_tests_pass() -> None:
    """stack/ferretdb/main_test.go: the log handler that formats attributes only for lines logged."""
    go = _localstack().require_tool("go", "run the FerretDB wrapper's tests", "Install Go 1.24 or newer.")
    done = subprocess.run([go, "test", "./..."], cwd=ROOT / "stack" / "ferretdb", capture_output=True, text=True,
                          timeout=900, env={**os.environ, "CGO_ENABLED": "0"})
    assert done.returncode == 0, done.stdout + done.stderr
