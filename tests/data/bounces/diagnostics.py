"""Remote replies the corpus templates quote, each with the category a person gives it.

Phrasings are those documented by the providers (Gmail's SMTP error reference,
Microsoft's NDR reference, Yahoo's postmaster SMTP error codes, Apple's
postmaster page, Spamhaus' and Postfix's documentation) and common MTA
defaults. ``{rcpt}`` stands for the recipient, ``{ip}`` for our address.
"""

from __future__ import annotations

from typing import NamedTuple


class Diag(NamedTuple):
    code: int
    status: str
    text: str
    category: str


HARD: tuple[Diag, ...] = (
    Diag(
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces.",
        "InvalidRecipient",
    ),
    Diag(
        550,
        "5.1.1",
        "<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        "InvalidRecipient",
    ),
    Diag(550, "5.1.1", "<{rcpt}>... User unknown", "InvalidRecipient"),
    Diag(
        550,
        "5.1.10",
        "RESOLVER.ADR.RecipientNotFound; Recipient {rcpt} not found by SMTP address lookup",
        "InvalidRecipient",
    ),
    Diag(
        550,
        "5.1.1",
        "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "InvalidRecipient",
    ),
    Diag(550, "5.1.1", "Mailbox does not exist", "InvalidRecipient"),
    Diag(550, "5.1.1", "No such user here", "InvalidRecipient"),
    Diag(550, "5.2.1", "The email account that you tried to reach is disabled.", "InactiveMailbox"),
    Diag(552, "5.2.2", "The email account that you tried to reach is over quota.", "QuotaIssues"),
    Diag(552, "5.2.2", "Mailbox full", "QuotaIssues"),
    Diag(
        554,
        "5.7.1",
        "Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org",
        "SpamBlock",
    ),
    Diag(
        550,
        "5.7.1",
        "Service unavailable, Client host [{ip}] blocked using Spamhaus. To "
        "request removal from this list see https://www.spamhaus.org/query/ip/{ip} (AS3130). "
        "(S3130)",
        "SpamBlock",
    ),
    Diag(
        550,
        "5.7.606",
        "Access denied, banned sending IP [{ip}]. To request removal from "
        "this list please visit https://sender.office.com/",
        "SpamBlock",
    ),
    Diag(550, "5.7.1", "Message rejected as spam by Content Filtering.", "SpamContent"),
    Diag(
        550,
        "5.7.26",
        "Unauthenticated email from acme.example is not accepted due to "
        "domain's DMARC policy. Please contact the administrator of acme.example domain.",
        "AuthenticationFailed",
    ),
    Diag(552, "5.3.4", "Message size exceeds fixed maximum message size", "ContentRelated"),
    Diag(554, "5.4.14", "Hop count exceeded - possible mail loop", "RoutingErrors"),
    Diag(550, "5.7.1", "Virus infected message rejected: Eicar-Test-Signature", "VirusRelated"),
    Diag(
        554,
        "5.7.1",
        "[CS01] Message rejected due to local policy. Please visit "
        "https://support.apple.com/en-us/HT204137",
        "PolicyRelated",
    ),
    Diag(
        554,
        "5.7.9",
        "Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes",
        "PolicyRelated",
    ),
)

SOFT: tuple[Diag, ...] = (
    Diag(
        421,
        "4.7.28",
        "Our system has detected an unusual rate of unsolicited mail "
        "originating from your IP address. To protect our users from spam, mail sent from "
        "your IP address has been temporarily rate limited.",
        "RateLimited",
    ),
    Diag(
        451,
        "4.7.650",
        "The mail server [{ip}] has been temporarily rate limited due to IP reputation.",
        "RateLimited",
    ),
    Diag(
        421,
        "4.7.0",
        "[TSS04] Messages from {ip} temporarily deferred due to unexpected "
        "volume or user complaints",
        "RateLimited",
    ),
    Diag(452, "4.2.2", "The email account that you tried to reach is over quota.", "QuotaIssues"),
    Diag(
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail at a rate that "
        "prevents additional messages from being delivered.",
        "RateLimited",
    ),
    Diag(451, "4.3.0", "Temporary local problem - please try later", "TransientFailure"),
)
