"""confluent-kafka clients built from the configuration: producer, admin, topic creation.

The CLI, the lag exporter and the tests talk to Kafka through these; the stage workers
use Faust (aiokafka) with the same connection settings: :func:`client_config` for
librdkafka and :func:`ssl_context` for aiokafka (agents/runtime.py) are the one mapping of
the kafka section's security keys, so both client stacks verify, authenticate and present
a client certificate in the same way.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.topics import Stage, TopicSpec, app_topics, topic_specs
from streams.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka connection properties (bootstrap, TLS, SASL) from the kafka section.

    The settings were validated at load (KafkaSettings): SASL has its mechanism, username
    and password, TLS files exist and parse, TLS keys come only with a TLS protocol.
    """
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.uses_sasl:
        assert kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password  # validated at load; narrows types  # nosec B101
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.uses_tls:
        if kafka.ssl_cafile:
            conf["ssl.ca.location"] = kafka.ssl_cafile
        if kafka.ssl_certfile and kafka.ssl_keyfile:
            conf["ssl.certificate.location"] = kafka.ssl_certfile
            conf["ssl.key.location"] = kafka.ssl_keyfile
        if kafka.ssl_key_password is not None:
            conf["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
        conf["enable.ssl.certificate.verification"] = kafka.ssl_verify
        # Host name checking is librdkafka's default (https); without verification it is off too.
        conf["ssl.endpoint.identification.algorithm"] = "https" if kafka.ssl_verify else "none"
    return conf


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The aiokafka (Faust) side of :func:`client_config`: None unless the protocol uses TLS."""
    if not kafka.uses_tls:
        return None
    ctx = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.ssl_certfile and kafka.ssl_keyfile:
        secret = kafka.ssl_key_password.get_secret_value().encode() if kafka.ssl_key_password else b""
        # A callable, never None: OpenSSL would prompt on the terminal for an encrypted key.
        ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, password=lambda: secret)
    if not kafka.ssl_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    conf = {
        **client_config(settings.kafka),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": settings.security.max_message_bytes + 65_536,
        # The Java client's and aiokafka's (Faust's) partitioner, not librdkafka's CRC32 default:
        # a message this client produces to a keyed internal topic (a DLQ redrive to
        # resolve.mentions or resolve.pending) lands on the partition that owns its key.
        "partitioner": "murmur2_random",
        **overrides,
    }
    return Producer(conf)


def make_admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings.kafka))


class KafkaConnectionError(RuntimeError):
    """The brokers cannot be reached, or refuse this client's TLS or SASL credentials:
    an app or command stops at start with the reason and what to check (no secret in it).
    ``refused``: the brokers answered and refused (trying again will not help); else they
    did not answer in time (they may be starting)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def connection_error(kafka: KafkaSettings, client: str, reason: str, *, refused: bool) -> KafkaConnectionError:
    """The one wording of a failed connection, for librdkafka and aiokafka alike."""
    low = reason.lower()
    if ("authentication" in low and "sasl" in low) or "saslauthentication" in low:
        hint = "check kafka.sasl_mechanism, kafka.sasl_username and kafka.sasl_password"
    elif "certificate verify failed" in low:
        hint = ("the broker's certificate is not signed by a CA this client trusts, or not issued for the host "
                "in kafka.bootstrap_servers: check kafka.ssl_cafile")
    elif kafka.uses_tls and kafka.ssl_certfile is None and ("bad certificate" in low or "certificate required" in low
                                                            or "closed" in low):
        hint = ("the broker closed the TLS connection; if it requires client certificates (mTLS), set "
                "kafka.ssl_certfile and kafka.ssl_keyfile")
    elif "bad certificate" in low or "unknown ca" in low or "certificate required" in low:
        hint = "the broker refused the client certificate: check kafka.ssl_certfile (signed by a CA the broker trusts)"
    else:
        hint = "check kafka.bootstrap_servers and kafka.security_protocol, and that the brokers run"
    return KafkaConnectionError(f"cannot connect to Kafka at {kafka.bootstrap_servers} ({client}, security_protocol "
                                f"{kafka.security_protocol}): {reason.strip()}; {hint}", refused=refused)


# librdkafka reports these through error_cb and retries them for ever; at start they are final.
_REFUSED = (KafkaError._AUTHENTICATION, KafkaError._SSL)


def connected_admin(settings: Settings, timeout: float = 30.0) -> AdminClient:
    """An admin client that has fetched metadata once, or :class:`KafkaConnectionError` with
    the broker's reason: a refused credential fails at once, an unreachable broker after
    ``timeout`` (librdkafka alone would only say "Broker transport failure")."""
    errors: list[KafkaError] = []
    conf: dict[str, Any] = {**client_config(settings.kafka), "error_cb": errors.append}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            return admin
        except KafkaException as exc:
            last = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
        admin.poll(0)  # serves error_cb: the errors librdkafka met on the way
        refused = [e for e in errors if e.code() in _REFUSED or "alert" in e.str()]
        if refused or time.monotonic() >= deadline:
            seen = refused or errors
            raise connection_error(settings.kafka, "librdkafka", seen[-1].str() if seen else last,
                                   refused=bool(refused))


class DeliveryError(RuntimeError):
    """At least one message was not acknowledged by the broker."""


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (deletes the key from a compacted topic)
    headers: Sequence[tuple[str, bytes]] = ()


def produce_and_confirm(producer: Producer, messages: Iterable[OutgoingMessage],
                        timeout: float = 30.0) -> int:
    """Produce messages and wait until the broker acknowledged every one of them.

    Returns the number delivered; raises :class:`DeliveryError` naming the first failure.
    """
    failures: list[str] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")
        else:
            delivered += 1

    sent = 0
    for m in messages:
        while True:
            try:
                producer.produce(m.topic, key=m.key, value=m.value, headers=list(m.headers),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.5)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining:
        failures.append(f"{remaining} message(s) still unacknowledged after {timeout:.0f}s")
    if failures:
        raise DeliveryError(f"{len(failures)} of {sent} message(s) not delivered; first: {failures[0]}")
    return delivered


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    partitions: int  # as the broker lists it (0: not listed)
    configured: int  # what topic_specs asks for

    @property
    def mismatched(self) -> bool:
        return self.partitions != self.configured


def ensure_topics(settings: Settings, specs: Sequence[TopicSpec] | None = None,
                  timeout: float = 30.0) -> list[TopicResult]:
    """Create the pipeline's topics that do not exist yet; existing ones are left alone.

    Idempotent. Topics are infrastructure: `topics create` (the Helm Job, compose's
    topics service) runs this before any app starts; apps only check (:func:`check_topics`).
    """
    specs = list(specs or topic_specs(settings))
    admin = connected_admin(settings, timeout)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [s for s in specs if s.name not in existing]
    created: set[str] = set()
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                      config=s.config) for s in missing],
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                created.add(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    md = _wait_for_leaders(admin, [s.name for s in specs], timeout)
    return [TopicResult(s.name, s.name in created, len(md[s.name].partitions) if s.name in md else 0, s.partitions)
            for s in specs]


def _wait_for_leaders(admin: AdminClient, names: Sequence[str], timeout: float) -> dict[str, Any]:
    """Topic metadata once every named topic is listed with all its partitions led (a new
    topic shows up with no partitions, then without leaders, for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout).topics
        ready = all(n in md and md[n].error is None and md[n].partitions
                    and all(p.leader >= 0 for p in md[n].partitions.values()) for n in names)
        if ready or time.monotonic() > deadline:
            return dict(md)
        time.sleep(0.2)


def partition_count(settings: Settings, topic: str, timeout: float = 10.0) -> int:
    md = make_admin(settings).list_topics(topic, timeout=timeout).topics.get(topic)
    return len(md.partitions) if md is not None and md.error is None else 0


class TopicsNotReady(RuntimeError):
    """A topic an app needs is missing or has the wrong partition count."""


def check_topics(settings: Settings, *stages: Stage, timeout: float = 30.0) -> None:
    """Stop apps at start when one of their topics is missing or mis-partitioned.

    Faust subscribes once: a topic that is missing then is ignored for good, and a
    changelog whose partitions differ from its source topic's crashes the table's agent.
    One metadata request for all the stages given.
    """
    wanted = {s.name: s for s in topic_specs(settings)}
    md = connected_admin(settings, timeout).list_topics(timeout=timeout).topics
    problems = []
    for stage in stages:
        for name in app_topics(settings, stage):
            found = md.get(name)
            if found is None or found.error is not None:
                problems.append(f"topic {name} does not exist")
            elif len(found.partitions) != wanted[name].partitions:
                problems.append(f"topic {name} has {len(found.partitions)} partitions, the configuration says "
                                f"{wanted[name].partitions} (kafka.partitions)")
    if problems:
        names = ", ".join(s.value for s in stages)
        raise TopicsNotReady(
            f"stage {names} cannot start: " + "; ".join(dict.fromkeys(problems))
            + ". Create the topics first with `graphrag-streams topics create` (Helm runs it as the topics Job); "
            "a topic with the wrong partition count must be recreated or the configuration changed to match.")
