"""The graphrag-streams command line, run as a real process.

Tests marked ``integration`` use an isolated deployment (own topics) on the real broker.
"""

from __future__ import annotations

import json
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

from schemas import VideoRequested
from streams.cli import cli
from streams.kafka.topics import topic_specs, topics_for
from tests.conftest import DeploymentFactory
from tests.support import ROOT, Deployment, consume_all, deep_merge

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


def test_submit_with_a_missing_id_file_is_a_usage_error(tmp_path: Path) -> None:
    """PRODUCTION BUG: a missing --file crashes with a FileNotFoundError traceback (exit 1)."""
    proc = _run("--config", str(_unreachable_config(tmp_path)), "submit", "--file", str(tmp_path / "ids.txt"))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2
    assert "ids.txt" in proc.stderr


# --------------------------------------------------------------------------- against the broker


@pytest.fixture
def deployment(deployment_factory: DeploymentFactory) -> Deployment:
    d = deployment_factory()
    d.cli("topics", "create")
    return d


def _requests(d: Deployment) -> list[tuple[bytes, VideoRequested]]:
    msgs = consume_all(d.settings, f"{d.settings.kafka.topic_prefix}videos.requested")
    return [(m.key(), VideoRequested.model_validate_json(m.value())) for m in msgs]


@integration
def test_topics_create_is_idempotent(deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory()
    specs = {s.name: s.partitions for s in topic_specs(d.settings)}
    # Every topic an app uses, internal ones included: changelogs and the leader topic.
    assert set(topics_for(d.settings).all()) < set(specs)
    assert f"{d.name}-resolve-resolver-blocks-changelog" in specs
    assert specs[f"{d.name}-communities-__assignor-__leader"] == 1
    first = d.cli("topics", "create").stdout.splitlines()
    assert len(first) == len(specs) and all(line.startswith("created") for line in first), first
    second = d.cli("topics", "create").stdout.splitlines()
    assert len(second) == len(specs) and all(line.startswith("exists") for line in second), second
    assert all(f"({specs[line.split()[1]]} partitions)" in line and "MISMATCH" not in line for line in second)
    listed = d.cli("topics", "list").stdout.splitlines()
    assert sorted(line.split()[0] for line in listed) == sorted(line.split()[1] for line in second)
    assert all(line.split()[1] == str(specs[line.split()[0]]) for line in listed)


@integration
def test_submit_with_an_invalid_id_sends_nothing(deployment: Deployment) -> None:
    proc = deployment.cli("submit", "dQw4w9WgXcQ", "dQw4w9WgXcZ", "Pw0IZg7_4mo", check=False)
    assert proc.returncode == 2
    assert "'dQw4w9WgXcZ'" in proc.stderr and "nothing was sent" in proc.stderr
    assert _requests(deployment) == []


@integration
def test_submit_with_an_invalid_language_sends_nothing(deployment: Deployment) -> None:
    proc = deployment.cli("submit", "dQw4w9WgXcQ", "--language", "en", "--language", "en!", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "languages.1: String should match pattern" in proc.stderr and "nothing was sent" in proc.stderr
    assert _requests(deployment) == []


@integration
def test_submit_accepts_ids_that_start_with_a_dash(deployment: Deployment) -> None:
    ids = ["-6uLaTEbhbs", "-92PkAXJIqQ", "--abcdefghI"]  # -6uLaTEbhbs holds an "h", like -h
    proc = deployment.cli("submit", *ids, "--language", "en", "--language", "de", "--source", "local")
    assert "submitted 3 video(s)" in proc.stdout
    got = _requests(deployment)
    assert sorted(k for k, _ in got) == sorted(i.encode() for i in ids)
    for key, req in got:
        assert req.video_id == key.decode() and req.languages == ["en", "de"] and req.source == "local"
    # The same IDs work for `status` (no store entries yet: all unseen).
    status = json.loads(deployment.cli("status", "-6uLaTEbhbs", "--json").stdout)
    assert status["unseen"] == ["-6uLaTEbhbs"]


@integration
def test_submit_reads_id_files_with_comments(deployment: Deployment, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# corpus videos\n-6uLaTEbhbs   # Big Think\n\n   Pw0IZg7_4mo\n"
                        "Pw0IZg7_4mo # again\n#dQw4w9WgXcZ commented out\n")
    proc = deployment.cli("submit", "--file", str(ids_file), "--file", "-", input="-HxP28QcnIQ\n# end\n")
    assert "submitted 3 video(s)" in proc.stdout  # duplicates are sent once
    assert sorted(k for k, _ in _requests(deployment)) == [b"-6uLaTEbhbs", b"-HxP28QcnIQ", b"Pw0IZg7_4mo"]


@integration
def test_an_invalid_id_in_a_file_sends_nothing(deployment: Deployment, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("Pw0IZg7_4mo\n../../etc/p\n")
    proc = deployment.cli("submit", "--file", str(ids_file), check=False)
    assert proc.returncode == 2 and "../../etc/p" in proc.stderr
    assert _requests(deployment) == []
