"""docker-compose.yml, the Dockerfile and what they reference, checked statically.

No Docker engine is needed (none is available in CI): the compose file must parse, every
path it builds from or mounts must exist in the repository, every depends_on must name a
service, the worker services must cover every app (streams.kafka.topics.ALL_APPS: the seven
stages, entity resolution being route, resolve and assemble, and communities) and start
only after the one-shot `topics create` succeeded (apps do not create topics and stop at
start when one is missing), every command must be a real `graphrag-streams` command, the configuration
each service loads must point at the compose services, and the image must carry the sample
transcripts the header's `submit --transcripts` flow uses. The Prometheus config is checked
with promtool.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agents.worker import parse_stages, uses_mongo
from streams.cli import cli
from streams.kafka.topics import ALL_APPS, Stage
from streams.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PROMETHEUS_CONFIG = ROOT / "deploy" / "compose" / "prometheus.yml"
ALERTS = ROOT / "helm" / "graphrag-streams" / "files" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "helm" / "graphrag-streams" / "files" / "dashboards"
IMAGE_CONFIG_DIR = PurePosixPath("/app/config")  # Dockerfile: COPY config/ /app/config/
WORKER_PORT = 9400
EXPORTER_PORT = 9410

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # resolves anchors and << merges
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    return dict(compose["services"])


def app_services(services: dict[str, Service]) -> dict[str, Service]:
    """Services running the project's image (built from the Dockerfile)."""
    return {n: s for n, s in services.items() if "build" in s}


def stage_services(services: dict[str, Service]) -> dict[str, str]:
    """service name -> the app it runs (`worker --stages <app>`: a stage or communities)."""
    out = {}
    for name, s in app_services(services).items():
        cmd = s.get("command") or []
        if cmd[:1] == ["worker"]:
            stages = parse_stages(cmd[cmd.index("--stages") + 1])
            assert len(stages) == 1, f"{name}: one stage per service (as in Kubernetes), got {stages}"
            out[name] = stages[0].value
    return out


def environment(service: Service) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # ${VAR:-default} is compose's interpolation: take the default (an empty shell environment).
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def bind_mounts(service: Service) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount (named volumes are skipped)."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"]))
            continue
        source, target = v.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# --------------------------------------------------------------------------- compose


def test_compose_has_the_whole_stack(services: dict[str, Service]) -> None:
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["mongo"]["image"].split(":")[0] == "mongo" and services["mongo"]["image"].split(":")[1][0] == "7"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "broker" in kafka_env["KAFKA_PROCESS_ROLES"], \
        "Kafka must run in KRaft mode (broker and controller in one node)"
    assert "ZOOKEEPER" not in " ".join(kafka_env), "no ZooKeeper"
    commands = {n: s.get("command") for n, s in app_services(services).items()}
    assert ["topics", "create"] in commands.values()
    assert ["lag-exporter"] in commands.values()


def test_worker_services_cover_every_app_once(services: dict[str, Service]) -> None:
    """One service per app of ALL_APPS: the seven stages and communities, each service named
    after its app (Prometheus finds them by those names)."""
    stages = stage_services(services)
    assert sorted(stages.values()) == sorted(s.value for s in ALL_APPS)
    assert all(name == app for name, app in stages.items()), stages
    assert {Stage.ROUTE.value, Stage.RESOLVE.value, Stage.ASSEMBLE.value} <= set(stages)


def test_only_the_topics_service_creates_topics(services: dict[str, Service]) -> None:
    """`topics create` makes every topic (changelogs and the leader topic too); it is a
    one-shot that every app waits for, and nothing else runs it."""
    creators = [n for n, s in app_services(services).items() if s.get("command") == ["topics", "create"]]
    assert creators == ["topics"]
    assert services["topics"].get("restart", "no") == "no"
    for name in [*stage_services(services), "lag-exporter"]:
        deps = services[name].get("depends_on") or {}
        assert deps.get("topics", {}).get("condition") == "service_completed_successfully", name


def test_build_contexts_and_dockerfiles_exist(services: dict[str, Service]) -> None:
    built = app_services(services)
    assert set(stage_services(services)) | {"topics", "lag-exporter"} <= set(built)
    for name, s in built.items():
        build = s["build"] if isinstance(s["build"], dict) else {"context": s["build"]}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        assert dockerfile.resolve() == DOCKERFILE


def test_every_mounted_repository_path_exists(services: dict[str, Service]) -> None:
    mounted = 0
    for name, s in services.items():
        for source, _target in bind_mounts(s):
            assert not source.startswith("/"), f"{name}: absolute host path {source} (not in the repository)"
            path = (ROOT / source).resolve()
            assert path.exists(), f"{name}: {source} does not exist in the repository"
            assert ROOT in path.parents, f"{name}: {source} is outside the repository"
            mounted += 1
    assert mounted >= 4


def test_depends_on_names_existing_services_with_valid_conditions(services: dict[str, Service]) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, s in services.items():
        deps = s.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            cond = spec.get("condition", "service_started")
            assert cond in conditions, f"{name} -> {dep}: {cond}"
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if cond == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot: it must not restart"


def test_start_up_order(services: dict[str, Service]) -> None:
    """Kafka healthy -> topics created -> stages and exporter; MongoDB healthy before the sink."""
    def waits_for(name: str, dep: str, condition: str) -> bool:
        return (services[name].get("depends_on") or {}).get(dep, {}).get("condition") == condition

    assert waits_for("topics", "kafka", "service_healthy")
    for name in [*stage_services(services), "lag-exporter"]:
        assert waits_for(name, "topics", "service_completed_successfully"), name
    (sink,) = [n for n, st in stage_services(services).items() if st == "sink"]
    assert waits_for(sink, "mongo", "service_healthy")
    # Every app that needs MongoDB (agents.worker.uses_mongo; extract only with an LLM key)
    # waits for it; communities also waits for Kafka itself.
    for name, app in stage_services(services).items():
        env = environment(services[name])
        for key in ("", "sk-test"):
            settings = load_settings(ROOT / "config" / "development.yaml", env={**env, "OPENAI_API_KEY": key})
            if uses_mongo(Stage(app), settings):
                assert waits_for(name, "mongo", "service_healthy"), f"{name} needs MongoDB"
    (communities,) = [n for n, st in stage_services(services).items() if st == Stage.COMMUNITIES.value]
    assert waits_for(communities, "kafka", "service_healthy")
    assert waits_for(communities, "mongo", "service_healthy")
    assert waits_for("grafana", "prometheus", "service_healthy")
    for name in [*stage_services(services), "lag-exporter", "kafka", "mongo", "prometheus", "grafana"]:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def _resolve(args: list[str]) -> click.Command:
    """The command `graphrag-streams <args>` runs, its options parsed (nothing is run)."""
    cmd: click.Command = cli
    rest = list(args)
    parent: click.Context | None = None
    while isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=cmd.name, parent=parent)
        if not rest or rest[0].startswith("-"):
            raise click.UsageError(f"no subcommand in {args}")
        name, rest = rest[0], rest[1:]
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r}")
        cmd, parent = sub, ctx
    cmd.make_context(cmd.name, rest, parent=parent)  # unknown options or bad values raise UsageError
    return cmd


def test_resolve_helper_rejects_unknown_commands() -> None:
    with pytest.raises(click.UsageError):
        _resolve(["topics", "destroy"])
    with pytest.raises(click.UsageError):
        _resolve(["worker", "--stage", "fetch"])
    with pytest.raises(click.UsageError):
        _resolve(["lag-exporter", "--port", "not-a-port"])
    assert _resolve(["topics", "create"]).name == "create"
    assert _resolve(["worker", "--stages", "sink"]).name == "worker"


def test_every_command_is_a_real_cli_command(services: dict[str, Service]) -> None:
    for name, s in app_services(services).items():
        assert s.get("entrypoint") in (None, ["graphrag-streams"]), f"{name}: the image's entrypoint is the CLI"
        command = s.get("command")
        assert isinstance(command, list) and command, f"{name}: command must be an exec-form list"
        if command == ["--help"]:  # the `cli` tools service: commands come from `docker compose run`
            continue
        try:
            _resolve(command)
        except click.UsageError as exc:
            pytest.fail(f"{name}: `graphrag-streams {' '.join(command)}` is not a valid command: {exc}")


def test_services_load_the_development_config_pointing_at_compose(services: dict[str, Service]) -> None:
    """Each app service's config, as the container loads it, reaches the compose services."""
    kafka_listener = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name, s in app_services(services).items():
        env = environment(s)
        container_path = PurePosixPath(env["GRAPHRAG_CONFIG"])
        assert container_path.parent == IMAGE_CONFIG_DIR, f"{name}: config outside the image's /app/config"
        settings = load_settings(ROOT / "config" / container_path.name, env=env)
        assert settings.environment == "development"
        for broker in settings.kafka.bootstrap_servers.split(","):
            host, port = host_port(broker)
            assert host in services and f"://{host}:{port}" in kafka_listener, f"{name}: Kafka {broker}"
        mongo = urlsplit(settings.mongodb.uri.get_secret_value())
        assert mongo.hostname in services and services[mongo.hostname]["image"].startswith("mongo"), name
        assert settings.monitoring.metrics_port == WORKER_PORT
        assert settings.monitoring.lag_exporter_port == EXPORTER_PORT
        assert settings.monitoring.metrics_host == "0.0.0.0", (
            f"{name}: the metrics endpoint binds {settings.monitoring.metrics_host}, so Prometheus cannot "
            "scrape it; config/development.yaml needs `metrics_host: ${GRAPHRAG_METRICS_HOST:-127.0.0.1}` "
            "(and the copy in helm/graphrag-streams/files/config/)")


def test_healthchecks_probe_the_configured_ports(services: dict[str, Service]) -> None:
    for name in stage_services(services):
        assert f"127.0.0.1:{WORKER_PORT}/readyz" in " ".join(services[name]["healthcheck"]["test"]), name
    assert f"127.0.0.1:{EXPORTER_PORT}/readyz" in " ".join(services["lag-exporter"]["healthcheck"]["test"])


def test_the_api_serves_the_explorer_on_a_published_port(services: dict[str, Service]) -> None:
    api = services["api"]
    assert api["command"] == ["serve"]
    env = environment(api)
    settings = load_settings(ROOT / "config" / PurePosixPath(env["GRAPHRAG_CONFIG"]).name, env=env)
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8000)
    assert f"127.0.0.1:{settings.api.port}/readyz" in " ".join(api["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.api.port}:{settings.api.port}" in api["ports"]
    assert api["environment"]["GRAPHRAG_API_TOKEN"] == "${GRAPHRAG_API_TOKEN:-}", "the token comes from the shell"


def test_fetch_sees_the_sample_transcripts(services: dict[str, Service]) -> None:
    (fetch,) = [n for n, st in stage_services(services).items() if st == "fetch"]
    settings = load_settings(ROOT / "config" / "development.yaml", env=environment(services[fetch]))
    targets = {target: source for source, target in bind_mounts(services[fetch])}
    for d in settings.graphrag.transcripts.local_dirs:
        path = PurePosixPath(d) if d.startswith("/") else PurePosixPath("/app") / d
        assert str(path) in targets, f"fetch reads {path}, which is not mounted"
        assert any((ROOT / targets[str(path)]).glob("*.srt"))


# --------------------------------------------------------------------------- Prometheus and Grafana


def _mount_map(service: Service) -> dict[str, Path]:
    return {target: (ROOT / source).resolve() for source, target in bind_mounts(service)}


def test_prometheus_scrapes_every_worker_and_the_exporter(services: dict[str, Service]) -> None:
    prom = services["prometheus"]
    mounts = _mount_map(prom)
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    workers = jobs["graphrag-workers"]
    targets = set()
    for sd in workers.get("dns_sd_configs", []):
        targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    for sc in workers.get("static_configs", []):
        targets |= set(sc["targets"])
    assert targets == {f"{n}:{WORKER_PORT}" for n in stage_services(services)}
    (exporter_targets,) = [sc["targets"] for sc in jobs["graphrag-lag-exporter"]["static_configs"]]
    assert exporter_targets == [f"lag-exporter:{EXPORTER_PORT}"]
    # The job names the alert rules select.
    used = set(re.findall(r'job="([^"]+)"', ALERTS.read_text()))
    assert used <= set(jobs), used - set(jobs)
    # The rule files are the repository's alert rules, mounted.
    assert config["rule_files"], "no rule_files"
    for rule_file in config["rule_files"]:
        assert mounts.get(rule_file) == ALERTS.resolve(), f"{rule_file} is not the mounted alerts.yml"


def test_promtool_accepts_the_prometheus_config(services: dict[str, Service], tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-prometheus.sh")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    promtool = Path(proc.stdout.strip().splitlines()[-1]) / "promtool"
    mounts = _mount_map(services["prometheus"])
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    # Point the rule files at what compose mounts there, then check config and rules together.
    config["rule_files"] = [str(mounts[f]) for f in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(promtool), "check", "config", str(local)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_grafana_provisions_the_datasource_and_the_repository_dashboards(services: dict[str, Service]) -> None:
    grafana = services["grafana"]
    mounts = _mount_map(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = [yaml.safe_load(p.read_text()) for p in (provisioning / "datasources").glob("*.y*ml")]
    (prom,) = [d for f in datasources for d in f["datasources"] if d["type"] == "prometheus"]
    url = urlsplit(prom["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    providers = [p for f in (provisioning / "dashboards").glob("*.y*ml")
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers
    for provider in providers:
        assert mounts[provider["options"]["path"]] == DASHBOARDS.resolve()
    assert list(DASHBOARDS.glob("*.json")), "no dashboards to provision"


# --------------------------------------------------------------------------- image


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per build stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op.upper(), arg.strip()))
    return stages


def test_dockerfile_is_multi_stage_non_root_with_the_cli_entrypoint() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: dependencies are built apart from the runtime image"
    final = stages[-1]
    base = final[0][1].split()[0]
    assert "slim" in base or "PYTHON_IMAGE" in base
    assert "3.11-slim" in DOCKERFILE.read_text()
    users = [arg for op, arg in final if op == "USER"]
    assert users, "the final stage must switch to an unprivileged user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {users[-1]}: a numeric, non-root UID (runAsNonRoot checks it)"
    assert ("ENTRYPOINT", '["graphrag-streams"]') in final
    assert ("CMD", '["--help"]') in final
    copies = [arg for op, arg in final if op == "COPY"]
    assert any(re.fullmatch(r"config/? /app/config/?", c) for c in copies), copies
    assert any(c.startswith("--from=") for c in copies), "the runtime stage takes the built venv"
    runtime_text = " ".join(arg for _, arg in final)
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in runtime_text, f"{tool} in the runtime stage"
    assert not [arg for op, arg in final if op in ("ARG", "ENV") and re.search(r"(PASSWORD|SECRET|API_KEY)=", arg)]
    assert "requirements.lock" in " ".join(arg for op, arg in stages[0] if op in ("COPY", "RUN"))
    assert "--require-hashes" in " ".join(arg for op, arg in stages[0] if op == "RUN"), "the lock's hashes are checked"
    # pyproject's console script is what the entrypoint runs.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["graphrag-streams"] == "streams.cli:main"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics (last matching pattern wins; a match on a parent counts)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        for c in candidates:
            if fnmatch.fnmatch(c, pattern) or (pattern.startswith("**/") and (
                    fnmatch.fnmatch(c, pattern[3:]) or fnmatch.fnmatch(c.split("/")[-1], pattern[3:]))):
                result = not negate
                break
    return result


def test_dockerignore_keeps_what_the_image_needs_and_nothing_secret() -> None:
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    sources = []
    for stage in dockerfile_stages():
        for op, arg in stage:
            if op == "COPY" and not arg.startswith("--from="):
                sources += [s for s in arg.split()[:-1] if not s.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src.rstrip("/"), patterns), f".dockerignore excludes {src}, which the Dockerfile copies"
    for secret in (".env", ".git/config", ".venv/bin/python", "tests/conftest.py", "config/.env",
                   "streams/__pycache__/cli.cpython-311.pyc", "t2ebdc616-sink-data/x", ".stack/kafka"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the build"


def test_image_carries_the_sample_transcripts(services: dict[str, Service]) -> None:
    """`docker compose run --rm cli submit --transcripts samples/transcripts` (the header) works
    and the fetch service finds those files: the image has them where GRAPHRAG_TRANSCRIPTS_DIR
    points, .dockerignore lets them into the build context, and the relative path the
    header passes resolves (from the image's WORKDIR) to the fetch stage's local_dirs."""
    samples = ROOT / "samples" / "transcripts"
    files = sorted(p for p in samples.iterdir() if p.suffix in (".srt", ".vtt", ".json"))
    assert files, "no sample transcripts"
    final = dockerfile_stages()[-1]
    workdir = PurePosixPath([arg for op, arg in final if op == "WORKDIR"][-1])
    copies = {}
    for op, arg in final:
        if op == "COPY" and not arg.startswith("--from="):
            *sources, dest = [a for a in arg.split() if not a.startswith("--")]
            for src in sources:
                copies[src.rstrip("/")] = PurePosixPath(dest if dest.startswith("/") else workdir / dest)
    assert "samples/transcripts" in copies, "the runtime image must COPY samples/transcripts"
    in_image = copies["samples/transcripts"]
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        assert not _ignored(rel, patterns), f".dockerignore keeps {rel} out of the build context"
    for name, app in stage_services(services).items():
        if app != Stage.FETCH.value:
            continue
        env = environment(services[name])
        assert PurePosixPath(env["GRAPHRAG_TRANSCRIPTS_DIR"]) == in_image
        settings = load_settings(ROOT / "config" / "development.yaml", env=env)
        assert [PurePosixPath(d) for d in settings.graphrag.transcripts.local_dirs] == [in_image]
    # The header's commands, as the cli container runs them (cwd = WORKDIR).
    header = [ln for ln in COMPOSE_FILE.read_text().splitlines() if ln.startswith("#")]
    runs = [ln.split("docker compose run --rm cli", 1)[1].split("#")[0].split()
            for ln in header if "docker compose run --rm cli" in ln]
    dirs = [args[args.index("--transcripts") + 1] for args in runs if "--transcripts" in args]
    assert dirs, "the compose header shows no `--transcripts` flow"
    cli_env = environment(services["cli"])
    for d in dirs:
        assert workdir / d == in_image == PurePosixPath(cli_env["GRAPHRAG_TRANSCRIPTS_DIR"]), d
        assert (ROOT / d).resolve() == samples.resolve()


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    # One requirement per logical line (continued with backslashes), each with its hashes:
    # the image installs with --require-hashes.
    logical = re.sub(r"\\\n", " ", "\n".join(ln.split("#", 1)[0] if not ln.lstrip().startswith("--hash")
                                            else ln for ln in LOCK.read_text().splitlines()))
    for line in logical.splitlines():
        line = line.strip()
        if not line:
            continue
        spec, *hashes = line.split(" --hash=")
        req = Requirement(spec)
        (pinned,) = list(req.specifier)
        assert pinned.operator == "==", f"requirements.lock: {spec!r} is not pinned with =="
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"requirements.lock: {spec!r} has no hash"
        pins[canonicalize_name(req.name)] = pinned.version
    # What the image installs: the runtime dependencies and the extras the Dockerfile names.
    extras = re.findall(r"graphrag-streams\[([a-z0-9,_-]+)\]", DOCKERFILE.read_text())
    assert extras, "the Dockerfile installs graphrag-streams[...]"
    wanted = list(project["dependencies"])
    for extra in ",".join(extras).split(","):
        wanted += project["optional-dependencies"][extra]
    for dep in wanted:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} violates {dep}"
    dev = {canonicalize_name(Requirement(d).name) for d in project["optional-dependencies"]["dev"]}
    dev -= {canonicalize_name(Requirement(d).name) for d in wanted}
    assert dev, "no dev-only tools to check"
    assert not dev & set(pins), f"dev tools in the runtime lock: {dev & set(pins)}"
    assert "graphrag-streams" not in pins
    nlp = {canonicalize_name(Requirement(d).name) for d in project["optional-dependencies"].get("nlp", [])}
    assert not nlp & set(pins), f"the optional nlp extra is not part of the image: {nlp & set(pins)}"

