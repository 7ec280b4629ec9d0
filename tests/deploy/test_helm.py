"""The Helm chart (helm/graphrag-streams): `helm lint` and `helm template` per environment.

What is checked on the rendered objects: every stage of streams.kafka.topics.PIPELINE (entity
resolution is three: route, resolve, assemble) has a Deployment and a KEDA ScaledObject
whose consumer group and topics are what streams.kafka.topics computes from the rendered
configuration (loaded with streams.settings.load_settings, as the pods do): one trigger on
the stage's first input, and for assemble one more on its second, the chart's stage list
and inputs map are streams.kafka.topics' own, the replica bounds never exceed the topic's
partitions, no secret value is rendered, the securityContext is on every pod and
container, the liveness probe restarts a stalled worker, the topics Job runs before any
worker (a pre-install/pre-upgrade hook with its own copy of the config), the tiers differ
as the plan says, bad values fail the schema, and keda.enabled=false renders HPAs instead.
The communities app (no input topic) has a Deployment with a fixed replica count per
environment and no autoscaler, and is scraped, budgeted and network-policed like the stages.

Helm comes from the project's tooling: `python stack/localstack.py helm` builds it from the
Go module proxy once and prints the cached binary's path.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.kafka.clients import client_config
from streams.kafka.topics import ALL_APPS, PIPELINE, Stage, Topics, group_id, topics_for
from streams.settings import ENVIRONMENTS, Settings, load_settings
from tests.tls_material import TLSMaterial, make_tls_material

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "graphrag-streams"
RELEASE = "graphrag"
NAMESPACE = "graphrag-test"
FULLNAME = f"{RELEASE}-graphrag-streams"
FAKE_SECRET = "fake-s3cret-7d1c9e"  # must never appear in rendered output
SECRET_VARS = {"MONGODB_URI", "OPENAI_API_KEY", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "REDIS_URL"}

# The tiers of the original plan (config/*.yaml): what each environment must render.
TIERS: dict[str, dict[str, Any]] = {
    "development": {"log_level": "DEBUG", "max_concurrent_operations": 2, "retry_attempts": 1,
                    "circuit_breaker_threshold": 3, "caching": True, "lag_threshold": 20,
                    "activation": 0, "min": 0, "max": 3, "partitions": 6, "stall_seconds": 120},
    "staging": {"log_level": "INFO", "max_concurrent_operations": 5, "retry_attempts": 3,
                "circuit_breaker_threshold": 5, "caching": True, "lag_threshold": 50,
                "activation": 0, "min": 0, "max": 6, "partitions": 6, "stall_seconds": 180},
    "production": {"log_level": "WARNING", "max_concurrent_operations": 20, "retry_attempts": 5,
                   "circuit_breaker_threshold": 5, "caching": True, "lag_threshold": 100,
                   "activation": 0, "min": 1, "max": 12, "partitions": 12, "stall_seconds": 300},
}

# The communities app's replicas per environment (values-<env>.yaml): one elected leader runs
# the timer, production keeps a hot standby.
COMMUNITIES_REPLICAS = {"development": 1, "staging": 1, "production": 2}
COMMUNITIES = f"{FULLNAME}-{Stage.COMMUNITIES.value}"
API = f"{FULLNAME}-api"
API_REPLICAS = {"development": 1, "staging": 2, "production": 3}

Doc = dict[str, Any]


# --------------------------------------------------------------------------- helm


@pytest.fixture(scope="session")
def helm() -> Path:
    proc = subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), "helm"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"could not build helm:\n{proc.stderr}"
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A recognisable fake secret in helm's own environment too: templates cannot read it, and
    # the assertions below prove that nothing puts it into the output.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "OPENAI_API_KEY": FAKE_SECRET,
           "MONGODB_URI": f"mongodb://admin:{FAKE_SECRET}@mongo:27017", "KAFKA_SASL_PASSWORD": FAKE_SECRET}
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, env=env)


def template(helm: Path, env: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                    "-f", str(CHART / f"values-{env}.yaml"), *args)


def parse(stdout: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(stdout) if d]


Render = Callable[..., list[Doc]]


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    cache: dict[tuple[str, ...], list[Doc]] = {}

    def _render(env: str, *args: str) -> list[Doc]:
        key = (env, *args)
        if key not in cache:
            proc = template(helm, env, *args)
            assert proc.returncode == 0, f"helm template {env} {args} failed:\n{proc.stderr}"
            assert FAKE_SECRET not in proc.stdout
            cache[key] = parse(proc.stdout)
        return cache[key]

    return _render


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = by_kind(docs, kind)
    assert name in found, f"no {kind} {name}; have {sorted(found)}"
    return found[name]


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"))


def container_env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


@functools.cache
def tls_stand_ins() -> TLSMaterial:
    return make_tls_material(Path(tempfile.mkdtemp(prefix="helm-tls-")))


def secret_files(pod_spec: Doc, container: Doc) -> dict[str, str]:
    """Path in the container -> a local stand-in, for every file a Secret volume mounts there
    (CA bundles get a CA certificate, tls.crt/tls.key a client certificate and its key)."""
    tls = tls_stand_ins()
    stand_ins = {"ca.crt": tls.ca, "tls.crt": tls.client_cert, "tls.key": tls.client_key}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    files = {}
    for m in container["volumeMounts"]:
        secret = volumes[m["name"]].get("secret")
        for item in (secret or {}).get("items", []):
            files[f"{m['mountPath']}/{item['path']}"] = str(stand_ins[item["path"]])
    return files


def rendered_settings(docs: list[Doc], tmp_path: Path, stage: Stage | str = Stage.SINK) -> Settings:
    """The configuration a stage's pod loads: the ConfigMap's file and the pod's environment.

    Plain env values are used as they are; values from a Secret get a stand-in, so a
    variable the config requires but the pod does not get fails here as it would at start-up.
    A path to a file that a Secret volume mounts in the container gets a local stand-in
    file of that kind; a path nothing mounts stays, and fails the load as it would in the pod.
    """
    cm = one(docs, "ConfigMap", f"{FULLNAME}-config")
    name = stage.value if isinstance(stage, Stage) else stage
    deployment = one(docs, "Deployment", f"{FULLNAME}-{name}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for name, e in container_env(container).items():
        if "value" in e:
            env[name] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[name] = f"from-secret-{ref['name']}-{ref['key']}"
    files = secret_files(deployment["spec"]["template"]["spec"], container)
    env = {k: files.get(v, v) for k, v in env.items()}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    assert env["GRAPHRAG_CONFIG"] == f"{mounts['config']}/config.yaml", "GRAPHRAG_CONFIG must point into the ConfigMap"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}-config.yaml"
    path.write_text(cm["data"]["config.yaml"], encoding="utf-8")
    return load_settings(path, env=env)


def expected_bounds(settings: Settings) -> tuple[int, int]:
    """(min, max) replicas: the bounds streams.monitoring.scaling.desired_replicas uses, too."""
    sc = settings.graphrag.scaling
    upper = max(1, min(sc.max_replicas, settings.kafka.partitions))
    return min(sc.min_replicas, upper), upper


def scaling_topics(settings: Settings, stage: Stage) -> list[str]:
    """The topics a stage's autoscaler watches: streams.kafka.topics.Topics.scaling, which the lag
    exporter's desired replicas use too."""
    return list(topics_for(settings).scaling(stage))


def kafka_triggers(scaled_object: Doc) -> list[Doc]:
    triggers = scaled_object["spec"]["triggers"]
    assert triggers and all(t["type"] == "kafka" for t in triggers)
    return list(triggers)


def kafka_trigger(scaled_object: Doc) -> Doc:
    """The first trigger: the stage's first input topic (consumer group and thresholds are
    the same in every trigger of a ScaledObject, see the stage test)."""
    return kafka_triggers(scaled_object)[0]


def is_hook(doc: Doc) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


# --------------------------------------------------------------------------- chart files


def test_chart_config_files_are_copies_of_config_dir() -> None:
    copies = CHART / "files" / "config"
    assert sorted(p.name for p in copies.glob("*.yaml")) == sorted(f"{e}.yaml" for e in ENVIRONMENTS)
    for env in ENVIRONMENTS:
        assert (copies / f"{env}.yaml").read_bytes() == (ROOT / "config" / f"{env}.yaml").read_bytes(), (
            f"{copies / f'{env}.yaml'} differs from config/{env}.yaml: "
            f"cp config/{env}.yaml {copies.relative_to(ROOT)}/")


def test_values_files_exist_for_every_environment() -> None:
    for env in ENVIRONMENTS:
        values = yaml.safe_load((CHART / f"values-{env}.yaml").read_text())
        assert values["environment"] == env


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_helm_lint(helm: Path, env: str) -> None:
    proc = run_helm(helm, "lint", str(CHART), "--strict", "--namespace", NAMESPACE,
                    "-f", str(CHART / f"values-{env}.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def render_helper(helm: Path, tmp_path: Path, expr: str, *args: str) -> Any:
    """The value of a template expression (JSON) in the chart, rendered by helm."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-probe.yaml").write_text("value: {{ " + expr + " | toJson }}\n")
    proc = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE,
                    "-f", str(chart / "values-development.yaml"), "--show-only", "templates/zz-probe.yaml", *args)
    assert proc.returncode == 0, proc.stderr
    return parse(proc.stdout)[0]["value"]


def test_chart_stages_and_inputs_are_streams_topics(helm: Path, tmp_path: Path) -> None:
    """_helpers.tpl repeats PIPELINE and Topics.inputs (templates cannot import Python)."""
    stages = render_helper(helm, tmp_path / "s", 'include "graphrag-streams.stages" . | fromJsonArray')
    assert stages == [s.value for s in PIPELINE]
    inputs = render_helper(helm, tmp_path / "i", 'include "graphrag-streams.inputs" . | fromJson')
    bare = Topics("")
    assert inputs == {s.value: list(bare.inputs(s)) for s in PIPELINE}
    assert set(inputs) | {Stage.COMMUNITIES.value} == {s.value for s in ALL_APPS}


# --------------------------------------------------------------------------- stages and KEDA


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_stage_has_a_deployment_and_a_scaled_object_matching_the_config(
        render: Render, env: str, tmp_path: Path) -> None:
    docs = render(env)
    deployments = by_kind(docs, "Deployment")
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == {f"{FULLNAME}-{s.value}" for s in PIPELINE}
    assert set(deployments) == {f"{FULLNAME}-{s.value}" for s in ALL_APPS} | {f"{FULLNAME}-lag-exporter", API}
    assert not by_kind(docs, "HorizontalPodAutoscaler"), "KEDA owns the replicas: no HPA next to it"
    for stage in PIPELINE:
        settings = rendered_settings(docs, tmp_path, stage)
        assert settings.environment == env
        name = f"{FULLNAME}-{stage.value}"
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", "--stages", stage.value]
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns the replica count"

        so = scaled[name]
        assert so["spec"]["scaleTargetRef"]["name"] == name
        assert so["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        triggers = kafka_triggers(so)
        assert [t["metadata"]["topic"] for t in triggers] == scaling_topics(settings, stage), stage
        assert triggers[0]["metadata"]["topic"] == topics_for(settings).inputs(stage)[0]
        for meta in (t["metadata"] for t in triggers):
            assert meta["consumerGroup"] == group_id(settings, stage)
            assert meta["bootstrapServers"] == settings.kafka.bootstrap_servers
            sc = settings.graphrag.scaling
            assert meta["lagThreshold"] == str(sc.lag_threshold)
            assert meta["activationLagThreshold"] == str(sc.activation_lag_threshold)
            assert meta["offsetResetPolicy"] == "earliest"  # the stages' consumer_auto_offset_reset
            assert meta.get("allowIdleConsumers", "false") == "false"
        annotations = deployments[name]["metadata"]["annotations"]
        assert annotations["graphrag.io/consumer-group"] == group_id(settings, stage)
        assert annotations["graphrag.io/input-topic"] == topics_for(settings).inputs(stage)[0]
        assert annotations["graphrag.io/scaling-topics"].split(",") == scaling_topics(settings, stage)
        low, high = expected_bounds(settings)
        assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (low, high)
        assert so["spec"]["maxReplicaCount"] <= settings.kafka.partitions


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rendered_config_is_the_environment_tier(render: Render, env: str, tmp_path: Path) -> None:
    settings = rendered_settings(render(env), tmp_path)
    tier = TIERS[env]
    g = settings.graphrag
    assert settings.log_level == tier["log_level"]
    assert g.enable_caching is tier["caching"]
    assert g.max_concurrent_operations == tier["max_concurrent_operations"]
    assert g.retry_attempts == tier["retry_attempts"]
    assert g.circuit_breaker_threshold == tier["circuit_breaker_threshold"]
    assert (g.scaling.lag_threshold, g.scaling.activation_lag_threshold, g.scaling.min_replicas,
            g.scaling.max_replicas) == (tier["lag_threshold"], tier["activation"], tier["min"], tier["max"])
    assert settings.kafka.partitions == tier["partitions"]
    assert g.stall_seconds == tier["stall_seconds"]
    # ... and the values file mirrors the app's own config file for that environment.
    own = load_settings(ROOT / "config" / f"{env}.yaml", env={
        "MONGODB_URI": "mongodb://x", "KAFKA_BOOTSTRAP_SERVERS": "x:9092",
        "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})
    assert settings.log_level == own.log_level
    assert settings.openai.model == own.openai.model
    assert settings.graphrag.model_dump() == own.graphrag.model_dump()
    assert settings.kafka.partitions == own.kafka.partitions
    assert settings.kafka.topic_prefix == own.kafka.topic_prefix
    # Probes and Prometheus reach the endpoint from outside the pod.
    assert settings.monitoring.metrics_host == "0.0.0.0"


def test_production_differs_from_development_where_the_plan_says(render: Render, tmp_path: Path) -> None:
    dev_docs, prod_docs = render("development"), render("production")
    dev, prod = rendered_settings(dev_docs, tmp_path / "d"), rendered_settings(prod_docs, tmp_path / "p")
    assert (dev.log_level, prod.log_level) == ("DEBUG", "WARNING")
    assert (dev.graphrag.max_concurrent_operations, prod.graphrag.max_concurrent_operations) == (2, 20)
    assert (dev.graphrag.retry_attempts, prod.graphrag.retry_attempts) == (1, 5)
    assert (dev.graphrag.circuit_breaker_threshold, prod.graphrag.circuit_breaker_threshold) == (3, 5)
    assert dev.openai.model != prod.openai.model
    for stage in PIPELINE:
        d = one(dev_docs, "ScaledObject", f"{FULLNAME}-{stage.value}")
        p = one(prod_docs, "ScaledObject", f"{FULLNAME}-{stage.value}")
        assert (d["spec"]["minReplicaCount"], d["spec"]["maxReplicaCount"]) == (0, 3)
        assert (p["spec"]["minReplicaCount"], p["spec"]["maxReplicaCount"]) == (1, 12)
        assert (kafka_trigger(d)["metadata"]["lagThreshold"], kafka_trigger(p)["metadata"]["lagThreshold"]) == (
            "20", "100")
    # Production Kafka is SASL_SSL: KEDA authenticates with the same Secrets, by reference
    # (the TLS details: test_production_renders_the_trigger_authentication_with_tls_and_sasl).
    assert not by_kind(dev_docs, "TriggerAuthentication")
    (auth,) = by_kind(prod_docs, "TriggerAuthentication").values()
    params = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"username", "password", "ca"}
    for stage in PIPELINE:
        for trig in kafka_triggers(one(prod_docs, "ScaledObject", f"{FULLNAME}-{stage.value}")):
            assert trig["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert prod.kafka.security_protocol == "SASL_SSL"


def test_max_replicas_never_exceed_the_partitions(render: Render, tmp_path: Path) -> None:
    docs = render("production", "--set", "kafka.partitions=4", "--set", "settings.scaling.maxReplicas=50",
                  "--set", "settings.scaling.minReplicas=7")
    settings = rendered_settings(docs, tmp_path)
    assert settings.kafka.partitions == 4
    for stage in PIPELINE:
        so = one(docs, "ScaledObject", f"{FULLNAME}-{stage.value}")
        assert so["spec"]["maxReplicaCount"] == 4
        assert so["spec"]["minReplicaCount"] == 4


def test_topic_prefix_drives_groups_and_topics(render: Render, tmp_path: Path) -> None:
    docs = render("staging", "--set", "kafka.topicPrefix=team_a.")
    settings = rendered_settings(docs, tmp_path)
    assert settings.kafka.topic_prefix == "team_a."
    for stage in PIPELINE:
        triggers = kafka_triggers(one(docs, "ScaledObject", f"{FULLNAME}-{stage.value}"))
        assert [t["metadata"]["topic"] for t in triggers] == scaling_topics(settings, stage)
        for meta in (t["metadata"] for t in triggers):
            assert meta["consumerGroup"] == group_id(settings, stage) == f"team_a-{stage.value}"
            assert meta["topic"].startswith("team_a.")


def test_config_change_rolls_the_pods(render: Render) -> None:
    def checksum(docs: list[Doc]) -> str:
        d = one(docs, "Deployment", f"{FULLNAME}-extract")
        return str(d["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum(render("staging")) != checksum(render("staging", "--set", "settings.retryAttempts=4"))


def test_keda_disabled_renders_hpas_instead(render: Render, tmp_path: Path) -> None:
    docs = render("production", "--set", "keda.enabled=false")
    settings = rendered_settings(docs, tmp_path)
    assert not by_kind(docs, "ScaledObject")
    assert not by_kind(docs, "TriggerAuthentication")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {f"{FULLNAME}-{s.value}" for s in PIPELINE}
    assert COMMUNITIES not in {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert one(docs, "Deployment", COMMUNITIES)["spec"]["replicas"] == COMMUNITIES_REPLICAS["production"]
    low, high = expected_bounds(settings)
    for stage in PIPELINE:
        hpa = hpas[f"{FULLNAME}-{stage.value}"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": f"{FULLNAME}-{stage.value}"}
        assert hpa["spec"]["minReplicas"] == max(1, low)
        assert hpa["spec"]["maxReplicas"] == high <= settings.kafka.partitions
        metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "External"]
        assert [m["external"]["metric"]["selector"]["matchLabels"] for m in metrics] == [
            {"group": group_id(settings, stage), "topic": topic} for topic in scaling_topics(settings, stage)]
        for metric in metrics:
            assert metric["external"]["metric"]["name"] == "graphrag_consumer_lag_messages"
            assert metric["external"]["target"] == {"type": "AverageValue",
                                                    "averageValue": str(settings.graphrag.scaling.lag_threshold)}


# --------------------------------------------------------------------------- pods


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_security_context_on_every_pod_and_container(render: Render, env: str) -> None:
    docs = render(env)
    found = list(workloads(docs))
    assert {d["kind"] for d in found} == {"Deployment", "Job"}
    for w in found:
        where = f"{w['kind']} {w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True, where
        assert isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, where
        assert psc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert pod.get("automountServiceAccountToken") is False, where
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, where
        tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], f"{where}: /tmp must be an emptyDir (read-only root)"
        for c in pod.get("initContainers", []) + pod["containers"]:
            csc = c.get("securityContext") or {}
            at = f"{where} container {c['name']}"
            assert csc.get("runAsNonRoot") is True, at
            assert csc.get("readOnlyRootFilesystem") is True, at
            assert csc.get("allowPrivilegeEscalation") is False, at
            assert csc.get("privileged", False) is False, at
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not csc.get("capabilities", {}).get("add"), at
            assert csc.get("seccompProfile") == {"type": "RuntimeDefault"}, at
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], at
            assert c.get("resources", {}).get("requests"), f"{at}: no resource requests"
            assert c["resources"].get("limits", {}).get("memory"), f"{at}: no memory limit"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_probes_ports_and_commands(render: Render, env: str, tmp_path: Path) -> None:
    docs = render(env)
    settings = rendered_settings(docs, tmp_path)
    expected = {f"{FULLNAME}-{s.value}": (["worker", "--stages", s.value], settings.monitoring.metrics_port)
                for s in ALL_APPS}
    expected[f"{FULLNAME}-lag-exporter"] = (["lag-exporter"], settings.monitoring.lag_exporter_port)
    expected[API] = (["serve"], settings.api.port)
    for name, (args, port) in expected.items():
        (c,) = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert c["args"] == args
        port_name = "http" if name == API else "metrics"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {port_name: port}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port_name}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
        assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": port_name}
    job = one(docs, "Job", f"{FULLNAME}-topics")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["topics", "create"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_liveness_probe_restarts_a_stalled_worker(render: Render, env: str, tmp_path: Path) -> None:
    """A stalled worker fails /livez for good and exits (agents/stall.py); should it hang
    instead, the liveness probe restarts it well within one graphrag.stall_seconds."""
    docs = render(env)
    for app in ALL_APPS:
        settings = rendered_settings(docs, tmp_path, app)
        (c,) = one(docs, "Deployment", f"{FULLNAME}-{app.value}")["spec"]["template"]["spec"]["containers"]
        probe = c["livenessProbe"]
        assert probe["httpGet"]["path"] == "/livez"
        assert probe["periodSeconds"] * probe["failureThreshold"] < settings.graphrag.stall_seconds, app
        assert probe["timeoutSeconds"] < probe["periodSeconds"], app
        # The startup probe holds the liveness probe off while a table is rebuilt from its
        # changelog, but not forever.
        startup = c["startupProbe"]
        assert 60 <= startup["periodSeconds"] * startup["failureThreshold"] <= 600, app


def hook_phases(doc: Doc) -> set[str]:
    return set(doc["metadata"]["annotations"]["helm.sh/hook"].split(","))


def hook_weight(doc: Doc) -> int:
    return int(doc["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_topics_job_runs_before_any_worker_with_its_own_config(render: Render, env: str) -> None:
    """Workers stop at start when a topic is missing, so `topics create` must run first: a
    pre-install/pre-upgrade hook (a post-install one would wait for workers that cannot
    become ready without it under `helm install --wait`). The release's ConfigMap and
    ServiceAccount do not exist yet then: the hook brings its own, created before the Job."""
    docs = render(env)
    job = one(docs, "Job", f"{FULLNAME}-topics")
    assert hook_phases(job) == {"pre-install", "pre-upgrade"}
    assert {"before-hook-creation", "hook-succeeded"} <= set(
        job["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(","))
    pod = job["spec"]["template"]["spec"]
    (config_volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    hook_cm = one(docs, "ConfigMap", config_volume["configMap"]["name"])
    assert is_hook(hook_cm) and hook_phases(hook_cm) == hook_phases(job)
    assert hook_weight(hook_cm) < hook_weight(job)
    release_cm = one(docs, "ConfigMap", f"{FULLNAME}-config")
    assert not is_hook(release_cm)
    assert hook_cm["data"]["config.yaml"] == release_cm["data"]["config.yaml"], "the Job must see the workers' config"
    sa = one(docs, "ServiceAccount", pod["serviceAccountName"])
    assert is_hook(sa) and hook_phases(sa) == hook_phases(job) and hook_weight(sa) < hook_weight(job)
    assert sa["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    (stage_c,) = one(docs, "Deployment", f"{FULLNAME}-sink")["spec"]["template"]["spec"]["containers"]
    assert c["env"] == stage_c["env"], "the Job reaches Kafka with the workers' settings and credentials"
    # Nothing but the Job's own objects are hooks: the workers are ordinary release objects.
    hooks = {(d["kind"], d["metadata"]["name"]) for d in docs if is_hook(d)}
    assert hooks == {("Job", job["metadata"]["name"]), ("ConfigMap", hook_cm["metadata"]["name"]),
                     ("ServiceAccount", sa["metadata"]["name"])}


def test_topics_job_uses_an_existing_service_account_or_none(render: Render) -> None:
    docs = render("staging", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=graphrag-sa")
    job = one(docs, "Job", f"{FULLNAME}-topics")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "graphrag-sa"
    assert not by_kind(docs, "ServiceAccount")
    docs = render("staging", "--set", "topicsJob.enabled=false")
    assert not [d for d in docs if is_hook(d)]
    assert not by_kind(docs, "Job")


def test_resources_per_stage_override_the_default(render: Render) -> None:
    docs = render("production")
    values = yaml.safe_load((CHART / "values-production.yaml").read_text())

    def res(stage: str) -> Doc:
        (c,) = one(docs, "Deployment", f"{FULLNAME}-{stage}")["spec"]["template"]["spec"]["containers"]
        return dict(c["resources"])

    assert res("extract") == values["stages"]["extract"]["resources"]
    assert res("fetch") == values["resources"]
    # Entity resolution: route is stateless (the defaults); resolve and assemble hold a table.
    assert set(values["stages"]) == {s.value for s in PIPELINE}
    assert res("route") == values["resources"]
    for stage in ("resolve", "assemble"):
        assert res(stage) == values["stages"][stage]["resources"]
        assert res(stage) != values["resources"], stage


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_values_have_a_block_for_every_stage(env: str) -> None:
    merged = yaml.safe_load((CHART / "values.yaml").read_text())["stages"]
    merged.update(yaml.safe_load((CHART / f"values-{env}.yaml").read_text()).get("stages") or {})
    assert set(merged) == {s.value for s in PIPELINE}
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["stages"]
    assert set(schema["properties"]) == set(schema["required"]) == {s.value for s in PIPELINE}


# --------------------------------------------------------------------------- communities


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_communities_deployment_has_fixed_replicas_and_no_autoscaler(
        render: Render, env: str, tmp_path: Path) -> None:
    """No input topic, so nothing to scale on: replicas from values, no ScaledObject or HPA."""
    docs = render(env)
    settings = rendered_settings(docs, tmp_path, Stage.COMMUNITIES)
    assert not topics_for(settings).inputs(Stage.COMMUNITIES)
    values = yaml.safe_load((CHART / f"values-{env}.yaml").read_text())
    assert values["communities"]["replicas"] == COMMUNITIES_REPLICAS[env]
    deployment = one(docs, "Deployment", COMMUNITIES)
    assert deployment["spec"]["replicas"] == COMMUNITIES_REPLICAS[env]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    annotations = deployment["metadata"]["annotations"]
    assert annotations["graphrag.io/consumer-group"] == group_id(settings, Stage.COMMUNITIES)
    assert "graphrag.io/input-topic" not in annotations
    assert float(annotations["graphrag.io/interval-seconds"]) == settings.graphrag.communities.interval_seconds
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        targets = {d["spec"]["scaleTargetRef"]["name"] for d in by_kind(docs, kind).values()}
        assert COMMUNITIES not in targets, f"{kind} on the communities Deployment"
    assert COMMUNITIES not in by_kind(docs, "ScaledObject")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_communities_pod_follows_the_stage_pod_conventions(render: Render, env: str) -> None:
    docs = render(env)
    pod = one(docs, "Deployment", COMMUNITIES)["spec"]["template"]
    stage_pod = one(docs, "Deployment", f"{FULLNAME}-{Stage.SINK.value}")["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    (sc,) = stage_pod["spec"]["containers"]
    assert c["name"] == "communities"
    assert c["args"] == ["worker", "--stages", "communities"]
    assert c["livenessProbe"] == sc["livenessProbe"] and c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"] == sc["readinessProbe"] and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"] == sc["startupProbe"]
    assert c["ports"] == sc["ports"]
    assert c["securityContext"] == sc["securityContext"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
    assert c["volumeMounts"] == sc["volumeMounts"]
    # The same configuration and the same secrets (MongoDB, LLM, Kafka SASL), by reference only.
    assert c["env"] == sc["env"]
    assert all("value" not in e for e in c["env"] if e["name"] in SECRET_VARS)
    if env != "development":
        assert "MONGODB_URI" in container_env(c), "communities writes to MongoDB"
    for key in ("securityContext", "volumes", "serviceAccountName", "automountServiceAccountToken",
                "terminationGracePeriodSeconds"):
        assert pod["spec"][key] == stage_pod["spec"][key], key
    assert pod["metadata"]["annotations"]["checksum/config"] == stage_pod["metadata"]["annotations"]["checksum/config"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    values = yaml.safe_load((CHART / f"values-{env}.yaml").read_text())
    assert c["resources"] == (values["communities"].get("resources") or values["resources"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_communities_is_scraped_budgeted_and_policed(render: Render, env: str) -> None:
    docs = render(env)
    labels = one(docs, "Deployment", COMMUNITIES)["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service", f"{FULLNAME}-workers")
    assert svc["spec"]["selector"].items() <= labels.items(), "the workers Service must select communities"
    monitor = one(docs, "ServiceMonitor", f"{FULLNAME}-workers")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (policy,) = by_kind(docs, "NetworkPolicy").values()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget", COMMUNITIES)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "minAvailable" not in pdb["spec"]
    replicas = COMMUNITIES_REPLICAS[env]
    # A single replica never blocks a drain; with a standby, one of the two always stays.
    assert pdb["spec"]["maxUnavailable"] == max(1, replicas - 1)
    assert replicas == 1 or replicas - pdb["spec"]["maxUnavailable"] >= 1


def test_communities_replicas_interval_and_disabling(render: Render, tmp_path: Path) -> None:
    docs = render("staging", "--set", "communities.replicas=3", "--set", "podDisruptionBudget.maxUnavailable=5",
                  "--set", "extraConfig.graphrag.communities.interval_seconds=600")
    deployment = one(docs, "Deployment", COMMUNITIES)
    assert deployment["spec"]["replicas"] == 3
    settings = rendered_settings(docs, tmp_path, Stage.COMMUNITIES)
    assert settings.graphrag.communities.interval_seconds == 600
    assert deployment["metadata"]["annotations"]["graphrag.io/interval-seconds"] == "600"
    assert one(docs, "PodDisruptionBudget", COMMUNITIES)["spec"]["maxUnavailable"] == 2
    docs = render("production", "--set", "communities.enabled=false")
    assert COMMUNITIES not in by_kind(docs, "Deployment")
    assert COMMUNITIES not in by_kind(docs, "PodDisruptionBudget")
    assert set(by_kind(docs, "ScaledObject")) == {f"{FULLNAME}-{s.value}" for s in PIPELINE}


# --------------------------------------------------------------------------- secrets


def test_secrets_only_by_reference(helm: Path, render: Render, tmp_path: Path) -> None:
    docs = render("production", "--set", "secrets.existingSecret=graphrag-creds",
                  "--set", "secrets.keys.redisUrl=REDIS_URL")
    assert not by_kind(docs, "Secret"), "the chart must not create Secrets"
    for w in workloads(docs):
        for c in w["spec"]["template"]["spec"]["containers"]:
            env = container_env(c)
            for var in SECRET_VARS:
                assert var in env, f"{w['metadata']['name']}: {var} missing"
                assert "value" not in env[var], f"{var} rendered as a value"
                assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "graphrag-creds"
    (auth,) = by_kind(docs, "TriggerAuthentication").values()
    refs = {r["parameter"]: r["name"] for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": "graphrag-creds", "password": "graphrag-creds", "ca": "kafka-cluster-ca-cert"}
    # The ConfigMap keeps ${VAR} references for the secret settings, never their values.
    raw = yaml.safe_load(one(docs, "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"])
    for section, key in (("mongodb", "uri"), ("openai", "api_key"), ("kafka", "sasl_password"),
                         ("kafka", "sasl_username"), ("cache", "redis_url")):
        assert re.fullmatch(r"\$\{[A-Z_]+(:-)?\}", raw[section][key]), (section, key, raw[section][key])
    settings = rendered_settings(docs, tmp_path)
    assert settings.mongodb.uri.get_secret_value() == "from-secret-graphrag-creds-MONGODB_URI"


@pytest.mark.parametrize("args", [
    ["--set", f"extraConfig.mongodb.uri=mongodb://u:{FAKE_SECRET}@db"],
    ["--set", f"extraConfig.openai.api_key={FAKE_SECRET}"],
    ["--set", f"extraConfig.kafka.sasl_password={FAKE_SECRET}"],
    ["--set", f"extraConfig.cache.redis_url=redis://:{FAKE_SECRET}@redis"],
    ["--set", "extraEnv[0].name=OPENAI_API_KEY", "--set", f"extraEnv[0].value={FAKE_SECRET}"],
    ["--set", "extraEnv[0].name=KAFKA_SASL_PASSWORD", "--set", f"extraEnv[0].value={FAKE_SECRET}"],
    ["--set", f"secrets.password={FAKE_SECRET}"],
], ids=["mongodb-uri", "openai-key", "sasl-password", "redis-url", "env-openai", "env-sasl", "secrets-value"])
def test_secret_values_cannot_be_rendered(helm: Path, args: list[str]) -> None:
    proc = template(helm, "production", *args)
    assert proc.returncode != 0, f"accepted a secret value through {args}"
    assert FAKE_SECRET not in proc.stdout


def test_plain_extra_env_and_extra_config_are_accepted(render: Render, tmp_path: Path) -> None:
    """The refusals above are about secrets, not about extraEnv/extraConfig in general."""
    docs = render("production", "--set", "extraEnv[0].name=GRAPHRAG_TRANSCRIPT_SOURCE",
                  "--set", "extraEnv[0].value=local", "--set", "extraConfig.graphrag.sink.batch_size=321")
    (c,) = one(docs, "Deployment", f"{FULLNAME}-sink")["spec"]["template"]["spec"]["containers"]
    assert container_env(c)["GRAPHRAG_TRANSCRIPT_SOURCE"] == {"name": "GRAPHRAG_TRANSCRIPT_SOURCE", "value": "local"}
    settings = rendered_settings(docs, tmp_path)
    assert settings.graphrag.sink.batch_size == 321
    assert settings.graphrag.transcripts.source == "local"


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(("args", "complaint"), [
    (["--set", "settings.scaling.lagThreshold=-1"], "lagThreshold"),
    (["--set", "settings.scaling.activationLagThreshold=-5"], "activationLagThreshold"),
    (["--set", "environment=qa"], "environment"),
    (["--set-string", "settings.scaling.maxReplicas=3"], "maxReplicas"),
    (["--set-string", "lagExporter.replicas=1"], "replicas"),
    (["--set", "settings.scaling.maxReplicas=0"], "maxReplicas"),
    (["--set", "settings.maxConcurrentOperations=0"], "maxConcurrentOperations"),
    (["--set", "settings.logLevel=TRACE"], "logLevel"),
    (["--set", "kafka.partitions=0"], "partitions"),
    (["--set", "kafka.bootstrapServers="], "bootstrapServers"),
    (["--set", "kafka.topicPrefix=bad prefix"], "topicPrefix"),
    (["--set", "stages.transform.resources.requests.cpu=1"], "transform"),
    (["--set", "settings.retries=3"], "retries"),
    (["--set", "image.digest=latest"], "digest"),
    (["--set", "extraConfig.graphrag.scaling.max_replicas=99"], "scaling"),
    (["--set", "extraConfig.kafka.topic_prefix=other."], "topic_prefix"),
    (["--set", "communities.replicas=0"], "replicas"),
    (["--set-string", "communities.replicas=2"], "replicas"),
    (["--set", "communities.minReplicas=1"], "minReplicas"),
])
def test_schema_rejects_bad_values(helm: Path, args: list[str], complaint: str) -> None:
    for env in ("development", "production"):
        proc = template(helm, env, *args)
        assert proc.returncode != 0, f"{env}: accepted {args}"
        assert complaint in proc.stderr, proc.stderr


def test_lint_rejects_bad_values_too(helm: Path) -> None:
    proc = run_helm(helm, "lint", str(CHART), "-f", str(CHART / "values-staging.yaml"),
                    "--set", "settings.scaling.lagThreshold=-1")
    assert proc.returncode != 0
    assert "lagThreshold" in proc.stdout + proc.stderr


def test_schema_accepts_a_good_override(render: Render) -> None:
    docs = render("development", "--set", "settings.scaling.lagThreshold=7")
    for stage in PIPELINE:
        assert kafka_trigger(one(docs, "ScaledObject", f"{FULLNAME}-{stage.value}"))["metadata"][
            "lagThreshold"] == "7"


def test_required_secret_for_the_environment(helm: Path) -> None:
    """Staging and production need MONGODB_URI (no default in their config): no Secret, no render."""
    proc = template(helm, "staging", "--set", "secrets.existingSecret=")
    assert proc.returncode != 0
    assert "MONGODB_URI" in proc.stderr


# --------------------------------------------------------------------------- monitoring


def test_prometheus_rule_ships_the_alert_rules(render: Render) -> None:
    alerts = CHART / "files" / "prometheus" / "alerts.yml"
    assert alerts.is_file(), "helm/graphrag-streams/files/prometheus/alerts.yml is missing"
    docs = render("staging")
    (rule,) = by_kind(docs, "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(alerts.read_text())["groups"]
    assert not by_kind(render("staging", "--set", "prometheusRule.enabled=false"), "PrometheusRule")


def test_dashboards_ship_as_sidecar_config_maps(render: Render) -> None:
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert files, "no dashboards in helm/graphrag-streams/files/dashboards"
    docs = render("production")
    maps = [d for d in docs if d["kind"] == "ConfigMap"
            and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    shipped = {k: json.loads(v) for m in maps for k, v in m["data"].items()}
    assert shipped == {f.name: json.loads(f.read_text()) for f in files}
    assert all(m["metadata"]["annotations"]["grafana_folder"] for m in maps)


def test_service_monitors_use_the_alert_rules_job_names(render: Render) -> None:
    docs = render("production")
    services = by_kind(docs, "Service")
    monitors = by_kind(docs, "ServiceMonitor")
    jobs: dict[str, Doc] = {}
    for sm in monitors.values():
        (ep,) = sm["spec"]["endpoints"]
        (relabel,) = [r for r in ep["relabelings"] if r.get("targetLabel") == "job"]
        jobs[relabel["replacement"]] = sm
        # The monitor selects a Service that has the endpoint's port, and that Service selects pods.
        sel = sm["spec"]["selector"]["matchLabels"]
        (svc,) = [s for s in services.values() if sel.items() <= s["metadata"]["labels"].items()]
        assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
        pods = [d for d in workloads(docs) if d["kind"] == "Deployment"
                and svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert pods, f"Service {svc['metadata']['name']} selects no pods"
    assert set(jobs) == {"graphrag-workers", "graphrag-lag-exporter", "graphrag-api"}
    worker_svc_pods = {d["metadata"]["name"] for d in workloads(docs) if d["kind"] == "Deployment"
                       and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"}
    assert worker_svc_pods == {f"{FULLNAME}-{s.value}" for s in ALL_APPS}
    used = set(re.findall(r'job="([^"]+)"', (CHART / "files" / "prometheus" / "alerts.yml").read_text()))
    assert used <= set(jobs), f"alert rules select jobs {used - set(jobs)} that nothing scrapes"


def test_pdb_network_policy_and_service_account(render: Render) -> None:
    docs = render("production")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == {f"{FULLNAME}-{s.value}" for s in ALL_APPS} | {API}
    for stage in ALL_APPS:
        labels = one(docs, "Deployment", f"{FULLNAME}-{stage.value}")["spec"]["template"]["metadata"]["labels"]
        sel = pdbs[f"{FULLNAME}-{stage.value}"]["spec"]["selector"]["matchLabels"]
        assert sel.items() <= labels.items() and sel["graphrag.io/stage"] == stage.value
    (policy,) = by_kind(docs, "NetworkPolicy").values()
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for w in workloads(docs):
        assert selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {9400, 9410, 8000}
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (sa,) = [d for d in by_kind(docs, "ServiceAccount").values() if not is_hook(d)]
    assert sa["automountServiceAccountToken"] is False
    for w in workloads(docs):
        if is_hook(w):  # the topics Job runs before the release's ServiceAccount exists
            continue
        assert w["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rendered_objects_per_environment(render: Render, env: str) -> None:
    """The inventory the issue's closing note lists; printed with -s for the report."""
    docs = render(env)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Deployment", "ScaledObject", "ConfigMap", "Service", "ServiceMonitor", "PrometheusRule",
                     "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount", "Job"}
    print(f"\n{env}:")
    for d in sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"])):
        extra = ""
        if d["kind"] == "ScaledObject":
            meta = kafka_trigger(d)["metadata"]
            topics = ", ".join(t["metadata"]["topic"] for t in kafka_triggers(d))
            extra = (f"  replicas {d['spec']['minReplicaCount']}..{d['spec']['maxReplicaCount']}, "
                     f"lagThreshold {meta['lagThreshold']}, group {meta['consumerGroup']}, topics {topics}")
        elif d["kind"] == "Deployment" and "replicas" in d["spec"]:
            extra = f"  replicas {d['spec']['replicas']}"
        elif d["kind"] == "PodDisruptionBudget":
            extra = f"  maxUnavailable {d['spec']['maxUnavailable']}"
        print(f"  {d['kind']}/{d['metadata']['name']}{extra}")


# --------------------------------------------------------------------------- NOTES.txt


def render_notes(helm: Path, tmp_path: Path, env: str, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (`helm lint` renders it but ignores its errors)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "test.notes" -}}\n' + notes + '\n{{- end -}}\nnotes: {{ include "test.notes" . | toJson }}\n')
    proc = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE,
                    "-f", str(chart / f"values-{env}.yaml"), "--show-only", "templates/zz-notes.yaml", *args)
    assert proc.returncode == 0, proc.stderr
    return str(parse(proc.stdout)[0]["notes"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_notes_list_every_stage_with_its_bounds(helm: Path, render: Render, env: str, tmp_path: Path) -> None:
    for keda in ("true", "false"):
        notes = render_notes(helm, tmp_path / keda, env, "--set", f"keda.enabled={keda}")
        settings = rendered_settings(render(env), tmp_path / f"cfg-{keda}")
        low, high = expected_bounds(settings)
        low = low if keda == "true" else max(1, low)
        for stage in PIPELINE:
            line = (f"group {group_id(settings, stage)} on {', '.join(scaling_topics(settings, stage))}: "
                    f"{low}..{high} replicas, {settings.graphrag.scaling.lag_threshold} messages")
            assert line in notes, f"{line!r} not in NOTES:\n{notes}"
        assert f"pre-install/pre-upgrade Job {FULLNAME}-topics" in notes
        line = (f"group {group_id(settings, Stage.COMMUNITIES)}: {COMMUNITIES_REPLICAS[env]} replica(s), "
                "one elected leader")
        assert line in notes, f"{line!r} not in NOTES:\n{notes}"
        assert FAKE_SECRET not in notes


# --------------------------------------------------------------------------- the HTTP API


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_api_deployment_service_and_token_per_environment(render: Render, env: str, tmp_path: Path) -> None:
    docs = render(env)
    deployment = one(docs, "Deployment", API)
    assert deployment["spec"]["replicas"] == API_REPLICAS[env]
    pod = deployment["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    settings = rendered_settings(docs, tmp_path, "api")
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8000)
    service = one(docs, "Service", API)
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    token = container_env(c).get("GRAPHRAG_API_TOKEN")
    if env == "development":  # no Secret: submission over HTTP is off
        assert token is None and settings.api.token is None
    else:
        assert token == {"name": "GRAPHRAG_API_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "graphrag-streams", "key": "GRAPHRAG_API_TOKEN"}}}
        assert settings.api.token is not None
        assert settings.api.token.get_secret_value() == "from-secret-graphrag-streams-GRAPHRAG_API_TOKEN"
    for w in workloads(docs):  # the token reaches the API pod only
        if w["metadata"]["name"] != API:
            for container in w["spec"]["template"]["spec"]["containers"]:
                assert "GRAPHRAG_API_TOKEN" not in container_env(container), w["metadata"]["name"]
    ingresses = by_kind(docs, "Ingress")
    if env == "production":
        rule = ingresses[API]["spec"]["rules"][0]
        assert rule["host"] == "graphrag.example.com"
        assert rule["http"]["paths"][0]["backend"]["service"] == {"name": API, "port": {"name": "http"}}
        assert ingresses[API]["spec"]["tls"] == [{"hosts": ["graphrag.example.com"], "secretName": "graphrag-api-tls"}]
    else:
        assert not ingresses


def test_the_api_can_be_turned_off_and_an_ingress_needs_a_host(helm: Path, render: Render) -> None:
    docs = render("development", "--set", "api.enabled=false")
    assert API not in by_kind(docs, "Deployment") and API not in by_kind(docs, "Service")
    (policy,) = by_kind(docs, "NetworkPolicy").values()
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == {9400, 9410}
    proc = template(helm, "development", "--set", "api.ingress.enabled=true")
    assert proc.returncode != 0 and "api.ingress.host is required" in proc.stderr
    proc = template(helm, "development", "--set", f"extraConfig.api.token={FAKE_SECRET}")
    assert proc.returncode != 0 and FAKE_SECRET not in proc.stdout


# --------------------------------------------------------------------------- Kafka and MongoDB TLS

KAFKA_CA_SECRET = "kafka-cluster-ca-cert"  # values-production.yaml
TLS_DIR = "/etc/graphrag-tls"
MTLS = ("--set", "kafka.tls.clientCertSecret.name=graphrag-kafka-user",
        "--set", "kafka.tls.clientCertSecret.certKey=user.crt", "--set", "kafka.tls.clientCertSecret.keyKey=user.key",
        "--set", "secrets.keys.kafkaSslKeyPassword=KAFKA_SSL_KEY_PASSWORD",
        "--set", "mongodb.tls.caSecret.name=mongodb-ca", "--set", "mongodb.tls.caSecret.key=ca.pem")


def kafka_pods(docs: list[Doc]) -> dict[str, Doc]:
    """Every workload that talks to Kafka, by name: all of them (stages, communities, lag
    exporter, API, topics Job); the names are checked so that none is missed."""
    found = {w["metadata"]["name"]: w for w in workloads(docs)}
    expected = {f"{FULLNAME}-{a.value}" for a in ALL_APPS} | {
        f"{FULLNAME}-lag-exporter", f"{FULLNAME}-api", f"{FULLNAME}-topics"}
    assert set(found) == expected
    return found


def secret_volumes(pod_spec: Doc) -> dict[str, Doc]:
    return {v["name"]: v["secret"] for v in pod_spec["volumes"] if "secret" in v}


def test_production_mounts_the_kafka_ca_read_only_in_every_kafka_pod(render: Render, tmp_path: Path) -> None:
    docs = render("production")
    for name, w in kafka_pods(docs).items():
        spec = w["spec"]["template"]["spec"]
        assert secret_volumes(spec) == {"kafka-ca": {"secretName": KAFKA_CA_SECRET, "defaultMode": 0o440,
                                                     "items": [{"key": "ca.crt", "path": "ca.crt"}]}}, name
        assert spec["securityContext"]["fsGroup"] == 10001  # 0440 files: readable through the group
        for c in spec["containers"]:
            mounts = {m["name"]: m for m in c["volumeMounts"]}
            assert mounts["kafka-ca"] == {"name": "kafka-ca", "mountPath": f"{TLS_DIR}/kafka-ca", "readOnly": True}
            env = container_env(c)
            assert env["KAFKA_SSL_CAFILE"] == {"name": "KAFKA_SSL_CAFILE", "value": f"{TLS_DIR}/kafka-ca/ca.crt"}
            assert not {"KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_PASSWORD"} & set(env), name
    # The config the pods load points at the mounted file (a stand-in CA here), verified.
    for stage in (Stage.SINK, Stage.COMMUNITIES):
        k = rendered_settings(docs, tmp_path / stage.value, stage).kafka
        assert (k.security_protocol, k.sasl_mechanism, k.ssl_verify) == ("SASL_SSL", "SCRAM-SHA-512", True)
        assert k.ssl_cafile == str(tls_stand_ins().ca)
        conf = client_config(k)
        assert conf["ssl.ca.location"] == str(tls_stand_ins().ca)
        assert conf["enable.ssl.certificate.verification"] is True


def test_production_renders_the_trigger_authentication_with_tls_and_sasl(render: Render) -> None:
    docs = render("production")
    (auth,) = by_kind(docs, "TriggerAuthentication").values()
    spec = auth["spec"]
    cm_name = f"{FULLNAME}-kafka-auth"
    assert {r["parameter"]: (r["name"], r["key"]) for r in spec["configMapTargetRef"]} == {
        "sasl": (cm_name, "sasl"), "tls": (cm_name, "tls")}
    assert one(docs, "ConfigMap", cm_name)["data"] == {"sasl": "scram_sha512", "tls": "enable"}
    assert {r["parameter"]: (r["name"], r["key"]) for r in spec["secretTargetRef"]} == {
        "username": ("graphrag-streams", "KAFKA_SASL_USERNAME"),
        "password": ("graphrag-streams", "KAFKA_SASL_PASSWORD"),
        "ca": (KAFKA_CA_SECRET, "ca.crt")}
    for stage in PIPELINE:
        for trig in kafka_triggers(one(docs, "ScaledObject", f"{FULLNAME}-{stage.value}")):
            assert trig["authenticationRef"] == {"name": auth["metadata"]["name"]}
            # KEDA refuses `sasl`/`tls` in both the trigger and its TriggerAuthentication.
            assert not {"sasl", "tls", "unsafeSsl"} & set(trig["metadata"])


def test_mtls_key_password_and_mongodb_ca(render: Render, tmp_path: Path) -> None:
    docs = render("production", *MTLS)
    for name, w in kafka_pods(docs).items():
        spec = w["spec"]["template"]["spec"]
        assert secret_volumes(spec) == {
            "kafka-ca": {"secretName": KAFKA_CA_SECRET, "defaultMode": 0o440,
                         "items": [{"key": "ca.crt", "path": "ca.crt"}]},
            "kafka-client-cert": {"secretName": "graphrag-kafka-user", "defaultMode": 0o440,
                                  "items": [{"key": "user.crt", "path": "tls.crt"},
                                            {"key": "user.key", "path": "tls.key"}]},
            "mongodb-ca": {"secretName": "mongodb-ca", "defaultMode": 0o440,
                           "items": [{"key": "ca.pem", "path": "ca.crt"}]}}, name
        for c in spec["containers"]:
            assert all(m["readOnly"] for m in c["volumeMounts"] if m["name"] in secret_volumes(spec))
            env = container_env(c)
            paths = ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "MONGODB_TLS_CA_FILE")
            assert {v: env[v].get("value") for v in paths} == {
                "KAFKA_SSL_CERTFILE": f"{TLS_DIR}/kafka-client/tls.crt",
                "KAFKA_SSL_KEYFILE": f"{TLS_DIR}/kafka-client/tls.key",
                "MONGODB_TLS_CA_FILE": f"{TLS_DIR}/mongodb-ca/ca.crt"}
            assert env["KAFKA_SSL_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "graphrag-streams", "key": "KAFKA_SSL_KEY_PASSWORD"}
    s = rendered_settings(docs, tmp_path)
    tls = tls_stand_ins()
    assert (s.kafka.ssl_certfile, s.kafka.ssl_keyfile) == (str(tls.client_cert), str(tls.client_key))
    assert s.kafka.ssl_key_password is not None
    assert s.mongodb.tls_ca_file == str(tls.ca)
    (auth,) = by_kind(docs, "TriggerAuthentication").values()
    assert {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        "username": ("graphrag-streams", "KAFKA_SASL_USERNAME"),
        "password": ("graphrag-streams", "KAFKA_SASL_PASSWORD"),
        "ca": (KAFKA_CA_SECRET, "ca.crt"), "cert": ("graphrag-kafka-user", "user.crt"),
        "key": ("graphrag-kafka-user", "user.key"), "keyPassword": ("graphrag-streams", "KAFKA_SSL_KEY_PASSWORD")}
    assert not by_kind(docs, "Secret")


def test_verification_off_reaches_the_apps_and_keda(render: Render, tmp_path: Path) -> None:
    docs = render("production", "--set", "kafka.tls.verify=false")
    k = rendered_settings(docs, tmp_path).kafka
    assert k.ssl_verify is False and client_config(k)["enable.ssl.certificate.verification"] is False
    for trig in kafka_triggers(one(docs, "ScaledObject", f"{FULLNAME}-sink")):
        assert trig["metadata"]["unsafeSsl"] == "true"


@pytest.mark.parametrize("env", ["development", "staging"])
def test_default_values_render_no_tls(render: Render, env: str, tmp_path: Path) -> None:
    docs = render(env)
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        assert not secret_volumes(spec), w["metadata"]["name"]
        for c in spec["containers"]:
            assert not any(m["mountPath"].startswith(TLS_DIR) for m in c["volumeMounts"])
            assert not {"KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_PASSWORD",
                        "MONGODB_TLS_CA_FILE"} & set(container_env(c))
    assert not by_kind(docs, "TriggerAuthentication")
    k = rendered_settings(docs, tmp_path).kafka
    assert (k.security_protocol, k.ssl_cafile, k.ssl_certfile) == ("PLAINTEXT", None, None)


def test_extra_volumes_and_mounts_reach_every_pod(render: Render) -> None:
    docs = render("development", "--set", "extraVolumes[0].name=corp-ca",
                  "--set", "extraVolumes[0].configMap.name=corp-ca",
                  "--set", "extraVolumeMounts[0].name=corp-ca", "--set", "extraVolumeMounts[0].mountPath=/etc/corp-ca",
                  "--set", "extraVolumeMounts[0].readOnly=true")
    for name, w in kafka_pods(docs).items():
        spec = w["spec"]["template"]["spec"]
        assert {"name": "corp-ca", "configMap": {"name": "corp-ca"}} in spec["volumes"], name
        for c in spec["containers"]:
            assert {"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True} in c["volumeMounts"], name


@pytest.mark.parametrize(("args", "complaint"), [
    (["--set-string", "kafka.tls.enabled=true"], "enabled"),
    (["--set", "kafka.tls.verify=1"], "verify"),
    (["--set", "kafka.tls.caSecret.name=Not_A_Name"], "name"),
    (["--set", "kafka.tls.caSecret.key="], "key"),
    (["--set", "kafka.tls.clientCertSecret.cert=x"], "cert"),
    (["--set", "mongodb.tls.caSecret=ca"], "caSecret"),
    (["--set", "extraVolumeMounts[0].name=x"], "mountPath"),
    (["--set", "extraVolumes[0].secret.secretName=x"], "name"),
    (["--set", "extraConfig.kafka.ssl_cafile=/x"], "ssl_cafile"),
    (["--set", "extraConfig.security.tls_verify=false"], "tls_verify"),
    (["--set", f"extraConfig.kafka.ssl_key_password={FAKE_SECRET}"], "ssl_key_password"),
    (["--set", "extraEnv[0].name=KAFKA_SSL_KEY_PASSWORD", "--set", f"extraEnv[0].value={FAKE_SECRET}"], "value"),
])
def test_schema_rejects_bad_tls_values(helm: Path, args: list[str], complaint: str) -> None:
    proc = template(helm, "production", *args)
    assert proc.returncode != 0, f"accepted {args}"
    assert complaint in proc.stderr, proc.stderr
    assert FAKE_SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "complaint"), [
    (["--set", "kafka.securityProtocol=SASL_PLAINTEXT"],
     "kafka.tls.enabled needs kafka.securityProtocol SSL or SASL_SSL"),
    (["--set", "kafka.tls.caSecret.name="], "kafka.tls.enabled needs kafka.tls.caSecret.name or"),
    (["--set", "secrets.keys.kafkaSslKeyPassword=K"], "secrets.keys.kafkaSslKeyPassword needs"),
    (["--set", "securityContext.fsGroup=null"], "set securityContext.fsGroup"),
    (["--set", "secrets.keys.kafkaSaslPassword=", "--set", "keda.enabled=false"], "kafkaSaslPassword"),
])
def test_template_refuses_tls_values_the_apps_would_refuse(helm: Path, args: list[str], complaint: str) -> None:
    proc = template(helm, "production", *args)
    assert proc.returncode != 0, f"accepted {args}"
    assert complaint in proc.stderr, proc.stderr
