"""Throwaway TLS material for tests: a CA, a server certificate for localhost, a client
certificate with its key (plain and encrypted), and a second, unrelated CA.

Made with the openssl recipe of the local stack's secure profile (stack/certs.py; the
`cryptography` package is not a dependency), EC keys so that it takes milliseconds.
Nothing here is ever used outside a test's temporary directory.
"""

from __future__ import annotations

import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack.certs import encrypt_key, issue, make_ca

KEY_PASSWORD = "canary-key-pw-5f2a9c"  # the encrypted client key's; must never be printed


@dataclass(frozen=True)
class TLSMaterial:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path  # KEY_PASSWORD
    other_ca: Path  # signs nothing here: a broker certificate it vouches for is unknown
    other_cert: Path  # signed by other_ca, for localhost
    other_key: Path
    not_pem: Path


def _leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    """(certificate, key) of ``name``, signed by ``ca`` (key, certificate)."""
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    issue(ca, key, cert, cn=name, ext=ext, days=2)
    return cert, key


def make_tls_material(d: Path) -> TLSMaterial:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no TLS material for the test")
    d.mkdir(parents=True, exist_ok=True)
    ca = make_ca(d, "test-ca", days=2)
    other = make_ca(d, "other-ca", days=2)
    tls_server = "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth"
    server = _leaf(d, "server", ca, tls_server)
    client = _leaf(d, "client", ca, "extendedKeyUsage=clientAuth")
    other_server = _leaf(d, "other-server", other, tls_server)
    encrypted = d / "client-encrypted.key"
    encrypt_key(client[1], encrypted, KEY_PASSWORD)
    not_pem = d / "not-pem.crt"
    not_pem.write_text("this is not a certificate\n")
    return TLSMaterial(ca=ca[1], server_cert=server[0], server_key=server[1], client_cert=client[0],
                       client_key=client[1], client_key_encrypted=encrypted, other_ca=other[1],
                       other_cert=other_server[0], other_key=other_server[1], not_pem=not_pem)


def server_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """A TLS server; with client_ca it requires a client certificate signed by that CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    return ctx


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str = "localhost") -> dict[str, object]:
    """A complete TLS handshake in memory; returns the certificate the client presented
    (as the server saw it, empty when none). Raises ssl.SSLError when either side refuses."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(50):
        for name, obj in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    # TLS 1.3: the server checks the client's certificate after the client is done; an
    # application read makes the client see a refusal.
    s.write(b"ok")
    c_in.write(s_out.read())
    assert c.read(2) == b"ok"
    return s.getpeercert() or {}
