"""The outcome a reply to the SMTP client means (engine.delivery.reply_outcome)."""

from __future__ import annotations

import re

import pytest

from engine.delivery.bounce_classify import BounceClassifier, Rule
from engine.delivery.outcome import OutcomeKind, Scope
from engine.delivery.reply_outcome import STAGE_SCOPES, outcome_for_reply
from engine.smtp.reply import Reply, Stage

CLASSIFIER = BounceClassifier([])
T, P, D = OutcomeKind.TRANSIENT, OutcomeKind.PERMANENT, OutcomeKind.DELIVERED
SITE, SESSION, MESSAGE, RECIPIENT = Scope.SITE, Scope.SESSION, Scope.MESSAGE, Scope.RECIPIENT


@pytest.mark.parametrize(
    ("stage", "code", "enhanced", "text", "kind", "scope", "category"),
    [
        (Stage.DNS, 550, "5.1.2", "no MX and no address", P, SITE, "BadDomain"),
        (Stage.DNS, 451, "4.4.3", "lookup timed out", T, SITE, "DNSFailure"),
        (Stage.CONNECT, 554, "", "No SMTP service here", P, SITE, "Uncategorized"),
        (Stage.GREETING, 421, "4.7.0", "Try again later", T, SITE, "PolicyRelated"),
        (Stage.EHLO, 550, "5.7.1", "Helo command rejected", P, SITE, "BadConfiguration"),
        (Stage.HELO, 451, "", "Temporary local problem", T, SITE, "TransientFailure"),
        (Stage.STARTTLS, 454, "4.7.0", "TLS not available", T, SESSION, "PolicyRelated"),
        (Stage.STARTTLS, 554, "5.7.0", "TLS not available", P, SITE, "PolicyRelated"),
        (Stage.AUTH, 454, "4.7.0", "Temporary authentication failure", T, SESSION, "PolicyRelated"),
        (Stage.AUTH, 535, "5.7.8", "Credentials invalid", P, SITE, "AuthenticationFailed"),
        (Stage.MAIL, 550, "5.1.8", "Bad sender", P, MESSAGE, "InvalidSender"),
        (Stage.MAIL, 451, "4.3.0", "Try later", T, MESSAGE, "TransientFailure"),
        (Stage.MAIL, 421, "4.7.0", "Too many connections", T, SITE, "RateLimited"),
        (Stage.RCPT, 550, "5.1.1", "User unknown", P, RECIPIENT, "InvalidRecipient"),
        (Stage.RCPT, 452, "4.2.2", "Over quota", T, RECIPIENT, "QuotaIssues"),
        (Stage.RCPT, 452, "4.5.3", "Too many recipients", T, RECIPIENT, "TooManyRecipients"),
        (Stage.RCPT, 550, "5.5.3", "Too many recipients", T, RECIPIENT, "TooManyRecipients"),
        (Stage.RCPT, 421, "4.4.2", "Timeout exceeded", T, SITE, "BadConnection"),
        (Stage.RCPT, 450, "4.2.1", "Receiving mail too quickly", T, RECIPIENT, "RateLimited"),
        (Stage.MAIL, 550, "5.7.1", "Daily sending quota exceeded", T, MESSAGE, "RateLimited"),
        (Stage.DOT, 554, "5.7.1", "Too many messages, slow down", T, MESSAGE, "RateLimited"),
        (Stage.RCPT, 250, "2.1.5", "Ok", D, RECIPIENT, "Uncategorized"),
        (Stage.DATA, 554, "5.7.1", "Spam detected", P, MESSAGE, "SpamContent"),
        (Stage.DATA, 451, "4.3.0", "Try later", T, MESSAGE, "TransientFailure"),
        (Stage.DOT, 250, "2.0.0", "Ok: queued as 4ABC", D, MESSAGE, "Uncategorized"),
        (Stage.DOT, 552, "5.3.4", "Message too big", P, MESSAGE, "ContentRelated"),
        (Stage.BDAT, 421, "", "Closing", T, SITE, "TransientFailure"),
        (Stage.RSET, 500, "5.5.1", "Unknown command", P, SESSION, "ProtocolErrors"),
        (Stage.RCPT, 354, "", "Go ahead", T, SESSION, "ProtocolErrors"),
        (Stage.DATA, 999, "", "What", T, SESSION, "ProtocolErrors"),
    ],
)
def test_outcome_for_reply(
    stage: Stage,
    code: int,
    enhanced: str,
    text: str,
    kind: OutcomeKind,
    scope: Scope,
    category: str,
) -> None:
    reply = Reply(code, enhanced, text, stage)
    outcome = outcome_for_reply(reply, CLASSIFIER)
    assert (outcome.kind, outcome.scope, outcome.classification) == (kind, scope, category)
    assert outcome.reply is reply


def test_operator_too_many_recipients_rule_is_transient() -> None:
    classifier = BounceClassifier([Rule("TooManyRecipients", re.compile("limit reached"))])
    outcome = outcome_for_reply(Reply(550, "", "limit reached", Stage.RCPT), classifier)
    assert (outcome.kind, outcome.scope) == (T, RECIPIENT)


def test_every_stage_has_its_scopes() -> None:
    assert set(STAGE_SCOPES) == set(Stage)


def test_a_reply_without_a_stage_is_a_bug() -> None:
    with pytest.raises(ValueError, match="answers no stage"):
        outcome_for_reply(Reply(550, "", "x"), CLASSIFIER)
