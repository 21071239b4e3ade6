"""Throw-away TLS material for tests: a self-signed certificate and both contexts.

Owns :func:`make_tls_pair`, which writes a fresh key and self-signed
certificate for ``localhost`` (subjectAltName ``localhost`` and ``127.0.0.1``)
into a directory the caller owns (a pytest ``tmp_path``), using the engine's
own generator (:mod:`engine.smtp.tls_cert`), and returns a server context that
presents it and a client context that trusts exactly that certificate.

Invariant: nothing outside the given directory is written; the client context
verifies the peer, so a test connecting to ``127.0.0.1`` or ``localhost``
proves a real, checked handshake. Use :func:`unverified_client_context` for
peers on other loopback addresses (``127.0.0.2``, ...), which the certificate
does not name.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from engine.smtp.tls_cert import ensure_self_signed, server_context

HOSTNAME = "localhost"


@dataclass(frozen=True)
class TlsPair:
    """A server context and a client context that trusts it."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    cert_path: Path


def make_tls_pair(directory: Path) -> TlsPair:
    """Generate a certificate under ``directory`` and build both contexts."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    ensure_self_signed(cert_path, key_path, HOSTNAME)
    client = ssl.create_default_context(cafile=str(cert_path))
    return TlsPair(server=server_context(cert_path, key_path), client=client, cert_path=cert_path)


def unverified_client_context() -> ssl.SSLContext:
    """A client context that encrypts without checking the peer (opportunistic TLS).

    It loads no CA certificates, which it would not use: building it costs
    microseconds, where loading the system's CA store costs tens of milliseconds."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
