#!/usr/bin/env python3
"""The project's native local stack: Apache Kafka (KRaft) and FerretDB on loopback, plus
Prometheus (optional) scraping the demo's workers and lag exporter.

Why this exists: the development machines and CI have no Docker engine, so the
project provisions the real Kafka broker from Maven Central and a FerretDB
(MongoDB wire protocol, SQLite backend) binary built with Go, caches both under
the user's cache directory, and runs them as plain processes.

    python stack/localstack.py up        # provision on first use, start, wait until both answer
    python stack/localstack.py status    # what runs, where, pids, logs
    python stack/localstack.py down      # stop what `up` started (data kept)
    python stack/localstack.py down --wipe
    python stack/localstack.py stop kafka   # one service (fault tests); `up` starts it again
    python stack/localstack.py provision # download/build only
    python stack/localstack.py up --secure   # also SASL_SSL/SCRAM, mTLS and FerretDB TLS listeners

Locations (environment variables override them):
    GRAPHRAG_CACHE_DIR  downloaded/built artefacts  (default: $XDG_CACHE_HOME/graphrag-streams)
    GRAPHRAG_STACK_DIR  data, logs and pid files    (default: $XDG_STATE_HOME/graphrag-streams/stack)
    GRAPHRAG_KAFKA_PORT broker port (default 9092; the KRaft controller uses port+1)
    GRAPHRAG_MONGO_PORT FerretDB port (default 27017)
    GRAPHRAG_PROMETHEUS_PORT  Prometheus port (default 9090)
    GRAPHRAG_KAFKA_SASL_SSL_PORT, GRAPHRAG_KAFKA_MTLS_PORT, GRAPHRAG_MONGO_TLS_PORT
                        the secure profile's listeners (defaults: Kafka port+2 and +3,
                        FerretDB port+1)
    GRAPHRAG_METRICS_PORT, GRAPHRAG_LAG_EXPORTER_PORT  what Prometheus scrapes (defaults
                        9400, i.e. the stage workers of `worker --stages all` on 9400,
                        9401, ... (9400-9404 for the five pipeline stages), and 9410:
                        config/development.yaml's defaults)

Prometheus is optional: `up` starts it when the `prometheus` binary is on PATH (as root it
installs the Debian package through scripts/ensure-prometheus.sh first); when it is not
available, or `up --no-prometheus`, `up` says it skipped it and still succeeds. `status`
shows it, but its exit code depends on Kafka and FerretDB only.

The secure profile (`up --secure`, kept for the stack directory once chosen) adds to the
same broker a SASL_SSL listener (SCRAM-SHA-512, user `graphrag`, created with Kafka's
ConfigCommand) and an SSL listener that requires a client certificate, and to FerretDB a
TLS listener; the plaintext listeners stay (the broker's own and the readiness checks).
stack/certs.py makes the CA, server and client certificates and the passwords under
<stack dir>/tls; `status --json` prints the settings that reach each listener.

Only the standard library is needed to provision and start; the readiness checks use
confluent-kafka and pymongo when they are importable (the project's venv), and fall
back to TCP checks otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from certs import SCRAM_USER, CertError, TlsFiles, ensure_local_tls

HERE = Path(__file__).resolve().parent
KAFKA_VERSION = "4.1.1"
FERRETDB_VERSION = "v1.24.2"
HELM_VERSION = "v3.22.0"
#: The JVM options of the local broker and Kafka's tools: the client (C1) compiler only. A
#: local broker lives for a session or a test, and the server (C2) compiler spent more CPU
#: than the broker's own work in it (benchmarks/stage_cpu.py, a sixth of the corpus: broker
#: 4.1-5.3 CPU s per run, of which the compiler threads 55 %; with C1 only 1.8-2.7 s, the
#: request handlers' time unchanged; a fresh start to ready 4.9 -> 2.9 CPU s).
JVM_QUICK = ["-XX:TieredStopAtLevel=1"]


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def cache_dir() -> Path:
    if os.environ.get("GRAPHRAG_CACHE_DIR"):
        return Path(os.environ["GRAPHRAG_CACHE_DIR"])
    return _xdg("XDG_CACHE_HOME", ".cache") / "graphrag-streams"


def state_dir() -> Path:
    if os.environ.get("GRAPHRAG_STACK_DIR"):
        return Path(os.environ["GRAPHRAG_STACK_DIR"])
    return _xdg("XDG_STATE_HOME", ".local/state") / "graphrag-streams" / "stack"


def kafka_port() -> int:
    return int(os.environ.get("GRAPHRAG_KAFKA_PORT", "9092"))


def mongo_port() -> int:
    return int(os.environ.get("GRAPHRAG_MONGO_PORT", "27017"))


def kafka_sasl_ssl_port() -> int:
    return int(os.environ.get("GRAPHRAG_KAFKA_SASL_SSL_PORT", str(kafka_port() + 2)))


def kafka_mtls_port() -> int:
    return int(os.environ.get("GRAPHRAG_KAFKA_MTLS_PORT", str(kafka_port() + 3)))


def mongo_tls_port() -> int:
    return int(os.environ.get("GRAPHRAG_MONGO_TLS_PORT", str(mongo_port() + 1)))


def secure_marker() -> Path:
    return state_dir() / "secure-profile"


def secure_profile() -> bool:
    """Whether this stack directory runs the secure profile (chosen once by `up --secure`)."""
    return secure_marker().exists()


def tls_files() -> TlsFiles:
    try:
        return ensure_local_tls(state_dir() / "tls")
    except CertError as exc:
        raise StackError(str(exc)) from exc


def prometheus_port() -> int:
    return int(os.environ.get("GRAPHRAG_PROMETHEUS_PORT", "9090"))


# What the local Prometheus scrapes: `worker --stages all` puts app i (pipeline order)
# on metrics_port + i; the lag exporter has a port of its own (config/development.yaml).
PIPELINE_STAGES = 5  # fetch, chunk, extract, resolve, sink


def worker_app_count() -> int:
    """How many processes `worker --stages all` runs: the project's own list when importable
    (the venv), else the five pipeline stages."""
    sys.path.insert(0, str(HERE.parent))
    try:
        from streams.kafka import topics

        return len(getattr(topics, "ALL_APPS", topics.PIPELINE))
    except Exception:
        return PIPELINE_STAGES
    finally:
        sys.path.remove(str(HERE.parent))


def worker_metrics_ports() -> list[int]:
    base = int(os.environ.get("GRAPHRAG_METRICS_PORT", "9400"))
    return [base + i for i in range(worker_app_count())]


def lag_exporter_port() -> int:
    return int(os.environ.get("GRAPHRAG_LAG_EXPORTER_PORT", "9410"))


class StackError(RuntimeError):
    """A problem the user can act on; printed without a traceback."""


def log(msg: str) -> None:
    print(f"[localstack] {msg}", file=sys.stderr, flush=True)


def require_tool(name: str, why: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise StackError(f"`{name}` is not installed; it is needed to {why}. {hint}")
    return path


def run_logged(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
               what: str, redact: tuple[str, ...] = ()) -> None:
    """Run a provisioning command, showing its output only when it fails (``redact``: secrets
    the output may echo, replaced before it is shown)."""
    log(f"{what} ...")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        for secret in redact:
            tail = tail.replace(secret, "**********")
        raise StackError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    log(f"{what}: done in {time.monotonic() - started:.0f}s")


# --------------------------------------------------------------------------- provisioning


def kafka_home() -> Path:
    return cache_dir() / "kafka" / KAFKA_VERSION


def kafka_classpath() -> str:
    return str(kafka_home() / "libs" / "*")


def provision_kafka() -> Path:
    home = kafka_home()
    marker = home / ".complete"
    if marker.exists():
        return home
    require_tool("java", "run the Kafka broker (Java 17 or newer)",
                 "Install a JDK, e.g. `apt-get install openjdk-17-jre-headless`.")
    mvn = require_tool("mvn", "download Apache Kafka from Maven Central",
                       "Install Maven, e.g. `apt-get install maven`.")
    libs = home / "libs"
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    run_logged([mvn, "-q", "-B", "-f", str(HERE / "kafka" / "pom.xml"),
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
               what=f"downloading Apache Kafka {KAFKA_VERSION} from Maven Central")
    shutil.copy(HERE / "kafka" / "log4j2.properties", home / "log4j2.properties")
    marker.write_text(KAFKA_VERSION)
    return home


#: Added to the SQLite backend: a filter on one top-level field, equal to a string or an
#: ObjectID or ``$in`` up to 1,000 of them, becomes a WHERE clause on the field's expression as
#: its index spells it, so SQLite answers it from the index. Released FerretDB pushes down a
#: single ``_id`` only and scans for everything else: the sink's reconciliation (``$in`` on
#: ``entity_id``, ``relation_id``, ``_id``), the merge pass and the deletes scanned whole
#: collections once per batch, so a growing graph cost more per batch (quadratic in all).
#: The WHERE clause must keep every row the filter can match, as FerretDB's handler applies
#: the whole filter again to what it returns: a field holding an array matches by any
#: element, so rows whose value is an array (its JSON text starts with "[") are kept too,
#: by a range on the same indexed expression; ``_id`` is never an array.
_FERRETDB_PUSHDOWN = r"""// pushdownWhere (graphrag-streams' patch, stack/localstack.py) is a WHERE clause for a
// filter on one plainly named top-level field equal to, or $in, strings or ObjectIDs,
// on the field's expression as its index spells it; "" when the filter is anything else.
// It selects a superset of the matches: the handler filters again.
func pushdownWhere(filter *types.Document) (string, []any) {
	if filter.Len() != 1 {
		return "", nil
	}

	key := filter.Keys()[0]
	for i, r := range key {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')) {
			return "", nil
		}
	}
	if key == "" {
		return "", nil
	}

	var values []any

	switch v := must.NotFail(filter.Get(key)).(type) {
	case string, types.ObjectID:
		values = []any{v}
	case *types.Document:
		if v.Len() != 1 || !v.Has("$in") {
			return "", nil
		}

		in, ok := must.NotFail(v.Get("$in")).(*types.Array)
		if !ok || in.Len() == 0 || in.Len() > 1000 {
			return "", nil
		}

		for i := 0; i < in.Len(); i++ {
			values = append(values, must.NotFail(in.Get(i)))
		}
	default:
		return "", nil
	}

	args := make([]any, len(values))

	for i, value := range values {
		switch value.(type) {
		case string, types.ObjectID:
			args[i] = string(must.NotFail(sjson.MarshalSingleValue(value)))
		default:
			return "", nil
		}
	}

	column := fmt.Sprintf("%s->%q", metadata.DefaultColumn, key)
	in := fmt.Sprintf("%s IN (?%s)", column, strings.Repeat(", ?", len(args)-1))

	if key == "_id" {
		return " WHERE " + in, args
	}

	return fmt.Sprintf(" WHERE (%s OR (%s >= '[' AND %s < '\\'))", in, column, column), args
}
"""


#: The released pushdown of a single ``_id``, in Query and (with ``{explain}``) in Explain.
_RELEASED_ID_PUSHDOWN = """	// that logic should exist in one place
	// TODO https://github.com/FerretDB/FerretDB/issues/3235
	if params.Filter.Len() == 1 {
		v, _ := params.Filter.Get("_id")
		switch v.(type) {
		case string, types.ObjectID:
{explain}			whereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
			args = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
		}
	}
"""


#: Edits applied to FerretDB's own source (from the Go module proxy) before it is built:
#: (file, text as released, replacement). Each must match exactly once, so a version bump
#: that changes the code fails the build loudly instead of building it unpatched.
#:
#: The SQLite backend creates every collection's unique ``_id`` index on the expression
#: ``_ferretdb_sjson->"_id"`` but queries ``_id`` with ``_ferretdb_sjson->'$._id'``. SQLite
#: matches an index expression by its text, so no ``_id`` lookup, update or delete ever
#: used the index: each one scanned its collection (an upsert into 3,000 relations cost
#: about 30 ms; with the patch about 2 ms). The query now spells the index's expression.
FERRETDB_PATCHES: tuple[tuple[str, str, str], ...] = (
    ("internal/backends/sqlite/metadata/metadata.go",
     """IDColumn = DefaultColumn + "->'$._id'\"""",
     """IDColumn = DefaultColumn + `->"_id"`"""),
    # Pushdown of one field's equality or ``$in`` (see _FERRETDB_PUSHDOWN): queries, updates,
    # deletes and counts (all go through Query), and explain, which must show what Query does.
    ("internal/backends/sqlite/collection.go", _RELEASED_ID_PUSHDOWN.replace("{explain}", ""),
     """	whereClause, args = pushdownWhere(params.Filter)
"""),
    ("internal/backends/sqlite/collection.go",
     _RELEASED_ID_PUSHDOWN.replace("{explain}", "\t\t\tfilterPushdown = true\n"),
     """	whereClause, args = pushdownWhere(params.Filter)
	filterPushdown = whereClause != ""
"""),
    ("internal/backends/sqlite/collection.go",
     """// Query implements backends.Collection interface.
""",
     _FERRETDB_PUSHDOWN + """
// Query implements backends.Collection interface.
"""),
)


def ferretdb_binary() -> Path:
    """Keyed by the wrapper's sources and the patches too, so a change to either rebuilds it."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        path = HERE / "ferretdb" / name
        if path.exists():
            digest.update(path.read_bytes())
    digest.update(repr(FERRETDB_PATCHES).encode())
    return cache_dir() / "ferretdb" / FERRETDB_VERSION / digest.hexdigest()[:12] / "ferretdb"


def patch_ferretdb_source(src: Path) -> None:
    """Apply FERRETDB_PATCHES to a writable copy of FerretDB's module source."""
    for rel, old, new in FERRETDB_PATCHES:
        path = src / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise StackError(f"cannot patch FerretDB {FERRETDB_VERSION}: {rel} does not contain exactly one "
                             f"{old!r}; update FERRETDB_PATCHES in stack/localstack.py for this version")
        path.write_text(text.replace(old, new))


def provision_ferretdb() -> Path:
    """Build the wrapper in stack/ferretdb against a patched copy of FerretDB's module."""
    binary = ferretdb_binary()
    if binary.exists():
        return binary
    go = require_tool("go", "build FerretDB from the Go module proxy",
                      "Install Go 1.24 or newer (https://go.dev/doc/install or `apt-get install golang`).")
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0"}
    module = f"github.com/FerretDB/FerretDB@{FERRETDB_VERSION}"
    run_logged([go, "mod", "download", module], cwd=HERE / "ferretdb", env=env,
               what=f"downloading FerretDB {FERRETDB_VERSION} from the Go module proxy")
    listed = subprocess.run([go, "mod", "download", "-json", module], cwd=HERE / "ferretdb", env=env,
                            capture_output=True, text=True, check=True)
    build = binary.parent / "build"
    shutil.rmtree(build, ignore_errors=True)
    src = build / "FerretDB"
    shutil.copytree(json.loads(listed.stdout)["Dir"], src)
    for path in [src, *src.rglob("*")]:  # the module cache is read-only
        path.chmod(path.stat().st_mode | 0o200)
    patch_ferretdb_source(src)
    wrapper = build / "wrapper"
    wrapper.mkdir()
    for name in ("main.go", "go.mod", "go.sum"):
        shutil.copy(HERE / "ferretdb" / name, wrapper / name)
    run_logged([go, "mod", "edit", f"-replace=github.com/FerretDB/FerretDB={src}"], cwd=wrapper, env=env,
               what="pointing the wrapper at the patched FerretDB source")
    run_logged([go, "build", "-trimpath", "-o", str(binary), "."], cwd=wrapper, env=env,
               what=f"building FerretDB {FERRETDB_VERSION} (SQLite backend, patched)")
    shutil.rmtree(build, ignore_errors=True)
    return binary


def helm_binary() -> Path:
    return cache_dir() / "helm" / HELM_VERSION / "helm"


def provision_helm() -> Path:
    binary = helm_binary()
    if binary.exists():
        return binary
    go = require_tool("go", "build Helm from the Go module proxy",
                      "Install Go 1.24 or newer.")
    binary.parent.mkdir(parents=True, exist_ok=True)
    run_logged([go, "install", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
               env={**os.environ, "GOBIN": str(binary.parent), "CGO_ENABLED": "0"},
               what=f"building Helm {HELM_VERSION}")
    return binary


def find_prometheus() -> Path | None:
    """The `prometheus` binary, when installed (the Debian package puts it in /usr/bin)."""
    found = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/local/bin")
    return Path(found) if found else None


def provision_prometheus() -> tuple[Path | None, str]:
    """The binary, installing it with scripts/ensure-prometheus.sh when root; else (None, why)."""
    found = find_prometheus()
    if found:
        return found, ""
    if os.geteuid() != 0:
        return None, ("`prometheus` is not installed (as root: apt-get install --no-install-recommends "
                      "prometheus, or run scripts/ensure-prometheus.sh)")
    script = HERE.parent / "scripts" / "ensure-prometheus.sh"
    log("installing Prometheus (Debian package `prometheus`) ...")
    try:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{script.name} failed: {exc}"
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return None, f"{script.name} could not install it (exit {proc.returncode}): {tail}"
    lines = proc.stdout.strip().splitlines()
    binary = Path(lines[-1]) / "prometheus" if lines else None
    if binary is None or not os.access(binary, os.X_OK):
        return None, f"{script.name} succeeded but printed no usable directory"
    return binary, ""


# --------------------------------------------------------------------------- processes


@dataclass
class Service:
    name: str
    port: int

    @property
    def dir(self) -> Path:
        return state_dir() / self.name

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def port_open(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0


def kafka_service() -> Service:
    return Service("kafka", kafka_port())


def ferretdb_service() -> Service:
    return Service("ferretdb", mongo_port())


def prometheus_service() -> Service:
    return Service("prometheus", prometheus_port())


def _spawn(service: Service, cmd: list[str], cwd: Path) -> None:
    service.dir.mkdir(parents=True, exist_ok=True)
    with open(service.log_file, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    service.pid_file.write_text(str(proc.pid))


def _check_port_free(service: Service) -> None:
    if service.port_open():
        raise StackError(
            f"port {service.port} is already in use by a process this stack did not start; "
            f"stop it or choose another port (GRAPHRAG_{'KAFKA' if service.name == 'kafka' else 'MONGO'}_PORT)."
        )


def start_kafka() -> Service:
    svc = kafka_service()
    if svc.pid():
        return svc
    _check_port_free(svc)
    home = provision_kafka()
    data = svc.dir / "data"
    props = svc.dir / "server.properties"
    controller = svc.port + 1
    props.parent.mkdir(parents=True, exist_ok=True)
    listeners = [f"PLAINTEXT://127.0.0.1:{svc.port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    secure: list[str] = []
    if secure_profile():
        tls = tls_files()
        listeners += [f"SASL_SSL://127.0.0.1:{kafka_sasl_ssl_port()}", f"MTLS://127.0.0.1:{kafka_mtls_port()}"]
        protocols += ["SASL_SSL:SASL_SSL", "MTLS:SSL"]
        secure = [
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls.server_keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca}",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.mtls.ssl.client.auth=required",
        ]
    props.write_text("\n".join([
        "# written by stack/localstack.py: single-node KRaft broker on loopback",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners={','.join([*listeners, f'CONTROLLER://127.0.0.1:{controller}'])}",
        f"advertised.listeners={','.join(listeners)}",
        "controller.listener.names=CONTROLLER",
        f"listener.security.protocol.map={','.join(protocols)}",
        "inter.broker.listener.name=PLAINTEXT",
        *secure,
        f"log.dirs={data}",
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "",
    ]))
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # One ID in 64 starts with "-": as a separate argument the tool would read it as a flag.
        run_logged(["java", *JVM_QUICK, "-cp", kafka_classpath(), "kafka.tools.StorageTool", "format",
                    f"--cluster-id={cluster_id}", "-c", str(props)],
                   what="formatting the KRaft storage directory")
    heap = os.environ.get("GRAPHRAG_KAFKA_HEAP", "-Xms256m -Xmx768m").split()
    _spawn(svc, ["java", *heap, *JVM_QUICK, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
                 "-cp", kafka_classpath(), "kafka.Kafka", str(props)], cwd=svc.dir)
    log(f"Kafka {KAFKA_VERSION} starting on 127.0.0.1:{svc.port} (log: {svc.log_file})")
    return svc


def start_ferretdb() -> Service:
    svc = ferretdb_service()
    binary = provision_ferretdb()
    pid = svc.pid()
    if pid:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/exe").resolve() != binary.resolve():
                log(f"FerretDB runs an older build than {binary} (other patches or wrapper); "
                    "`make stack-down && make stack-up` restarts it with this one (data kept)")
        return svc
    _check_port_free(svc)
    tls: list[str] = []
    if secure_profile():
        files = tls_files()
        tls = [f"-listen-tls=127.0.0.1:{mongo_tls_port()}", f"-listen-tls-cert-file={files.server_cert}",
               f"-listen-tls-key-file={files.server_key}"]
        # No -listen-tls-ca-file: with it FerretDB requires client certificates, and the
        # project's mongodb settings verify the server (tls_ca_file) without presenting one.
    _spawn(svc, [str(binary), f"-listen=127.0.0.1:{svc.port}", f"-data-dir={svc.dir / 'data'}", *tls],
           cwd=svc.dir)
    log(f"FerretDB {FERRETDB_VERSION} starting on 127.0.0.1:{svc.port} (log: {svc.log_file})")
    return svc


ALERT_RULES = HERE.parent / "helm" / "graphrag-streams" / "files" / "prometheus" / "alerts.yml"


def prometheus_config() -> str:
    """prometheus.yml for the local stack: the demo's workers and lag exporter every 5s."""
    workers = ", ".join(f'"127.0.0.1:{p}"' for p in worker_metrics_ports())
    lines = [
        "# written by stack/localstack.py `up` (rewritten on every `up`; edits are lost)",
        "global:",
        "  scrape_interval: 5s",
        "  scrape_timeout: 5s",
        "  evaluation_interval: 5s",
    ]
    if ALERT_RULES.is_file():
        lines += ["rule_files:", f"  - {json.dumps(str(ALERT_RULES))}"]
    lines += [
        "scrape_configs:",
        "  - job_name: graphrag-workers  # `worker --stages all`: stage i on metrics_port + i",
        "    static_configs:",
        f"      - targets: [{workers}]",
        "  - job_name: graphrag-lag-exporter",
        "    static_configs:",
        f'      - targets: ["127.0.0.1:{lag_exporter_port()}"]',
        "",
    ]
    return "\n".join(lines)


def start_prometheus() -> tuple[Service | None, str]:
    """Start Prometheus if it can be; returns (service, "") or (None, why it was skipped)."""
    svc = prometheus_service()
    svc.dir.mkdir(parents=True, exist_ok=True)
    config = svc.dir / "prometheus.yml"
    pid = svc.pid()
    if pid:
        new = prometheus_config()
        if not config.is_file() or config.read_text() != new:
            config.write_text(new)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)  # Prometheus reloads its configuration
            log("Prometheus configuration changed; reloaded it")
        return svc, ""
    if svc.port_open():
        return None, (f"port {svc.port} is already in use by a process this stack did not start "
                      "(set GRAPHRAG_PROMETHEUS_PORT to use another)")
    binary, why = provision_prometheus()
    if binary is None:
        return None, why
    config.write_text(prometheus_config())
    _spawn(svc, [str(binary), f"--config.file={config}", f"--storage.tsdb.path={svc.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{svc.port}", "--storage.tsdb.retention.time=7d",
                 "--web.enable-lifecycle"], cwd=svc.dir)
    log(f"Prometheus starting on http://127.0.0.1:{svc.port} (log: {svc.log_file})")
    return svc, ""


def prometheus_ready(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def kafka_ready(port: int) -> bool:
    try:
        from confluent_kafka.admin import AdminClient  # type: ignore[import-not-found]
    except ImportError:
        return _tcp_ready(port)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0,
                             "logger": _quiet_logger()})
        md = admin.list_topics(timeout=2)
        return bool(md.brokers)
    except Exception:
        return False


def group_coordinator_ready(port: int) -> bool:
    """Whether the broker's group coordinator answers: a fresh broker creates
    ``__consumer_offsets`` at the first group lookup, and every app's first join waits
    for it, so `up` returns only once that is done (needs confluent-kafka)."""
    try:
        from confluent_kafka.admin import AdminClient  # type: ignore[import-not-found]
    except ImportError:
        return True
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0,
                             "logger": _quiet_logger()})
        result = admin.describe_consumer_groups(["localstack-coordinator-probe"], request_timeout=5)
        result["localstack-coordinator-probe"].result(timeout=6)
        topic = admin.list_topics("__consumer_offsets", timeout=3).topics.get("__consumer_offsets")
        return topic is not None and topic.error is None and bool(topic.partitions) and all(
            p.leader >= 0 for p in topic.partitions.values())
    except Exception:
        return False


def _quiet_logger():
    import logging

    quiet = logging.getLogger("localstack.rdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def mongo_ready(port: int) -> bool:
    try:
        import pymongo  # type: ignore[import-not-found]
    except ImportError:
        return _tcp_ready(port)
    try:
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=1500)
        try:
            client.admin.command("ping")
        finally:
            client.close()
        return True
    except Exception:
        return False


def _tcp_ready(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(svc: Service, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(svc.port):
            return
        if svc.pid() is None:
            tail = _tail(svc.log_file, 25)
            raise StackError(f"{svc.name} exited during start-up; last lines of {svc.log_file}:\n{tail}")
        time.sleep(0.5)
    raise StackError(f"{svc.name} did not answer on 127.0.0.1:{svc.port} within {timeout:.0f}s; "
                     f"see {svc.log_file}")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(svc: Service, timeout: float = 30.0) -> bool:
    pid = svc.pid()
    if pid is None:
        svc.pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and svc.pid() is not None:
        time.sleep(0.2)
    if svc.pid() is not None:
        log(f"{svc.name} did not stop within {timeout:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
    svc.pid_file.unlink(missing_ok=True)
    return True


# --------------------------------------------------------------------------- commands


def cmd_provision(_: argparse.Namespace) -> int:
    provision_kafka()
    provision_ferretdb()
    log(f"artefacts cached under {cache_dir()}")
    return 0


def create_scram_user(port: int) -> None:
    """The SCRAM-SHA-512 user of the SASL_SSL listener, with Kafka's own ConfigCommand over
    the plaintext listener (idempotent; the password goes in a file, not on the command line)."""
    tls = tls_files()
    config = tls.dir / "scram-user.properties"
    password = tls.sasl_password.read_text()
    # In a file ConfigCommand takes the credential without the brackets of --add-config.
    config.write_text(f"SCRAM-SHA-512=password={password}\n")
    config.chmod(0o600)
    try:
        run_logged(["java", *JVM_QUICK, "-cp", kafka_classpath(), "kafka.admin.ConfigCommand",
                    "--bootstrap-server", f"127.0.0.1:{port}", "--alter", "--entity-type", "users",
                    "--entity-name", SCRAM_USER, "--add-config-file", str(config)],
                   what=f"creating the SCRAM-SHA-512 user {SCRAM_USER}", redact=(password,))
    finally:
        config.unlink(missing_ok=True)


def secure_settings() -> dict[str, dict[str, str]]:
    """What reaches each secure listener, as the project's settings keys (and file paths)."""
    tls = tls_files()
    return {
        "sasl_ssl": {"bootstrap_servers": f"127.0.0.1:{kafka_sasl_ssl_port()}", "security_protocol": "SASL_SSL",
                     "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": SCRAM_USER,
                     "sasl_password_file": str(tls.sasl_password), "ssl_cafile": str(tls.ca)},
        "mtls": {"bootstrap_servers": f"127.0.0.1:{kafka_mtls_port()}", "security_protocol": "SSL",
                 "ssl_cafile": str(tls.ca), "ssl_certfile": str(tls.client_cert),
                 "ssl_keyfile": str(tls.client_key), "ssl_key_password_file": str(tls.client_key_password)},
        "mongodb_tls": {"uri": f"mongodb://127.0.0.1:{mongo_tls_port()}/?tls=true", "tls_ca_file": str(tls.ca)},
    }


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.secure and not secure_profile():
        if kafka_service().pid() or ferretdb_service().pid():
            raise StackError("the stack runs without the secure profile; stop it first (`make stack-down`), "
                             "then `up --secure` restarts it with the secure listeners (data kept)")
        secure_marker().parent.mkdir(parents=True, exist_ok=True)
        secure_marker().write_text("SASL_SSL/SCRAM-SHA-512 and mTLS listeners, FerretDB TLS\n")
        tls_files()
    # Both artefacts first, so a missing tool is reported before anything starts.
    provision_kafka()
    provision_ferretdb()
    kafka = start_kafka()
    ferret = start_ferretdb()
    wait_ready(ferret, mongo_ready, args.timeout)
    wait_ready(kafka, kafka_ready, args.timeout)
    wait_ready(kafka, group_coordinator_ready, args.timeout)
    if secure_profile():
        create_scram_user(kafka.port)
        log(f"secure listeners: SASL_SSL 127.0.0.1:{kafka_sasl_ssl_port()}, mTLS 127.0.0.1:{kafka_mtls_port()}, "
            f"FerretDB TLS 127.0.0.1:{mongo_tls_port()} (CA and credentials under {tls_files().dir})")
    prom = up_prometheus(args)
    log(f"stack ready in {time.monotonic() - started:.0f}s: "
        f"Kafka 127.0.0.1:{kafka.port}, FerretDB mongodb://127.0.0.1:{ferret.port}"
        + (f", Prometheus http://127.0.0.1:{prom.port}" if prom else ""))
    return 0


def up_prometheus(args: argparse.Namespace) -> Service | None:
    """Prometheus is optional: any problem is reported and `up` carries on without it."""
    if args.no_prometheus:
        log("Prometheus skipped (--no-prometheus)")
        return None
    svc = prometheus_service()
    svc.dir.mkdir(parents=True, exist_ok=True)
    # Test sessions run `up` concurrently: one of them starts Prometheus, the others find it.
    with open(svc.dir / "up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prom, why = start_prometheus()
        if prom is None:
            log(f"Prometheus skipped: {why}")
            return None
        try:
            wait_ready(prom, prometheus_ready, min(args.timeout, 60.0))
        except StackError as exc:
            stop(prom, timeout=10)
            log(f"Prometheus skipped: {exc}")
            return None
    return prom


def cmd_down(args: argparse.Namespace) -> int:
    for svc in (prometheus_service(), kafka_service(), ferretdb_service()):
        if stop(svc):
            log(f"stopped {svc.name}")
        else:
            log(f"{svc.name} was not running (under {state_dir()})")
        if args.wipe and svc.dir.exists():
            shutil.rmtree(svc.dir)
            log(f"wiped {svc.dir}")
    if args.wipe:  # the demo's worker and exporter logs live beside the services
        for leftover in state_dir().glob("demo-*.log"):
            leftover.unlink()
        if (state_dir() / "tls").exists():
            shutil.rmtree(state_dir() / "tls")
        secure_marker().unlink(missing_ok=True)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop one service, keeping its data (`up` starts it again): for fault tests."""
    svc = {"kafka": kafka_service, "ferretdb": ferretdb_service, "prometheus": prometheus_service}[args.service]()
    log(f"stopped {svc.name}" if stop(svc) else f"{svc.name} was not running (under {state_dir()})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = []
    services = ((kafka_service(), kafka_ready, True), (ferretdb_service(), mongo_ready, True),
                (prometheus_service(), prometheus_ready, False))
    for svc, check, required in services:
        pid = svc.pid()
        rows.append({
            "service": svc.name,
            "address": f"127.0.0.1:{svc.port}",
            "pid": pid,
            "running": pid is not None,
            "answering": check(svc.port) if pid else False,
            "required": required,
            "log": str(svc.log_file),
        })
    prom = rows[-1]
    if prom["answering"]:
        prom["url"] = f"http://{prom['address']}"
    if not prom["running"] and find_prometheus() is None:
        prom["note"] = "not installed (optional)"
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "state_dir": str(state_dir()), "services": rows,
                          **({"secure": secure_settings()} if secure_profile() else {})}, indent=2))
    else:
        print(f"cache: {cache_dir()}\nstate: {state_dir()}")
        for r in rows:
            state = "up" if r["answering"] else ("starting/unhealthy" if r["running"] else "down")
            if r.get("note"):
                state = r["note"]
            print(f"  {r['service']:<10} {r['address']:<16} {state:<18} pid={r['pid']}  log={r['log']}")
    # Prometheus is optional: the exit code (scripts/run-tests.sh relies on it) is Kafka and FerretDB's.
    return 0 if all(r["answering"] for r in rows if r["required"]) else 3


def _free_port(block: int = 1) -> int:
    """A loopback port nobody listens on, and the ``block - 1`` after it too (the KRaft
    controller and the secure profile's listeners sit beside the broker's port)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + block > 65535:
            continue
        try:
            with contextlib.ExitStack() as held:
                for extra in range(1, block):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port + extra))
        except OSError:
            continue
        return port
    raise StackError("found no free loopback port")


def cmd_free_ports(_: argparse.Namespace) -> int:
    """Print shell assignments of free ports for a second stack (make test's fresh one)."""
    print(f"GRAPHRAG_KAFKA_PORT={_free_port(block=4)} GRAPHRAG_MONGO_PORT={_free_port(block=2)} "
          f"GRAPHRAG_PROMETHEUS_PORT={_free_port()}")
    return 0


def cmd_helm(_: argparse.Namespace) -> int:
    print(provision_helm())
    return 0


def cmd_kafka_classpath(_: argparse.Namespace) -> int:
    provision_kafka()
    print(kafka_classpath())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="provision on first use, start Kafka and FerretDB (and Prometheus when "
                                   "available), wait until they answer")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.add_argument("--no-prometheus", action="store_true", help="do not start (or install) Prometheus")
    up.add_argument("--secure", action="store_true",
                    help="the secure profile: SASL_SSL/SCRAM and mTLS listeners, FerretDB TLS (kept for this "
                         "stack directory; `down --wipe` forgets it)")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop what `up` started; data is kept unless --wipe")
    down.add_argument("--wipe", action="store_true", help="also delete data and logs")
    down.set_defaults(func=cmd_down)
    stop_one = sub.add_parser("stop", help="stop one service, data kept (`up` starts it again)")
    stop_one.add_argument("service", choices=["kafka", "ferretdb", "prometheus"])
    stop_one.set_defaults(func=cmd_stop)
    status = sub.add_parser("status", help="show what runs (exit 3 when Kafka or FerretDB does not answer)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    sub.add_parser("provision", help="download/build Kafka and FerretDB only").set_defaults(func=cmd_provision)
    sub.add_parser("free-ports", help="print free loopback ports for a second stack (as VAR=port)").set_defaults(
        func=cmd_free_ports)
    sub.add_parser("helm", help="build Helm if needed and print its path").set_defaults(func=cmd_helm)
    sub.add_parser("kafka-classpath", help="print the Kafka classpath (for the Kafka CLI tools)").set_defaults(
        func=cmd_kafka_classpath)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StackError as exc:
        log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
