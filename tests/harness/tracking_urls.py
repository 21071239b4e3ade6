"""Tracking URLs for tests and benchmarks of link rewriting: readable, and as costly as
signed ones (an HMAC-SHA256 per URL), without depending on the token codec."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Callable

from engine.model import QueuedMessage


class FakeTrackingUrls:
    """``https://<domain>/<kind>/<recipient>/<mac>[/<url>]``: tests can read what a URL
    stands for (:func:`target`)."""

    def __init__(self, key: bytes = b"k" * 32) -> None:
        self._key = key
        self.calls = 0

    def open_url(self, message: QueuedMessage, domain: str) -> str:
        return self._url("o", message, domain, "")

    def click_url(self, message: QueuedMessage, domain: str, url: str) -> str:
        return self._url("c", message, domain, url)

    def click_urls(self, message: QueuedMessage, domain: str) -> Callable[[str], str]:
        return functools.partial(self.click_url, message, domain)

    def unsubscribe_url(self, message: QueuedMessage, domain: str) -> str:
        return self._url("u", message, domain, "")

    def _url(self, kind: str, message: QueuedMessage, domain: str, url: str) -> str:
        self.calls += 1
        payload = f"{kind}\0{message.id}\0{domain}\0{url}".encode()
        mac = hmac.digest(self._key, payload, hashlib.sha256)[:12]
        encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        tail = f"/{encoded}" if url else ""
        return f"https://{domain}/{kind}/{message.id}/{mac.hex()}{tail}"


def target(url: str) -> tuple[str, str, str]:
    """(kind, message id, original URL) of a URL made by :class:`FakeTrackingUrls`."""
    parts = url.split("/")
    kind, message_id = parts[3], parts[4]
    encoded = parts[6] if len(parts) > 6 else ""
    original = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    return kind, message_id, original
