"""Where a webhook may post: the URL rule and the address rule.

The URL rule: ``https://host[:port][/path][?query]``, or ``http://`` when the
operator allows it (``[webhooks] allow_http``); ASCII only (percent-encoded),
no user info, no fragment, a host name or an IP literal, at most
``MAX_URL_LENGTH`` characters.

The address rule: unless the operator allows it (``[webhooks]
allow_private``), every address the host resolves to must be global (not
loopback, private, link-local, shared, reserved, multicast or unspecified;
an IPv4-mapped IPv6 address is judged as its IPv4 address). It is checked
when a webhook is saved (an IP literal) and before each POST on the
addresses the name resolves to then, and the POST connects to a checked
address, so a name that later resolves elsewhere (DNS rebinding) gains
nothing. Pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from config import is_host_name

MAX_URL_LENGTH: Final = 2048


class InvalidEndpoint(ValueError):
    """A webhook URL or address the rules refuse; the message says why."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook URL taken apart for the client."""

    tls: bool
    host: str
    """A host name, or an IP literal (without brackets)."""
    port: int
    target: str
    """The request target: the path (``/`` when empty) and the query."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.tls else 80) else f"{host}:{self.port}"


def parse_endpoint(url: str, *, allow_http: bool, allow_private: bool) -> Endpoint:
    """``url`` as an endpoint; ``InvalidEndpoint`` when a rule refuses it."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidEndpoint(f"longer than {MAX_URL_LENGTH} characters")
    if not url.isascii():
        raise InvalidEndpoint("characters outside ASCII: percent-encode them (IDNs as xn--)")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidEndpoint("white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidEndpoint(f"not a URL: {exc}") from exc
    if parts.scheme not in ("https", "http"):
        raise InvalidEndpoint("the scheme must be https")
    if parts.scheme == "http" and not allow_http:
        raise InvalidEndpoint("the scheme must be https (http is not allowed here)")
    if parts.username is not None or parts.password is not None:
        raise InvalidEndpoint("user information is not allowed in the URL")
    if parts.fragment:
        raise InvalidEndpoint("a fragment is not allowed in the URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidEndpoint("no host")
    literal = ip_literal(host)
    if literal is not None and not allow_private and not is_public(literal):
        raise InvalidEndpoint(f"{host} is not a public address")
    if literal is None and not is_host_name(host):
        raise InvalidEndpoint(f"{host!r} is not a host name")
    tls = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(tls, host, port or (443 if tls else 80), target)


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is globally routable (and not multicast)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def allowed_addresses(addresses: list[str], *, allow_private: bool) -> list[str]:
    """The resolved ``addresses`` a POST may connect to; ``InvalidEndpoint`` when one is
    not public and private ones are not allowed (a name with any private address is
    refused whole: it is not the tenant's to point inwards)."""
    if not addresses:
        raise InvalidEndpoint("the host has no address")
    if not allow_private:
        for text in addresses:
            address = ip_literal(text.split("%", 1)[0])
            if address is None or not is_public(address):
                raise InvalidEndpoint(f"the host resolves to {text}, which is not public")
    return addresses
