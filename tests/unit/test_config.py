"""Configuration: the three environment files, interpolation, strictness and secret masking."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import (
    ENVIRONMENTS,
    ConfigError,
    Settings,
    config_path,
    interpolate,
    load_settings,
    redacted,
)
from tests.support import ROOT, deep_merge

CONFIG_DIR = ROOT / "config"
MASK = "**********"

# Values that must never be printed; each is distinctive enough to search for.
SECRET_OPENAI = "sk-proj-Zq9SECRETopenaiKEY"
SECRET_MONGO_PASSWORD = "m0ng0-SECRET-pw"
SECRET_MONGO_URI = f"mongodb://indexer:{SECRET_MONGO_PASSWORD}@db.internal:27017/graphrag"
SECRET_SASL = "kafka-SECRET-sasl-pw"
SECRET_REDIS_PASSWORD = "r3dis-SECRET-pw"
SECRET_REDIS_URL = f"redis://:{SECRET_REDIS_PASSWORD}@cache.internal:6379/0"
SECRETS = (SECRET_OPENAI, SECRET_MONGO_PASSWORD, SECRET_SASL, SECRET_REDIS_PASSWORD)

# Production's SASL_SSL needs its credentials (KafkaSettings refuses SASL without them).
REQUIRED_ENV = {"MONGODB_URI": "mongodb://db.internal:27017", "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.internal:9093",
                "KAFKA_SASL_USERNAME": "indexer", "KAFKA_SASL_PASSWORD": "not-the-secret"}
REQUIRED_KEYS = {"MONGODB_URI": "mongodb.uri", "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
                 "KAFKA_SASL_USERNAME": "kafka.sasl_username", "KAFKA_SASL_PASSWORD": "kafka.sasl_password"}
SECRET_ENV = {
    "MONGODB_URI": SECRET_MONGO_URI,
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.internal:9093",
    "KAFKA_SASL_PASSWORD": SECRET_SASL,
    "KAFKA_SASL_USERNAME": "indexer",
    "OPENAI_API_KEY": SECRET_OPENAI,
    "REDIS_URL": SECRET_REDIS_URL,
}


def _load(env_name: str, env: dict[str, str]) -> Settings:
    return load_settings(CONFIG_DIR / f"{env_name}.yaml", env=env)


def _write(tmp_path: Path, data: dict[str, Any] | str, name: str = "test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _dev_with(tmp_path: Path, override: dict[str, Any]) -> Path:
    """development.yaml with an override merged in, written to a temporary file."""
    base = yaml.safe_load((CONFIG_DIR / "development.yaml").read_text())
    return _write(tmp_path, deep_merge(base, override))


def _config_error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    return str(info.value)


# --------------------------------------------------------------------------- the shipped files


def test_development_loads_without_any_environment() -> None:
    s = _load("development", {})
    assert s.environment == "development"
    assert s.mongodb.database == "graphrag_dev"
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.openai.api_key is None and s.openai.base_url is None  # "${VAR:-}" -> null


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_shared_environments_load_with_their_required_variables(env_name: str) -> None:
    s = _load(env_name, REQUIRED_ENV)
    assert s.environment == env_name
    assert s.mongodb.uri.get_secret_value() == REQUIRED_ENV["MONGODB_URI"]
    assert s.kafka.bootstrap_servers == REQUIRED_ENV["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.mark.parametrize(("env_name", "missing"), [
    *((e, v) for e in ("staging", "production") for v in ("MONGODB_URI", "KAFKA_BOOTSTRAP_SERVERS")),
    ("production", "KAFKA_SASL_USERNAME"), ("production", "KAFKA_SASL_PASSWORD"),
])
def test_shared_environments_refuse_to_start_without_required_variables(env_name: str, missing: str) -> None:
    env = {k: v for k, v in REQUIRED_ENV.items() if k != missing}
    message = _config_error(CONFIG_DIR / f"{env_name}.yaml", env)
    assert REQUIRED_KEYS[missing] in message
    if missing.startswith("KAFKA_SASL"):  # ${VAR:-} in the file: the model refuses, naming the key
        assert "is required with security_protocol SASL_SSL" in message
        assert REQUIRED_ENV["KAFKA_SASL_PASSWORD"] not in message
    else:
        assert missing in message


def test_tiers_scale_up_from_development_to_production() -> None:
    tiers = {name: _load(name, REQUIRED_ENV).graphrag for name in ENVIRONMENTS}
    assert {n: g.max_concurrent_operations for n, g in tiers.items()} == \
        {"development": 2, "staging": 5, "production": 20}
    assert {n: g.retry_attempts for n, g in tiers.items()} == {"development": 1, "staging": 3, "production": 5}
    assert {n: g.circuit_breaker_threshold for n, g in tiers.items()} == \
        {"development": 3, "staging": 5, "production": 5}


def test_production_defaults_to_sasl_and_replication() -> None:
    s = _load("production", REQUIRED_ENV)
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka.replication_factor == 3
    assert s.kafka.ssl_verify is True and s.kafka.ssl_cafile is None  # the system's trust store


# --------------------------------------------------------------------------- interpolation


def test_interpolation_with_and_without_defaults() -> None:
    tree = {"a": "${HOST}:${PORT:-9092}", "b": ["${MISSING:-x}", "plain"], "c": 7, "d": {"e": "${HOST}"}}
    assert interpolate(tree, {"HOST": "broker"}) == {"a": "broker:9092", "b": ["x", "plain"], "c": 7,
                                                     "d": {"e": "broker"}}
    assert interpolate(tree, {"HOST": "h", "PORT": "1"})["a"] == "h:1"


def test_a_value_that_is_only_an_empty_variable_becomes_null() -> None:
    assert interpolate({"k": "${UNSET:-}"}, {}) == {"k": None}
    assert interpolate({"k": "${EMPTY:-}"}, {"EMPTY": ""}) == {"k": None}
    # Text around the variable keeps the value a string.
    assert interpolate({"k": "prefix-${UNSET:-}"}, {}) == {"k": "prefix-"}


def test_variable_values_reach_typed_fields(tmp_path: Path) -> None:
    s = load_settings(CONFIG_DIR / "development.yaml",
                      env={"GRAPHRAG_PARTITIONS": "9", "GRAPHRAG_TOPIC_PREFIX": "tenant-a.",
                           "GRAPHRAG_MONGODB_DATABASE": "other_db", "GRAPHRAG_LOG_LEVEL": "WARNING"})
    assert s.kafka.partitions == 9
    assert s.kafka.topic_prefix == "tenant-a."
    assert s.mongodb.database == "other_db"
    assert s.log_level == "WARNING"


def test_missing_variable_names_variable_and_key_path(tmp_path: Path) -> None:
    path = _dev_with(tmp_path, {"graphrag": {"chunking": {"tokens": "${CHUNK_TOKENS}"}}})
    message = _config_error(path)
    assert "CHUNK_TOKENS" in message
    assert "graphrag.chunking.tokens" in message
    assert str(path) in message


def test_missing_variable_inside_a_list_names_the_index(tmp_path: Path) -> None:
    path = _dev_with(tmp_path, {"graphrag": {"transcripts": {"local_dirs": ["a", "${TRANSCRIPTS_B}"]}}})
    message = _config_error(path)
    assert "TRANSCRIPTS_B" in message and "graphrag.transcripts.local_dirs[1]" in message


# --------------------------------------------------------------------------- strictness


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    message = _config_error(_dev_with(tmp_path, {"colour": "red"}))
    assert "colour: unknown key" in message


def test_unknown_nested_key_is_named_with_its_dotted_path(tmp_path: Path) -> None:
    message = _config_error(_dev_with(tmp_path, {"graphrag": {"max_concurent_operations": 4}}))
    assert "graphrag.max_concurent_operations: unknown key" in message
    message = _config_error(_dev_with(tmp_path, {"graphrag": {"chunking": {"tokenz": 4}}}))
    assert "graphrag.chunking.tokenz: unknown key" in message


@pytest.mark.parametrize(("override", "key"), [
    ({"graphrag": {"max_concurrent_operations": "many"}}, "graphrag.max_concurrent_operations"),
    ({"graphrag": {"chunking": {"tokens": 5}}}, "graphrag.chunking.tokens"),  # below the minimum of 20
    ({"kafka": {"security_protocol": "TLS"}}, "kafka.security_protocol"),
    ({"kafka": {"topic_prefix": "bad prefix!"}}, "kafka.topic_prefix"),
    ({"log_level": "LOUD"}, "log_level"),
])
def test_wrong_value_names_the_key(tmp_path: Path, override: dict[str, Any], key: str) -> None:
    message = _config_error(_dev_with(tmp_path, override))
    assert message.split(": ", 1)[1].startswith(f"{key}: ")


def test_missing_environment_field_is_reported(tmp_path: Path) -> None:
    message = _config_error(_write(tmp_path, {"log_level": "INFO"}))
    assert "environment: required key is missing" in message


@pytest.mark.parametrize("text", ["- just\n- a list\n", "plain string\n", ""])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "top level must be a mapping" in _config_error(_write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert "not found" in _config_error(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- environment selection


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No selection variables from the developer's shell leak into these tests."""
    for var in ("GRAPHRAG_CONFIG", "GRAPHRAG_CONFIG_DIR", "GRAPHRAG_ENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(ROOT)
    return monkeypatch


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_graphrag_env_selects_the_file(clean_env: pytest.MonkeyPatch, env_name: str) -> None:
    clean_env.setenv("GRAPHRAG_ENV", env_name)
    path = config_path()
    assert path.name == f"{env_name}.yaml" and path.is_file()
    assert load_settings(env=REQUIRED_ENV).environment == env_name


def test_development_is_the_default(clean_env: pytest.MonkeyPatch) -> None:
    assert config_path().name == "development.yaml"


def test_explicit_arguments_beat_graphrag_env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("GRAPHRAG_ENV", "production")
    assert config_path(environment="staging").name == "staging.yaml"
    assert config_path(tmp_path / "x.yaml") == tmp_path / "x.yaml"
    clean_env.setenv("GRAPHRAG_CONFIG", str(tmp_path / "y.yaml"))
    assert config_path() == tmp_path / "y.yaml"


def test_invalid_graphrag_env_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GRAPHRAG_ENV", "prod")
    with pytest.raises(ConfigError, match="GRAPHRAG_ENV='prod'"):
        config_path()
    with pytest.raises(ConfigError, match="GRAPHRAG_ENV"):
        load_settings(env={})


# --------------------------------------------------------------------------- secrets


def test_redacted_masks_every_secret() -> None:
    s = _load("production", SECRET_ENV)
    assert s.openai.api_key is not None and s.openai.api_key.get_secret_value() == SECRET_OPENAI
    shown = redacted(s)
    text = json.dumps(shown)
    for secret in SECRETS:
        assert secret not in text
    assert shown["openai"]["api_key"] == MASK
    assert shown["mongodb"]["uri"] == MASK
    assert shown["kafka"]["sasl_password"] == MASK
    assert shown["cache"]["redis_url"] == MASK
    # Non-secret values are shown as they are.
    assert shown["kafka"]["sasl_username"] == "indexer"
    assert shown["kafka"]["bootstrap_servers"] == "kafka-0.internal:9093"


def test_secrets_do_not_appear_in_repr() -> None:
    s = _load("production", SECRET_ENV)
    for secret in SECRETS:
        assert secret not in repr(s) and secret not in str(s)


@pytest.mark.parametrize("override", [
    {"openai": {"api_key": [SECRET_OPENAI]}},  # the secret itself has the wrong type
    {"openai": {"api_key": SECRET_OPENAI, "temperature": "hot"}},
    {"mongodb": {"uri": SECRET_MONGO_URI, "databse": "typo"}},
    {"kafka": {"sasl_password": SECRET_SASL, "partitions": 0}},
    {"kafka": {"sasl_password": {"value": SECRET_SASL}}},
    {"cache": {"redis_url": SECRET_REDIS_URL, "ttl_seconds": -1}},
])
def test_validation_errors_never_echo_secrets(tmp_path: Path, override: dict[str, Any]) -> None:
    message = _config_error(_dev_with(tmp_path, override))
    for secret in SECRETS:
        assert secret not in message


def test_yaml_syntax_error_does_not_echo_a_secret(tmp_path: Path) -> None:
    """The YAML error text quotes the offending line; only its position may be reported."""
    path = _write(tmp_path, f'environment: development\nopenai:\n  api_key: "{SECRET_OPENAI}\n')
    message = _config_error(path)
    assert "not valid YAML" in message
    assert re.search(r"line \d+", message)  # where the problem is
    assert SECRET_OPENAI not in message


# --------------------------------------------------------------------------- LLM switch


def test_llm_is_enabled_by_an_api_key_with_extractor_auto() -> None:
    assert _load("development", {"OPENAI_API_KEY": "sk-test"}).llm_enabled is True
    assert _load("development", {}).llm_enabled is False
    assert _load("development", {"OPENAI_API_KEY": ""}).llm_enabled is False
    assert _load("production", {**REQUIRED_ENV, "OPENAI_API_KEY": "sk-test"}).llm_enabled is True


def test_extractor_offline_wins_over_an_api_key(tmp_path: Path) -> None:
    path = _dev_with(tmp_path, {"graphrag": {"extraction": {"extractor": "offline"}}})
    assert load_settings(path, env={"OPENAI_API_KEY": "sk-test"}).llm_enabled is False
    path = _dev_with(tmp_path, {"graphrag": {"extraction": {"extractor": "llm"}}})
    assert load_settings(path, env={}).llm_enabled is True


# --------------------------------------------------------------------------- CLI


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG_", "OPENAI_", "KAFKA_", "MONGODB_"))}
    return {**env, **extra}


def test_cli_config_show_masks_secrets() -> None:
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "--env", "production", "config", "show"],
                          cwd=ROOT, env=_cli_env(SECRET_ENV), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for secret in SECRETS:
        assert secret not in proc.stdout and secret not in proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["environment"] == "production"
    assert shown["openai"]["api_key"] == shown["mongodb"]["uri"] == shown["kafka"]["sasl_password"] == MASK
    assert shown["cache"]["redis_url"] == MASK
    assert shown["graphrag"]["max_concurrent_operations"] == 20


# --------------------------------------------------------------------------- secrets from files (VAR_FILE)

# Canaries only ever written to secret files, never to the environment.
FILE_OPENAI = "sk-proj-FILEcanaryOPENAI"
FILE_MONGO_PASSWORD = "m0ng0-FILE-canary"
FILE_MONGO_URI = f"mongodb://indexer:{FILE_MONGO_PASSWORD}@db.internal:27017/graphrag"
FILE_SASL = "kafka FILE $canary pw"  # spaces and a dollar sign, kept exactly
FILE_REDIS_PASSWORD = "r3dis-FILE-canary"
FILE_REDIS_URL = f"redis://:{FILE_REDIS_PASSWORD}@cache.internal:6379/0"
FILE_TOKEN = "api-FILE-canary-token"
FILE_SECRETS = (FILE_OPENAI, FILE_MONGO_PASSWORD, FILE_SASL, FILE_REDIS_PASSWORD, FILE_TOKEN)


def _secret_files(tmp_path: Path) -> dict[str, str]:
    """Every secret of production.yaml as a mounted file (trailing newline, as `echo` or kubectl
    writes it); the returned mapping is the environment: only KAFKA_BOOTSTRAP_SERVERS is direct."""
    values = {"MONGODB_URI": FILE_MONGO_URI, "OPENAI_API_KEY": FILE_OPENAI, "KAFKA_SASL_USERNAME": "indexer",
              "KAFKA_SASL_PASSWORD": FILE_SASL, "REDIS_URL": FILE_REDIS_URL, "GRAPHRAG_API_TOKEN": FILE_TOKEN}
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka-0.internal:9093"}
    for name, value in values.items():
        path = tmp_path / name.lower().replace("_", "-")
        path.write_bytes(f"{value}\n".encode())
        env[f"{name}_FILE"] = str(path)
    return env


def _file(tmp_path: Path, content: bytes, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(("content", "value"), [
    (b"s3cret\n", "s3cret"),
    (b"s3cret\r\n", "s3cret"),
    (b"s3cret", "s3cret"),                            # no newline at the end
    (b"s3cret\n\n", "s3cret\n"),                      # only ONE newline is stripped
    (b" pa ss $word ${X} \n", " pa ss $word ${X} "),  # inner text exactly, not interpolated again
    (b"line1\r\nline2\n", "line1\r\nline2"),          # no newline translation inside
    ("pässwörd\n".encode(), "pässwörd"),
])
def test_a_variable_is_read_from_the_file_its_FILE_variable_names(tmp_path: Path, content: bytes,
                                                                   value: str) -> None:
    env = {"PW_FILE": _file(tmp_path, content), "X": "must-not-appear"}
    assert interpolate({"k": "${PW}", "d": "${PW:-default}", "s": "[${PW}]"}, env) == \
        {"k": value, "d": value, "s": f"[{value}]"}


def test_every_secret_of_production_can_come_from_a_file(tmp_path: Path) -> None:
    s = _load("production", _secret_files(tmp_path))
    assert s.mongodb.uri.get_secret_value() == FILE_MONGO_URI
    assert s.openai.api_key is not None and s.openai.api_key.get_secret_value() == FILE_OPENAI
    assert s.kafka.sasl_username == "indexer"
    assert s.kafka.sasl_password is not None and s.kafka.sasl_password.get_secret_value() == FILE_SASL
    assert s.cache.redis_url is not None and s.cache.redis_url.get_secret_value() == FILE_REDIS_URL
    assert s.api.token is not None and s.api.token.get_secret_value() == FILE_TOKEN
    assert s.llm_enabled is True


def test_secrets_from_files_are_masked(tmp_path: Path) -> None:
    s = _load("production", _secret_files(tmp_path))
    shown = redacted(s)
    text = json.dumps(shown)
    for secret in FILE_SECRETS:
        assert secret not in text and secret not in repr(s) and secret not in str(s)
    assert shown["openai"]["api_key"] == shown["mongodb"]["uri"] == shown["kafka"]["sasl_password"] == MASK
    assert shown["cache"]["redis_url"] == shown["api"]["token"] == MASK
    assert shown["kafka"]["sasl_username"] == "indexer"


def test_cli_config_show_masks_secrets_read_from_files(tmp_path: Path) -> None:
    env = _cli_env(_secret_files(tmp_path))
    env.pop("REDIS_URL", None)  # _cli_env keeps the shell's REDIS_URL, which would clash with REDIS_URL_FILE
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "--env", "production", "config", "show"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for secret in FILE_SECRETS:
        assert secret not in proc.stdout and secret not in proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["openai"]["api_key"] == shown["mongodb"]["uri"] == shown["kafka"]["sasl_password"] == MASK
    assert shown["cache"]["redis_url"] == shown["api"]["token"] == MASK
    assert shown["kafka"]["sasl_username"] == "indexer"  # read from its file, not secret, shown


def test_both_a_variable_and_its_file_is_an_error_naming_both(tmp_path: Path) -> None:
    env = {**REQUIRED_ENV, "MONGODB_URI": SECRET_MONGO_URI,
           "MONGODB_URI_FILE": _file(tmp_path, f"{FILE_MONGO_URI}\n".encode())}
    message = _config_error(CONFIG_DIR / "production.yaml", env)
    assert "MONGODB_URI " in message and "MONGODB_URI_FILE" in message and "mongodb.uri" in message
    assert "\n" not in message
    for secret in (SECRET_MONGO_PASSWORD, FILE_MONGO_PASSWORD):
        assert secret not in message


def test_an_empty_variable_beside_its_file_is_not_a_conflict(tmp_path: Path) -> None:
    env = {"PW": "", "PW_FILE": _file(tmp_path, b"from-file\n")}
    assert interpolate({"k": "${PW}"}, env) == {"k": "from-file"}
    # An empty VAR_FILE is ignored like any empty variable.
    assert interpolate({"k": "${PW:-dflt}"}, {"PW_FILE": ""}) == {"k": "dflt"}
    assert interpolate({"k": "${PW}"}, {"PW": "direct", "PW_FILE": ""}) == {"k": "direct"}


def test_a_missing_file_is_an_error_naming_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    env = {k: v for k, v in REQUIRED_ENV.items() if k != "KAFKA_SASL_PASSWORD"}
    message = _config_error(CONFIG_DIR / "production.yaml", {**env, "KAFKA_SASL_PASSWORD_FILE": str(missing)})
    assert "KAFKA_SASL_PASSWORD_FILE" in message and str(missing) in message
    assert "kafka.sasl_password" in message and "cannot read" in message
    assert "\n" not in message


def test_an_unreadable_file_is_an_error_without_its_content(tmp_path: Path) -> None:
    # A directory cannot be read as a file (works as root too, unlike chmod 000).
    with pytest.raises(ConfigError, match=r"PW_FILE=.*cannot read the file"):
        interpolate({"k": "${PW}"}, {"PW_FILE": str(tmp_path)}, "k")
    bad = _file(tmp_path, b"\xffSECRET-not-utf8\n")
    with pytest.raises(ConfigError) as info:
        interpolate({"k": "${PW}"}, {"PW_FILE": bad})
    assert bad in str(info.value) and "UTF-8" in str(info.value)
    assert "SECRET" not in str(info.value) and "0xff" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_an_empty_file_is_treated_like_an_empty_value(tmp_path: Path, content: bytes) -> None:
    env = {"PW_FILE": _file(tmp_path, content)}
    assert interpolate({"k": "${PW:-}", "d": "${PW:-dflt}"}, env) == {"k": None, "d": "dflt"}
    assert interpolate({"k": "${PW:-}"}, {"PW": ""}) == {"k": None}  # the same as an empty variable
    message = _config_error(CONFIG_DIR / "production.yaml",
                            {**REQUIRED_ENV, "MONGODB_URI": "", "MONGODB_URI_FILE": env["PW_FILE"]})
    assert "MONGODB_URI" in message and "mongodb.uri" in message and "not set" in message


def test_the_missing_variable_error_mentions_the_file_alternative() -> None:
    with pytest.raises(ConfigError, match=r"MONGODB_URI is not set \(nor MONGODB_URI_FILE\) and has no default"):
        interpolate({"mongodb": {"uri": "${MONGODB_URI}"}}, {})
