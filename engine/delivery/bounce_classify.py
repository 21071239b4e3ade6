"""Bounce classification: which category a failure reply falls in.

Owns :class:`BounceClassifier`, the one classifier for smtp_out's replies to
its commands (through ``engine.delivery.reply_outcome``) and for the status
and diagnostic code of a DSN (bounce_in builds ``Reply(code, enhanced, text,
stage)``, the stage from :func:`stage_from_text` or None), and the operator
rule file. The categories and the enhanced status codes are
``engine.delivery.bounce_category``'s; the built-in wording rules are
``engine.delivery.bounce_rules``'. Pure, except :func:`load_rules`, which
reads the rule file.

Classification, first match wins:

1. operator rules, in file order (they override everything below);
2. the built-in rules (:data:`BUILTIN_TABLE`) that are not vague, those
   confined to stages only on a reply known to answer one of them;
3. a definitive enhanced status code (RFC 3463 and the IANA registry: a
   registered detail other than ``x.y.0``, ``5.7.1`` and the like);
4. the vague built-in rules ("policy", "access denied");
5. any other enhanced status code, by its subject (``5.1.0``, ``5.2.0``,
   ``5.7.606``...);
6. the basic code (RFC 5321): 4xx is TransientFailure, 500-504 are
   ProtocolErrors, any other 5xx is Uncategorized.

Rules are regexes searched (not anchored) in ``"CODE ENHANCED text"`` with
the whitespace of multi-line replies folded into single spaces, e.g.
``"550 5.1.1 The email account that you tried to reach does not exist"``;
the enhanced code is left out when the reply has none, and only the first
:data:`SUBJECT_LIMIT` characters are read. Built-in rules ignore case;
operator patterns are used as written (add ``(?i)`` to ignore case).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from engine.delivery.bounce_category import (
    TRANSIENT_CATEGORIES,
    Category,
    is_definitive,
    status_category,
)
from engine.delivery.bounce_rules import BUILTIN_TABLE, TableEntry
from engine.smtp.reply import EnhancedCode, Reply, Stage

__all__ = [
    "BUILTIN_RULES",
    "BUILTIN_TABLE",
    "TRANSIENT_CATEGORIES",
    "BounceClassifier",
    "Category",
    "Decision",
    "Rule",
    "RuleFileError",
    "TableEntry",
    "load_rules",
    "parse_rules",
    "stage_from_text",
]

_C = Category

_LABEL = re.compile(r"[A-Za-z]+")

SUBJECT_LIMIT: Final = 4096
"""Characters of a reply that rules read: SMTP reply lines have at most 512, and a
DSN's diagnostic worth reading is not longer; this bounds the time on junk."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A category for the replies whose ``"CODE ENHANCED text"`` matches ``pattern``."""

    category: str
    pattern: re.Pattern[str]


def _folded(regex: str) -> str:
    """``regex`` for lower-cased text: its literals lower-cased, its escapes
    (``\\S``, ``\\B``, ``\\D``...) kept. Searching lower-cased text with it is
    searching the text ignoring case, at twice the speed of ``re.IGNORECASE``."""
    out, escaped = [], False
    for char in regex:
        out.append(char if escaped else char.lower())
        escaped = not escaped and char == "\\"
    return "".join(out)


BUILTIN_RULES: Final[tuple[Rule, ...]] = tuple(
    Rule(entry.category, re.compile(_folded(entry.regex))) for entry in BUILTIN_TABLE
)
""":data:`BUILTIN_TABLE` compiled for lower-cased subjects, in the same order."""


class Decision(NamedTuple):
    """A category and what decided it: a built-in entry, or None for an operator
    rule or a status code."""

    category: str
    entry: TableEntry | None = None


class BounceClassifier:
    """Operator rules, then the built-in rules and the status codes."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self._rules: tuple[Rule, ...] = tuple(rules)
        builtin = tuple(zip(BUILTIN_TABLE, BUILTIN_RULES, strict=True))
        self._precise = tuple((e, r.pattern) for e, r in builtin if not e.vague)
        self._vague = tuple((e, r.pattern) for e, r in builtin if e.vague)

    def classify(self, reply: Reply) -> str:
        """The category of a failure ``reply`` (a ``Category`` value or an operator label)."""
        return self.decide(reply).category

    def decide(self, reply: Reply) -> Decision:
        """The category of ``reply`` and the built-in rule that decided it, if one did."""
        subject = " ".join(str(reply)[:SUBJECT_LIMIT].split())
        for rule in self._rules:
            if rule.pattern.search(subject):
                return Decision(rule.category)
        subject = subject.lower()
        enhanced = reply.enhanced_code
        if enhanced is not None and enhanced.klass == 2:
            enhanced = None
        found = _first(self._precise, subject, reply.stage)
        if found is not None:
            return found
        if enhanced is not None and is_definitive(enhanced):
            return Decision(status_category(enhanced))
        found = _first(self._vague, subject, reply.stage)
        if found is not None:
            return found
        return Decision(_by_codes(enhanced, reply.code))


def _first(
    rules: tuple[tuple[TableEntry, re.Pattern[str]], ...], subject: str, stage: Stage | None
) -> Decision | None:
    for entry, pattern in rules:
        if entry.stages and stage not in entry.stages:
            continue
        if pattern.search(subject):
            return Decision(entry.category, entry)
    return None


def _by_codes(enhanced: EnhancedCode | None, code: int) -> Category:
    if enhanced is not None:
        category = status_category(enhanced)
        if category is not _C.UNCATEGORIZED:
            return category
    if 400 <= code < 500:
        return _C.TRANSIENT_FAILURE
    if 500 <= code <= 504:
        return _C.PROTOCOL_ERRORS
    return _C.UNCATEGORIZED


# The stage a DSN's text names

_STAGE_PHRASES: Final[tuple[tuple[Stage, str], ...]] = (
    (Stage.DOT, r"end of data|rejected after DATA|<<< 354\b"),
    (Stage.DATA, r"(in reply to|after|>>>) (pipelined )?DATA\b"),
    (Stage.RCPT, r"(in reply to|after|>>>) (pipelined )?RCPT( TO)?\b"),
    (Stage.MAIL, r"(in reply to|after|>>>) (pipelined )?MAIL( FROM)?\b"),
    (Stage.EHLO, r"(in reply to|after|>>>) EHLO\b"),
    (Stage.HELO, r"(in reply to|after|>>>) HELO\b"),
    (Stage.STARTTLS, r"(in reply to|after|>>>) STARTTLS\b"),
    (Stage.GREETING, r"initial (connection|greeting)|refused to talk to me"),
)
_STAGE_TEXT: Final = re.compile(
    "|".join(f"(?P<{stage.name}>{regex})" for stage, regex in _STAGE_PHRASES), re.IGNORECASE
)


def stage_from_text(text: str) -> Stage | None:
    """The SMTP stage a bounce's text says the refusal answered, or None.

    Reads Postfix ("in reply to RCPT TO command", "in reply to end of DATA
    command", "refused to talk to me"), Exim ("after RCPT TO:<...>", "after end
    of data", "after initial connection") and Sendmail transcripts (">>> DATA");
    when the text names several, the last one.
    """
    stage = None
    for match in _STAGE_TEXT.finditer(text):
        stage = Stage[match.lastgroup or ""]
    return stage


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
