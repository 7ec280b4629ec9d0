"""One Kafka security configuration for both client stacks (issue 14, item 2).

The kafka section's protocol, SASL settings, CA, client certificate and key and
verification reach librdkafka (streams.kafka.clients.client_config: topic creation, the lag
exporter, /readyz, producers) and aiokafka (agents.runtime.faust_credentials, through Faust's
own translation to aiokafka's arguments) identically; a broken combination or file is
refused at load with one line naming the key and never a secret. The TLS material is made
per session with openssl (tests/tls_material.py); the aiokafka contexts are checked by real
TLS handshakes in memory, the librdkafka dicts exactly and by librdkafka loading them.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaException, Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from agents.runtime import check_faust_connection, faust_credentials
from streams.kafka.clients import KafkaConnectionError, client_config, connected_admin, ssl_context
from streams.settings import ConfigError, Settings, load_settings, redacted
from tests.tls_material import KEY_PASSWORD, TLSMaterial, handshake, make_tls_material, server_context

CANARY = "canary-sasl-pw-8e41b7"  # the SASL password; must never be in an error message
BOOTSTRAP = "127.0.0.1:9"  # nothing listens: librdkafka only loads its configuration here


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


def settings(**kafka: Any) -> Settings:
    return Settings.model_validate({"environment": "development",
                                    "kafka": {"bootstrap_servers": BOOTSTRAP, **kafka}})


def sasl(mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
    return {"sasl_mechanism": mechanism, "sasl_username": "indexer", "sasl_password": CANARY}


def aiokafka_auth(s: Settings) -> dict[str, Any]:
    """What aiokafka's clients get from the Faust app's broker_credentials."""
    return dict(credentials_to_aiokafka_auth(faust_credentials(s)))


def load_with(tmp_path: Path, kafka: dict[str, Any], security: dict[str, Any] | None = None) -> Settings:
    data: dict[str, Any] = {"environment": "development", "kafka": {"bootstrap_servers": BOOTSTRAP, **kafka}}
    if security is not None:
        data["security"] = security
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path, env={})


def load_error(tmp_path: Path, kafka: dict[str, Any], security: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_with(tmp_path, kafka, security)
    return str(info.value)


def librdkafka_accepts(conf: dict[str, Any]) -> None:
    """librdkafka loads the CA, certificate and key when a client is created (it connects later)."""
    Producer({**conf, "log_level": 0}).flush(0)


# --------------------------------------------------------------------------- librdkafka


def test_plaintext_has_no_security_properties() -> None:
    assert client_config(settings().kafka) == {"bootstrap.servers": BOOTSTRAP, "security.protocol": "PLAINTEXT"}


def test_sasl_plaintext_has_sasl_and_no_tls() -> None:
    assert client_config(settings(security_protocol="SASL_PLAINTEXT", **sasl("SCRAM-SHA-256")).kafka) == {
        "bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "indexer", "sasl.password": CANARY}


def test_ssl_with_a_ca_verifies(tls: TLSMaterial) -> None:
    conf = client_config(settings(security_protocol="SSL", ssl_cafile=str(tls.ca)).kafka)
    assert conf == {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SSL", "ssl.ca.location": str(tls.ca),
                    "enable.ssl.certificate.verification": True, "ssl.endpoint.identification.algorithm": "https"}
    librdkafka_accepts(conf)


def test_ssl_with_a_client_certificate_and_an_encrypted_key(tls: TLSMaterial) -> None:
    conf = client_config(settings(security_protocol="SSL", ssl_cafile=str(tls.ca), ssl_certfile=str(tls.client_cert),
                                  ssl_keyfile=str(tls.client_key_encrypted), ssl_key_password=KEY_PASSWORD).kafka)
    assert conf == {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SSL", "ssl.ca.location": str(tls.ca),
                    "ssl.certificate.location": str(tls.client_cert),
                    "ssl.key.location": str(tls.client_key_encrypted), "ssl.key.password": KEY_PASSWORD,
                    "enable.ssl.certificate.verification": True, "ssl.endpoint.identification.algorithm": "https"}
    librdkafka_accepts(conf)
    with pytest.raises(KafkaException, match=r"ssl\.key\.location"):  # librdkafka really uses the password
        librdkafka_accepts({**conf, "ssl.key.password": "wrong"})


def test_sasl_ssl_with_verification_off(tls: TLSMaterial) -> None:
    conf = client_config(settings(security_protocol="SASL_SSL", ssl_cafile=str(tls.ca), ssl_verify=False,
                                  **sasl()).kafka)
    assert conf == {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "indexer", "sasl.password": CANARY,
                    "ssl.ca.location": str(tls.ca),
                    "enable.ssl.certificate.verification": False, "ssl.endpoint.identification.algorithm": "none"}
    librdkafka_accepts(conf)


def test_sasl_ssl_with_the_system_trust_store_and_mtls(tls: TLSMaterial) -> None:
    conf = client_config(settings(security_protocol="SASL_SSL", ssl_certfile=str(tls.client_cert),
                                  ssl_keyfile=str(tls.client_key), **sasl("PLAIN")).kafka)
    assert conf == {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "PLAIN", "sasl.username": "indexer", "sasl.password": CANARY,
                    "ssl.certificate.location": str(tls.client_cert), "ssl.key.location": str(tls.client_key),
                    "enable.ssl.certificate.verification": True, "ssl.endpoint.identification.algorithm": "https"}


def test_sasl_keys_are_ignored_without_a_sasl_protocol(tls: TLSMaterial) -> None:
    """production.yaml defaults the mechanism to SCRAM-SHA-512; KAFKA_SECURITY_PROTOCOL=SSL
    (mTLS only) must still load and send no SASL properties."""
    s = settings(security_protocol="SSL", ssl_cafile=str(tls.ca), sasl_mechanism="SCRAM-SHA-512")
    assert not any(k.startswith("sasl.") for k in client_config(s.kafka))
    assert aiokafka_auth(s)["security_protocol"] == "SSL" and "sasl_mechanism" not in aiokafka_auth(s)


# --------------------------------------------------------------------------- aiokafka (Faust)


def test_aiokafka_plaintext() -> None:
    assert faust_credentials(settings()) is None
    assert aiokafka_auth(settings()) == {"security_protocol": "PLAINTEXT"}


def test_aiokafka_sasl_plaintext_has_no_tls() -> None:
    auth = aiokafka_auth(settings(security_protocol="SASL_PLAINTEXT", **sasl("SCRAM-SHA-256")))
    assert auth == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                    "sasl_plain_username": "indexer", "sasl_plain_password": CANARY, "ssl_context": None}


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_aiokafka_tls_verifies_and_presents_the_client_certificate(tls: TLSMaterial, protocol: str) -> None:
    extra = sasl() if protocol == "SASL_SSL" else {}
    s = settings(security_protocol=protocol, ssl_cafile=str(tls.ca), ssl_certfile=str(tls.client_cert),
                 ssl_keyfile=str(tls.client_key_encrypted), ssl_key_password=KEY_PASSWORD, **extra)
    auth = aiokafka_auth(s)
    assert auth["security_protocol"] == protocol
    if protocol == "SASL_SSL":
        assert (auth["sasl_mechanism"], auth["sasl_plain_username"], auth["sasl_plain_password"]) == (
            "SCRAM-SHA-512", "indexer", CANARY)
    ctx = auth["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is True
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    # The client certificate is loaded and sent: a server that requires one signed by the CA sees it.
    presented = handshake(ctx, server_context(tls.server_cert, tls.server_key, client_ca=tls.ca))
    assert presented["subject"] == ((("commonName", "client"),),)
    # And the broker is verified: a certificate from an unknown CA, or for another host, is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ctx, server_context(tls.other_cert, tls.other_key, client_ca=None))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(ctx, server_context(tls.server_cert, tls.server_key, client_ca=None), hostname="kafka.example")


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_aiokafka_without_verification_accepts_any_broker(tls: TLSMaterial, protocol: str) -> None:
    extra = sasl() if protocol == "SASL_SSL" else {}
    ctx = aiokafka_auth(settings(security_protocol=protocol, ssl_cafile=str(tls.ca), ssl_verify=False,
                                 **extra))["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
    assert handshake(ctx, server_context(tls.other_cert, tls.other_key, client_ca=None)) == {}
    # No client certificate configured, none sent: an mTLS broker refuses.
    with pytest.raises(ssl.SSLError):
        handshake(ctx, server_context(tls.server_cert, tls.server_key, client_ca=tls.ca))


def test_both_clients_follow_the_same_verification_setting(tls: TLSMaterial) -> None:
    for verify in (True, False):
        k = settings(security_protocol="SSL", ssl_cafile=str(tls.ca), ssl_verify=verify).kafka
        ctx = ssl_context(k)
        assert ctx is not None
        conf = client_config(k)
        assert conf["enable.ssl.certificate.verification"] is verify
        assert (ctx.verify_mode == ssl.CERT_REQUIRED) is verify and ctx.check_hostname is verify
        assert (conf["ssl.endpoint.identification.algorithm"] == "https") is verify


# --------------------------------------------------------------------------- validation at load


def _errors(tls: TLSMaterial) -> list[tuple[str, dict[str, Any], str]]:
    ca, cert, key, enc = str(tls.ca), str(tls.client_cert), str(tls.client_key), str(tls.client_key_encrypted)
    return [
        ("sasl-no-mechanism", {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": CANARY},
         "kafka.sasl_mechanism: is required with security_protocol SASL_SSL"),
        ("sasl-no-username", {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                              "sasl_password": CANARY},
         "kafka.sasl_username: is required with security_protocol SASL_PLAINTEXT"),
        ("sasl-no-password", {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
         "kafka.sasl_password: is required with security_protocol SASL_SSL"),
        ("sasl-empty-password", {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                                 "sasl_password": ""},
         "kafka.sasl_password: is required"),
        ("cert-without-key", {"security_protocol": "SSL", "ssl_certfile": cert, "sasl_password": CANARY},
         "kafka.ssl_keyfile: is required with ssl_certfile"),
        ("key-without-cert", {"security_protocol": "SSL", "ssl_keyfile": key, "sasl_password": CANARY},
         "kafka.ssl_certfile: is required with ssl_keyfile"),
        ("password-without-key", {"security_protocol": "SSL", "ssl_key_password": CANARY},
         "kafka.ssl_key_password: is set, but ssl_keyfile is not"),
        ("ca-missing", {"security_protocol": "SSL", "ssl_cafile": ca + ".nope", "sasl_password": CANARY},
         f"kafka.ssl_cafile: file not found: {ca}.nope"),
        ("ca-not-pem", {"security_protocol": "SSL", "ssl_cafile": str(tls.not_pem), "sasl_password": CANARY},
         f"kafka.ssl_cafile: {tls.not_pem} is not a PEM certificate file"),
        ("ca-is-a-key", {"security_protocol": "SSL", "ssl_cafile": key},
         f"kafka.ssl_cafile: {key} is not a PEM certificate file"),
        ("cert-not-pem", {"security_protocol": "SSL", "ssl_certfile": str(tls.not_pem), "ssl_keyfile": key},
         f"kafka.ssl_certfile: {tls.not_pem} is not a PEM certificate file"),
        ("key-missing", {"security_protocol": "SSL", "ssl_certfile": cert, "ssl_keyfile": key + ".nope"},
         f"kafka.ssl_keyfile: file not found: {key}.nope"),
        ("key-of-another-cert", {"security_protocol": "SSL", "ssl_certfile": cert, "ssl_keyfile": str(tls.other_key)},
         f"kafka.ssl_keyfile: {tls.other_key} is not the private key of ssl_certfile"),
        ("key-not-pem", {"security_protocol": "SSL", "ssl_certfile": cert, "ssl_keyfile": str(tls.not_pem)},
         "kafka.ssl_keyfile: cannot load the private key"),
        ("encrypted-key-no-password", {"security_protocol": "SSL", "ssl_certfile": cert, "ssl_keyfile": enc},
         "ssl_key_password is wrong or missing"),
        ("encrypted-key-wrong-password", {"security_protocol": "SSL", "ssl_certfile": cert, "ssl_keyfile": enc,
                                          "ssl_key_password": CANARY},
         "ssl_key_password is wrong or missing"),
        ("ca-with-plaintext", {"security_protocol": "PLAINTEXT", "ssl_cafile": ca},
         "kafka.ssl_cafile: is set, but security_protocol PLAINTEXT does not use TLS"),
        ("cert-with-sasl-plaintext", {"security_protocol": "SASL_PLAINTEXT", **sasl(), "ssl_certfile": cert,
                                      "ssl_keyfile": key},
         "kafka.ssl_certfile: is set, but security_protocol SASL_PLAINTEXT does not use TLS"),
        ("key-password-with-plaintext", {"ssl_key_password": CANARY},
         "kafka.ssl_key_password: is set, but security_protocol PLAINTEXT does not use TLS"),
    ]


ERROR_IDS = [e[0] for e in _errors(TLSMaterial(*(Path("/x"),) * 10))]


@pytest.mark.parametrize("case", ERROR_IDS)
def test_bad_security_settings_are_refused_at_load(tls: TLSMaterial, tmp_path: Path, case: str) -> None:
    _, kafka, expected = next(e for e in _errors(tls) if e[0] == case)
    message = load_error(tmp_path, kafka)
    assert expected in message, message
    assert CANARY not in message and KEY_PASSWORD not in message
    assert "\n" not in message


def test_good_tls_settings_load(tls: TLSMaterial, tmp_path: Path) -> None:
    s = load_with(tmp_path, {"security_protocol": "SASL_SSL", **sasl(), "ssl_cafile": str(tls.ca),
                             "ssl_certfile": str(tls.client_cert), "ssl_keyfile": str(tls.client_key_encrypted),
                             "ssl_key_password": KEY_PASSWORD})
    assert s.kafka.ssl_key_password is not None and s.kafka.ssl_key_password.get_secret_value() == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(s) and CANARY not in repr(s)
    shown = redacted(s)["kafka"]  # what `config show` prints
    assert shown["ssl_key_password"] == shown["sasl_password"] == "**********"
    assert shown["ssl_certfile"] == str(tls.client_cert)  # paths are not secrets


# --------------------------------------------------------------------------- security.tls_verify


def test_security_tls_verify_still_works_with_a_warning(tls: TLSMaterial, tmp_path: Path) -> None:
    with pytest.warns(FutureWarning, match=r"security\.tls_verify is deprecated: set kafka\.ssl_verify"):
        s = load_with(tmp_path, {"security_protocol": "SSL", "ssl_cafile": str(tls.ca)}, {"tls_verify": False})
    assert s.kafka.ssl_verify is False
    assert client_config(s.kafka)["enable.ssl.certificate.verification"] is False  # librdkafka too now
    assert aiokafka_auth(s)["ssl_context"].verify_mode == ssl.CERT_NONE


def test_kafka_ssl_verify_without_the_old_key_warns_nothing(tls: TLSMaterial, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = load_with(tmp_path, {"security_protocol": "SSL", "ssl_cafile": str(tls.ca), "ssl_verify": "false"})
    assert s.kafka.ssl_verify is False


def test_both_verification_keys_are_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"ssl_verify": True}, {"tls_verify": True})
    assert "security.tls_verify: is the deprecated name of kafka.ssl_verify, which is set too" in message


# --------------------------------------------------------------------------- MongoDB's CA, the same way


def test_mongodb_ca_file_reaches_the_client_and_is_checked_at_load(tls: TLSMaterial, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.store.mongo as mongo

    seen: dict[str, Any] = {}
    monkeypatch.setattr(mongo, "MongoClient", lambda uri, **kw: seen.update(kw))
    s = Settings.model_validate({"environment": "development", "mongodb": {"tls_ca_file": str(tls.ca)}})
    mongo.connect(s)
    assert seen["tlsCAFile"] == str(tls.ca)
    seen.clear()
    mongo.connect(settings())
    assert "tlsCAFile" not in seen  # none configured: the URI decides, as before
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"environment": "development", "mongodb": {"tls_ca_file": str(tls.not_pem)}}))
    with pytest.raises(ConfigError, match=r"mongodb\.tls_ca_file: .* is not a PEM certificate file"):
        load_settings(path, env={})


def test_a_broker_that_does_not_answer_is_unreachable_not_refused() -> None:
    """Nothing listens: both checks fail with the address and refused=False, so that a stage
    exits to be restarted (a broker that is starting) instead of stopping every stage."""
    s = settings()
    with pytest.raises(KafkaConnectionError) as rd:
        connected_admin(s, timeout=2)
    assert not rd.value.refused and f"cannot connect to Kafka at {BOOTSTRAP} (librdkafka" in str(rd.value)
    with pytest.raises(KafkaConnectionError) as aio:
        check_faust_connection(s, timeout=2)
    assert not aio.value.refused and f"cannot connect to Kafka at {BOOTSTRAP} (aiokafka" in str(aio.value)
    assert "check kafka.bootstrap_servers" in str(aio.value)
