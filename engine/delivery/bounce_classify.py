"""Bounce classification: which category a failure reply falls in.

Owns the bounce category vocabulary (KumoMTA's names, built on PowerMTA's
17 categories: https://docs.kumomta.com/reference/kumo/configure_bounce_classifier/),
the built-in rule table and the operator rule file. The classifier reads an
:class:`~engine.smtp.reply.Reply`: smtp_out's replies to its commands (through
``engine.delivery.reply_outcome``); bounce_in will hand it the status and
diagnostic code of a DSN. Pure, except :func:`load_rules`, which reads the rule
file.

Classification, first match wins:

1. operator rules, in file order (they override everything below);
2. the built-in table (:data:`BUILTIN_TABLE`): regexes for the replies of
   well-known providers and servers, each with the reason for its category;
3. the enhanced status code (RFC 3463, with the later codes of the IANA
   registry https://www.iana.org/assignments/smtp-enhanced-status-codes/:
   RFC 4954, 5248, 7293, 7372, 7505): first by subject and
   detail, then by subject alone where the subject is unambiguous;
4. the basic code (RFC 5321): 4xx is TransientFailure, 500-504 are
   ProtocolErrors, any other 5xx is Uncategorized.

Rules are regexes searched (not anchored) in ``"CODE ENHANCED text"`` with
the whitespace of multi-line replies folded into single spaces, e.g.
``"550 5.1.1 The email account that you tried to reach does not exist"``;
the enhanced code is left out when the reply has none. Built-in rules ignore
case; operator patterns are used as written (add ``(?i)`` to ignore case).

A category describes the cause, not the finality: a 4xx "User unknown" is
InvalidRecipient and still transient. Whoever acts on a category (e.g.
suppression) looks at the outcome kind too.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from engine.smtp.reply import EnhancedCode, Reply


class Category(enum.StrEnum):
    """The built-in bounce categories (KumoMTA names)."""

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
    UNCATEGORIZED = "Uncategorized"


_C = Category

_LABEL = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Rule:
    """A category for the replies whose ``"CODE ENHANCED text"`` matches ``pattern``."""

    category: str
    pattern: re.Pattern[str]


class TableEntry(NamedTuple):
    category: Category
    regex: str
    reason: str


_E = TableEntry

BUILTIN_TABLE: Final[tuple[TableEntry, ...]] = (
    # Provider-specific replies first: their wording would otherwise hit a generic rule.
    # Gmail: Google's SMTP error reference, https://support.google.com/a/answer/3726730
    _E(
        _C.POLICY_RELATED,
        r"^421 4\.7\.28 ",
        "Gmail rate limit for unusual volume per IP, SPF or DKIM domain: slow down",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"unusual rate of unsolicited mail .*has been blocked",
        "Gmail blocks the sending IP for its volume of unsolicited mail",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"low reputation of the sending (domain|IP)",
        "Gmail refuses on the sending domain's or IP's reputation",
    ),
    _E(
        _C.SPAM_CONTENT,
        r"message is likely unsolicited mail",
        "Gmail judges this message to be spam",
    ),
    _E(
        _C.INACTIVE_MAILBOX,
        r"(out of storage space|over quota) and inactive",
        "Gmail: full and abandoned mailbox; it will not come back",
    ),
    _E(
        _C.POLICY_RELATED,
        r"receiving mail (too quickly|at a rate that prevents)",
        "Gmail per-recipient rate limit; says nothing about the address",
    ),
    _E(
        _C.BAD_CONFIGURATION,
        r"wasn't sent over a TLS connection|must issue a STARTTLS command first",
        "the receiver requires TLS and the lane did not use it",
    ),
    _E(
        _C.BAD_CONFIGURATION,
        r"does not have a PTR record|\bPTR record setup|cannot find your (reverse )?hostname",
        "the sending IP lacks a (forward-confirmed) PTR record",
    ),
    # Microsoft (Outlook.com, Exchange Online, Exchange Server): Exchange Online NDRs,
    # https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
    # and the Outlook.com postmaster's troubleshooting page (S3140, RP-001, SC-001).
    _E(
        _C.SPAM_BLOCK,
        r"\bS31[45]0\b|part of their network is on our block list",
        "Microsoft network block list: needs delisting, do not retry blindly",
    ),
    _E(
        _C.POLICY_RELATED,
        r"\b4\.7\.65[01]\b|rate limited due to IP reputation",
        "Microsoft reputation-driven rate limit (S775, S3114): slow down",
    ),
    _E(_C.POLICY_RELATED, r"\bRP-00[1-3]\b", "Outlook.com hourly/daily rate limit"),
    _E(
        _C.SPAM_BLOCK,
        r"\b(SC|DY|OU)-00[1-5]\b",
        "Outlook.com block codes: IP blocked or in a dynamic range",
    ),
    _E(
        _C.AUTHENTICATION_FAILED,
        r"\b5\.7\.515\b",
        "Microsoft: sending domain lacks the required SPF/DKIM/DMARC",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"\b5\.7\.(60[6-9]|6[1-4][0-9]|708)\b|banned sending IP",
        "Microsoft: banned sending IP or traffic not accepted from this IP",
    ),
    _E(
        _C.INVALID_RECIPIENT,
        r"^5\d\d 5\.4\.1 .*Access denied",
        "Exchange Online directory-based edge blocking: no such recipient",
    ),
    _E(
        _C.INVALID_RECIPIENT,
        r"RESOLVER\.ADR\.(RecipientNotFound|ExRecipNotFound|RecipNotFound)",
        "Exchange: recipient not found in the directory",
    ),
    _E(
        _C.POLICY_RELATED,
        r"RESOLVER\.RST\.",
        "Exchange: the recipient restricts who may send to it",
    ),
    # Yahoo, AOL: "SMTP Error Codes", https://senders.yahooinc.com/smtp-error-codes/
    _E(
        _C.SPAM_BLOCK,
        r"\[TSS?0?3\]|\[TSS09\]|\[BL2\d\]|permanently deferred",
        "Yahoo: all mail from this IP refused until it is delisted",
    ),
    _E(
        _C.POLICY_RELATED,
        r"\[(TSS?\d\d|GL01)\]|temporarily deferred",
        "Yahoo deferral for volume or complaints: slow down",
    ),
    _E(
        _C.POLICY_RELATED,
        r"not accepted for policy reasons",
        "Yahoo 5.7.9 means policy (content, reputation), not AUTH as in RFC 4954",
    ),
    _E(_C.INVALID_RECIPIENT, r"doesn't have an? \S+ account", "Yahoo: no such account"),
    # Apple iCloud: Apple's "Postmaster information for iCloud Mail" (CS01, HM08)
    _E(
        _C.POLICY_RELATED,
        r"\[(CS|HM)\d\d\]",
        "iCloud: rejected by local policy (reputation or content)",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"ipcheck\.proofpoint\.com|dnsbl-lookup",
        "Proofpoint (iCloud, many firms) IP block",
    ),
    # Postfix, Exim, Exchange wording
    _E(_C.BAD_CONFIGURATION, r"Helo command rejected", "our EHLO name is not a resolvable FQDN"),
    _E(_C.TRANSIENT_FAILURE, r"greylist", "greylisting: the retry will be accepted"),
    _E(
        _C.TRANSIENT_FAILURE,
        r"insufficient system (resources|storage)|temporary local problem",
        "the receiving server is short of resources; nothing about us or the recipient",
    ),
    _E(
        _C.INVALID_SENDER,
        r"sender address rejected|sender verif(y|ication) failed|sender address (is )?invalid",
        "the envelope sender is refused (unresolvable domain, failed callout)",
    ),
    _E(
        _C.ROUTING_ERRORS,
        r"unrouteable address",
        "Exim: no router took the address; domain or user, Exim does not say which",
    ),
    _E(
        _C.RELAY_DENIED,
        r"relay(ing)? (access )?(denied|not permitted|prohibited|not allowed)|unable to relay"
        r"|we do not relay",
        "the host is not an MX for the recipient domain, or refuses to relay for us",
    ),
    _E(_C.POLICY_RELATED, r"administrative prohibition", "Exim ACL refusal without further detail"),
    # Generic wording, strongest signal first.
    _E(
        _C.TOO_MANY_RECIPIENTS,
        r"too many recipients|RecipLimit",
        "per-transaction recipient limit: send the rest in another transaction",
    ),
    _E(
        _C.AUTO_REPLY,
        r"out of (the )?office|auto[- ]?(matic )?(reply|response|responder)|autoreply"
        r"|away from (the|my) (office|desk)",
        "an automatic reply, not a failure",
    ),
    _E(
        _C.CHALLENGE_RESPONSE,
        r"challenge[- ]response|verify (that )?you are (a )?(human|real person)"
        r"|boxbe|spam ?arrest",
        "a challenge the sender must answer",
    ),
    _E(
        _C.UNSUBSCRIBE,
        r"(you have been|successfully) unsubscribed",
        "a list manager confirms an unsubscription",
    ),
    _E(
        _C.SUBSCRIBE,
        r"confirm your subscription|subscription (request|confirmed)",
        "a list manager asks to confirm a subscription",
    ),
    _E(
        _C.POLICY_RELATED,
        r"too many (concurrent )?(smtp )?connections|too many (messages|mails|emails)"
        r"|rate ?limit|sending rate|throttl",
        "connection or message rate limit: slow down",
    ),
    _E(
        _C.AUTHENTICATION_FAILED,
        r"\b(SPF|DKIM|DMARC)\b|unauthenticated|authentication (required|failed|level|credentials)"
        r"|not authenticated",
        "SPF, DKIM or DMARC failed, or the sender is not authenticated",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"block ?list|black ?list|deny ?list|blocked using|listed (at|on|in|by)\b"
        r"|spamhaus|spamcop|barracuda|sorbs|\bRBL\b|\bDNSBL\b"
        r"|\b(IP|client|host|network)\b.{0,30}\b(blocked|banned|blacklisted)|reputation",
        "the sending IP or domain is on a block list or has a poor reputation",
    ),
    _E(
        _C.VIRUS_RELATED,
        r"\bvirus|malware|infected|\beicar\b|potential security issue",
        "the message carries (or is suspected to carry) malware",
    ),
    _E(
        _C.PROHIBITED_ATTACHMENT,
        r"(prohibited|unacceptable|blocked|forbidden|banned|disallowed|dangerous)"
        r" (file |attachment )?(type|attachment|file extension)"
        r"|attachment.{0,40}(not allowed|prohibited|blocked|rejected)",
        "an attachment type the receiver refuses",
    ),
    _E(
        _C.SPAM_CONTENT,
        r"\bspam\b|unsolicited|junk mail|classified as bulk",
        "the content is judged to be spam",
    ),
    _E(
        _C.CONTENT_RELATED,
        r"message size exceeds|message (is )?too (big|large)|exceeds? .{0,30}size limit"
        r"|size limit exceeded",
        "the message is larger than the receiver accepts",
    ),
    _E(
        _C.ROUTING_ERRORS,
        r"hop count exceeded|too many hops|mail loop|routing loop|loops back",
        "a mail loop between hosts",
    ),
    _E(
        _C.MESSAGE_EXPIRED,
        r"(message|delivery time) expired|too long in (the )?queue|retry timeout exceeded",
        "the message ran out of time before delivery",
    ),
    _E(
        _C.DNS_FAILURE,
        r"host not found, try again|temporary (DNS|lookup|name resolution) failure"
        r"|DNS (lookup )?(timeout|timed out|error|failure)|SERVFAIL",
        "a DNS lookup failed temporarily",
    ),
    _E(
        _C.BAD_DOMAIN,
        r"host or domain name not found|domain (name )?(not found|does not exist)"
        r"|no such domain|unknown domain|null ?MX|domain \S+ does not accept mail",
        "the recipient domain does not exist or accepts no mail",
    ),
    _E(
        _C.NO_ANSWER_FROM_HOST,
        r"connection (timed out|refused)|no route to host|(network|host) is unreachable",
        "the host did not answer",
    ),
    _E(
        _C.BAD_CONNECTION,
        r"connection (reset|lost|closed|dropped)|lost connection|broken pipe"
        r"|(TLS|SSL) handshake",
        "the connection broke during the dialogue",
    ),
    _E(
        _C.QUOTA_ISSUES,
        r"over ?quota|quota ?(exceeded|full)|mailbox (is )?full|inbox is full|mailbox size limit"
        r"|out of storage|exceeded storage allocation|storage (limit|quota)",
        "the recipient's mailbox is full",
    ),
    _E(
        _C.INACTIVE_MAILBOX,
        r"\b(account|mailbox|user|address)\b.{0,40}\b(disabled|inactive|deactivated|suspended"
        r"|closed|expired|no longer (active|in use|valid))\b",
        "the mailbox exists but is disabled or abandoned",
    ),
    _E(
        _C.INVALID_RECIPIENT,
        r"user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|account)"
        r"|\b(user|mailbox|recipient|account|address)\b.{0,40}\b(does not|doesn't|not) exist"
        r"|(user|mailbox|recipient|account|address) not found|invalid (recipient|mailbox)"
        r"|mailbox name not allowed|^5\d\d .*mailbox unavailable",
        "the recipient address does not exist (a 4xx 'mailbox unavailable' may be busy)",
    ),
    _E(
        _C.PROTOCOL_ERRORS,
        r"syntax error|command (unrecognized|not recognized|not implemented)"
        r"|bad sequence of commands|line too long|bare LF",
        "we broke the SMTP grammar, or the peer thinks so",
    ),
    _E(
        _C.POLICY_RELATED,
        r"policy reasons|local policy|(content|security|sender|site) policy|not authori[sz]ed"
        r"|access denied",
        "refused by the receiver's policy",
    ),
)
"""The built-in rules in match order: (category, regex ignoring case, reason)."""

BUILTIN_RULES: Final[tuple[Rule, ...]] = tuple(
    Rule(entry.category, re.compile(entry.regex, re.IGNORECASE)) for entry in BUILTIN_TABLE
)

_BY_STATUS: Final[dict[tuple[int, int], Category]] = {
    (1, 1): _C.INVALID_RECIPIENT,  # bad destination mailbox address
    (1, 2): _C.BAD_DOMAIN,  # bad destination system address
    (1, 3): _C.INVALID_RECIPIENT,  # bad destination mailbox address syntax
    (1, 4): _C.INVALID_RECIPIENT,  # destination mailbox address ambiguous
    (1, 6): _C.INACTIVE_MAILBOX,  # mailbox has moved, no forwarding address
    (1, 7): _C.INVALID_SENDER,  # bad sender's mailbox address syntax
    (1, 8): _C.INVALID_SENDER,  # bad sender's system address
    (1, 10): _C.INVALID_RECIPIENT,  # null MX (RFC 7505), but Exchange's RecipientNotFound
    (2, 1): _C.INACTIVE_MAILBOX,  # mailbox disabled
    (2, 2): _C.QUOTA_ISSUES,  # mailbox full
    (2, 3): _C.CONTENT_RELATED,  # message length exceeds administrative limit
    (3, 1): _C.QUOTA_ISSUES,  # mail system full
    (3, 2): _C.TRANSIENT_FAILURE,  # system not accepting network messages
    (3, 3): _C.PROTOCOL_ERRORS,  # system not capable of selected features
    (3, 4): _C.CONTENT_RELATED,  # message too big for system
    (3, 5): _C.BAD_CONFIGURATION,  # system incorrectly configured
    (4, 1): _C.NO_ANSWER_FROM_HOST,  # no answer from host
    (4, 2): _C.BAD_CONNECTION,  # bad connection
    (4, 3): _C.DNS_FAILURE,  # directory server failure
    (4, 5): _C.TRANSIENT_FAILURE,  # mail system congestion
    (4, 7): _C.MESSAGE_EXPIRED,  # delivery time expired
    (5, 3): _C.TOO_MANY_RECIPIENTS,  # too many recipients
    (7, 8): _C.AUTHENTICATION_FAILED,  # authentication credentials invalid (RFC 4954)
    (7, 9): _C.AUTHENTICATION_FAILED,  # authentication mechanism too weak (RFC 4954)
    (7, 11): _C.AUTHENTICATION_FAILED,  # encryption required for the AUTH mechanism
    (7, 12): _C.AUTHENTICATION_FAILED,  # password transition needed (RFC 5248)
    (7, 13): _C.AUTHENTICATION_FAILED,  # user account disabled (RFC 5248)
    (7, 17): _C.INACTIVE_MAILBOX,  # mailbox owner has changed (RFC 7293)
    (7, 18): _C.BAD_DOMAIN,  # domain owner has changed (RFC 7293)
    (7, 20): _C.AUTHENTICATION_FAILED,  # no passing DKIM signature (RFC 7372)
    (7, 21): _C.AUTHENTICATION_FAILED,  # no acceptable DKIM signature
    (7, 22): _C.AUTHENTICATION_FAILED,  # no valid author-matched DKIM signature
    (7, 23): _C.AUTHENTICATION_FAILED,  # SPF validation failed
    (7, 24): _C.AUTHENTICATION_FAILED,  # SPF validation error
    (7, 25): _C.BAD_CONFIGURATION,  # reverse DNS validation failed: our PTR
    (7, 26): _C.AUTHENTICATION_FAILED,  # multiple authentication checks failed
    (7, 27): _C.INVALID_SENDER,  # sender address has null MX (RFC 7505)
    (7, 28): _C.POLICY_RELATED,  # mail flood detected
}
"""Enhanced status (subject, detail) to category, RFC 3463 and the IANA registry."""

_BY_SUBJECT: Final[dict[int, Category]] = {
    4: _C.ROUTING_ERRORS,  # network and routing
    5: _C.PROTOCOL_ERRORS,  # mail delivery protocol
    6: _C.CONTENT_RELATED,  # message content or media
    7: _C.POLICY_RELATED,  # security or policy
}
"""Enhanced status subject to category, where the subject alone is unambiguous."""


class BounceClassifier:
    """Operator rules, then the built-in table, then the status codes."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self._rules: tuple[Rule, ...] = (*rules, *BUILTIN_RULES)

    def classify(self, reply: Reply) -> str:
        subject = " ".join(str(reply).split())
        for rule in self._rules:
            if rule.pattern.search(subject):
                return rule.category
        return _by_enhanced(reply.enhanced_code) or _by_code(reply.code)


def _by_enhanced(enhanced: EnhancedCode | None) -> Category | None:
    if enhanced is None or enhanced.klass == 2:
        return None
    return _BY_STATUS.get((enhanced.subject, enhanced.detail)) or _BY_SUBJECT.get(enhanced.subject)


def _by_code(code: int) -> Category:
    if 400 <= code < 500:
        return _C.TRANSIENT_FAILURE
    if 500 <= code <= 504:
        return _C.PROTOCOL_ERRORS
    return _C.UNCATEGORIZED


# Operator rule files


class RuleFileError(ValueError):
    """An operator rule file that cannot be used; the message names file, rule and problem."""


_RULE_KEYS: Final = frozenset({"category", "pattern"})
_KNOWN_BY_LOWER: Final = {c.value.lower(): c.value for c in Category}


def parse_rules(text: str, source: str) -> list[Rule]:
    """Rules from the TOML text of a rule file; ``source`` names it in errors.

    The file holds ``[[rule]]`` tables, each with a ``category`` (a built-in
    name or an operator label of ASCII letters) and a ``pattern`` (a Python
    regex), applied in file order.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise RuleFileError(f"{source}: unknown key {unknown[0]!r}; expected [[rule]] tables")
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise RuleFileError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    return [_parse_rule(table, f"{source}: rule {n}") for n, table in enumerate(tables, 1)]


def _parse_rule(table: object, where: str) -> Rule:
    if not isinstance(table, dict):
        raise RuleFileError(f"{where}: expected a table with category and pattern")
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        raise RuleFileError(f"{where}: unknown key {unknown[0]!r}; expected category, pattern")
    category, pattern = table.get("category"), table.get("pattern")
    if not isinstance(category, str) or not _LABEL.fullmatch(category):
        raise RuleFileError(
            f"{where}: category must be a non-empty name of ASCII letters, got {category!r}"
        )
    known = _KNOWN_BY_LOWER.get(category.lower())
    if known is not None and known != category:
        raise RuleFileError(f"{where}: category {category!r}: did you mean {known!r}?")
    if not isinstance(pattern, str) or not pattern:
        raise RuleFileError(f"{where}: pattern must be a non-empty string, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RuleFileError(f"{where}: pattern {pattern!r} is not a valid regex: {exc}") from exc
    return Rule(category, compiled)


def load_rules(path: Path) -> list[Rule]:
    """Rules from an operator rule file (see :func:`parse_rules`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(f"{path}: cannot read rule file: {exc}") from exc
    return parse_rules(text, str(path))
