"""TLS for every tracking domain, chosen by SNI from a certificate directory.

The operator drops ``<domain>.crt`` with ``<domain>.key`` (or ``<domain>.pem``
holding both) in ``[tracking] certificate_dir``. ``CertificateDirectory``
loads them, one ``ssl.SSLContext`` per domain, and gives the listener one
context (``context``) whose SNI callback hands each connection the context
of the name it asked for. A connection without SNI, or for a name without a
certificate, gets the default: ``default.crt``/``default.key`` (or
``default.pem``) when present, else the first domain in name order.

``reload`` looks at the files' modification times and sizes and loads the
directory again when they changed (the edge calls it periodically and on
SIGHUP); a domain whose files do not load is logged and keeps its previous
certificate, so a half-copied file never breaks a serving domain. New
connections see the new certificates; open ones keep theirs.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Final

from engine.smtp.tls_cert import server_context

log = logging.getLogger(__name__)

DEFAULT_NAME: Final = "default"

Fingerprint = tuple[tuple[str, int, int], ...]


class CertificateError(Exception):
    """The certificate directory holds no certificate that loads."""


class CertificateDirectory:
    """The certificates of ``directory``, by lowercase domain name."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._default: ssl.SSLContext | None = None
        self._fingerprint: Fingerprint = ()
        self._listening = _listener_context()
        self._listening.sni_callback = self._pick
        self.reload()
        if self._default is None:
            raise CertificateError(f"{directory}: no <domain>.crt and .key, or <domain>.pem")

    @property
    def domains(self) -> list[str]:
        """The names with a certificate, in order."""
        return sorted(self._contexts)

    def context(self) -> ssl.SSLContext:
        """The listener's context: it presents the certificate of the name asked for."""
        return self._listening

    def reload(self) -> bool:
        """Load the directory again if its files changed; whether they had."""
        fingerprint = _fingerprint(self._directory)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        contexts: dict[str, ssl.SSLContext] = {}
        for name, (cert, key) in _pairs(self._directory).items():
            try:
                contexts[name] = server_context(cert, key)
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.error(
                    "certificate of %s (%s) does not load, kept the old one: %s", name, cert, exc
                )
                if name in self._contexts:
                    contexts[name] = self._contexts[name]
        self._contexts = contexts
        default = contexts.get(DEFAULT_NAME) or next(
            (contexts[name] for name in sorted(contexts)), self._default
        )
        self._default = default
        log.info("tracking certificates loaded for %s", ", ".join(sorted(contexts)) or "nothing")
        return True

    def _pick(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        chosen = self._contexts.get((server_name or "").lower().rstrip("."), self._default)
        if chosen is not None:
            connection.context = chosen


def _listener_context() -> ssl.SSLContext:
    """A context for the listening socket; it needs no certificate of its own, as the
    SNI callback (called without SNI too) hands each connection a domain's context."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _pairs(directory: Path) -> dict[str, tuple[Path, Path]]:
    """Certificate and key files by lowercase domain name."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for path in sorted(directory.iterdir()):
        name = path.stem.lower()
        if path.suffix == ".pem":
            pairs.setdefault(name, (path, path))
        elif path.suffix == ".crt" and path.with_suffix(".key").is_file():
            pairs[name] = (path, path.with_suffix(".key"))
    return pairs


def _fingerprint(directory: Path) -> Fingerprint:
    try:
        paths = sorted(directory.iterdir())
    except OSError as exc:
        log.error("certificate directory %s: %s", directory, exc)
        return ()
    found = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)
