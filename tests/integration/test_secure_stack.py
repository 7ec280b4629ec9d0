"""The Kafka security path on a real broker: the secure profile of the local stack.

`localstack.py up --secure` starts the same Kafka 4.x with a SASL_SSL listener
(SCRAM-SHA-512, a user made with Kafka's ConfigCommand) and an mTLS listener (client
certificates required), and FerretDB with a TLS listener, all signed by a CA the stack
makes (stack/certs.py). Here the whole pipeline runs on corpus videos over each Kafka
listener, with MongoDB over TLS: librdkafka creates the topics and produces the requests,
the stage workers consume and produce through Faust (aiokafka). A wrong password, an
unknown CA and a missing client certificate each stop `topics create` and the worker at
start, with the broker's reason, what to check, and no secret in any output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.runtime import check_faust_connection
from stack.certs import make_ca
from streams.kafka.clients import KafkaConnectionError, connected_admin
from streams.settings import ChunkingSettings
from streams.store.graph_store import GraphStore
from streams.transcripts.chunking import chunk_segments
from streams.transcripts.parse import parse_transcript
from tests.support import CORPUS, ROOT, Deployment, LocalStack, Services, manifest, wait_videos_finished

# One secure stack for the module: its tests in one xdist process.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("secure-stack")]

# The four shortest corpus videos: every stage and both stores on each listener, in minutes.
VIDEOS = sorted(manifest(), key=lambda e: e["chars"])[:4]


@dataclass(frozen=True)
class SecureStack:
    services: Services  # the plaintext listeners: only for cleaning up after a deployment
    kafka: dict[str, dict[str, Any]]  # listener -> kafka settings, secrets read from their files
    mongodb: dict[str, Any]  # mongodb settings for FerretDB's TLS listener
    secrets: tuple[str, ...]  # every password the profile made: none may appear in any output
    other_ca: Path  # a CA that signed nothing of this stack


def _with_secrets(listener: dict[str, str]) -> dict[str, Any]:
    """The listener's settings as a config file holds them (the password files read)."""
    out: dict[str, Any] = {}
    for key, value in listener.items():
        if key.endswith("_file") and key not in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            out[key.removesuffix("_file")] = Path(value).read_text()
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    tmp = tmp_path_factory.mktemp("secure-stack")
    stack = LocalStack(tmp / "stack")
    try:
        up = stack.up("--secure")
        secure = json.loads(stack.run("status", "--json"))["secure"]
        kafka = {name: _with_secrets(secure[name]) for name in ("sasl_ssl", "mtls")}
        secrets = (kafka["sasl_ssl"]["sasl_password"], kafka["mtls"]["ssl_key_password"])
        for secret in secrets:  # neither is echoed by `up` or `status`
            assert secret not in up.stdout + up.stderr
        _, other_ca = make_ca(tmp / "other-ca", "not-this-stacks-ca", days=2)
        yield SecureStack(stack.services, kafka, dict(secure["mongodb_tls"]), secrets, other_ca)
    finally:
        stack.down()


def _deployment(stack: SecureStack, tmp: Path, kafka: dict[str, Any]) -> Deployment:
    return Deployment(stack.services, tmp, {
        "kafka": kafka,
        "mongodb": stack.mongodb,
        "graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                     "communities": {"interval_seconds": 86400}},
    })


def _expected_chunks(entry: dict[str, Any], chunking: ChunkingSettings) -> int:
    segments = parse_transcript((CORPUS / entry["path"]).read_text(), entry["format"])
    return len(chunk_segments(segments, chunking.tokens, chunking.overlap))


def _assert_no_secret(stack: SecureStack, *texts: str) -> None:
    for secret in stack.secrets:
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
def test_the_pipeline_runs_over_the_secure_listener(secure_stack: SecureStack, tmp_path: Path, listener: str) -> None:
    d = _deployment(secure_stack, tmp_path, secure_stack.kafka[listener])
    assert d.settings.kafka.security_protocol == {"sasl_ssl": "SASL_SSL", "mtls": "SSL"}[listener]
    ids = [e["video_id"] for e in VIDEOS]
    try:
        worker = d.start_worker("all")  # `topics create` first: librdkafka over the same listener
        d.cli("submit", *ids)
        store = GraphStore.from_settings(d.settings)  # pymongo over FerretDB's TLS listener
        wait_videos_finished(store, ids, worker, timeout=600)
        by_id = {v["_id"]: v for v in store.videos.find(ids)}
        for entry in VIDEOS:
            video = by_id[entry["video_id"]]
            assert video["status"] == "done", video
            expected = _expected_chunks(entry, d.settings.graphrag.chunking)
            assert video["chunks_stored"] == video["chunk_count"] == expected
        db = store.db
        assert db["entities"].count_documents({}) > 0
        assert db["relations"].count_documents({}) > 0
        status = d.cli("status", *ids).stdout
        d.stop_workers()
        _assert_no_secret(secure_stack, worker.log_path.read_text(errors="replace"), status,
                          json.dumps(list(db["videos"].find()), default=str))
    finally:
        d.cleanup()


def _refused(stack: SecureStack, case: str) -> dict[str, Any]:
    sasl, mtls = stack.kafka["sasl_ssl"], stack.kafka["mtls"]
    if case == "wrong password":
        return {**sasl, "sasl_password": "canary-wrong-password-7f3a"}
    if case == "unknown CA":
        return {**sasl, "ssl_cafile": str(stack.other_ca)}
    return {k: v for k, v in mtls.items() if k not in ("ssl_certfile", "ssl_keyfile", "ssl_key_password")}


REFUSALS = {
    # case: (what librdkafka reports, what aiokafka reports, the hint both give)
    "wrong password": ("SASL authentication error", "SaslAuthenticationFailed",
                       "check kafka.sasl_mechanism, kafka.sasl_username and kafka.sasl_password"),
    "unknown CA": ("certificate verify failed", "CERTIFICATE_VERIFY_FAILED", "check kafka.ssl_cafile"),
    "missing client certificate": ("alert", "closed", "set kafka.ssl_certfile and kafka.ssl_keyfile"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_credential_stops_every_client_at_start(secure_stack: SecureStack, tmp_path: Path,
                                                           case: str) -> None:
    librdkafka_says, aiokafka_says, hint = REFUSALS[case]
    d = _deployment(secure_stack, tmp_path, _refused(secure_stack, case))
    try:
        # librdkafka, in-process and through `topics create`
        with pytest.raises(KafkaConnectionError) as rd:
            connected_admin(d.settings, timeout=60)
        assert "(librdkafka, " in str(rd.value) and librdkafka_says in str(rd.value) and hint in str(rd.value)
        assert rd.value.refused  # answered and refused: the worker stops instead of restarting
        created = d.cli("topics", "create", check=False, timeout=120)
        assert created.returncode == 1 and librdkafka_says in created.stderr and hint in created.stderr
        # aiokafka, exactly as the stages' Faust apps connect
        with pytest.raises(KafkaConnectionError) as aio:
            check_faust_connection(d.settings, timeout=60)
        assert "(aiokafka, " in str(aio.value) and aiokafka_says in str(aio.value) and hint in str(aio.value)
        assert aio.value.refused
        # the worker: every stage stops at start instead of retrying for ever
        worker = subprocess.run([sys.executable, "-m", "streams.cli", "worker", "--stages", "all"], cwd=ROOT,
                                env=d.env, capture_output=True, text=True, timeout=180)
        assert worker.returncode != 0
        assert "cannot connect to Kafka" in worker.stderr and hint in worker.stderr
        _assert_no_secret(secure_stack, str(rd.value), str(aio.value), created.stdout, created.stderr,
                          worker.stdout, worker.stderr)
        for text in (str(rd.value), str(aio.value), created.stderr, worker.stderr):
            assert "canary-wrong-password" not in text
    finally:
        d.cleanup()
