"""Certificates and credentials for the secure profile of the local stack (openssl).

Why: the secure profile (``localstack.py up --secure``) runs the same broker with a
SASL_SSL/SCRAM-SHA-512 listener and an mTLS listener, and FerretDB behind TLS, so the
security path of both Kafka client stacks is tested against a real broker. Everything
is made once per stack directory and kept: a local CA, a broker/server certificate for
127.0.0.1 and localhost, a client certificate whose key is encrypted, and the SCRAM
user's password. Only the standard library and the ``openssl`` command are needed; the tests make their
throwaway TLS material with the same functions (tests/tls_material.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRAM_USER = "graphrag"


class CertError(RuntimeError):
    """openssl is missing or failed; the message says which step."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the secure profile's files are; names are what the config keys expect."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def server_keystore(self) -> Path:
        """Key and certificate in one PEM file: Kafka's ``ssl.keystore.type=PEM``."""
        return self.dir / "server-keystore.pem"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    @property
    def client_key_password(self) -> Path:
        return self.dir / "client-key-password"

    @property
    def sasl_password(self) -> Path:
        return self.dir / "sasl-password"

    @property
    def sasl_user(self) -> str:
        return SCRAM_USER


def _openssl(*args: str, what: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("the secure profile needs `openssl` to make its certificates "
                        "(Debian: apt-get install openssl)")
    proc = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CertError(f"openssl failed {what}: {proc.stderr.strip()[-500:]}")


def _secret_file(path: Path) -> None:
    """Write a random password readable by the owner only (as a Kubernetes secret mount is)."""
    path.write_text(secrets.token_urlsafe(18))
    path.chmod(0o600)


# EC P-256 keys: made in milliseconds, and read by Kafka's PEM key store, librdkafka,
# Python's ssl and FerretDB (Go) alike.
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(dir: Path, name: str, *, days: int = 3650) -> tuple[Path, Path]:
    """A self-signed CA (key, certificate) in ``dir``."""
    dir.mkdir(parents=True, exist_ok=True)
    key, cert = dir / f"{name}.key", dir / f"{name}.pem"
    _openssl("req", "-x509", *_EC_KEY, "-keyout", str(key), "-out", str(cert),
             "-days", str(days), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", what=f"making the CA {name}")
    key.chmod(0o600)
    return key, cert


# What a server certificate of the local stack is valid for: bootstrap addresses use both.
LOOPBACK = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def issue(ca: tuple[Path, Path], key: Path, cert: Path, *, cn: str, ext: str, days: int = 825) -> None:
    """A certificate for ``cn`` signed by ``ca`` with the extensions ``ext`` (openssl
    extension lines, e.g. ``LOOPBACK`` and an extendedKeyUsage); the key is unencrypted PKCS#8."""
    ca_key, ca_cert = ca
    csr, extfile = key.with_suffix(".csr"), key.with_suffix(".ext")
    extfile.write_text(f"basicConstraints=CA:FALSE\n{ext}\n")
    try:
        _openssl("req", *_EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}",
                 what=f"making the key of {cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", str(days), "-extfile", str(extfile),
                 what=f"signing the certificate of {cn}")
        key.chmod(0o600)
    finally:
        csr.unlink(missing_ok=True)
        extfile.unlink(missing_ok=True)


def encrypt_key(plain: Path, out: Path, password: str) -> None:
    """``plain`` as an encrypted PKCS#8 key (AES-256) in ``out``; the password goes on no command line."""
    pw = out.with_suffix(".pw")
    pw.write_text(password)
    pw.chmod(0o600)
    try:
        _openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(plain), "-out", str(out),
                 "-passout", f"file:{pw}", what=f"encrypting {plain.name}")
        out.chmod(0o600)
    finally:
        pw.unlink(missing_ok=True)


def ensure_local_tls(dir: Path) -> TlsFiles:
    """The secure profile's CA, server and client certificates and passwords (made once)."""
    files = TlsFiles(dir)
    if files.sasl_password.exists() and files.server_keystore.exists():
        return files
    dir.mkdir(parents=True, exist_ok=True)
    os.chmod(dir, 0o700)
    ca = make_ca(dir, "ca")
    issue(ca, files.server_key, files.server_cert, cn="localhost", ext=f"{LOOPBACK}\nextendedKeyUsage=serverAuth")
    files.server_keystore.write_text(files.server_key.read_text() + files.server_cert.read_text())
    files.server_keystore.chmod(0o600)
    _secret_file(files.client_key_password)
    plain = dir / "client-plain.key"
    issue(ca, plain, files.client_cert, cn="graphrag-streams-client", ext="extendedKeyUsage=clientAuth")
    encrypt_key(plain, files.client_key, files.client_key_password.read_text())
    plain.unlink()
    _secret_file(files.sasl_password)  # last: its presence says the set is complete
    return files
