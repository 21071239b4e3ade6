"""The seam between the SMTP server and what it serves.

``engine.smtp.server_dialogue`` speaks the protocol (RFC 5321 dialogue,
STARTTLS, AUTH mechanics, DATA framing, limits) and ``engine.smtp.server``
performs it on sockets; an ``SmtpHandler`` decides what to accept.
The submission service and, later, bounce_in each provide a handler.

A session is per connection (client address, TLS, authenticated identity); an
envelope is per transaction (MAIL FROM, RCPT TOs) and is reset by RSET, EHLO
and after DATA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.smtp.reply import Reply


@dataclass(slots=True)
class Session:
    """Per-connection state, visible to the handler."""

    id: str
    peer_host: str
    peer_port: int
    local_host: str
    local_port: int
    ehlo_name: str | None = None
    tls_cipher: str | None = None
    tls_version: str | None = None
    authenticated_as: str | None = None
    """The SMTP username after a successful AUTH."""
    auth_context: Any = None
    """What the handler attached at AUTH (for submission: the tenant)."""

    @property
    def is_loopback(self) -> bool:
        return self.peer_host.startswith("127.") or self.peer_host in ("::1", "::ffff:127.0.0.1")


@dataclass(slots=True)
class Envelope:
    """Per-transaction state."""

    mail_from: str | None = None
    mail_params: dict[str, str] = field(default_factory=dict)
    rcpt_tos: list[str] = field(default_factory=list)
    smtputf8: bool = False


class SmtpHandler(Protocol):
    """Decisions the SMTP server delegates. Every method returns the reply to send."""

    async def on_connect(self, session: Session) -> Reply | None:
        """``None`` to greet normally, or a reply (421/554) to refuse the client."""
        ...

    async def on_auth(self, session: Session, username: str, password: str) -> Reply:
        """Check credentials; on success set ``session.authenticated_as`` and return 235."""
        ...

    async def on_mail(self, session: Session, envelope: Envelope, address: str) -> Reply: ...

    async def on_rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply:
        """Accept or refuse one recipient; accepted ones are appended by the server."""
        ...

    async def on_data(self, session: Session, envelope: Envelope, body: bytes) -> Reply:
        """Take the message (CRLF line ends, dot-unstuffed); 250 only once it is durable."""
        ...

    async def on_rejection(
        self,
        session: Session,
        command: str,
        reply: Reply,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        """Told of each 4xx/5xx reply the server sends, for Rejection records: with
        the envelope sender of the refused MAIL or transaction (``""`` for the null
        sender) and the recipient of a refused RCPT, where known."""
        ...
