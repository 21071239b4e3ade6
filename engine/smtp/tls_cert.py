"""The engine's own TLS certificate, and the server-side TLS context built from it.

Owns :func:`ensure_self_signed`, which gives a fresh install a working
certificate for STARTTLS and HTTPS listeners: an ECDSA P-256 key and a
self-signed certificate valid for ten years, whose subjectAltName is the
engine's hostname (RFC 5280 §4.2.1.6; for ``localhost`` also ``127.0.0.1``).
Operators replace both files with a CA-issued pair; existing files are never
touched.

Invariants: the key file is mode 0600 and is written atomically (see
``engine.sealing.write_private_file``); the key is never logged. Server
contexts refuse anything below TLS 1.2 (RFC 8996).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.sealing import write_private_file

VALIDITY = datetime.timedelta(days=3650)
_BACKDATE = datetime.timedelta(minutes=5)
_COMMON_NAME_MAX = 64
"""ub-common-name (RFC 5280 Appendix A.1); the whole host name is in subjectAltName."""


class TlsCertError(Exception):
    """The certificate and key files are inconsistent (one exists without the other)."""


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """Create a self-signed certificate and its key unless both files exist.

    Raises :class:`TlsCertError` if exactly one of them exists, rather than
    replacing an operator's file.
    """
    cert_exists, key_exists = cert_path.exists(), key_path.exists()
    if cert_exists and key_exists:
        return
    if cert_exists or key_exists:
        present, missing = (cert_path, key_path) if cert_exists else (key_path, cert_path)
        raise TlsCertError(f"{present} exists but {missing} does not; provide both or neither")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hostname, datetime.datetime.now(datetime.UTC))
    write_private_file(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_public_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 minimum) presenting the given certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert_path, keyfile=key_path)
    return context


def _self_signed(
    key: ec.EllipticCurvePrivateKey, hostname: str, now: datetime.datetime
) -> x509.Certificate:
    common_name = hostname if len(hostname) <= _COMMON_NAME_MAX else hostname.split(".")[0]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _alt_names(hostname: str) -> list[x509.GeneralName]:
    try:
        return [x509.IPAddress(ipaddress.ip_address(hostname))]
    except ValueError:
        pass
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname == "localhost":
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return names


def _write_public_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
