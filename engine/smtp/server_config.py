"""Settings of one SMTP listener: ``ServerConfig``, built from the config schema.

Every value the schema has (``config.schema.SubmissionSettings``) comes from
it: the defaults here are the schema's defaults, read from it, and
``ServerConfig.from_settings`` copies a loaded table. What the schema does not
have (``max_line_length``, whether AUTH is offered and needs TLS, the TLS
context) is the caller's choice.

Pure: no I/O (the TLS context is built by the caller).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

from config.schema import SubmissionSettings

__all__ = ["ServerConfig"]

_SCHEMA: Final = SubmissionSettings()
"""The schema's defaults, the only place they are written."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one SMTP listener; checked once, at construction."""

    hostname: str
    """Name in the greeting and the EHLO reply."""
    max_message_bytes: int = _SCHEMA.max_message_bytes
    """Advertised as SIZE (RFC 1870); larger bodies get 552 5.3.4."""
    max_recipients: int = _SCHEMA.max_recipients
    """RCPTs per transaction (RFC 5321 4.5.3.1.8 asks for at least 100)."""
    max_commands: int = _SCHEMA.max_commands
    """Command lines per connection before 421 4.7.0."""
    idle_timeout_seconds: float = _SCHEMA.idle_timeout_seconds
    """Deadline for a whole command line, from when the session waits for it."""
    data_timeout_seconds: float = _SCHEMA.data_timeout_seconds
    """Deadline for a whole DATA body, from the 354."""
    tls_context: ssl.SSLContext | None = None
    """Server-side context; STARTTLS is offered only when set."""
    require_tls_for_auth: bool = True
    allow_plaintext_auth_on_loopback: bool = _SCHEMA.allow_plaintext_auth_on_loopback
    auth_enabled: bool = False
    """Offer AUTH PLAIN LOGIN, and require it before MAIL."""
    max_sessions: int = _SCHEMA.max_sessions
    """Concurrent connections; beyond it new ones get 421 4.3.2."""
    max_line_length: int = 2048
    """Command line octets including CRLF (RFC 5321 4.5.3.1.4 asks for 512)."""

    def __post_init__(self) -> None:
        name = self.hostname
        if not name or not name.isascii() or any(c.isspace() for c in name):
            raise ValueError(f"hostname: expected an ASCII host name, got {name!r}")
        for key in ("max_message_bytes", "max_recipients", "max_commands", "max_sessions"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected a positive integer")
        for key in ("idle_timeout_seconds", "data_timeout_seconds"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: expected a positive number of seconds")
        if not 512 <= self.max_line_length <= 65536:
            raise ValueError("max_line_length: expected 512..65536 octets")
        if (
            self.auth_enabled
            and self.require_tls_for_auth
            and self.tls_context is None
            and not self.allow_plaintext_auth_on_loopback
        ):
            raise ValueError("auth_enabled: AUTH needs TLS but no tls_context is configured")

    @classmethod
    def from_settings(
        cls,
        hostname: str,
        listener: SubmissionSettings,
        *,
        tls_context: ssl.SSLContext | None,
        auth_enabled: bool,
        require_tls_for_auth: bool = True,
    ) -> ServerConfig:
        """The listener's settings as loaded (``[submission]``), under ``hostname``."""
        return cls(
            hostname=hostname,
            max_message_bytes=listener.max_message_bytes,
            max_recipients=listener.max_recipients,
            max_commands=listener.max_commands,
            idle_timeout_seconds=listener.idle_timeout_seconds,
            data_timeout_seconds=listener.data_timeout_seconds,
            tls_context=tls_context,
            require_tls_for_auth=require_tls_for_auth,
            allow_plaintext_auth_on_loopback=listener.allow_plaintext_auth_on_loopback,
            auth_enabled=auth_enabled,
            max_sessions=listener.max_sessions,
        )
