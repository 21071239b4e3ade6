"""The outcome a reply to the SMTP client means, after Postfix ``smtp_trouble.c``
and ``smtp_proto.c``. Pure.

Kind: 2xx delivered, 4xx transient, 5xx permanent, except the categories
transient whatever the code (``TRANSIENT_CATEGORIES``): TooManyRecipients (the
recipient goes in the next transaction) and RateLimited (the next attempt,
slower, will do).
Any other code is a protocol error of the peer: transient, scope session.
Scope by the stage the reply answers (``Reply.stage``)::

    stage                              4xx        5xx / 2xx
    dns, connect, greeting, ehlo,      site       site
      helo, lhlo
    starttls, auth                     session    site
    mail                               message    message
    rcpt                               recipient  recipient
    data, dot, bdat                    message    message
    rset, noop, quit                   session    session
    any stage, code 421                site       -

A 421 means the server is closing the channel, whatever command it
answered. MAIL FROM is message scope as in Postfix (``smtp_mesg_fail``): its
refusal concerns this message's sender, not other messages to the site. The
category comes from :class:`~engine.delivery.bounce_classify.BounceClassifier`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from engine.delivery.bounce_classify import TRANSIENT_CATEGORIES, BounceClassifier, Category
from engine.delivery.outcome import Outcome, OutcomeKind, Scope
from engine.smtp.reply import Reply, Stage


class StageScopes(NamedTuple):
    """The scope of a failure at one stage: ``soft`` for 4xx, ``hard`` for 5xx (and 2xx)."""

    soft: Scope
    hard: Scope


_SITE = StageScopes(Scope.SITE, Scope.SITE)
_SESSION_THEN_SITE = StageScopes(Scope.SESSION, Scope.SITE)
_MESSAGE = StageScopes(Scope.MESSAGE, Scope.MESSAGE)
_RECIPIENT = StageScopes(Scope.RECIPIENT, Scope.RECIPIENT)
_SESSION = StageScopes(Scope.SESSION, Scope.SESSION)

STAGE_SCOPES: Final[dict[Stage, StageScopes]] = {
    Stage.DNS: _SITE,
    Stage.CONNECT: _SITE,
    Stage.GREETING: _SITE,
    Stage.EHLO: _SITE,
    Stage.HELO: _SITE,
    Stage.LHLO: _SITE,
    Stage.STARTTLS: _SESSION_THEN_SITE,
    Stage.AUTH: _SESSION_THEN_SITE,
    Stage.MAIL: _MESSAGE,
    Stage.RCPT: _RECIPIENT,
    Stage.DATA: _MESSAGE,
    Stage.DOT: _MESSAGE,
    Stage.BDAT: _MESSAGE,
    Stage.RSET: _SESSION,
    Stage.NOOP: _SESSION,
    Stage.QUIT: _SESSION,
}
"""Scope of a failure by the stage it answered (see the module docstring)."""


def outcome_for_reply(reply: Reply, classifier: BounceClassifier) -> Outcome:
    """The outcome ``reply`` means at its stage.

    Raises ``ValueError`` for a reply without a stage (a bug of the caller).
    """
    if reply.stage is None:
        raise ValueError(f"reply {reply} answers no stage; the client stamps each reply")
    scopes = STAGE_SCOPES[reply.stage]
    code = reply.code
    if 200 <= code < 300:
        return Outcome(OutcomeKind.DELIVERED, scopes.hard, reply, Category.UNCATEGORIZED)
    if not 400 <= code < 600:
        return Outcome(OutcomeKind.TRANSIENT, Scope.SESSION, reply, Category.PROTOCOL_ERRORS)
    category = classifier.classify(reply)
    if code < 500 or category in TRANSIENT_CATEGORIES:
        kind = OutcomeKind.TRANSIENT
        scope = scopes.soft
    else:
        kind = OutcomeKind.PERMANENT
        scope = scopes.hard
    if code == 421:
        scope = Scope.SITE
    return Outcome(kind, scope, reply, category)
