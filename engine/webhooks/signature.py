"""The ``Penguin-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC is HMAC-SHA256 keyed with the webhook's secret (its UTF-8 bytes) over
``"<t>.<body>"``, the timestamp and the exact body bytes joined by a dot, as
Stripe signs its webhooks. A receiver recomputes it, compares in constant time
and refuses a ``t`` too far from its clock (a replay). Pure.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

HEADER: Final = "Penguin-Signature"
SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32


def new_secret() -> str:
    """A signing secret for a new webhook: ``whsec_`` and 43 URL-safe characters."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The header value signing ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance``
    seconds of ``now``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not fields.get("t", "").isdigit() or "v1" not in fields:
        return False
    timestamp = int(fields["t"])
    expected = signature(secret, body, timestamp).rsplit("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, fields["v1"])
