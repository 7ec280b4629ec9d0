"""Test helpers: isolated deployments on the shared broker and database, worker processes,
raw produce/consume and waiting for quiescence. No mocks: everything talks to the real
Kafka broker and the real MongoDB-compatible server."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pickle  # nosec B403: our own test results, written and read by this session only
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from filelock import FileLock

from schemas import ChunkExtraction, ExtractedEntity, ExtractedRelation, TranscriptChunk
from schemas.events import utcnow
from streams.kafka.clients import client_config, make_admin
from streams.kafka.codec import encode
from streams.kafka.offsets import watermarks
from streams.kafka.topics import Stage, group_id
from streams.model.ids import chunk_id
from streams.monitoring.lag import measure_lag, stage_groups, total_lag
from streams.settings import Settings, load_settings

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
#: ``openai`` settings for tests that run the corpus through LLM extraction and are not about
#: the rate limits (tests/unit/test_llm_rate.py is): the defaults, 500 requests and 200,000
#: tokens a minute, held such a run to about 1.3 calls a second against the local fake once the
#: token budget was spent (each call reserves its prompt and max_output_tokens): a re-index of
#: the corpus's 302 chunks took 183 s where the calls themselves need seconds.
NO_RATE_LIMITS = {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000}


@dataclass(frozen=True)
class Services:
    bootstrap: str
    mongo_uri: str


class LocalStack:
    """A local stack of its own (stack/localstack.py) in ``state_dir``, on free loopback
    ports: for a test that stops or restarts the broker or the database, which must not
    touch the stack every other test (and, under xdist, every other process) shares."""

    def __init__(self, state_dir: Path) -> None:
        ports = dict(pair.split("=", 1) for pair in self._run("free-ports", env=dict(os.environ)).split())
        self.env = {**os.environ, **ports, "GRAPHRAG_STACK_DIR": str(state_dir)}
        self.services = Services(f"127.0.0.1:{ports['GRAPHRAG_KAFKA_PORT']}",
                                 f"mongodb://127.0.0.1:{ports['GRAPHRAG_MONGO_PORT']}")

    @staticmethod
    def _run(*args: str, env: dict[str, str], timeout: float = 300) -> str:
        return LocalStack._call(*args, env=env, timeout=timeout).stdout

    @staticmethod
    def _call(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, str(ROOT / "stack" / "localstack.py"), *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"localstack {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def run(self, *args: str, timeout: float = 300) -> str:
        """``localstack.py ARGS`` on this stack; its output (raises with stderr on failure)."""
        return self._run(*args, env=self.env, timeout=timeout)

    def up(self, *options: str) -> subprocess.CompletedProcess[str]:
        """Start it (or whatever of it is down): ``up --no-prometheus OPTIONS``."""
        return self._call("up", "--no-prometheus", *options, env=self.env, timeout=300)

    def down(self, keep_logs_in: Path | None = None) -> None:
        """Stop it and delete its data; never raises (a finaliser). ``keep_logs_in``: copy the
        broker's and the database's logs there first, as they are at the end of the test (by
        path: the data directories change while topics are deleted)."""
        if keep_logs_in is not None:
            state = Path(self.env["GRAPHRAG_STACK_DIR"])
            keep_logs_in.mkdir(parents=True, exist_ok=True)
            for log in (state / "kafka" / "kafka.log", state / "ferretdb" / "ferretdb.log"):
                with contextlib.suppress(OSError):
                    shutil.copyfile(log, keep_logs_in / log.name)
        with contextlib.suppress(Exception):
            self.run("down", "--wipe", timeout=180)


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, compute: Callable[[], T]) -> T:
    """``compute()`` once for the whole session, even when xdist runs it in several processes:
    the first to ask computes it under a file lock and leaves it pickled in the session's
    temporary root (which only this session's processes share); the others wait and read it.
    For expensive, read-only results (a clean corpus run) that tests on any process compare with."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return compute()
    path = tmp_path_factory.getbasetemp().parent / f"{name}.pickle"
    with FileLock(f"{path}.lock"):
        if path.is_file():
            value: T = pickle.loads(path.read_bytes())  # nosec B301: written by compute() above, this session
            return value
        value = compute()
        path.write_bytes(pickle.dumps(value))
        return value


def only_once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    """Fail when a second xdist process starts the session fixture ``name``: its tests are
    meant to share one process (--dist loadgroup, xdist_group), and grouping that silently
    stopped working (pytest-dev/pytest-xdist#1386) would run it once per process instead."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    claim = tmp_path_factory.getbasetemp().parent / f"{name}.started-by"
    try:
        with claim.open("x") as f:
            f.write(worker)
    except FileExistsError:
        raise AssertionError(f"{name} started again in {worker} after {claim.read_text()}: xdist is not "
                             "grouping its tests into one process (--dist loadgroup, xdist_group)") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


#: The variables that make coverage measure a Python process it did not start itself
#: (coverage's patch = subprocess: its .pth file starts measuring when one is set).
UNMEASURED = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


@dataclass
class Deployment:
    """One isolated deployment: its own topic prefix, consumer groups and database."""

    services: Services
    tmp: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:8])
    workers: list[WorkerProcess] = field(default_factory=list)
    #: Whether coverage measures this deployment's processes (make test measures every
    #: process it starts). False for a reference run that executes nothing another run does
    #: not: tracing costs a worker about 1.6x its CPU, on a suite bound by 2 cores' CPU.
    measured: bool = True
    _topics_created: bool = False

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        base = yaml.safe_load((ROOT / "config" / "development.yaml").read_text())
        fixed = {
            "log_level": "INFO",
            "mongodb": {"uri": self.services.mongo_uri, "database": self.name},
            "kafka": {"bootstrap_servers": self.services.bootstrap, "topic_prefix": f"{self.name}.",
                      "partitions": 3},
            "monitoring": {"metrics_port": 0},
            "openai": {"api_key": "", "base_url": ""},
            # The plain rules (1.5 ms of CPU per chunk, spaCy 75): what a run tests does not
            # depend on which offline extractor found the entities. The session's corpus run
            # and the demo's run take spaCy, the default where the nlp extra is installed.
            "graphrag": {"extraction": {"offline_extractor": "rules"}},
        }
        self.config_path = self.tmp / f"{self.name}.yaml"
        self.config_path.write_text(yaml.safe_dump(deep_merge(deep_merge(base, fixed), self.overrides)))
        self.settings: Settings = load_settings(self.config_path, env={})

    @property
    def env(self) -> dict[str, str]:
        unwanted = ("GRAPHRAG_", "OPENAI_", "KAFKA_") + (() if self.measured else UNMEASURED)
        env = {k: v for k, v in os.environ.items() if not k.startswith(unwanted)}
        return {**env, "GRAPHRAG_CONFIG": str(self.config_path), "PYTHONUNBUFFERED": "1"}

    def cli(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"graphrag-streams {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def create_topics(self) -> None:
        """`topics create`, as every deployment does before its apps start (idempotent)."""
        if not self._topics_created:
            self.cli("topics", "create")
            self._topics_created = True

    def start_worker(self, stages: str = "all", *, create_topics: bool = True) -> WorkerProcess:
        if create_topics:
            self.create_topics()
        w = WorkerProcess(self, stages)
        w.start()
        self.workers.append(w)
        return w

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers.clear()

    def cleanup(self) -> None:
        self.stop_workers()
        remove_data(self.services, (self.name,), self.name)


# What the deployment_factory fixture (tests/integration/conftest.py) gives a test: call it,
# with config overrides or none, for another isolated deployment.
DeploymentFactory = Callable[..., Deployment]


def remove_data(services: Services, topic_prefixes: tuple[str, ...], database: str) -> None:
    """Delete a deployment's topics (those starting with one of the prefixes) and database."""
    import pymongo
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(topic_prefixes)]
    if mine:
        for fut in admin.delete_topics(mine, request_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(services.mongo_uri,
                                                                      serverSelectionTimeoutMS=5000)
    with contextlib.suppress(Exception):  # a test may point a deployment at a dead database
        client.drop_database(database)
    client.close()


class WorkerProcess:
    def __init__(self, deployment: Deployment, stages: str) -> None:
        self.d = deployment
        self.stages = stages
        self.log_path = deployment.tmp / f"worker-{stages.replace(',', '_')}-{uuid.uuid4().hex[:4]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--stages", self.stages],
                                     cwd=ROOT, env=self.d.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 40) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        self.proc = None

    def log_lines(self, text: str) -> list[str]:
        """The lines of the worker's log (every app's) that contain ``text``."""
        try:
            return [line for line in self.log_path.read_text(errors="replace").splitlines() if text in line]
        except OSError:
            return []

    def log_count(self, text: str) -> int:
        """How many lines of the worker's log (every app's) contain ``text``."""
        return len(self.log_lines(text))

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stall_lines(worker: WorkerProcess) -> list[str]:
    """The log lines of the worker's apps that stopped themselves on a stall (agents/stall.py)."""
    return worker.log_lines("is stalled")


def assert_no_stall(*workers: WorkerProcess) -> None:
    """No app of these workers stopped itself on a stall (agents/stall.py): on small data a
    stall means a record that was never delivered, which a restart only hides."""
    for w in workers:
        stalls = stall_lines(w)
        assert not stalls, "\n".join(stalls)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 1.0,
               message: str | Callable[[], str] = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {text}")
        time.sleep(interval)


def wait_videos_finished(store: Any, ids: Sequence[str], worker: WorkerProcess, timeout: float,
                         what: str = "the videos done") -> None:
    """Until every video is done or failed (its status document), failing at once with the
    log tail if the worker dies meanwhile."""
    def finished() -> bool:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        docs = store.videos.find(list(ids))
        return len(docs) == len(ids) and all(x["status"] in ("done", "failed") for x in docs)

    wait_until(finished, timeout=timeout, interval=2, message=lambda: f"{what}; worker log:\n{worker.log_tail()}")


def wait_llm_outage_waited_out(worker: WorkerProcess, opened_before: int, down_at: float,
                               longer_than: float) -> None:
    """Until the worker's LLM circuit has opened (more often than ``opened_before``), two
    half-open probes have failed, and the server has been down for longer than ``longer_than``
    seconds since ``down_at``: an outage the pipeline has visibly waited out, not a fixed sleep."""
    wait_until(lambda: worker.log_count("LLM circuit closed -> open") > opened_before, timeout=120, interval=0.5,
               message=lambda: f"the circuit open; log:\n{worker.log_tail()}")
    wait_until(lambda: worker.log_count("LLM circuit half_open -> open") >= 2
               and time.monotonic() - down_at > longer_than, timeout=longer_than + 120, interval=0.5,
               message=lambda: f"two failed probes and {longer_than:.0f} s down; log:\n{worker.log_tail()}")


def produce_raw(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    p = Producer({**client_config(settings.kafka), "message.max.bytes": 10_000_000})
    errors: list[str] = []
    for key, value in messages:
        p.produce(topic, key=key, value=value,
                  on_delivery=lambda err, msg: errors.append(str(err)) if err else None)
    assert p.flush(30) == 0
    assert not errors, errors


def consume_all(settings: Settings, topic: str, timeout: float = 10.0) -> list[Any]:
    """Every message currently in a topic (all partitions, from the beginning)."""
    c = Consumer({**client_config(settings.kafka), "group.id": f"test-reader-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.message.max.bytes": 10_000_000})
    try:
        md = c.list_topics(topic, timeout=timeout).topics[topic]
        ends = {}
        for p in md.partitions:
            low, high = watermarks(c, TopicPartition(topic, p), timeout)
            if high > low:
                ends[p] = high
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out = []
        while ends:
            msg = c.poll(timeout)
            if msg is None:
                raise AssertionError(f"could not read {topic} to its end; missing partitions {sorted(ends)}")
            if msg.error():
                continue
            out.append(msg)
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        return out
    finally:
        c.close()


def wait_quiescent(settings: Settings, timeout: float = 300, stable_for: float = 4.0,
                   workers: Sequence[WorkerProcess] = (), stages: Iterable[Stage] | None = None) -> None:
    """Wait until the stages' groups (default: all) consumed everything and nothing new arrives."""
    groups = stage_groups(settings, stages) if stages is not None else None
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    last_ends: tuple[int, ...] | None = None
    while True:
        for w in workers:
            if not w.alive():
                raise AssertionError(f"worker {w.stages} died:\n{w.log_tail()}")
        rows = measure_lag(settings, groups)
        ends = tuple(r.log_end for r in rows)
        if total_lag(rows) == 0 and ends == last_ends:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= stable_for:
                return
        else:
            quiet_since = None
        last_ends = ends
        if time.monotonic() > deadline:
            busy = [(r.group, r.topic, r.partition, r.lag) for r in rows if r.lag]
            raise AssertionError(f"pipeline not quiescent after {timeout:.0f}s; lagging: {busy}")
        time.sleep(1.0)


def manifest() -> list[dict[str, Any]]:
    return json.loads((CORPUS / "manifest.json").read_text())


#: The part of the corpus `corpus_sample` takes by default: 3 videos, ~100k of its ~594k
#: characters, 62 chunks (a third was 10 videos, ~105 chunks).
SAMPLE_FRACTION = 1 / 6


def corpus_sample(fraction: float = SAMPLE_FRACTION) -> list[dict[str, Any]]:
    """Part of the corpus, for the tests whose property does not grow with the data (a fault
    survived, a replay, a re-run from the cache) but whose cost does: videos taken from each
    channel in turn, in manifest order, until they hold ``fraction`` of the corpus's
    characters. Deterministic; every channel has a video in it while the budget lasts."""
    entries = manifest()
    budget = fraction * sum(e["chars"] for e in entries)
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_channel.setdefault(e["channel"], []).append(e)
    queues = list(by_channel.values())
    chosen: list[dict[str, Any]] = []
    total = 0
    while total < budget and any(queues):
        for queue in queues:
            if queue and total < budget:
                entry = queue.pop(0)
                chosen.append(entry)
                total += entry["chars"]
    return chosen


def reset_groups_to_earliest(settings: Settings) -> None:
    """Move every stage's group to offset 0 of all its inputs (workers stopped): a full replay."""
    admin = make_admin(settings)
    md = admin.list_topics(timeout=10).topics
    for group, topics in stage_groups(settings).items():  # the API takes one group per call
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, 0) for t in topics for p in md[t].partitions])
        admin.alter_consumer_group_offsets([req])[group].result()


def extractions_by_chunk(settings: Settings) -> dict[str, set[str]]:
    """Every distinct extraction published per chunk (``graph.extractions``), as canonical
    JSON without the chunk: what the extract stage found, before any entity resolution. A
    redelivered chunk publishes its extraction again; after a fault each chunk must still
    have exactly the one extraction of a clean run."""
    out: dict[str, set[str]] = {}
    for m in consume_all(settings, f"{settings.kafka.topic_prefix}graph.extractions"):
        extraction = ChunkExtraction.model_validate_json(m.value())
        found = extraction.model_dump(mode="json", exclude={"chunk", "schema_version"})
        found["entities"] = sorted(json.dumps(e, sort_keys=True) for e in found["entities"])
        found["relations"] = sorted(json.dumps(r, sort_keys=True) for r in found["relations"])
        out.setdefault(extraction.chunk.chunk_id, set()).add(json.dumps(found, sort_keys=True))
    return out


def evidence_mismatches(store: Any) -> list[str]:
    """Entities and relations whose counts differ from their evidence documents: counts are
    reconciled from evidence, so a redelivery (after a fault) must never count twice."""
    mentions: dict[str, int] = {}
    for m in store.db.entity_mentions.find({}, {"entity_id": 1}):
        mentions[m["entity_id"]] = mentions.get(m["entity_id"], 0) + 1
    evidence: dict[str, int] = {}
    for e in store.db.relation_evidence.find({}, {"relation_id": 1}):
        evidence[e["relation_id"]] = evidence.get(e["relation_id"], 0) + 1
    bad = [f"entity {e['_id']}: {e.get('mention_count')} != {mentions.get(e['_id'], 0)}"
           for e in store.db.entities.find({}, {"mention_count": 1})
           if e.get("mention_count") != mentions.get(e["_id"], 0)]
    bad += [f"relation {r['_id']}: {r.get('evidence_count')} != {evidence.get(r['_id'], 0)}"
            for r in store.db.relations.find({}, {"evidence_count": 1})
            if r.get("evidence_count") != evidence.get(r["_id"], 0)]
    return bad


def supervised_children(worker: WorkerProcess) -> dict[str, int]:
    """stage -> pid of the child processes a `worker --stages a,b,...` supervisor runs (from
    /proc). A child is titled ``graphrag-streams worker --stages <stage>`` until its Faust
    worker retitles it ``[Faust:Worker] -<state>- <app id> ...``; the app id is the stage's group."""
    by_group = {group_id(worker.d.settings, s): s.value for s in Stage}
    stages = set(by_group.values())
    out = {}
    parent = worker.proc.pid if worker.proc is not None else -1
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:  # a retitled process's is one string
                args = [a.decode(errors="replace") for a in f.read().replace(b"\0", b" ").split()]
        except (OSError, IndexError, ValueError):
            continue
        if "--stages" in args:
            # A child is a fork: until it retitles itself it has the supervisor's command line
            # (``--stages fetch,chunk``), which names no one stage; it is counted once it does.
            stage = args[args.index("--stages") + 1] if args.index("--stages") + 1 < len(args) else ""
            if stage in stages:
                out[stage] = int(entry)
        elif args[:1] == ["[Faust:Worker]"] and len(args) > 2 and args[2] in by_group:
            out[by_group[args[2]]] = int(entry)
    return out


def extraction_record(index: int, names: Sequence[tuple[str, str]], relations: Sequence[tuple[str, str]] = (),
                      *, chunk_count: int = 20) -> bytes:
    """A chunk extraction naming ``names`` ((name, type)) and ``relations`` ((source, target)),
    encoded as the extract stage publishes it: for tests that feed the resolvers directly."""
    text = f"Chunk {index}: " + ". ".join(f"{n} was mentioned" for n, _ in names) + "."
    chunk = TranscriptChunk(chunk_id=chunk_id("Pw0IZg7_4mo", index, text), video_id="Pw0IZg7_4mo", index=index,
                            chunk_count=chunk_count, text=text, start=float(index * 10), end=float(index * 10 + 9),
                            token_count=20, requested_at=utcnow())
    return encode(ChunkExtraction(
        chunk=chunk, extractor="test", prompt_version="v1",
        entities=[ExtractedEntity(name=n, type=t) for n, t in names],
        relations=[ExtractedRelation(source=a, target=b, type="RELATED_TO", strength=5) for a, b in relations]))


def free_port_block(n: int) -> int:
    """A base port with base .. base+n-1 free (the supervisor gives app i port base+i).

    Below the kernel's ephemeral range: a port in it can be taken by any client connection's
    local end (dozens of Kafka clients per worker, two test processes side by side) between
    this check and the app's bind, and that app's metrics server then never serves."""
    import random
    import socket

    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768  # Linux's default
    low, high = (10000, ephemeral_low) if ephemeral_low > 10000 + 10 * n else (30000, 40000)
    for _ in range(200):
        base = random.randrange(low, high - n)  # a port, not a secret  # nosec B311
        try:
            socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(n)]
        except OSError:
            continue
        for sock in socks:
            sock.close()
        return base
    raise AssertionError("no free port block")


def served_metric(port: int, series: str) -> float | None:
    """The value of one series (its name and labels as /metrics prints them) on the app
    serving /metrics on ``port``; None while the app does not answer or has no such series."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # nosec B310
            text = resp.read().decode()
    except OSError:
        return None
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None
