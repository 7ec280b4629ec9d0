"""The CI/CD workflows (.github/workflows): actionlint finds nothing, and each environment
runs what it promises (development < staging < production, each including the one before).

actionlint is built from the Go module proxy on first use (scripts/ensure-actionlint.sh).
"""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.support import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    return data


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def _uses(job: dict[str, Any]) -> list[str]:
    return [step.get("uses", "") for step in job.get("steps", [])]


def test_actionlint_finds_nothing() -> None:
    binary = subprocess.run([str(ROOT / "scripts" / "ensure-actionlint.sh")], capture_output=True, text=True,
                            check=True, timeout=600).stdout.strip()
    proc = subprocess.run([binary, "-no-color"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["development.yml", "production.yml", "staging.yml"]


def test_development_lints_types_and_unit_tests_with_coverage() -> None:
    wf = _load("development")
    assert {"push", "pull_request", "workflow_call"} <= set(wf[True])  # YAML reads the key `on` as True
    runs = _runs(wf["jobs"]["checks"])
    for command in ("make install", "ruff check", ".venv/bin/mypy", "make check-schemas", "ensure-actionlint.sh",
                    '-m "not integration"', "--cov"):
        assert command in runs, command


def test_staging_adds_the_whole_suite_on_the_native_stack_and_deploys_main() -> None:
    wf = _load("staging")
    assert wf[True]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert jobs["development"]["uses"] == "./.github/workflows/development.yml"
    integration = jobs["integration"]
    assert integration["needs"] == "development"
    assert "make test" in _runs(integration).splitlines()  # exactly what a newcomer runs, coverage floor included
    assert any(u.startswith("actions/setup-java") for u in _uses(integration))
    assert any(u.startswith("actions/setup-go") for u in _uses(integration))
    deploy = jobs["deploy"]
    assert deploy["needs"] == "integration" and deploy["environment"] == "staging"
    assert "values-staging.yaml" in _runs(deploy)


def test_production_on_tags_adds_security_chart_image_and_deploys() -> None:
    wf = _load("production")
    assert wf[True] == {"push": {"tags": ["v*"]}}
    jobs = wf["jobs"]
    assert jobs["staging"]["uses"] == "./.github/workflows/staging.yml"
    security = _runs(jobs["security"])
    assert "bandit" in security and "pip-audit" in security and "requirements.lock" in security
    chart = _runs(jobs["chart"])
    assert "helm lint" in chart and "helm template" in chart
    for env in ("development", "staging", "production"):
        assert env in chart
    image = jobs["image"]
    assert set(image["needs"]) == {"staging", "security", "chart"}
    assert image["permissions"]["packages"] == "write"
    build = next(s for s in image["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["push"] is True
    deploy = jobs["deploy"]
    assert deploy["environment"] == "production" and "values-production.yaml" in _runs(deploy)
    assert "image.digest" in _runs(deploy)  # production runs the exact image that was built
