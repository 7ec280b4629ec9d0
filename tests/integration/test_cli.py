"""The graphrag-streams command line against the real broker, run as a real process; each
test uses an isolated deployment (own topics).

The help and the errors that need no broker: tests/unit/test_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import VideoRequested
from streams.kafka.topics import topic_specs, topics_for
from tests.support import ROOT, Deployment, DeploymentFactory, consume_all

integration = pytest.mark.integration


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


@integration
def test_a_worker_whose_extractor_is_not_installed_exits_not_startable(deployment_factory: DeploymentFactory,
                                                                       tmp_path: Path) -> None:
    """offline_extractor: spacy where spaCy cannot be imported (a package that fails to
    import, first on the path): the stage says why and exits 2, not a crash loop."""
    d = deployment_factory({"graphrag": {"extraction": {"extractor": "offline", "offline_extractor": "spacy"}}})
    d.cli("topics", "create")
    (tmp_path / "spacy").mkdir()
    (tmp_path / "spacy" / "__init__.py").write_text("raise ImportError('spaCy is not installed here')\n")
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "worker", "--stages", "extract"], cwd=ROOT,
                          env={**d.env, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "stage extract: graphrag.extraction.offline_extractor is 'spacy' but spaCy" in proc.stderr
    assert "Traceback" not in proc.stderr
