"""Backoff: which replies mean "slow down", and how far a target is slowed.

Owns the backoff rules (``BackoffRule``: a reply pattern, the target it
slows, the action), the rule files they come from, and the adaptive state
of one slowed target (``Level``). In: the settings' ``[scheduler]`` table,
replies (``engine.smtp.reply.Reply``) with the provider of the site that
sent them. Out: the first rule a reply matches, and levels that scale a
lane's rate and connection limits. Pure apart from ``load_rules``, which
reads the rule files.

Rule files (TOML, ``[[rule]]`` tables; keys as in the shipped
``backoff.toml``): a rule names at least one of ``code`` (``421``, or
``"4xx"``/``"5xx"``), ``enhanced`` (an enhanced status code prefix, compared
part by part: ``"4.7"`` matches ``4.7.28``, ``"4.7.2"`` does not) and
``match`` (a Python regex searched in the reply's text, its code and
enhanced code left out, the lines of a multi-line reply joined by single
spaces; add ``(?i)`` to ignore case), and optionally ``provider`` (only
replies from that provider's sites). A reply matches a rule when it meets
every condition the rule names. Order, first match wins: the operator's
files from ``scheduler.backoff_files``, the last file first, each file's
rules in file order; then the shipped rules. A rule in an operator file
replaces the earlier rule (shipped or operator) of the same name. Errors
are ``ConfigError(file, "rule[2].factor", problem)``, rules counted from 0.

Actions: ``reduce`` steps the target down one level (rate and connection
limits times ``factor`` per level, ``factor`` 0.5 when absent); ``suspend``
stops the target for ``duration``. Recovery after the Postfix scheduler's
feedback (SCHEDULER_README, "destination concurrency feedback"), made
multiplicative in both directions: each failure divides, and every
``scheduler.backoff_step_after`` successes take one step back up, until the
target is at level 0, its configured limits.

Invariants: a reduced limit is never below 1; a level stays within
0..max_level; a level's factor is the strongest (smallest) factor that
reduced it since it was last at level 0.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from config.loader import ConfigError, read_toml
from config.schema import Settings
from engine.durations import parse_duration
from engine.limits.throttle import ThrottleSpec
from engine.smtp.reply import EnhancedCode, Reply, parse_enhanced_code

SHIPPED_RULES: Final = Path(__file__).with_name("backoff.toml")
DEFAULT_FACTOR: Final = 0.5
"""The factor of a ``reduce`` rule that names none."""


class Target(enum.StrEnum):
    """What a rule slows or suspends: the names of the suspension scopes."""

    LANE = "lane"
    SOURCE = "source"
    SOURCE_PROVIDER = "source_provider"
    TENANT = "tenant"
    CAMPAIGN = "campaign"


class Action(enum.StrEnum):
    REDUCE = "reduce"
    """One level down: rate and connection limits times the factor."""
    SUSPEND = "suspend"
    """Nothing sent to the target for the rule's duration."""


class RuleOrigin(NamedTuple):
    """Where a rule was written: the file and the rule's key (``rule[3]``)."""

    file: str
    key: str


@dataclass(frozen=True, slots=True)
class BackoffRule:
    """A reaction to the replies that meet every condition the rule names."""

    name: str
    provider: str
    """Only replies from this provider's sites; "" for any site."""
    code: int | str | None
    """A reply code (``421``), a class (``"4xx"``, ``"5xx"``), or None for any."""
    enhanced: str
    """An enhanced status code prefix (``"4.7.28"``, ``"4.7"``); "" for any."""
    pattern: re.Pattern[str] | None
    target: Target
    action: Action
    factor: float
    """``reduce``: the multiplier per level (0 < factor < 1); 1.0 for ``suspend``."""
    duration_seconds: float
    """``suspend``: how long; 0.0 for ``reduce``."""
    reason: str
    origin: RuleOrigin

    def matches(self, reply: Reply, provider: str) -> bool:
        """Whether ``reply``, from a site of ``provider`` ("" when none), meets the rule."""
        if self.provider and self.provider != provider:
            return False
        if isinstance(self.code, int) and reply.code != self.code:
            return False
        if isinstance(self.code, str) and str(reply.code)[0] != self.code[0]:
            return False
        if self.enhanced and not _enhanced_within(reply.enhanced_code, self.enhanced):
            return False
        return self.pattern is None or self.pattern.search(" ".join(reply.text.split())) is not None


def match_rule(rules: Iterable[BackoffRule], reply: Reply, provider: str) -> BackoffRule | None:
    """The first of ``rules`` that ``reply`` from a site of ``provider`` matches."""
    return next((rule for rule in rules if rule.matches(reply, provider)), None)


def _enhanced_within(enhanced: EnhancedCode | None, prefix: str) -> bool:
    wanted = [int(part) for part in prefix.split(".")]
    return enhanced is not None and list(enhanced[: len(wanted)]) == wanted


# Adaptive state of one target


@dataclass(frozen=True, slots=True)
class Level:
    """How far one target is slowed: ``level`` steps of ``factor``, and the successes
    counted towards the next step back up."""

    level: int = 0
    successes: int = 0
    factor: float = DEFAULT_FACTOR

    def encode(self) -> str:
        """``"LEVEL:SUCCESSES:FACTOR"``, the form kept as shared state in the limiter."""
        return f"{self.level}:{self.successes}:{self.factor!r}"

    @classmethod
    def decode(cls, text: str) -> Level:
        """The level ``encode`` wrote; ``ValueError`` for anything else."""
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"not a backoff level (LEVEL:SUCCESSES:FACTOR): {text!r}")
        level, successes, factor = int(parts[0]), int(parts[1]), float(parts[2])
        if level < 0 or successes < 0 or not 0 < factor <= 1:
            raise ValueError(f"not a backoff level (LEVEL:SUCCESSES:FACTOR): {text!r}")
        return cls(level, successes, factor)


def reduced(level: Level, max_level: int = 6, factor: float | None = None) -> Level:
    """One step down (``level + 1``, at most ``max_level``), the successes counted so far
    dropped; ``factor`` (a rule's) is kept when it is stronger than the level's, or
    when the target was at level 0."""
    kept = level.factor
    if factor is not None:
        kept = factor if level.level == 0 else min(factor, level.factor)
    return Level(min(level.level + 1, max_level), 0, kept)


def after_success(level: Level, step_after: int) -> Level:
    """One more success: every ``step_after`` of them take one step back up (``level - 1``);
    a target at level 0 is left as it is."""
    if level.level == 0:
        return level
    successes = level.successes + 1
    if successes >= step_after:
        return replace(level, level=level.level - 1, successes=0)
    return replace(level, successes=successes)


def scaled(base: int, factor: float, level: Level) -> int:
    """``base`` reduced by ``level`` steps of ``factor``:
    ``max(1, floor(base * factor**level))``."""
    return max(1, math.floor(base * factor**level.level + 1e-9))


def scaled_spec(spec: ThrottleSpec, factor: float, level: Level) -> ThrottleSpec:
    """``spec`` with its rate and burst reduced by ``level`` steps of ``factor``."""
    if level.level == 0:
        return spec
    return replace(
        spec,
        limit=scaled(spec.limit, factor, level),
        max_burst=scaled(spec.max_burst, factor, level),
    )


# Rule files


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The rules in force and the settings of recovery, read once from the settings."""

    rules: tuple[BackoffRule, ...]
    step_after: int
    max_level: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BackoffPolicy:
        """The shipped rules and ``scheduler.backoff_files``'; ``ConfigError`` for a bad file."""
        scheduler = settings.scheduler
        return cls(
            load_rules(scheduler.backoff_files),
            scheduler.backoff_step_after,
            scheduler.backoff_max_level,
        )

    def match(self, reply: Reply, provider: str) -> BackoffRule | None:
        """The rule ``reply`` from a site of ``provider`` matches first, if any."""
        return match_rule(self.rules, reply, provider)


def load_rules(files: Sequence[str | Path] = ()) -> tuple[BackoffRule, ...]:
    """The rules of the operator's ``files`` (the last file's first), then the shipped ones.

    A rule replaces the rules of the same name in the shipped file and earlier files."""
    shipped = parse_rules(read_toml(SHIPPED_RULES), SHIPPED_RULES.name)
    ordered: list[BackoffRule] = []
    named: set[str] = set()
    for file in reversed(files):
        for rule in parse_rules(read_toml(Path(file)), str(file)):
            if rule.name not in named:
                ordered.append(rule)
                named.add(rule.name)
    return (*ordered, *(rule for rule in shipped if rule.name not in named))


_KEYS: Final = (
    "name",
    "provider",
    "code",
    "enhanced",
    "match",
    "target",
    "action",
    "factor",
    "duration",
    "reason",
)
_Fail = Callable[[str, str], ConfigError]
_E = TypeVar("_E", Target, Action)
_CODE_CLASS = re.compile(r"[45]xx")


def parse_rules(document: Mapping[str, Any], file: str) -> tuple[BackoffRule, ...]:
    """The ``[[rule]]`` tables of a parsed rule file, in file order; ``file`` names it in
    errors."""
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise ConfigError(file, unknown[0], "unknown table; expected [[rule]] tables")
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise ConfigError(file, "rule", "expected an array of tables ([[rule]])")
    rules: list[BackoffRule] = []
    for index, table in enumerate(tables):
        rule = _parse_rule(table, RuleOrigin(file, f"rule[{index}]"))
        if any(earlier.name == rule.name for earlier in rules):
            raise ConfigError(file, f"rule[{index}].name", f"{rule.name!r} is named twice")
        rules.append(rule)
    return tuple(rules)


def _parse_rule(table: object, origin: RuleOrigin) -> BackoffRule:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(origin.file, f"{origin.key}.{key}", problem)

    if not isinstance(table, dict):
        raise ConfigError(origin.file, origin.key, "expected a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key; expected one of {', '.join(_KEYS)}")
    name = _text(table, "name", fail, required=True)
    if not {"code", "enhanced", "match"} & set(table):
        raise fail("code", "a rule needs at least one of code, enhanced, match")
    target = _choice(Target, _text(table, "target", fail, required=True), "target", fail)
    action = _choice(Action, _text(table, "action", fail, required=True), "action", fail)
    factor, duration = _strength(table, action, fail)
    return BackoffRule(
        name=name,
        provider=_text(table, "provider", fail),
        code=_code(table.get("code"), fail),
        enhanced=_enhanced(_text(table, "enhanced", fail), fail),
        pattern=_pattern(table.get("match"), fail),
        target=target,
        action=action,
        factor=factor,
        duration_seconds=duration,
        reason=_text(table, "reason", fail) or name,
        origin=origin,
    )


def _text(table: Mapping[str, Any], key: str, fail: _Fail, *, required: bool = False) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise fail(key, f"expected a string, got {value!r}")
    if required and not value.strip():
        raise fail(key, "required: a non-empty string")
    return value.strip()


def _choice(kind: type[_E], value: str, key: str, fail: _Fail) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise fail(key, f"expected one of {choices}, got {value!r}") from None


def _code(value: object, fail: _Fail) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    if isinstance(value, str) and _CODE_CLASS.fullmatch(value.lower()):
        return value.lower()
    raise fail("code", f'expected a reply code 400..599, "4xx" or "5xx", got {value!r}')


def _enhanced(value: str, fail: _Fail) -> str:
    """``value`` when it is an enhanced status code or its first one or two parts."""
    parts = value.split(".")
    padded = ".".join(parts + ["0"] * (3 - len(parts)))
    if value and (len(parts) > 3 or parse_enhanced_code(padded) is None):
        raise fail(
            "enhanced", f"expected an enhanced status code (prefix), e.g. 4.7.28, got {value!r}"
        )
    return value


def _pattern(value: object, fail: _Fail) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise fail("match", f"expected a non-empty regex, got {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise fail("match", f"not a valid regex: {exc}") from None


def _strength(table: Mapping[str, Any], action: Action, fail: _Fail) -> tuple[float, float]:
    """The rule's (factor, duration in seconds), each checked against its action."""
    if action is Action.REDUCE:
        if "duration" in table:
            raise fail("duration", "only for action = suspend")
        factor = table.get("factor", DEFAULT_FACTOR)
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor < 1:
            raise fail("factor", f"expected a number between 0 and 1 (exclusive), got {factor!r}")
        return float(factor), 0.0
    if "factor" in table:
        raise fail("factor", "only for action = reduce")
    duration = table.get("duration")
    if not isinstance(duration, str):
        raise fail("duration", f'required for suspend: e.g. "2h", got {duration!r}')
    try:
        return 1.0, parse_duration(duration)
    except ValueError as exc:
        raise fail("duration", str(exc)) from None
