"""What every stage's Faust app shares: the app itself, output topics, the DLQ, sending.

Each stage is one Faust app whose id is the stage's consumer group. Topics take raw
bytes: a stage validates every message itself (pydantic) so that a bad message becomes a
DLQ record instead of crashing the agent in Faust's deserializer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import faust
import faust.streams
from faust.types.auth import CredentialsT

from agents.faust_batches import take_ready
from agents.faust_commit import SafeCommitApp
from agents.faust_recovery import FixedTableManager
from schemas import Event, VideoStatusEvent
from schemas.events import utcnow
from streams.instruments import waits
from streams.instruments.metrics import DLQ_RECORDS, EVENTS_IN, EVENTS_OUT, FAILURES, IN_FLIGHT, STAGE_LATENCY
from streams.kafka.clients import connection_error, ssl_context
from streams.kafka.codec import decode, encode
from streams.kafka.dlq import BadMessage, DeadLetter, Origin, parse_redrive_headers
from streams.kafka.topics import Stage, Topics, group_id, topics_for
from streams.settings import Settings

log = logging.getLogger("graphrag.agents")
E = TypeVar("E", bound=Event)


class InputMessage(Protocol):
    """What a stage reads of a consumed record (a Faust ``Message``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def timestamp(self) -> float | None: ...
    @property
    def headers(self) -> Any: ...  # a list of (name, bytes) or a mapping, as the client delivers them


class InputEvent(Protocol):
    """A consumed record as a stage handles it (a Faust ``Event``)."""

    @property
    def message(self) -> InputMessage: ...


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's broker credentials: the same TLS context and SASL settings as librdkafka's
    (streams.kafka.clients.client_config); the kafka section was validated at load, so SASL
    has its mechanism, username and password (nothing is assumed)."""
    k = settings.kafka
    ctx = ssl_context(k)
    if k.uses_sasl:
        assert k.sasl_mechanism and k.sasl_password  # validated at load; narrows types  # nosec B101
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value(),
            mechanism=k.sasl_mechanism,
            ssl_context=ctx,  # None: SASL_PLAINTEXT
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def check_faust_connection(settings: Settings, timeout: float = 30.0) -> None:
    """Connect and authenticate to a bootstrap broker exactly as the stage's Faust app will
    (aiokafka, :func:`faust_credentials`), so that a refused credential stops the app at start
    with the broker's reason instead of Faust retrying it for ever."""
    from aiokafka import errors as aiokafka_errors
    from aiokafka.conn import create_conn
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = dict(credentials_to_aiokafka_auth(faust_credentials(settings)))
    hosts = [h.strip() for h in settings.kafka.bootstrap_servers.split(",") if h.strip()]
    k = settings.kafka

    def refusal(exc: Exception) -> bool:
        """The broker answered and said no: TLS refused, SASL failed, or (mTLS without a client
        certificate) the TLS connection closed at once; not a broker that is not there yet."""
        if isinstance(exc, aiokafka_errors.KafkaConnectionError):
            return k.uses_tls and k.ssl_certfile is None and "closed" in str(exc)
        return isinstance(exc, ssl.SSLError | aiokafka_errors.KafkaError)

    async def first_answer() -> None:
        reasons: list[str] = []
        refused = False
        for host in hosts:
            name, _, port = host.rpartition(":")
            try:
                conn = await asyncio.wait_for(create_conn(name, int(port), **auth), timeout / len(hosts))
            except Exception as exc:  # aiokafka's, ssl's and OSError share no narrower base
                reasons.append(f"{host}: {type(exc).__name__}" + (f": {exc}" if str(exc) else ""))
                refused = refused or refusal(exc)
                continue
            conn.close()
            return
        raise connection_error(k, "aiokafka", "; ".join(reasons), refused=refused)

    # A loop of its own, never set as current: Faust makes and runs the app's loop afterwards.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first_answer())
    finally:
        loop.close()


def faust_datadir(app_id: str) -> str:
    """Where Faust keeps its small local files: $FAUST_DATADIR, else the user's state dir."""
    if os.environ.get("FAUST_DATADIR"):
        return os.environ["FAUST_DATADIR"]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    parent = os.path.join(base, "graphrag-streams", "faust")
    os.makedirs(parent, exist_ok=True)  # Faust creates only the last level
    return os.path.join(parent, app_id)


def make_app(stage: Stage, settings: Settings) -> faust.App:
    """The stage's Faust app. Every setting that differs from Faust's default says why."""
    k = settings.kafka
    broker = ";".join(f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",") if h.strip())
    max_bytes = settings.security.max_message_bytes + 65_536
    # faust.App with commit bookkeeping that never skips an unhandled message (agents/faust_commit.py).
    return SafeCommitApp(
        group_id(settings, stage),
        broker=broker,
        broker_credentials=faust_credentials(settings),
        # Topics carry raw bytes: each stage validates with pydantic and dead-letters bad input.
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,  # /metrics, /livez, /readyz are ours (streams/monitoring/health.py)
        store="memory://",  # tables are rebuilt from their changelogs; no RocksDB to ship
        datadir=faust_datadir(group_id(settings, stage)),
        # Topics are created by `topics create` before any app starts (streams/kafka/topics.py);
        # these only describe what Faust would expect of them.
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        topic_allow_declare=False,  # never create a topic from inside an app: it races the subscription
        # Only the communities app elects a leader (its timer runs on one worker).
        topic_disable_leader=stage is not Stage.COMMUNITIES,
        consumer_auto_offset_reset="earliest",  # a new group starts from the first message, not the next
        producer_max_request_size=max_bytes,
        # A partition's batch may fill a whole request (Faust: 16 KiB). aiokafka keeps one request
        # in flight per broker, with one batch per partition: a stage's burst of output went out
        # in dozens of requests one after the other (tests/unit/test_stage_producer.py).
        producer_max_batch_size=max_bytes,
        # A batch waits up to 20 ms for more records (Faust and aiokafka: 0, Kafka's own clients
        # since 4.0: 5 ms). With 0, every send that found no request in flight went out alone:
        # the corpus through the pipeline took 1,033 produce requests (the broker's request log),
        # with 5 ms 561, with 20 ms 282, and the broker's CPU fell by more than a quarter. It adds at
        # most 20 ms per stage to a record's way through, against seconds of work per video.
        producer_linger=0.02,
        consumer_max_fetch_size=max_bytes,
        producer_acks=-1,  # an input is acked only after its outputs are on every in-sync replica
        # Faust's default is 1200 s, and every commit first flushes the producer: a send to a
        # partition without a leader would block commits and rebalances for 20 minutes. 60 s
        # outlasts a broker restart; past it the send fails loudly and the stall check acts.
        producer_request_timeout=60.0,
        # A member that died without leaving (kill -9, a lost node) holds its partitions
        # until its session times out: 10 s instead of Faust's 60 s. Heartbeats come from
        # the consumer's own thread, so a busy handler does not miss them.
        broker_session_timeout=10.0,
        # Commit every second: little is redelivered after a crash, and progress is visible
        # to the stall check (agents/stall.py) within a second.
        broker_commit_interval=1.0,
        # Stages are idempotent, so a rebalance or shutdown need not wait for the event being
        # handled (an unbounded wait: an LLM call waiting out an outage would block it).
        stream_wait_empty=False,
        # At most 100 records per poll (aiokafka: 500): the loop gets back to timers, commits
        # and heartbeats between batches instead of buffering minutes of LLM work.
        broker_max_poll_records=100,
        # Refresh metadata every 10 s (default 5 min), so a leader change after a broker
        # restart is picked up quickly instead of leaving sends waiting.
        consumer_metadata_max_age_ms=10_000,
        producer_metadata_max_age_ms=10_000,
        stream_recovery_delay=0.0,  # start consuming as soon as the tables are recovered
        # An exception in a handler leaves its message unacknowledged (redelivered after the
        # restart the stall check causes) instead of acking it as if it had been handled.
        stream_ack_exceptions=False,
        # Faust's default redirects print() into its logger; our CLI owns stdout.
        worker_redirect_stdouts=False,
        # Table recovery that seeks before it resumes (agents/faust_recovery.py).
        TableManager=FixedTableManager,
    )


# A stage that handles its input in batches takes what is there, up to BATCH_SIZE messages,
# waiting at most BATCH_SECONDS for more: its outputs go out together, in a few produce
# requests, instead of one awaited round trip each (per-message requests cost the stage, and
# the broker, more CPU than the stage's own work).
BATCH_SIZE = 500
BATCH_SECONDS = 0.05
# A batch is handed over once nothing more arrived for this long and nothing is waiting.
BATCH_QUIET_SECONDS = 0.01


@dataclass
class StageRuntime:
    """The handles a stage's handlers need; built once per worker process."""

    stage: Stage
    settings: Settings
    app: faust.App
    topics: Topics = field(init=False)
    _topic_cache: dict[str, faust.TopicT] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.topics = topics_for(self.settings)

    def topic(self, *names: str) -> faust.TopicT:
        """A raw-bytes Faust topic (several names: one stream over co-partitioned topics)."""
        key = ",".join(names)
        if key not in self._topic_cache:
            self._topic_cache[key] = self.app.topic(*names, key_type=bytes, value_type=bytes, allow_empty=True)
        return self._topic_cache[key]

    def run_each(self, handle: Callable[[InputEvent], Awaitable[None]], *topics: str, name: str,
                 concurrency: int = 1) -> None:
        """One agent over ``topics`` that counts and times each event, then hands it to ``handle``."""
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                async with self.processing([event]):
                    await handle(event)

        self.app.agent(self.topic(*topics), name=name, concurrency=concurrency)(agent)

    def run_decoded(self, model: type[E], handle: Callable[[InputEvent, E], Awaitable[None]], *topics: str, name: str,
                    concurrency: int = 1, check: Callable[[E], None] | None = None,
                    decoder: Callable[[bytes], E] | None = None) -> None:
        """``run_each`` for a stage with one input model: bad input is dead-lettered here
        (:meth:`decode_or_dead_letter`), and ``handle`` gets the event with its value."""
        async def decoded(event: InputEvent) -> None:
            value = await self.decode_or_dead_letter(event, model, check=check, decoder=decoder)
            if value is not None:
                await handle(event, value)

        self.run_each(decoded, *topics, name=name, concurrency=concurrency)

    def run_decoded_batches(self, model: type[E], handle: Callable[[Sequence[tuple[InputEvent, E]]], Awaitable[None]],
                            *topics: str, name: str, size: int = BATCH_SIZE, within: float = BATCH_SECONDS,
                            check: Callable[[E], None] | None = None,
                            decoder: Callable[[bytes], E] | None = None) -> None:
        """``run_batches`` for a stage with one input model: bad input is dead-lettered here,
        and ``handle`` gets the batch's good events with their values."""
        async def decoded(events: Sequence[InputEvent]) -> None:
            good = []
            for event in events:
                value = await self.decode_or_dead_letter(event, model, check=check, decoder=decoder)
                if value is not None:
                    good.append((event, value))
            if good:
                await handle(good)

        self.run_batches(decoded, *topics, name=name, size=size, within=within)

    def run_batches(self, handle: Callable[[Sequence[InputEvent]], Awaitable[None]], *topics: str, name: str,
                    size: int, within: float, quiet: float | None = BATCH_QUIET_SECONDS) -> None:
        """One agent over ``topics`` that hands ``handle`` batches of up to ``size`` events: at
        most ``within`` s after the first of them came, sooner once nothing more arrived for
        ``quiet`` s (None: only when full or due; agents/faust_batches.py). A batch is
        acknowledged once ``handle`` returned."""
        async def agent(stream: Any) -> None:
            async for events in take_ready(stream, size, within=within, quiet=quiet):
                async with self.processing(events):
                    await handle(events)

        self.app.agent(self.topic(*topics), name=name)(agent)

    @asynccontextmanager
    async def processing(self, events: Sequence[InputEvent]) -> AsyncIterator[None]:
        """Count and time the handling of input messages (one, or one batch)."""
        stage = self.stage.value
        for ev in events:
            EVENTS_IN.labels(stage, ev.message.topic).inc()
        IN_FLIGHT.labels(stage).inc(len(events))
        started = time.perf_counter()
        try:
            yield
        finally:
            IN_FLIGHT.labels(stage).dec(len(events))
            STAGE_LATENCY.labels(stage).observe(time.perf_counter() - started)

    async def send(self, topic: str, key: str | bytes | None, value: bytes,
                   headers: Sequence[tuple[str, bytes]] | None = None) -> None:
        """Produce one message and wait until the broker has it (before our input is acked)."""
        k = key.encode() if isinstance(key, str) else key
        fut = await self.topic(topic).send(key=k, value=value, headers=list(headers or []))
        await fut
        EVENTS_OUT.labels(self.stage.value, topic).inc()

    async def send_many(self, topic: str, items: Sequence[tuple[str, Event]]) -> None:
        """Produce several messages at once (the client batches them into few requests) and
        wait until the broker has every one."""
        await self.send_raw_many(topic, [(k, encode(v)) for k, v in items])

    async def send_raw_many(self, topic: str, items: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`send_many` of values already encoded."""
        futures = [await self.topic(topic).send(key=k.encode(), value=v) for k, v in items]
        await asyncio.gather(*futures)
        EVENTS_OUT.labels(self.stage.value, topic).inc(len(items))

    async def send_event(self, topic: str, key: str, event: Event) -> None:
        await self.send(topic, key, encode(event))

    async def status(self, video_id: str, state: str, *, detail: str = "", **extra: Any) -> None:
        stage = self.stage.value
        await self.send_event(self.topics.status, video_id, VideoStatusEvent(
            video_id=video_id, stage=stage, state=state, detail=detail[:2000], at=utcnow(), **extra))

    async def decode_or_dead_letter(self, event: InputEvent, model: type[E], *,
                                    check: Callable[[E], None] | None = None,
                                    decoder: Callable[[bytes], E] | None = None) -> E | None:
        """The message as ``model`` (read by ``decoder`` when the topic takes more than JSON
        of it, and passing ``check``), or None once it is dead-lettered with its reason: the
        one place where a stage turns bad input into a DLQ record."""
        try:
            if decoder is not None:
                value = decoder(event.message.value)
            else:
                value = decode(model, event.message.value, max_bytes=self.settings.security.max_message_bytes)
            if check is not None:
                check(value)
        except BadMessage as exc:
            await self.dead_letter(event, exc.reason, str(exc))
            return None
        return value

    async def dead_letter(self, event: InputEvent, reason: str, message: str, *,
                          error_class: str = "BadMessage", extra: dict[str, str] | None = None) -> None:
        """Send the original message to the DLQ with headers saying why; never raises BadMessage."""
        msg = event.message
        record = DeadLetter(
            stage=self.stage.value,
            reason=reason,
            error_class=error_class,
            message=message,
            origin=Origin(msg.topic, msg.partition, msg.offset, _timestamp_ms(msg)),
            key=msg.key,
            value=_truncate(msg.value, self.settings.security.max_message_bytes),
            extra=extra or {},
            redriven_from=parse_redrive_headers(getattr(msg, "headers", None)),
        )
        log.warning("%s: dead-lettered %s[%s]@%s (attempt %d): %s: %s", self.stage, msg.topic, msg.partition,
                    msg.offset, record.attempt, reason, message)
        await self.send(self.topics.dlq, record.key, record.value, record.headers())
        FAILURES.labels(self.stage.value, reason).inc()
        DLQ_RECORDS.labels(self.stage.value, reason).inc()


@contextmanager
def table_writes_for(event: InputEvent) -> Iterator[None]:
    """Table writes inside go to the changelog partition of ``event``'s partition.

    Faust takes that partition from the event being handled (``faust.streams.current_event``),
    which a batch handler (``take_ready``) does not have: it must name the event whose key it
    writes, or a key of partition 2 would be recovered from the changelog into partition 0's
    owner. Faust's own stream sets the same context variable for each event it yields.
    """
    token = faust.streams._current_event.set(weakref.ref(cast(Any, event)))  # a Faust Event
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


def _timestamp_ms(msg: InputMessage) -> int | None:
    ts = msg.timestamp
    return int(ts * 1000) if ts else None


def _truncate(value: bytes | None, limit: int) -> bytes:
    value = value or b""
    return value if len(value) <= limit else value[:limit]


async def retry_forever(what: str, fn: Callable[[], Awaitable[Any]], *,
                        is_transient: Callable[[BaseException], bool],
                        base_delay: float = 0.5, max_delay: float = 30.0) -> Any:
    """Retry a call while its failure is transient (a database or broker outage).

    The input message stays unacknowledged meanwhile, so an outage delays work but never
    loses or dead-letters it.
    """
    delay = base_delay
    waiting = False
    try:
        while True:
            try:
                return await fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if not waiting:  # a deliberate pause from now on, not a stall (agents/stall.py)
                    waits.enter(what)
                    waiting = True
                log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(max_delay, delay * 2)
    finally:
        if waiting:
            waits.leave(what)
