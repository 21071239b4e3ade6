"""A reported recipient's verdict: its status code, reply code, diagnostic and category.

In: what a bounce says of one recipient (address, action, the ``Status``
field if any, the diagnostic text, the remote MTA). Out: a
:class:`~bounce_in.report.RecipientStatus`.

The enhanced status code is, in order: a valid ``Status`` field (RFC 3464
§2.3.4); the first code in the diagnostic (``550 5.1.1 ...``, qmail's and
Exchange's ``#5.1.1``); otherwise the action's generic code, ``5.0.0`` for
failed and ``4.0.0`` for delayed (RFC 3463 §3.1, subject 0 "other or
undefined"). Its class wins over the diagnostic's: a failed recipient whose
diagnostic reads ``4.4.1`` is reported ``5.4.1`` (the MTA gave up). The
category is the classifier's reading of ``Reply(code, status, text, stage)``,
the stage being the one the diagnostic's transcript names, if any: the same
rules as for in-session replies. Without a basic code in the diagnostic the
reply code is the class's ``x50``. Pure.
"""

from __future__ import annotations

import re
from typing import Final

from bounce_in.report import Action, RecipientStatus
from engine.delivery.bounce_classify import BounceClassifier, stage_from_text
from engine.smtp.reply import (
    Reply,
    find_enhanced_code,
    find_reply_code,
    parse_enhanced_code,
    split_enhanced_code,
    unfold_quoted_reply,
)

MAX_DIAGNOSTIC: Final = 1000
"""A diagnostic is cut at this many characters."""

_TOKENS = re.compile(r"[\s<>()\"',;]+")
MAX_ADDRESS: Final = 320

_GENERIC: Final = {Action.FAILED: "5.0.0", Action.DELAYED: "4.0.0"}


def recipient_status(
    classifier: BounceClassifier,
    address: str,
    action: Action,
    status: str = "",
    diagnostic: str = "",
    remote_mta: str = "",
    original_recipient: str = "",
) -> RecipientStatus:
    """The verdict on one recipient; see the module docstring."""
    diagnostic = unfold_quoted_reply(" ".join(diagnostic.split())[:MAX_DIAGNOSTIC])
    leading = find_reply_code(diagnostic[:5])
    code = leading[0] if leading is not None and leading[1] == 0 else None
    in_text = find_enhanced_code(diagnostic[:300])
    code_status = "" if in_text is None else str(in_text)
    chosen = _choose_status(status, code_status, action)
    text = _reply_text(diagnostic, code)
    klass = int(chosen[0]) if chosen else (5 if action is Action.FAILED else 4)
    reply_code = code if code is not None and code // 100 == klass else klass * 100 + 50
    stage = stage_from_text(diagnostic)
    category = classifier.classify(Reply(reply_code, chosen, text or diagnostic, stage))
    return RecipientStatus(
        address=clean_address(address),
        action=action,
        status=chosen,
        category=category,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        original_recipient=clean_address(original_recipient),
        smtp_code=code,
    )


def clean_address(value: str) -> str:
    """An address as found, without ``rfc822;``, brackets or quotes; domain lower-cased."""
    value = value.strip()[: MAX_ADDRESS * 2]
    if ";" in value:
        value = value.split(";", 1)[1]
    for token in _TOKENS.split(value):
        local, at, domain = token.strip(".:").rpartition("@")
        if at and local and domain and len(token) <= MAX_ADDRESS:
            return f"{local}@{domain.lower()}"
    return ""


def _choose_status(field: str, from_text: str, action: Action) -> str:
    field = field.strip().split(" ", 1)[0]
    generic = _GENERIC.get(action, "")
    enhanced = parse_enhanced_code(field)
    if enhanced is not None and not (enhanced.subject == 0 and from_text):
        return str(enhanced)
    if from_text:
        if generic and from_text[0] != generic[0] and from_text[0] != "2":
            return generic[0] + from_text[1:]
        return from_text
    if enhanced is not None:
        return str(enhanced)
    return generic


def _reply_text(diagnostic: str, code: int | None) -> str:
    """The diagnostic without its leading reply code and enhanced status code."""
    text = diagnostic[3:].lstrip(" -:") if code is not None else diagnostic
    _, rest = split_enhanced_code(text.lstrip("#"))
    return rest.strip()
