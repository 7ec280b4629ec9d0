"""A real Prometheus for tests (not a test module).

    with PrometheusHarness([("graphrag-workers", "127.0.0.1:9400"),
                            ("graphrag-lag-exporter", "127.0.0.1:9410")]) as prom:
        prom.wait_for_targets_up()
        for q in dashboard_queries():
            assert prom.query(q.expr), q

The binary comes from scripts/ensure-prometheus.sh (Debian package `prometheus`). The
server listens on a free 127.0.0.1 port, scrapes the given targets every second under the
given job names, evaluates the repo's alert rules every second, keeps its data in a
temporary directory and is stopped and cleaned up on exit.

`dashboard_queries()` reads every panel expression of the Grafana dashboards and replaces
Grafana's variables so Prometheus can run them: the interval and range macros become
fixed durations, and the dashboards' own template variables (always used in regex
matchers, `label=~"$var"`) become `.*`, which is what "All" means there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = ROOT / "scripts" / "ensure-prometheus.sh"
HELM_FILES = ROOT / "helm" / "graphrag-streams" / "files"
DASHBOARDS_DIR = HELM_FILES / "dashboards"
ALERTS_FILE = HELM_FILES / "prometheus" / "alerts.yml"

WORKERS_JOB = "graphrag-workers"
LAG_EXPORTER_JOB = "graphrag-lag-exporter"

# Grafana's built-in macros -> what a test query uses instead.
GRAFANA_MACROS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# $name, ${name}, ${name:format} and the old [[name]] form.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


class PrometheusError(RuntimeError):
    """Prometheus could not start, or answered a query with an error."""


class DashboardQuery(NamedTuple):
    dashboard: str
    panel: str
    ref_id: str
    expr: str  # variables replaced: ready for Prometheus
    raw: str  # as written in the dashboard


def find_binaries() -> Path:
    """The directory holding `prometheus` and `promtool` (installs the package if needed)."""
    proc = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise PrometheusError(f"{ENSURE_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise PrometheusError(f"{ENSURE_SCRIPT.name} printed no directory")
    bindir = Path(lines[-1])
    for tool in ("prometheus", "promtool"):
        if not os.access(bindir / tool, os.X_OK):
            raise PrometheusError(f"{bindir / tool} is not executable")
    return bindir


def substitute_variables(expr: str, overrides: dict[str, str] | None = None) -> str:
    """Replace Grafana variables in a panel expression (see the module docstring)."""
    values = {**GRAFANA_MACROS, **(overrides or {})}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name.startswith("__"):
            raise ValueError(f"unknown Grafana macro ${name} in {expr!r}")
        before = expr[: m.start()].rstrip('"')
        if not before.endswith(("=~", "!~")):
            raise ValueError(f"template variable ${name} outside a regex matcher (use label=~\"${name}\"): {expr!r}")
        return ".*"

    return _VARIABLE.sub(repl, expr)


def _panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))  # panels inside collapsed rows


def dashboard_queries(directory: Path = DASHBOARDS_DIR,
                      overrides: dict[str, str] | None = None) -> list[DashboardQuery]:
    """Every panel target's expression from every dashboard JSON file in `directory`."""
    out: list[DashboardQuery] = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(board.get("panels", [])):
            for t in panel.get("targets", []):
                raw = t.get("expr", "")
                if raw.strip():
                    out.append(DashboardQuery(board["title"], panel["title"], t.get("refId", ""),
                                              substitute_variables(raw, overrides), raw))
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusHarness:
    """A Prometheus server for one test: start(), query(), stop() (or use `with`)."""

    def __init__(self, targets: Sequence[tuple[str, str]], *,
                 rule_files: Sequence[Path] = (ALERTS_FILE,),
                 scrape_interval: str = "1s", evaluation_interval: str = "1s",
                 startup_timeout: float = 60.0) -> None:
        self.targets = list(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.startup_timeout = startup_timeout
        self.port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        jobs: dict[str, list[str]] = {}
        for job, address in self.targets:
            jobs.setdefault(job, []).append(address)
        return {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addresses}]}
                               for job, addresses in jobs.items()],
        }

    def start(self) -> PrometheusHarness:
        bindir = find_binaries()
        self.workdir = Path(tempfile.mkdtemp(prefix="graphrag-prometheus-"))
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        check = subprocess.run([str(bindir / "promtool"), "check", "config", str(config_file)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            self.stop()
            raise PrometheusError(f"promtool check config failed:\n{check.stdout}{check.stderr}")
        last_error = ""
        for _ in range(5):  # another process may take the free port before Prometheus binds it
            self.port = free_port()
            self._log = (self.workdir / "prometheus.log").open("wb")
            self._proc = subprocess.Popen(
                [str(bindir / "prometheus"), f"--config.file={config_file}",
                 f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
            try:
                self._wait_ready()
                return self
            except PrometheusError as e:
                last_error = str(e)
                self._terminate()
                if "address already in use" not in last_error:
                    break
        self.stop()
        raise PrometheusError(last_error)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {self.startup_timeout}s:\n{self.log_tail()}")

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=15)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> PrometheusHarness:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        if self.workdir is None or not (self.workdir / "prometheus.log").is_file():
            return ""
        text = (self.workdir / "prometheus.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ HTTP API

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET /api/v1/<path>; returns `data`, raises PrometheusError on an error answer."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422 carry the error as JSON
            try:
                body = json.loads(e.read())
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {e.code}") from e
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params or ''}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Any]:
        """Instant query: the result list (vector/matrix); a scalar or string as a one-item list."""
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        data = self.api("query", params)
        result = data["result"]
        return list(result) if data["resultType"] in ("vector", "matrix") else [result]

    def wait_for(self, expr: str, timeout: float = 30.0,
                 predicate: Callable[[list[Any]], bool] = bool) -> list[Any]:
        """Query until `predicate(result)` holds; returns the result or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} still {result!r} after {timeout}s")
            time.sleep(0.5)

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", {"state": "active"})["activeTargets"])

    def wait_for_targets_up(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every configured target has been scraped successfully."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.active_targets()
            if len(targets) == len(self.targets) and all(t["health"] == "up" for t in targets):
                return targets
            if time.monotonic() > deadline:
                states = [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t.get("lastError")) for t in targets]
                raise TimeoutError(f"targets not all up after {timeout}s: {states}")
            time.sleep(0.5)

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        return list(self.api("alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def dashboard_queries(self, overrides: dict[str, str] | None = None) -> list[DashboardQuery]:
        return dashboard_queries(overrides=overrides)
