"""Certificates and credentials for the secure profile of the local stack (openssl).

Why: the secure profile (``localstack.py up --secure``) runs the same broker with a
SASL_SSL/SCRAM-SHA-512 listener and an mTLS listener, and FerretDB behind TLS, so the
security path of both Kafka client stacks is tested against a real broker. Everything
is made once per stack directory and kept: a local CA, a broker/server certificate for
127.0.0.1 and localhost, a client certificate whose key is encrypted, and the SCRAM
user's password. Only the standard library and the ``openssl`` command are needed.
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


def make_ca(dir: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (key, certificate) in ``dir``."""
    dir.mkdir(parents=True, exist_ok=True)
    key, cert = dir / f"{name}.key", dir / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "3650", "-subj", f"/CN=graphrag-streams {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", what=f"making the CA {name}")
    key.chmod(0o600)
    return key, cert


def issue(ca: tuple[Path, Path], key: Path, cert: Path, *, cn: str, usage: str,
          key_password: str | None = None) -> None:
    """A certificate for ``cn`` (also valid for 127.0.0.1 and localhost) signed by ``ca``;
    the key is PKCS#8, encrypted with ``key_password`` when given."""
    ca_key, ca_cert = ca
    plain = key.with_suffix(".plain")
    csr = key.with_suffix(".csr")
    ext = key.with_suffix(".ext")
    ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   f"extendedKeyUsage={usage}\n")
    try:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(plain), "-out", str(csr),
                 "-subj", f"/CN={cn}", what=f"making the key of {cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", "825", "-extfile", str(ext),
                 what=f"signing the certificate of {cn}")
        if key_password is None:
            _openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(plain), "-out", str(key),
                     what=f"writing the key of {cn}")
        else:
            _openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(plain), "-out", str(key),
                     "-passout", f"pass:{key_password}", what=f"encrypting the key of {cn}")
        key.chmod(0o600)
    finally:
        for scratch in (plain, csr, ext):
            scratch.unlink(missing_ok=True)


def ensure_local_tls(dir: Path) -> TlsFiles:
    """The secure profile's CA, server and client certificates and passwords (made once)."""
    files = TlsFiles(dir)
    if files.sasl_password.exists() and files.server_keystore.exists():
        return files
    dir.mkdir(parents=True, exist_ok=True)
    os.chmod(dir, 0o700)
    ca = make_ca(dir, "ca")
    issue(ca, files.server_key, files.server_cert, cn="localhost", usage="serverAuth")
    files.server_keystore.write_text(files.server_key.read_text() + files.server_cert.read_text())
    files.server_keystore.chmod(0o600)
    _secret_file(files.client_key_password)
    issue(ca, files.client_key, files.client_cert, cn="graphrag-streams-client", usage="clientAuth",
          key_password=files.client_key_password.read_text())
    _secret_file(files.sasl_password)  # last: its presence says the set is complete
    return files
