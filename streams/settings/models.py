"""The configuration's sections: one frozen pydantic model each, unknown keys refused.

Why strict: a typo in a deployment value (``max_concurent_operations``) must stop the
worker with a message naming the key, not silently fall back to a default in production.
Secrets are ``SecretStr``.
"""

from __future__ import annotations

import os
import re
import ssl
import warnings
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError


def _empty_is_none(v: Any) -> Any:
    return None if v in ("", None) else v


# An empty value means unset: ``${OPENAI_API_KEY:-}`` of an unset variable is no key.
EMPTY_IS_NONE = BeforeValidator(_empty_is_none)
OptionalStr = Annotated[str | None, EMPTY_IS_NONE]
OptionalSecret = Annotated[SecretStr | None, EMPTY_IS_NONE]

ENVIRONMENTS = ("development", "staging", "production")
DEFAULT_ENTITY_TYPES = (
    "PERSON",
    "ORGANIZATION",
    "LOCATION",
    "EVENT",
    "CONCEPT",
    "TECHNOLOGY",
    "WORK",
    "SPECIES",
    "SUBSTANCE",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def setting_problem(key: str, problem: str) -> PydanticCustomError:
    """A model validator's finding about one of its keys: told as ``<section>.<key>: <problem>``
    (schemas.errors.describe_validation_error). ``problem`` must never contain a value."""
    return PydanticCustomError("setting_problem", "{key}: {problem}", {"key": key, "problem": problem})


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.__class__.__name__)


def check_ca_file(key: str, path: str) -> None:
    """The file exists and holds at least one PEM certificate (what both clients load)."""
    if not os.path.isfile(path):
        raise setting_problem(key, f"file not found: {path}")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise setting_problem(key, f"{path} is not a PEM certificate file ({_ssl_reason(exc)})") from None
    except OSError as exc:
        raise setting_problem(key, f"cannot read {path} ({exc.strerror})") from None


def check_client_certificate(certfile: str, keyfile: str, password: SecretStr | None) -> None:
    """The certificate parses, and the key loads with it (and with the password, if any)."""
    check_ca_file("ssl_certfile", certfile)  # a PEM certificate, whatever its CA flag
    if not os.path.isfile(keyfile):
        raise setting_problem("ssl_keyfile", f"file not found: {keyfile}")
    secret = password.get_secret_value().encode() if password is not None else b""
    try:
        # A callable, never None: OpenSSL would otherwise prompt on the terminal for an
        # encrypted key. An empty password fails to decrypt one, with the message below.
        ssl.create_default_context().load_cert_chain(certfile, keyfile, password=lambda: secret)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise setting_problem("ssl_keyfile", f"{keyfile} is not the private key of ssl_certfile") from None
        raise setting_problem("ssl_keyfile", f"cannot load the private key {keyfile}: not a PEM key, or "
                              "ssl_key_password is wrong or missing for an encrypted key") from None
    except OSError as exc:
        raise setting_problem("ssl_keyfile", f"cannot read {keyfile} ({exc.strerror})") from None


class MongoSettings(_Section):
    uri: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    database: str = "graphrag"
    server_selection_timeout_ms: int = Field(default=5000, ge=100)
    # FerretDB 1.x holds one SQLite connection per matched update until the whole `update`
    # command ends and deadlocks past its pool of 100, so updates go out in small commands.
    # Real MongoDB is happy with 1000.
    max_ops_per_command: int = Field(default=25, ge=1, le=100_000)
    # A CA bundle for a MongoDB with a private CA (pymongo's tlsCAFile, which turns TLS on);
    # the URI's own tls options work too. Checked at load like kafka.ssl_cafile.
    tls_ca_file: OptionalStr = None

    @model_validator(mode="after")
    def _ca_file_parses(self) -> MongoSettings:
        if self.tls_ca_file is not None:
            check_ca_file("tls_ca_file", self.tls_ca_file)
        return self


class OpenAISettings(_Section):
    api_key: OptionalSecret = None
    base_url: OptionalStr = None
    model: str = "gpt-4o-mini"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_output_tokens: int = Field(default=2000, ge=64)
    requests_per_minute: int = Field(default=500, ge=1)
    tokens_per_minute: int = Field(default=200_000, ge=100)
    input_cost_per_million: float = Field(default=0.15, ge=0)
    output_cost_per_million: float = Field(default=0.60, ge=0)
    # How long the circuit stays open before one probe call (doubles per failed probe).
    circuit_reset_seconds: float = Field(default=30.0, gt=0)
    # Spend caps in US dollars (from the costs per million tokens above), per process: when
    # the last hour's or day's calls cost this much, calls wait until the window allows
    # more (messages stay unacknowledged; nothing is dead-lettered). Unset: no cap.
    max_cost_per_hour: float | None = Field(default=None, gt=0)
    max_cost_per_day: float | None = Field(default=None, gt=0)


class TranscriptSettings(_Section):
    # auto: a local file when one exists for the video ID, otherwise YouTube.
    source: Literal["auto", "local", "youtube"] = "auto"
    local_dirs: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("en",)
    max_chars: int = Field(default=2_000_000, ge=1000)
    youtube_base_url: str | None = None
    youtube_timeout_seconds: float = Field(default=20.0, gt=0)


class ChunkingSettings(_Section):
    tokens: int = Field(default=300, ge=20, le=8000)
    overlap: int = Field(default=50, ge=0)


class ExtractionSettings(_Section):
    # auto: the LLM when openai.api_key is set, the offline extractor otherwise.
    extractor: Literal["auto", "offline", "llm"] = "auto"
    # Which offline extractor: spaCy (NER and dependency relations, ~75 ms of CPU per chunk)
    # or the plain rules (~1.5 ms per chunk, fewer and plainer entities). auto: spaCy when
    # the ``nlp`` extra is installed, the rules when it is not.
    offline_extractor: Literal["auto", "spacy", "rules"] = "auto"
    entity_types: tuple[str, ...] = DEFAULT_ENTITY_TYPES
    max_entities_per_chunk: int = Field(default=40, ge=1)
    # Extra LLM passes asking for what the first answer missed (0 = none).
    gleaning_passes: int = Field(default=0, ge=0, le=3)
    # A label of the extraction prompt: part of every LLM cache key and recorded on each
    # chunk. The prompt text is the code's; a new label makes every call new (a re-index
    # with --prompt-version compares a prompt change side by side).
    prompt_version: str = Field(default="extract-v2", pattern=r"^[A-Za-z0-9._-]{1,40}$")


class ResolutionSettings(_Section):
    """Entity resolution: in-stream fuzzy matching within blocks, and the periodic merge pass."""

    block_chars: int = Field(default=2, ge=1, le=6)  # names meet on a partition by this prefix
    fuzzy_threshold: float = Field(default=90.0, ge=50, le=100)  # rapidfuzz ratio, same type
    min_fuzzy_length: int = Field(default=5, ge=1)  # shorter names only match exactly
    merge_threshold: float = Field(default=92.0, ge=50, le=100)  # cross-block merge pass
    merge_interval_seconds: float = Field(default=300.0, gt=0)


class CommunitySettings(_Section):
    """Community detection and summaries (the communities app's leader-only timer)."""

    interval_seconds: float = Field(default=300.0, gt=0)
    max_community_size: int = Field(default=25, ge=2)  # larger ones are split into a finer level
    max_levels: int = Field(default=3, ge=1, le=6)
    min_size: int = Field(default=2, ge=2)
    resolution: float = Field(default=1.0, gt=0)
    seed: int = 42
    # Leiden passes over the graph (leidenalg's default). Until no node moves took 4x as
    # long on a 10k-relation graph for 0.15 % more quality; on 100k relations, minutes.
    leiden_iterations: int = Field(default=2, ge=1, le=50)
    findings: int = Field(default=5, ge=1, le=20)


class SinkSettings(_Section):
    batch_size: int = Field(default=200, ge=1)
    batch_seconds: float = Field(default=1.0, gt=0)


class ScalingSettings(_Section):
    """Inputs of KEDA's Kafka scaler, per stage deployment (see streams/monitoring/scaling.py)."""

    lag_threshold: int = Field(default=100, ge=1)  # target lag per replica
    activation_lag_threshold: int = Field(default=0, ge=0)  # at or below: scale to min_replicas
    min_replicas: int = Field(default=0, ge=0)  # 0 allows scale-to-zero when idle
    max_replicas: int = Field(default=10, ge=1)  # also capped by the input topic's partitions


class GraphragSettings(_Section):
    enable_caching: bool = True
    enable_monitoring: bool = True
    max_concurrent_operations: int = Field(default=2, ge=1, le=1000)
    retry_attempts: int = Field(default=1, ge=0, le=20)
    circuit_breaker_threshold: int = Field(default=3, ge=1)
    # An input partition with lag and no progress this long (outside a deliberate pause)
    # makes the app fail /livez and exit, so that it is restarted (agents/stall.py).
    stall_seconds: float = Field(default=120.0, ge=5)
    transcripts: TranscriptSettings = TranscriptSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    extraction: ExtractionSettings = ExtractionSettings()
    resolution: ResolutionSettings = ResolutionSettings()
    communities: CommunitySettings = CommunitySettings()
    sink: SinkSettings = SinkSettings()
    scaling: ScalingSettings = ScalingSettings()


class CacheSettings(_Section):
    ttl_seconds: int = Field(default=86_400, ge=0)
    redis_url: OptionalSecret = None
    # The database of the llm_cache collection (default: mongodb.database). A re-index
    # shares the live one, so calls it would repeat unchanged cost nothing.
    database: OptionalStr = None


class MonitoringSettings(_Section):
    # Each worker serves /metrics, /livez and /readyz here (0 disables the server).
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    lag_exporter_port: int = Field(default=9410, ge=0, le=65535)
    lag_interval_seconds: float = Field(default=15.0, gt=0)
    # Alert when a stage is further behind than this (exported as graphrag_lag_budget_seconds).
    lag_budget_seconds: float = Field(default=300.0, gt=0)


class SecuritySettings(_Section):
    # Upper bound for one message on the ingest topic; larger ones are dead-lettered unread.
    max_request_bytes: int = Field(default=16_384, ge=256)
    # Largest message any stage accepts (the transcript topic carries whole transcripts).
    max_message_bytes: int = Field(default=8_388_608, ge=65_536)
    # security.tls_verify is the deprecated name of kafka.ssl_verify (see Settings).


class ApiSettings(_Section):
    """`graphrag-streams serve`: the HTTP API and the explorer page."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Bearer token that POST /api/videos requires; with none, submission over HTTP is off.
    token: OptionalSecret = None
    max_videos_per_request: int = Field(default=500, ge=1, le=100_000)
    # How often the server checks whether the graph changed and reloads its in-memory copy
    # of the adjacency (entity pages read it; an entity newer than it is read from the store).
    refresh_seconds: float = Field(default=10.0, gt=0, le=3600)
    # Reloaded after this long even when the store counted no write (a write by another tool).
    snapshot_max_age_seconds: float = Field(default=300.0, gt=0, le=86_400)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Annotated[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None, EMPTY_IS_NONE] = None
    sasl_username: OptionalStr = None
    sasl_password: OptionalSecret = None
    # TLS (security_protocol SSL or SASL_SSL), the same for librdkafka and aiokafka
    # (streams/kafka/clients.py): the CA bundle that signs the brokers' certificates (none:
    # the system's trust store), a client certificate and its key for mTLS, the key's
    # password if it is encrypted, and whether the brokers' certificates and host names are
    # verified (false only for a throwaway test cluster).
    ssl_cafile: OptionalStr = None
    ssl_certfile: OptionalStr = None
    ssl_keyfile: OptionalStr = None
    ssl_key_password: OptionalSecret = None
    ssl_verify: bool = True
    topic_prefix: str = "graphrag."
    # Read chunks from this topic instead of <topic_prefix>transcripts.chunks: a re-index
    # reads the live pipeline's chunks (no re-fetch) and writes everything else under its
    # own prefix.
    chunks_topic: OptionalStr = None
    partitions: int = Field(default=6, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=10)

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", v):
            raise ValueError("may only contain letters, digits, '.', '_' and '-'")
        return v

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        """Refuse at load what would fail (or silently downgrade) at the first connection.

        SASL needs a mechanism, a username and a password: nothing is assumed (Faust would
        pick PLAIN and librdkafka GSSAPI). TLS files with a protocol that does not use TLS
        are an error, not a warning: whoever set them expects an encrypted connection, and
        SASL_PLAINTEXT would send the password in clear. Every TLS file must exist and parse
        as the clients load it. SASL settings with a non-SASL protocol are ignored, so that
        an environment file's default mechanism does not stand in the way of SSL.
        """
        protocol = self.security_protocol
        if not self.uses_tls:
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password"):
                if getattr(self, key) is not None:
                    raise setting_problem(key, f"is set, but security_protocol {protocol} does not use TLS "
                                          "(SSL or SASL_SSL do)")
        if self.uses_sasl:
            if self.sasl_mechanism is None:
                raise setting_problem("sasl_mechanism", f"is required with security_protocol {protocol} "
                                      "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; none is assumed)")
            for key in ("sasl_username", "sasl_password"):
                if getattr(self, key) is None:
                    raise setting_problem(key, f"is required with security_protocol {protocol}")
        if self.ssl_certfile is not None and self.ssl_keyfile is None:
            raise setting_problem("ssl_keyfile", "is required with ssl_certfile (a client certificate needs its key)")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise setting_problem("ssl_certfile", "is required with ssl_keyfile (a client key needs its certificate)")
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise setting_problem("ssl_key_password", "is set, but ssl_keyfile is not")
        if self.ssl_cafile is not None:
            check_ca_file("ssl_cafile", self.ssl_cafile)
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            check_client_certificate(self.ssl_certfile, self.ssl_keyfile, self.ssl_key_password)
        return self


class Settings(_Section):
    environment: Literal["development", "staging", "production"]
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mongodb: MongoSettings = MongoSettings()
    openai: OpenAISettings = OpenAISettings()
    graphrag: GraphragSettings = GraphragSettings()
    cache: CacheSettings = CacheSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    security: SecuritySettings = SecuritySettings()
    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()

    @model_validator(mode="before")
    @classmethod
    def _deprecated_tls_verify(cls, data: Any) -> Any:
        """``security.tls_verify`` (applied only to Faust before) is now ``kafka.ssl_verify``,
        applied to both clients. The old key still works, with a warning; both at once is an
        error, so that nobody wonders which one wins."""
        if not isinstance(data, dict) or not isinstance(data.get("security"), dict):
            return data
        if "tls_verify" not in data["security"]:
            return data
        security = dict(data["security"])
        value = security.pop("tls_verify")
        kafka = dict(data["kafka"]) if isinstance(data.get("kafka"), dict) else {}
        if "ssl_verify" in kafka:
            raise setting_problem("security.tls_verify", "is the deprecated name of kafka.ssl_verify, "
                                  "which is set too: remove security.tls_verify")
        warnings.warn("security.tls_verify is deprecated: set kafka.ssl_verify instead (it now applies to "
                      "every Kafka client)", FutureWarning, stacklevel=2)
        kafka["ssl_verify"] = value
        return {**data, "security": security, "kafka": kafka}

    @property
    def llm_enabled(self) -> bool:
        """Whether extraction and summaries go to the LLM (``extractor: auto`` + a key)."""
        mode = self.graphrag.extraction.extractor
        return mode == "llm" or (mode == "auto" and self.openai.api_key is not None)
