"""Auto-replies: vacation, out-of-office and challenge-response mail, which are not bounces.

In: a message's header fields and subject. Out: ``"auto-reply"``,
``"challenge-response"`` or ``None``.

A reply is automatic when it says so (RFC 3834 ``Auto-Submitted:
auto-replied``; the de-facto ``X-Autoreply``, ``X-Autorespond``,
``Precedence: auto_reply``, ``X-Auto-Response-Suppress`` is not one) or when its
subject is a client's out-of-office subject ("Automatic reply:", "Out of
Office", "Abwesenheitsnotiz", "Réponse automatique"...). Challenge-response
systems (Spam Arrest, Boxbe, Mailinblack, ...) ask the sender to prove being
human; they are auto-replies too, told apart for the record. A bounce can
carry ``Auto-Submitted`` as well (RFC 3464 §2 advises it), so the caller
asks this only of mail that did not read as a bounce. Pure.
"""

from __future__ import annotations

import re
from typing import Final

CHALLENGE: Final = re.compile(
    r"spamarrest|spam arrest|boxbe|mailinblack|sorbs challenge|choicemail|bluebottle"
    r"|please (?:confirm|verify) (?:that you are|your (?:email|message|identity))"
    r"|verify (?:that )?you are (?:a )?human|challenge[- ]response|awaiting your verification"
    r"|i'm protected by|message (?:is )?(?:being )?held (?:pending|until) (?:your )?verif"
)
"""Searched in the lower-cased subject and text."""
AUTO_SUBJECT: Final = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|auto:|autoreply|out of (?:the )?office"
    r"|vacation|on vacation|away from (?:the|my) office|abwesenheitsnotiz|abwesend"
    r"|r[ée]ponse automatique|absence|risposta automatica|fuori ufficio|respuesta autom[aá]tica"
    r"|automatisch antwoord|автоответ|自动回复)",
    re.IGNORECASE,
)
_AUTO_FIELDS: Final = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-mailautoreply")


def auto_reply_kind(fields: list[tuple[str, str]], subject: str, text: str) -> str | None:
    """``"challenge-response"``, ``"auto-reply"`` or ``None`` (see the module docstring)."""
    names = {name for name, _ in fields}
    submitted = next((v for n, v in fields if n == "auto-submitted"), "").strip().lower()
    precedence = next((v for n, v in fields if n == "precedence"), "").strip().lower()
    automatic = (
        (submitted.startswith("auto-") and submitted != "auto-generated")
        or any(name in names for name in _AUTO_FIELDS)
        or precedence == "auto_reply"
        or AUTO_SUBJECT.search(subject.strip()) is not None
    )
    if CHALLENGE.search(f"{subject}\n{text[:4096]}".lower()) or "x-challenge" in names:
        return "challenge-response"
    return "auto-reply" if automatic else None
