"""The built-in bounce rules: reply wording and the category it means.

Owns :data:`BUILTIN_TABLE`, regexes over ``"CODE ENHANCED text"`` (the
whitespace folded, case ignored), each with its category and the reason for
it, in match order. Sources: Google's SMTP error reference
(https://support.google.com/a/answer/3726730), Microsoft's Exchange Online NDR
pages and the Outlook.com postmaster pages, Yahoo's "SMTP Error Codes", Apple's
iCloud postmaster page, Comcast's and AT&T's postmaster pages, the Postfix,
Exim, Sendmail and Exchange default texts, and the block lists' own pages.

The order is deliberate: what names its cause precisely beats what only
hints at it.

1. Stage rules: a recipient refusal after DATA is a content filter's, an
   address refusal at MAIL FROM is about the sender.
2. Provider codes (Gmail, Microsoft, Yahoo, Apple, Comcast): their wording
   would otherwise hit a generic rule.
3. Generic wording, strongest signal first: sender before recipient (a
   "does not exist" about the sender's domain is not a missing mailbox),
   rate limits before blocks, a temporary DNS failure before a definitive
   NXDOMAIN, which beats a vague "DNS error".
4. ``vague`` rules ("policy", "access denied"): tried only after a definitive
   enhanced status code (``5.1.1`` beats "Access denied").

A rule with ``stages`` fires only on a reply known to answer one of them
(``Reply.stage``; DSNs carry the stage their text names, or none). Pure.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from engine.delivery.bounce_category import Category
from engine.smtp.reply import Stage

_C = Category

AFTER_DATA: Final = frozenset({Stage.DATA, Stage.DOT, Stage.BDAT})
"""Stages past the recipients: every recipient was already accepted."""


class TableEntry(NamedTuple):
    """One built-in rule: category, regex (case ignored), reason, and where it applies."""

    category: Category
    regex: str
    reason: str
    stages: frozenset[Stage] = frozenset()
    """When not empty, the rule fires only on replies known to answer these stages."""
    vague: bool = False
    """A hint only: tried after a definitive enhanced status code."""


_E = TableEntry

_AUTH_TOKEN = r"(?<![\w/.@=-])(?:SPF|DKIM|DMARC)(?![\w/@=-])(?!\.\w)"
"""SPF, DKIM or DMARC as a word of the text, not inside a URL, address or name."""

_RECIPIENT_UNKNOWN = (
    r"(user|addressee|recipient|mailbox|address) unknown"
    r"|unknown (user|recipient|mailbox|local[- ]?part|address)"
    r"|no such (user|mailbox|recipient|account|address|person)|no mailbox (here|by that name)"
    r"|\b(user|mailbox|recipient|account|address)\b.{0,40}\b(does not|doesn't|not) exist"
    r"|(user|mailbox|recipient|account|address) (was )?not found|invalid (recipient|mailbox)"
    r"|not a valid (mailbox|recipient|user)|mailbox name not allowed|not our customer"
    r"|recipient address rejected: (undeliverable|unknown|invalid|no such)"
    r"|^5\d\d .*mailbox unavailable"
    r"|not a registered gateway user"
)

BUILTIN_TABLE: Final[tuple[TableEntry, ...]] = (
    # 1. The stage says more than the wording.
    _E(
        _C.CONTENT_RELATED,
        rf"^5\d\d 5\.1\.[1-6]\b|{_RECIPIENT_UNKNOWN}",
        "after DATA the recipients were accepted: a 'user unknown' now is a content filter's",
        AFTER_DATA,
    ),
    _E(
        _C.INVALID_SENDER,
        r"^\d\d\d [45]\.1\.\d+\b|not found|(does not|doesn't) exist|no such|unresolvable"
        r"|(unknown|invalid) (user|sender|address|domain|mailbox)"
        r"|(user|sender|address|domain) (is )?(unknown|invalid)|unverifiable|address rejected",
        "an address or domain refused at MAIL FROM is the sender's",
        frozenset({Stage.MAIL}),
    ),
    # 2. Providers. Gmail.
    _E(
        _C.RATE_LIMITED,
        r"^4\d\d 4\.7\.28\b|unusual rate of unsolicited mail .{0,200}temporarily rate limited",
        "Gmail rate limit for unusual volume per IP, SPF or DKIM domain: slow down",
    ),
    _E(
        _C.AUTHENTICATION_FAILED,
        r"rate limited because .{0,60}(SPF|DKIM|DMARC|authenticat|aligned)",
        "Gmail 4.7.27, 4.7.30, 4.7.32: slowed down for failed authentication; fix that",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"unusual rate of unsolicited mail .{0,200}has been blocked",
        "Gmail blocks the sending IP for its volume of unsolicited mail",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"low reputation of the sending (domain|IP)",
        "Gmail refuses on the sending domain's or IP's reputation",
    ),
    _E(
        _C.SPAM_CONTENT,
        r"message is likely unsolicited mail|suspicious (link|URL)",
        "Gmail judges this message to be spam",
    ),
    _E(
        _C.INACTIVE_MAILBOX,
        r"(out of storage space|over quota) and inactive",
        "Gmail: full and abandoned mailbox; it will not come back",
    ),
    _E(
        _C.RATE_LIMITED,
        r"receiving mail (too quickly|at a rate that prevents)",
        "Gmail per-recipient rate limit; says nothing about the address",
    ),
    _E(
        _C.BAD_DOMAIN,
        r"(find|locate) the recipient('s)? domain",
        "Gmail: the recipient domain does not exist",
    ),
    # Microsoft (Outlook.com, Exchange Online, Exchange Server).
    _E(
        _C.SPAM_BLOCK,
        r"\bS31[45]0\b|part of their network is on our block list",
        "Microsoft network block list: needs delisting, do not retry blindly",
    ),
    _E(
        _C.RATE_LIMITED,
        r"\b4\.7\.(65[01]|500)\b|rate limited due to IP reputation|server busy\. please try again"
        r"|\bRP-00[1-3]\b",
        "Microsoft reputation-driven rate limits (S775, S3114, S77714, RP-001..003): slow down",
    ),
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
        r"\b5\.7\.(60[6-9]|6[1-4][0-9]|70[5-8]|511)\b|banned sending IP|banned sender",
        "Microsoft: banned sending IP or sender, or tenant over its reputation threshold",
    ),
    _E(
        _C.RELAY_DENIED,
        r"^5\d\d 5\.4\.1 .*relay",
        "Exchange Online 5.4.1 about relaying (ATTR36), not about the recipient",
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
        _C.CONTENT_RELATED,
        r"RESOLVER\.RST\.(Recip|Send)SizeLimit|ROUTING\.SizeLimit",
        "Exchange: the message is larger than the recipient or the organisation accepts",
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
        _C.RATE_LIMITED,
        r"\[(TSS?\d\d|GL01)\]|temporarily deferred",
        "Yahoo deferral for volume or complaints: slow down",
    ),
    _E(
        _C.POLICY_RELATED,
        r"not accepted for policy reasons",
        "Yahoo 5.7.9 means policy (content, reputation), not AUTH as in RFC 4954",
    ),
    _E(_C.INVALID_RECIPIENT, r"doesn't have an? \S+ account", "Yahoo: no such account"),
    # Apple iCloud: "Postmaster information for iCloud Mail" (CS01, HM08).
    _E(
        _C.POLICY_RELATED,
        r"\[(CS|HM)\d\d\]",
        "iCloud: rejected by local policy (reputation or content)",
    ),
    # Comcast postmaster codes: BL (block lists), RV (reverse DNS), RL (rate limits).
    _E(_C.SPAM_BLOCK, r"\bBL0000\d\d\b", "Comcast: the sending IP is on a block list"),
    _E(_C.BAD_CONFIGURATION, r"\bRV0000\d\d\b", "Comcast: the sending IP lacks reverse DNS"),
    _E(_C.RATE_LIMITED, r"\bRL0000\d\d\b", "Comcast: rate limit for the sending IP"),
    # 3. Generic wording. What our own configuration lacks.
    _E(
        _C.BAD_CONFIGURATION,
        r"wasn't sent over a TLS connection|not sent over (a )?TLS|must issue a STARTTLS command"
        r"|(STARTTLS|TLS|encryption) (is )?required|requires? (TLS|encryption|a secure connection)",
        "the receiver requires TLS and the lane did not use it",
    ),
    _E(
        _C.BAD_CONFIGURATION,
        r"\bPTR\b|reverse (DNS|lookup|hostname|mapping)|\brDNS\b"
        r"|cannot find your (reverse )?hostname|no host ?name found for"
        r"|(client|IP) (host ?)?name lookup failed",
        "the sending IP lacks a (forward-confirmed) PTR record",
    ),
    _E(
        _C.BAD_CONFIGURATION,
        r"Helo command rejected|(EHLO|HELO) (name|hostname|argument)? ?(is )?(invalid|rejected|bad)"
        r"|invalid (EHLO|HELO)|bad (EHLO|HELO)",
        "our EHLO name is not a resolvable FQDN",
    ),
    _E(_C.TRANSIENT_FAILURE, r"greylist|graylist", "greylisting: the retry will be accepted"),
    _E(
        _C.TRANSIENT_FAILURE,
        r"insufficient system (resources|storage)|temporary local problem"
        r"|local error in processing|insufficient disk space",
        "the receiving server is short of resources; nothing about us or the recipient",
    ),
    # How fast we send, before senders and blocks: "rate limited" is neither.
    _E(
        _C.RATE_LIMITED,
        r"too many (concurrent |simultaneous |parallel )?(smtp )?(connections|sessions)"
        r"|too many (messages|mails|e-?mails)|too much mail|rate ?limit|sending rate|message rate"
        r"|connection rate|throttl|frequency|slow down|sent too many|too fast|overlimit|mail flood"
        r"|(hourly|daily) (sending )?(limit|quota)|sending (limit|quota)|submission ?quota"
        r"|(relay|sending|send|message|connection) limits? (was )?(exceeded|reached)"
        r"|maximum (number of )?(concurrent )?(server )?connections",
        "the receiver limits how fast or how much we send: slow down",
    ),
    # The sender, before any "does not exist" about a recipient.
    _E(
        _C.INVALID_SENDER,
        r"^\d\d\d [45]\.1\.[78]\b|sender address rejected|sender verif(y|ication) failed"
        r"|(invalid|bad|unknown|unverifiable) sender|sender address (is )?invalid"
        r"|domain of sender address|sender('s)? domain|sender address has null MX"
        r"|(envelope sender|return-path|MAIL FROM) (address )?(is )?(invalid|rejected|unknown)",
        "the envelope sender is refused (unresolvable domain, failed callout)",
    ),
    _E(
        _C.ROUTING_ERRORS,
        r"unrouteable address",
        "Exim: no router took the address; domain or user, Exim does not say which",
    ),
    _E(
        _C.RELAY_DENIED,
        r"relay(ing)? (access )?(is )?(denied|not permitted|prohibited|not allowed)|unable to relay"
        r"|we do not relay|not (permitted|allowed) to relay|no relaying",
        "the host is not an MX for the recipient domain, or refuses to relay for us",
    ),
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
        _C.AUTHENTICATION_FAILED,
        rf"{_AUTH_TOKEN}.{{0,40}}?\b(fail|failed|failure|softfail|hardfail|permerror|temperror"
        r"|error|invalid|not pass|check|validation|verification|alignment|policy|reject|missing"
        r"|not allowed|not permitted|not designated"
        r"|required|signature)"
        rf"|\b(fails?|failed|pass|passing|authenticate with( either)?|requires?|aligned)\b"
        rf".{{0,40}}?{_AUTH_TOKEN}"
        r"|unauthenticated|authentication (required|failed|level|credentials|checks?)"
        r"|not authenticated",
        "SPF, DKIM or DMARC failed, or the sender is not authenticated",
    ),
    _E(
        _C.SPAM_CONTENT,
        r"\bSURBL\b|\bURIBL\b|(link|URL)s?\b.{0,30}\b(listed|blocked|blacklisted)"
        r"|(blocked|blacklisted|malicious|suspicious) (URL|link)|intent analysis|phish",
        "a link in the message is on a URL block list: the content, not the sending IP",
    ),
    _E(
        _C.INVALID_RECIPIENT,
        r"not listed in (the )?(public )?(Domino Directory|Name and Address Book)",
        "Lotus Domino's unknown user: 'listed' here is its directory, not a block list",
    ),
    _E(
        _C.SPAM_BLOCK,
        r"block ?list|black ?list|deny ?list|blocked using|listed (at|on|in|by)\b"
        r"|spamhaus|spamcop|\bsorbs\b|barracuda ?(reputation|central)|barracudacentral|\bBRBL\b"
        r"|uceprotect|\bpsbl\b|invaluement|mailspike|cloudmark|proofpoint|dnsbl-lookup"
        r"|\bRBL\b|\bDNSBL\b|_is_blocked|reputation|complain(ts|ed)"
        r"|\b(IP|client|host|network|sender)\b.{0,30}\b(blocked|banned|blacklisted)"
        r"|dynamic (IP|address|range)|dial-?up|residential",
        "the sending IP or domain is on a block list or has a poor reputation",
    ),
    _E(
        _C.VIRUS_RELATED,
        r"\bvirus|malware|infected|\beicar\b|potential security issue|trojan",
        "the message carries (or is suspected to carry) malware",
    ),
    _E(
        _C.PROHIBITED_ATTACHMENT,
        r"(prohibited|unacceptable|blocked|forbidden|banned|disallowed|dangerous|illegal)"
        r" (file |attachment )?(type|attachment|file extension)"
        r"|attachment.{0,40}(not allowed|prohibited|blocked|rejected)",
        "an attachment type the receiver refuses",
    ),
    _E(
        _C.SPAM_CONTENT,
        r"\bspam\b|spam ?signature|unsolicited|\bUBE\b|junk mail|classified as bulk",
        "the content is judged to be spam",
    ),
    _E(
        _C.QUOTA_ISSUES,
        r"over ?quota|quota ?(exceeded|full)|(mailbox|disk|storage) quota|mailbox (is )?full"
        r"|inbox is full|full mailbox|mailbox (size )?limit|out of storage"
        r"|exceeded storage allocation|storage (limit|quota|space)|QuotaExceeded"
        r"|mailbox (has )?exceeded|\b(mailbox|inbox)\b.{0,60}\bis full|postfach (ist )?voll"
        r"|boite .{0,20}pleine",
        "the recipient's mailbox is full",
    ),
    _E(
        _C.CONTENT_RELATED,
        r"message size exceeds|message (is )?too (big|large)|exceeds? .{0,30}size limit"
        r"|size limit exceeded",
        "the message is larger than the receiver accepts",
    ),
    _E(
        _C.CONTENT_RELATED,
        r"RFC ?(5322|2822|822)|malformed (message|header|mime|content|body)"
        r"|\b(invalid|missing|duplicate|bad|multiple)\b.{0,30}\b(headers?|Message-ID)\b"
        r"|content (rejected|refused|filter|policy|restrictions)"
        r"|rejected (due to|because of) content"
        r"|(message|body) content (rejected|refused)",
        "the message's content or format is refused (not spam, not size)",
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
        r"(DNS|name service|lookup|resolv|host not found).{0,60}(try again|time ?out|timed out"
        r"|SERVFAIL|server ?failure|temporar)|SERVFAIL|could not contact DNS servers"
        r"|temporary (DNS|lookup|name resolution|name service) (failure|error)",
        "a DNS lookup failed temporarily: the domain may well exist",
    ),
    _E(
        _C.BAD_DOMAIN,
        r"NXDOMAIN|NonExistentDomain|InfoDomainNonexistent|host or domain name not found"
        r"|domain (name )?(not found|does not exist|doesn't exist)|domain\b.{0,60}\b(does not"
        r"|doesn't) exist|no such domain|unknown domain|host unknown|unrouteable mail domain"
        r"|MX records point to non-existent hosts|null ?MX|domain \S+ does not accept mail"
        r"|answer with no data|no (MX|mail exchanger)( or A)? records?",
        "the recipient domain does not exist or accepts no mail (a definitive DNS answer)",
    ),
    _E(
        _C.DNS_FAILURE,
        r"DNS (lookup |query )?(timeout|timed out|error|failure|failed|problem)"
        r"|lookup (error|failure|failed)",
        "a DNS lookup failed, and it does not say the domain does not exist",
    ),
    _E(
        _C.NO_ANSWER_FROM_HOST,
        r"connection (timed out|refused)|no route to host|(network|host) is unreachable"
        r"|timed out while (connecting|receiving the initial server greeting)"
        r"|(unable|failed) to connect",
        "the host did not answer",
    ),
    _E(
        _C.BAD_CONNECTION,
        r"connection (reset|lost|closed|dropped)|lost connection|broken pipe"
        r"|(TLS|SSL) (handshake|negotiation)|conversation .{0,40}timed out",
        "the connection broke during the dialogue",
    ),
    _E(
        _C.INACTIVE_MAILBOX,
        r"\b(account|mailbox|user|address|recipient)\b.{0,40}\b(disabled|inactive|deactivated"
        r"|suspended|closed|expired|terminated|locked|frozen|dormant|discontinued"
        r"|no longer (active|in use|valid|available))\b"
        r"|\b(inactive|disabled|dormant|suspended|deactivated) (account|mailbox|user|address)",
        "the mailbox exists but is disabled or abandoned",
    ),
    _E(
        _C.INVALID_RECIPIENT,
        _RECIPIENT_UNKNOWN,
        "the recipient address does not exist (a 4xx 'mailbox unavailable' may be busy)",
    ),
    _E(
        _C.PROTOCOL_ERRORS,
        r"syntax error|command (unrecognized|not recognized|not implemented)"
        r"|bare ?(LF|line ?feeds?)|bad sequence of commands|line too long|pipelining"
        r"|synchronization error|improper use of SMTP",
        "we broke the SMTP grammar, or the peer thinks so",
    ),
    # 4. Vague: after a definitive enhanced status code.
    _E(
        _C.POLICY_RELATED,
        r"polic(y|ies)|not authori[sz]ed|access denied|administrative prohibition|prohibited"
        r"|refused|denied|blocked|not allowed",
        "refused by the receiver's policy; a precise status code says more",
        vague=True,
    ),
)
"""The built-in rules in match order (see the module docstring)."""
