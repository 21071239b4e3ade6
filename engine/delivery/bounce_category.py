"""Bounce categories and what an enhanced status code alone says about a failure.

Owns the category vocabulary (KumoMTA's names, built on PowerMTA's 17
categories: https://docs.kumomta.com/reference/kumo/configure_bounce_classifier/,
plus ``RateLimited``) and the category of every enhanced status code: each
subject ``x.0`` … ``x.7`` and each detail of the IANA registry
(https://www.iana.org/assignments/smtp-enhanced-status-codes/: RFC 3463,
3886, 4468, 4954, 5248, 6531, 6710, 7293, 7372, 7505, 8617, 8689, and the
"mail flood" code 7.28). A detail the registry does not know (Microsoft's
``5.7.606``, ``5.4.310``…) falls back to its subject. Pure.

A category describes the cause, not the finality: a 4xx "User unknown" is
InvalidRecipient and still transient. Whoever acts on a category (retry,
suppression) looks at the outcome kind too, and at
:data:`TRANSIENT_CATEGORIES`.
"""

from __future__ import annotations

import enum
from typing import Final

from engine.smtp.reply import EnhancedCode


class Category(enum.StrEnum):
    """The built-in bounce categories (KumoMTA names, and RateLimited)."""

    INVALID_RECIPIENT = "InvalidRecipient"
    DNS_FAILURE = "DNSFailure"
    SPAM_BLOCK = "SpamBlock"
    SPAM_CONTENT = "SpamContent"
    PROHIBITED_ATTACHMENT = "ProhibitedAttachment"
    RELAY_DENIED = "RelayDenied"
    AUTO_REPLY = "AutoReply"
    TRANSIENT_FAILURE = "TransientFailure"
    SUBSCRIBE = "Subscribe"
    UNSUBSCRIBE = "Unsubscribe"
    CHALLENGE_RESPONSE = "ChallengeResponse"
    BAD_CONFIGURATION = "BadConfiguration"
    BAD_CONNECTION = "BadConnection"
    BAD_DOMAIN = "BadDomain"
    CONTENT_RELATED = "ContentRelated"
    INACTIVE_MAILBOX = "InactiveMailbox"
    INVALID_SENDER = "InvalidSender"
    MESSAGE_EXPIRED = "MessageExpired"
    NO_ANSWER_FROM_HOST = "NoAnswerFromHost"
    POLICY_RELATED = "PolicyRelated"
    PROTOCOL_ERRORS = "ProtocolErrors"
    QUOTA_ISSUES = "QuotaIssues"
    RELAYING_ISSUES = "RelayingIssues"
    ROUTING_ERRORS = "RoutingErrors"
    SPAM_RELATED = "SpamRelated"
    VIRUS_RELATED = "VirusRelated"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    TOO_MANY_RECIPIENTS = "TooManyRecipients"
    RATE_LIMITED = "RateLimited"
    """The receiver limits how fast or how much we send (per IP, sending
    domain, recipient or connection): Gmail ``4.7.28``, Microsoft
    ``4.7.650``/``RP-001``, Yahoo ``[TSS04]``, "too many messages". Kept apart
    from PolicyRelated because the remedy differs: slow down and retry, where
    a policy refusal needs a change. Transient whatever the code, and it says
    nothing about the recipient: it never suppresses."""
    UNCATEGORIZED = "Uncategorized"


_C = Category

TRANSIENT_CATEGORIES: Final = frozenset({_C.TOO_MANY_RECIPIENTS, _C.RATE_LIMITED})
"""Categories that are transient even on a 5xx or a failed DSN: the recipient
goes in the next transaction, or the next attempt after slowing down."""

SUBJECT_CATEGORIES: Final[dict[int, Category]] = {
    0: _C.UNCATEGORIZED,  # other or undefined status: the basic code decides
    1: _C.INVALID_RECIPIENT,  # addressing; most addressing failures name the recipient
    2: _C.INACTIVE_MAILBOX,  # mailbox status: the mailbox exists but refuses mail
    3: _C.TRANSIENT_FAILURE,  # mail system status: the receiving system's own trouble
    4: _C.ROUTING_ERRORS,  # network and routing
    5: _C.PROTOCOL_ERRORS,  # mail delivery protocol
    6: _C.CONTENT_RELATED,  # message content or media
    7: _C.POLICY_RELATED,  # security or policy
}
"""The category of ``x.SUBJECT.0`` and of a detail the registry does not know."""

STATUS_CATEGORIES: Final[dict[tuple[int, int], Category]] = {
    (1, 1): _C.INVALID_RECIPIENT,  # bad destination mailbox address
    (1, 2): _C.BAD_DOMAIN,  # bad destination system address
    (1, 3): _C.INVALID_RECIPIENT,  # bad destination mailbox address syntax
    (1, 4): _C.INVALID_RECIPIENT,  # destination mailbox address ambiguous
    (1, 5): _C.UNCATEGORIZED,  # destination address valid: a success detail
    (1, 6): _C.INACTIVE_MAILBOX,  # mailbox has moved, no forwarding address
    (1, 7): _C.INVALID_SENDER,  # bad sender's mailbox address syntax
    (1, 8): _C.INVALID_SENDER,  # bad sender's system address
    (1, 9): _C.UNCATEGORIZED,  # relayed to a non-compliant mailer (RFC 3886): informational
    # Null MX (RFC 7505); Exchange uses it far more often for RecipientNotFound.
    (1, 10): _C.INVALID_RECIPIENT,
    (2, 1): _C.INACTIVE_MAILBOX,  # mailbox disabled
    (2, 2): _C.QUOTA_ISSUES,  # mailbox full
    (2, 3): _C.CONTENT_RELATED,  # message length exceeds administrative limit
    (2, 4): _C.ROUTING_ERRORS,  # mailing list expansion problem
    (3, 1): _C.QUOTA_ISSUES,  # mail system full
    (3, 2): _C.TRANSIENT_FAILURE,  # system not accepting network messages
    (3, 3): _C.PROTOCOL_ERRORS,  # system not capable of selected features
    (3, 4): _C.CONTENT_RELATED,  # message too big for system
    (3, 5): _C.BAD_CONFIGURATION,  # system incorrectly configured
    (3, 6): _C.POLICY_RELATED,  # requested priority was changed (RFC 6710)
    (4, 1): _C.NO_ANSWER_FROM_HOST,  # no answer from host
    (4, 2): _C.BAD_CONNECTION,  # bad connection
    (4, 3): _C.DNS_FAILURE,  # directory server failure
    (4, 4): _C.ROUTING_ERRORS,  # unable to route
    (4, 5): _C.TRANSIENT_FAILURE,  # mail system congestion
    (4, 6): _C.ROUTING_ERRORS,  # routing loop detected
    (4, 7): _C.MESSAGE_EXPIRED,  # delivery time expired
    (5, 1): _C.PROTOCOL_ERRORS,  # invalid command
    (5, 2): _C.PROTOCOL_ERRORS,  # syntax error
    (5, 3): _C.TOO_MANY_RECIPIENTS,  # too many recipients
    (5, 4): _C.PROTOCOL_ERRORS,  # invalid command arguments
    (5, 5): _C.PROTOCOL_ERRORS,  # wrong protocol version
    (5, 6): _C.PROTOCOL_ERRORS,  # authentication exchange line too long (RFC 4954)
    (6, 1): _C.CONTENT_RELATED,  # media not supported
    (6, 2): _C.CONTENT_RELATED,  # conversion required and prohibited
    (6, 3): _C.CONTENT_RELATED,  # conversion required but not supported
    (6, 4): _C.CONTENT_RELATED,  # conversion with loss performed
    (6, 5): _C.CONTENT_RELATED,  # conversion failed
    (6, 6): _C.CONTENT_RELATED,  # message content not available (RFC 4468)
    (6, 7): _C.INVALID_RECIPIENT,  # non-ASCII addresses not permitted (RFC 6531)
    (6, 8): _C.PROTOCOL_ERRORS,  # UTF-8 string reply required but not permitted (RFC 6531)
    (6, 9): _C.CONTENT_RELATED,  # UTF-8 header cannot be transferred (RFC 6531)
    (6, 10): _C.PROTOCOL_ERRORS,  # UTF-8 string reply required (RFC 6531)
    (7, 1): _C.POLICY_RELATED,  # delivery not authorized, message refused
    (7, 2): _C.POLICY_RELATED,  # mailing list expansion prohibited
    (7, 3): _C.BAD_CONFIGURATION,  # security conversion required but not possible
    (7, 4): _C.BAD_CONFIGURATION,  # security features not supported
    (7, 5): _C.BAD_CONFIGURATION,  # cryptographic failure
    (7, 6): _C.BAD_CONFIGURATION,  # cryptographic algorithm not supported
    (7, 7): _C.BAD_CONFIGURATION,  # message integrity failure
    (7, 8): _C.AUTHENTICATION_FAILED,  # authentication credentials invalid (RFC 4954)
    (7, 9): _C.AUTHENTICATION_FAILED,  # authentication mechanism too weak (RFC 4954)
    (7, 10): _C.BAD_CONFIGURATION,  # encryption needed (RFC 5248): our TLS
    (7, 11): _C.AUTHENTICATION_FAILED,  # encryption required for the AUTH mechanism
    (7, 12): _C.AUTHENTICATION_FAILED,  # password transition needed (RFC 5248)
    (7, 13): _C.AUTHENTICATION_FAILED,  # user account disabled (RFC 5248)
    (7, 14): _C.AUTHENTICATION_FAILED,  # trust relationship required (RFC 5248)
    (7, 15): _C.POLICY_RELATED,  # priority level is too low (RFC 6710)
    (7, 16): _C.CONTENT_RELATED,  # message is too big for the specified priority (RFC 6710)
    (7, 17): _C.INACTIVE_MAILBOX,  # mailbox owner has changed (RFC 7293)
    (7, 18): _C.BAD_DOMAIN,  # domain owner has changed (RFC 7293)
    (7, 19): _C.POLICY_RELATED,  # RRVS test cannot be completed (RFC 7293)
    (7, 20): _C.AUTHENTICATION_FAILED,  # no passing DKIM signature found (RFC 7372)
    (7, 21): _C.AUTHENTICATION_FAILED,  # no acceptable DKIM signature found
    (7, 22): _C.AUTHENTICATION_FAILED,  # no valid author-matched DKIM signature found
    (7, 23): _C.AUTHENTICATION_FAILED,  # SPF validation failed
    (7, 24): _C.AUTHENTICATION_FAILED,  # SPF validation error
    (7, 25): _C.BAD_CONFIGURATION,  # reverse DNS validation failed: our PTR
    (7, 26): _C.AUTHENTICATION_FAILED,  # multiple authentication checks failed
    (7, 27): _C.INVALID_SENDER,  # sender address has null MX (RFC 7505)
    (7, 28): _C.RATE_LIMITED,  # mail flood detected
    (7, 29): _C.AUTHENTICATION_FAILED,  # ARC validation failure (RFC 8617)
    (7, 30): _C.BAD_CONFIGURATION,  # REQUIRETLS support required (RFC 8689)
}
"""The category of each registered ``x.SUBJECT.DETAIL`` with a non-zero detail."""

_VAGUE: Final = frozenset({(7, 1), (1, 5), (1, 9)})
"""Registered details that servers use for anything: 5.7.1 is every refusal."""


def status_category(enhanced: EnhancedCode) -> Category:
    """The category an enhanced status code says on its own (class 2 included)."""
    known = STATUS_CATEGORIES.get((enhanced.subject, enhanced.detail))
    if known is not None:
        return known
    return SUBJECT_CATEGORIES.get(enhanced.subject, _C.UNCATEGORIZED)


def is_definitive(enhanced: EnhancedCode) -> bool:
    """Whether the code names a precise cause: a registered, non-zero detail that
    servers do not use for every refusal (so it beats vague wording)."""
    key = (enhanced.subject, enhanced.detail)
    return key in STATUS_CATEGORIES and key not in _VAGUE
