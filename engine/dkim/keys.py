"""DKIM keys for sending domains, and the DNS records a tenant must publish.

Owns:

* key generation (:func:`generate_key`): RSA (RFC 6376 §3.3.3; 2048 bits by
  default, as RFC 8301 §3.2 recommends) or Ed25519 (RFC 8463). The private key
  is PKCS#8 PEM, unencrypted; it is sealed with ``engine.sealing`` before it
  is stored, and never printed or logged (:class:`DkimKeyPair` hides it from
  its repr).
* the ``p=`` value (RFC 6376 §3.6.1): for RSA, base64 of the DER
  SubjectPublicKeyInfo; for Ed25519, base64 of the raw 32-byte public key
  (RFC 8463 §4.2).
* the DNS records for a sending domain (:func:`dns_records`): the DKIM key
  TXT, the SPF TXT (RFC 7208) and MX of the return-path domain where bounces
  come back, and a monitoring-only DMARC TXT (RFC 7489 §6.3), plus their
  rendering as BIND zone-file lines with TXT values split into
  character-strings of at most 255 octets (RFC 1035 §3.3.14, RFC 6376 §3.6.2.2).

Everything here is pure except :func:`generate_key` (randomness).
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ALGORITHMS: Final = ("rsa", "ed25519")
RSA_DEFAULT_BITS: Final = 2048
RSA_MIN_BITS: Final = 1024
RSA_MAX_BITS: Final = 4096
TXT_CHUNK_MAX: Final = 255
"""Octets in one DNS character-string (RFC 1035 §3.3)."""
ZONE_TTL: Final = 3600

DkimPrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?$")


class DkimKeyError(ValueError):
    """A DKIM key cannot be generated or loaded as asked."""


@dataclass(frozen=True, slots=True)
class DkimKeyPair:
    """A DKIM key: the algorithm (``"rsa"`` or ``"ed25519"``), the private key, the ``p=`` value."""

    algorithm: str
    private_pem: bytes = field(repr=False)
    public_b64: str


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One record to publish. ``value`` is the TXT text unquoted, else the RDATA as in a zone."""

    name: str
    type: str
    value: str
    purpose: str


def generate_key(algorithm: str, bits: int = RSA_DEFAULT_BITS) -> DkimKeyPair:
    """Generate a new DKIM key; ``bits`` applies to RSA only (1024..4096)."""
    private: DkimPrivateKey
    if algorithm == "rsa":
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise DkimKeyError(
                f"RSA key size must be {RSA_MIN_BITS}..{RSA_MAX_BITS} bits, got {bits}"
            )
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DkimKeyError(f"unknown DKIM algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DkimKeyPair(algorithm, pem, public_b64(private))


def public_b64(private: DkimPrivateKey) -> str:
    """The ``p=`` value for ``private`` (RFC 6376 §3.6.1, RFC 8463 §4.2)."""
    if isinstance(private, rsa.RSAPrivateKey):
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode("ascii")


def load_private_key(pem: bytes) -> DkimPrivateKey:
    """Parse a PEM private key made by :func:`generate_key`.

    RSA key validation is skipped (it costs tens of milliseconds per load and
    the keys are our own); callers cache the result.
    """
    try:
        key = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DkimKeyError("DKIM private key cannot be parsed") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"DKIM private key has unsupported type {type(key).__name__}")
    return key


def default_selector(now: float) -> str:
    """The selector for a key made at ``now``: ``pm`` + UTC year and month, e.g. ``pm202611``."""
    t = time.gmtime(now)
    return f"pm{t.tm_year:04d}{t.tm_mon:02d}"


def dns_records(
    domain: str,
    selector: str,
    key: DkimKeyPair | tuple[str, str],
    return_path_domain: str,
    engine_hostname: str,
) -> list[DnsRecord]:
    """The records to publish for sending ``domain`` through this engine.

    ``key`` is a key pair or ``(algorithm, public_b64)``. ``return_path_domain``
    (usually ``bounces.<domain>``) is the envelope sender's domain: SPF is
    checked against it (RFC 7208 §2.4) and bounces are delivered to its MX,
    the engine at ``engine_hostname``. DMARC starts at ``p=none`` with relaxed
    alignment, which the return-path subdomain satisfies (RFC 7489 §3.1).
    """
    algorithm, public = (key.algorithm, key.public_b64) if isinstance(key, DkimKeyPair) else key
    if algorithm not in ALGORITHMS:
        raise DkimKeyError(f"unknown DKIM algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    domain = dns_name(domain)
    return_path_domain = dns_name(return_path_domain)
    engine_hostname = dns_name(engine_hostname)
    selector = dns_name(selector)
    return [
        DnsRecord(
            f"{selector}._domainkey.{domain}",
            "TXT",
            f"v=DKIM1; k={algorithm}; p={public}",
            f"DKIM public key for selector {selector} (RFC 6376 §3.6.1)",
        ),
        DnsRecord(
            return_path_domain,
            "TXT",
            f"v=spf1 a:{engine_hostname} -all",
            "SPF for the return-path domain: only the engine may send as it (RFC 7208)",
        ),
        DnsRecord(
            return_path_domain,
            "MX",
            f"10 {engine_hostname}.",
            "MX for the return-path domain: bounces come back to the engine",
        ),
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}; adkim=r; aspf=r",
            "DMARC policy, monitoring only to start with (RFC 7489 §6.3)",
        ),
    ]


def txt_chunks(value: str) -> list[str]:
    """Split a TXT value into character-strings of at most 255 octets (ASCII only)."""
    if not value.isascii():
        raise ValueError("TXT value must be ASCII")
    return [value[i : i + TXT_CHUNK_MAX] for i in range(0, len(value), TXT_CHUNK_MAX)] or [""]


def format_zone_line(record: DnsRecord) -> str:
    """Render ``record`` as one BIND zone-file line; TXT values are quoted 255-octet chunks."""
    if record.type == "TXT":
        rdata = " ".join(f'"{_escape(chunk)}"' for chunk in txt_chunks(record.value))
    else:
        rdata = record.value
    return f"{record.name}. {ZONE_TTL} IN {record.type} {rdata}"


def render_instructions(records: list[DnsRecord]) -> str:
    """A block an operator can read and paste: each record's purpose, then its zone line."""
    return "\n".join(f"; {r.purpose}\n{format_zone_line(r)}\n" for r in records)


def _escape(chunk: str) -> str:
    return chunk.replace("\\", "\\\\").replace('"', '\\"')


def dns_name(name: str) -> str:
    """``name`` lower-case without a final dot; ``ValueError`` when it cannot be
    published in DNS (an empty label, a label over 63 octets, a name over 253)."""
    name = name.strip().rstrip(".").lower()
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not a valid DNS name: {name!r}")
    return name
