"""The graphrag-streams command line, run as a real process: the command tree and its help,
configuration errors and usage errors, none of which reaches a broker.

The commands against the real broker: tests/integration/test_cli.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from streams.cli import cli
from tests.support import ROOT, deep_merge

integration = pytest.mark.integration


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_", "OPENAI_", "KAFKA_", "MONGODB_"))}


def _run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env or _env(),
                          capture_output=True, text=True, input=input, timeout=120)


def _commands(command: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                            click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- help


def test_the_command_tree_is_what_we_expect_to_document() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"submit", "worker", "serve", "topics create", "topics list", "status", "wait", "graph", "dlq", "lag",
            "config show", "config check"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "(root)" for p, _ in COMMANDS])
def test_help_works_and_describes_every_command(path: tuple[str, ...], command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"
    proc = _run(*path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: graphrag-streams {' '.join(path)}".rstrip())
    first_line = command.help.strip().splitlines()[0]
    assert _flat(first_line) in _flat(proc.stdout)
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"option {param.opts} of {' '.join(path) or '(root)'} has no help"
            assert param.opts[-1] in proc.stdout
    if isinstance(command, click.Group):
        for name in command.commands:
            assert name in proc.stdout


# --------------------------------------------------------------------------- configuration errors


def _config(tmp_path: Path, override: dict[str, Any] | str) -> Path:
    path = tmp_path / "bad.yaml"
    if isinstance(override, str):
        path.write_text(override)
    else:
        base = yaml.safe_load((ROOT / "config" / "development.yaml").read_text())
        path.write_text(yaml.safe_dump(deep_merge(base, override)))
    return path


@pytest.mark.parametrize(("override", "needle"), [
    pytest.param({"graphrag": {"max_concurent_operations": 3}}, "graphrag.max_concurent_operations: unknown key",
                 id="unknown-key"),
    pytest.param({"kafka": {"partitions": "lots"}}, "kafka.partitions", id="wrong-type"),
    pytest.param({"mongodb": {"uri": "${MONGO_URI_NOT_SET}"}}, "MONGO_URI_NOT_SET", id="missing-variable"),
    pytest.param("environment: development\nkafka: [1, 2\n", "not valid YAML", id="invalid-yaml"),
])
def test_a_bad_config_file_gives_a_one_line_error(tmp_path: Path, override: dict[str, Any] | str,
                                                  needle: str) -> None:
    proc = _run("--config", str(_config(tmp_path, override)), "config", "check")
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "configuration error" in lines[0] and needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_missing_config_file_and_a_bad_environment_name(tmp_path: Path) -> None:
    proc = _run("--config", str(tmp_path / "absent.yaml"), "config", "check")
    assert proc.returncode != 0 and "not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _run("config", "check", env={**_env(), "GRAPHRAG_ENV": "prod"})
    assert proc.returncode != 0 and "GRAPHRAG_ENV='prod'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_config_check_reports_the_environment() -> None:
    proc = _run("--env", "development", "config", "check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: development, extraction=offline")


def _unreachable_config(tmp_path: Path) -> Path:
    """A configuration whose broker cannot be reached: a test can never send anything by mistake."""
    return _config(tmp_path, {"kafka": {"bootstrap_servers": "127.0.0.1:1",
                                        "topic_prefix": f"never-{uuid.uuid4().hex[:8]}."}})


def test_submit_without_ids_is_a_usage_error(tmp_path: Path) -> None:
    proc = _run("--config", str(_unreachable_config(tmp_path)), "submit")
    assert proc.returncode == 2 and "no video IDs" in proc.stderr


@pytest.mark.parametrize("command", ["wait", "status"])
def test_wait_and_status_reject_an_id_no_video_can_have(tmp_path: Path, command: str) -> None:
    """An option typed after ``--`` is an argument: `wait -- ID --interval 1` waited forever
    for a video called "--interval"."""
    proc = _run("--config", str(_unreachable_config(tmp_path)), command, "--", "dQw4w9WgXcQ", "--interval", "1")
    assert proc.returncode == 2, proc
    assert "2 invalid video ID(s): '--interval', '1'" in proc.stderr


def test_submit_with_a_missing_id_file_is_a_usage_error(tmp_path: Path) -> None:
    """PRODUCTION BUG: a missing --file crashes with a FileNotFoundError traceback (exit 1)."""
    proc = _run("--config", str(_unreachable_config(tmp_path)), "submit", "--file", str(tmp_path / "ids.txt"))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2
    assert "ids.txt" in proc.stderr
