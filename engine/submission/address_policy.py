"""Which envelope addresses a submission may use: the anti-relay rules.

Pure checks. Authenticated tenants may send to any domain, but never through
an address that asks an MX further down to relay again: ``user%other@x``,
``a!b@x`` (UUCP bang path), ``"user@other"@x``, source routes ``@a:user@b``
and address literals ``user@[192.0.2.1]`` are refused (Postfix
``allow_untrusted_routing = no``, applied to every recipient). Senders must
use one of the tenant's sending domains.

The null sender (``MAIL FROM:<>``, RFC 5321 4.5.5) is how an MTA relaying
through the tenant's account sends its delivery status notices back to the
sender of a message it could not deliver. It is accepted, but only to the
tenant's own sending domains: a notice goes back to the tenant, and a null
sender never carries the tenant's mail to anyone else.
"""

from __future__ import annotations

import re

from engine.smtp.reply import Reply
from engine.submission.acceptance import domain_of

_LABEL = r"(?!-)[A-Za-z0-9\u0080-\U0010ffff-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+\.?$")

NULL_SENDER = ""
ROUTING_REFUSED = Reply(553, "5.1.3", "Relay-style or routed addresses are not accepted")
BAD_DOMAIN = Reply(553, "5.1.2", "Recipient domain must be a fully qualified domain name")
SENDER_NOT_ALLOWED = Reply(550, "5.7.1", "Sender domain is not a sending domain of this account")
NULL_SENDER_RECIPIENT_REFUSED = Reply(
    550, "5.7.1", "A null sender may only send to this account's own sending domains"
)


def recipient_problem(address: str) -> Reply | None:
    """Why a recipient is refused, or None when it is acceptable."""
    if address.startswith("@") or ":" in address.partition("@")[0]:
        return ROUTING_REFUSED
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return BAD_DOMAIN
    if _routes(local) or local.startswith('"'):
        return ROUTING_REFUSED
    if domain.startswith("[") or not _DOMAIN.match(domain):
        return BAD_DOMAIN
    return None


def null_sender_recipient_problem(address: str, own_domains: frozenset[str]) -> Reply | None:
    """Why a recipient of a null-sender message is refused, or None when it is
    acceptable: the rules for every recipient, and a domain of ``own_domains``."""
    problem = recipient_problem(address)
    if problem is None and domain_of(address) not in own_domains:
        return NULL_SENDER_RECIPIENT_REFUSED
    return problem


def sender_problem(address: str, allowed_domains: frozenset[str]) -> Reply | None:
    """Why an envelope sender is refused, or None when it is the null sender or
    uses a sending domain."""
    if address == NULL_SENDER:
        return None
    local, at, _ = address.rpartition("@")
    if not at or not local or domain_of(address) not in allowed_domains:
        return SENDER_NOT_ALLOWED
    if _routes(local):
        return ROUTING_REFUSED
    return None


def _routes(local: str) -> bool:
    """Whether a local part asks for relaying: ``%``, a bang path, or another ``@``."""
    return "%" in local or "!" in local or "@" in local
