"""The package as a user installs it: the wheel, its data, the hashed locks.

The wheel test builds the wheel the way `pip wheel .` does (isolated build), installs it
into a fresh venv outside the repository and runs the CLI from a directory with no
config/ in it, so every file the commands read comes from the wheel. The dependencies are
made visible to that venv from the dev venv (a .pth file) rather than downloaded again;
the project's own code is only the wheel's (checked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile/uv style lock."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in lock.read_text().splitlines()
                                         if not ln.lstrip().startswith("#")))
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        spec, *hashes = line.split(" --hash=")
        req = Requirement(spec.strip())
        (pinned,) = list(req.specifier)
        assert pinned.operator == "==", spec
        out[canonicalize_name(req.name)] = (pinned.version, [h.strip() for h in hashes])
    return out


def test_the_package_list_names_every_package_in_the_tree() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("streams", "agents", "schemas")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert listed == found | {"streams.config_files"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"streams.config_files": "config"}


def test_both_locks_are_hashed_and_the_dev_lock_keeps_the_runtime_pins() -> None:
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    assert runtime and dev
    for pins in (runtime, dev):
        for name, (_, hashes) in pins.items():
            assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name} has no sha256 hash"
    # make install (dev lock) tests exactly the versions the image (runtime lock) runs.
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}
    for tool in ("pytest", "mypy", "ruff", "spacy"):
        assert tool in dev and tool not in runtime
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile


def test_the_wheel_installs_outside_the_repository_and_runs(tmp_path: Path) -> None:
    # Built from a copy of what the Dockerfile copies (no stale build/ of the checkout).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for tree in ("config", "schemas", "streams", "agents"):
        shutil.copytree(ROOT / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
                   check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = dist.glob("graphrag_streams-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for env in ("development", "staging", "production"):
        assert f"streams/config_files/{env}.yaml" in names
    assert "schemas/jsonschema/graph.edges.v1.json" in names
    assert "streams/api/static/index.html" in names
    assert not any(n.startswith(("tests/", "config/")) for n in names)
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(info).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Project-URL: Repository, " in metadata

    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    py = target / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    # The dependencies from the dev venv, after the new venv's own site-packages on sys.path.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps-from-dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_", "PYTHON", "KAFKA_", "MONGODB_"))}
    # Production (SASL_SSL) refuses to load without the SASL credentials.
    env |= {"MONGODB_URI": "mongodb://db.example:27017", "KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9093",
            "KAFKA_SASL_USERNAME": "indexer", "KAFKA_SASL_PASSWORD": "pw"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(target / "bin" / "graphrag-streams"), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120)

    where = subprocess.run([str(py), "-c", "import streams, streams.settings as c; "
                            "print(streams.__file__); print(c.default_config_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(site), f"streams imported from {where[0]}, not the wheel"
    assert where[1] == str(Path(site) / "streams" / "config_files")

    version = run("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"graphrag-streams, version {PYPROJECT['project']['version']}"
    helped = run("--help")
    assert helped.returncode == 0 and "dlq" in helped.stdout and "submit" in helped.stdout
    checked = run("config", "check", "--env", "production")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: production") and "kafka=kafka.example:9093" in checked.stdout
    shown = run("config", "show", "--env", "production")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["environment"] == "production"
    assert run("config", "check", "--env", "staging").returncode == 0
    without = subprocess.run([str(target / "bin" / "graphrag-streams"), "config", "check", "--env", "production"],
                             cwd=elsewhere, env={k: v for k, v in env.items() if k != "MONGODB_URI"},
                             capture_output=True, text=True, timeout=120)
    assert without.returncode != 0 and "MONGODB_URI is not set" in without.stderr
    assert "Traceback" not in without.stderr
