"""Traffic shaping: the limits of each lane (source x site), and where each was set.

Owns the shaping files' format, ``Shaping`` (the files loaded and merged),
``LaneShaping`` (the limits of one lane, each field with its ``Origin``),
``TlsMode`` and ``explain``.

In: the shipped ``shaping.toml`` beside this module, then the operator's
files (``scheduler.shaping_files``), each a TOML document of these tables:

- ``[default]``: lane options of every lane;
- ``[provider.NAME]``: ``match`` (MX host name suffixes), lane options and
  the provider-wide ``provider_connection_limit`` (connections per source
  to all of the provider's sites) and ``provider_max_message_rate``;
- ``[site."NAME"]``: lane options of a destination domain or an MX host;
- ``[source."NAME"]``: lane options of the lanes of one source.

Lane options: ``connection_limit``, ``max_connection_rate``,
``max_deliveries_per_connection``, ``max_message_rate``, ``enable_tls``,
``idle_timeout_seconds``. Rates are throttle specs
(``engine.limits.throttle``); ``""`` means unlimited.
Out: a ``LaneShaping`` per (source, site[, domain]).

Rules:

- Files merge key by key: a later file's value for the same table and key
  replaces an earlier one's; every other key stays.
- Per field, default < provider < site < source: the most specific table
  that sets a field gives its value.
- A provider matches a site when one of the site's MX hosts ends with one of
  its ``match`` suffixes on a label boundary, in any case, with or without
  dots (``.google.com`` and ``google.com`` both match ``aspmx.l.google.com``
  and ``google.com``, not ``notgoogle.com``); the longest matching suffix
  wins, on a tie the provider named first (shipped ones first).
- ``[site."X"]`` applies when X is one of the site's MX hosts or the
  destination domain (when the caller names it); a domain's table beats a
  host's. The connection pool works per lane and names no domain, so a
  domain's table shapes its queue (rates) but not the lane's connections
  unless the domain is also the MX host (implicit MX).
- Anything else is an error: unknown tables or keys, wrong types, bounds,
  bad throttle specs, unknown TLS modes, a provider without ``match``; each a
  ``ConfigError`` naming the file and the dotted key.

Invariants: pure after ``load`` (no I/O, no clock); ``for_lane`` depends only
on the files and its arguments, not on the order, case or repetition of
the site's host names.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.loader import ConfigError, read_toml
from engine.limits.throttle import ThrottleSpec

SHIPPED = Path(__file__).with_name("shaping.toml")
SHIPPED_NAME = "shaping.toml"
"""How the shipped file is named in origins and errors."""
SITE_SEPARATOR = ","
"""Between the MX hosts of a site name (``smtp_out.site``)."""
MAX_CACHED = 100_000
"""How many lanes' limits, and sites' providers, are kept worked out (then all forgotten)."""


class TlsMode(enum.StrEnum):
    """STARTTLS policy of outgoing SMTP, after KumoMTA's ``enable_tls``."""

    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was set: the file and the dotted key."""

    file: str
    key: str


@dataclass(frozen=True, slots=True)
class LaneShaping:
    """The limits of one lane (source x site)."""

    connection_limit: int
    max_connection_rate: ThrottleSpec | None
    max_deliveries_per_connection: int
    max_message_rate: ThrottleSpec | None
    enable_tls: TlsMode
    idle_timeout_seconds: float
    provider: str
    """The matching provider's name, ``""`` when none matches."""
    provider_connection_limit: int | None
    provider_max_message_rate: ThrottleSpec | None
    origins: Mapping[str, Origin]
    """Field name -> where its value was set (fields left unset have none)."""


@dataclass(frozen=True, slots=True)
class _Option:
    kind: str  # "int", "seconds", "rate", "tls"
    minimum: float = 1
    maximum: float = 1_000_000


LANE_OPTIONS: Mapping[str, _Option] = {
    "connection_limit": _Option("int", 1, 100_000),
    "max_connection_rate": _Option("rate"),
    "max_deliveries_per_connection": _Option("int", 1, 1_000_000),
    "max_message_rate": _Option("rate"),
    "enable_tls": _Option("tls"),
    "idle_timeout_seconds": _Option("seconds", 0, 86_400),
}
PROVIDER_OPTIONS: Mapping[str, _Option] = {
    "provider_connection_limit": _Option("int", 1, 100_000),
    "provider_max_message_rate": _Option("rate"),
}
TABLES = ("default", "provider", "site", "source")

Value = int | float | str | ThrottleSpec | TlsMode | None
_Table = dict[str, tuple[Value, Origin]]
"""Key -> (parsed value, where it was set)."""


class Shaping:
    """The merged shaping files; ``for_lane`` answers the limits of a lane."""

    def __init__(
        self,
        default: _Table,
        providers: Mapping[str, _Table],
        matches: Mapping[str, tuple[tuple[str, ...], Origin]],
        sites: Mapping[str, _Table],
        sources: Mapping[str, _Table],
        files: Sequence[str],
    ) -> None:
        self._default = default
        self._providers = dict(providers)
        self._matches = dict(matches)
        self._sites = dict(sites)
        self._sources = dict(sources)
        self._files = tuple(files)
        self._cached: dict[tuple[str, str, str], LaneShaping] = {}
        self._providers_of: dict[str, str] = {}

    @classmethod
    def load(cls, files: Sequence[str | Path] = ()) -> Shaping:
        """The shipped file, then ``files`` in order; ``ConfigError`` for the first problem."""
        return cls.parse(*((str(file), read_toml(Path(file))) for file in files))

    @classmethod
    def parse(cls, *documents: tuple[str, Mapping[str, Any]]) -> Shaping:
        """The shipped file, then each (name, parsed TOML document) in order."""
        merged = _Merged()
        for name, raw in [(SHIPPED_NAME, read_toml(SHIPPED, SHIPPED_NAME)), *documents]:
            merged.add(raw, name)
        return merged.shaping([name for name, _ in [(SHIPPED_NAME, None), *documents]])

    @property
    def files(self) -> tuple[str, ...]:
        """The files loaded, shipped first (named ``shaping.toml``)."""
        return self._files

    @property
    def providers(self) -> tuple[str, ...]:
        """The provider names, in matching order."""
        return tuple(self._matches)

    def provider_of(self, site: str) -> str:
        """The provider whose ``match`` fits one of the site's MX hosts; ``""`` when none."""
        found = self._providers_of.get(site)
        if found is None:
            found = self._provider_matching(site)
            if len(self._providers_of) >= MAX_CACHED:
                self._providers_of.clear()
            self._providers_of[site] = found
        return found

    def _provider_matching(self, site: str) -> str:
        labels = {"." + host for host in _hosts(site)}
        best, best_length = "", 0
        for name, (suffixes, _) in self._matches.items():
            for suffix in suffixes:
                if len(suffix) > best_length and any(label.endswith(suffix) for label in labels):
                    best, best_length = name, len(suffix)
        return best

    def for_lane(self, source: str, site: str, domain: str = "") -> LaneShaping:
        """The limits of the lane (``source``, ``site``), for mail to ``domain`` if named."""
        key = (source, site, domain)
        found = self._cached.get(key)
        if found is None:
            found = self._work_out(source, site, domain)
            if len(self._cached) >= MAX_CACHED:
                self._cached.clear()
            self._cached[key] = found
        return found

    def _work_out(self, source: str, site: str, domain: str) -> LaneShaping:
        provider = self.provider_of(site)
        layers: list[_Table] = [self._default]
        if provider:
            layers.append(self._providers[provider])
        hosts = sorted(set(_hosts(site)) - {_canonical(domain)})
        layers.extend(self._sites[host] for host in hosts if host in self._sites)
        if domain and _canonical(domain) in self._sites:
            layers.append(self._sites[_canonical(domain)])
        if source in self._sources:
            layers.append(self._sources[source])
        values: dict[str, Value] = dict.fromkeys(PROVIDER_OPTIONS)
        origins: dict[str, Origin] = {}
        for layer in layers:
            for name, (value, origin) in layer.items():
                values[name], origins[name] = value, origin
        if provider:
            origins["provider"] = self._matches[provider][1]
        else:
            for name in PROVIDER_OPTIONS:
                values[name] = None
                origins.pop(name, None)
        return LaneShaping(provider=provider, origins=origins, **values)  # type: ignore[arg-type]


class _Merged:
    """The tables of the files read so far, merged key by key."""

    def __init__(self) -> None:
        self.default: _Table = {}
        self.providers: dict[str, _Table] = {}
        self.matches: dict[str, tuple[tuple[str, ...], Origin]] = {}
        self.sites: dict[str, _Table] = {}
        self.sources: dict[str, _Table] = {}
        self.first_seen: dict[str, str] = {}
        """Provider -> the file that named it first (for a missing ``match``)."""

    def add(self, raw: Mapping[str, Any], file: str) -> None:
        for table in raw:
            if table not in TABLES:
                expected = f"unknown table; expected one of {', '.join(TABLES)}"
                raise ConfigError(file, table, expected)
        self.default.update(_options(raw.get("default", {}), file, "default", LANE_OPTIONS))
        for name, body in _named(raw, "provider", file):
            prefix = f"provider.{name}"
            self.first_seen.setdefault(name, file)
            body = dict(body)
            if "match" in body:
                self.matches[name] = (
                    _suffixes(body.pop("match"), file, prefix),
                    Origin(file, f"{prefix}.match"),
                )
            options = _options(body, file, prefix, {**LANE_OPTIONS, **PROVIDER_OPTIONS})
            self.providers.setdefault(name, {}).update(options)
        for name, body in _named(raw, "site", file):
            host = _canonical(name)
            if not host:
                raise ConfigError(file, f"site.{name!r}", "expected a domain or host name")
            self.sites.setdefault(host, {}).update(
                _options(body, file, f"site.{name}", LANE_OPTIONS)
            )
        for name, body in _named(raw, "source", file):
            self.sources.setdefault(name, {}).update(
                _options(body, file, f"source.{name}", LANE_OPTIONS)
            )

    def shaping(self, files: Sequence[str]) -> Shaping:
        for name, file in self.first_seen.items():
            if name not in self.matches:
                problem = "a provider needs match (a list of MX host name suffixes)"
                raise ConfigError(file, f"provider.{name}.match", problem)
        missing = sorted(set(LANE_OPTIONS) - set(self.default))
        if missing:
            raise ConfigError(files[-1], f"default.{missing[0]}", "no file sets it")
        return Shaping(self.default, self.providers, self.matches, self.sites, self.sources, files)


def _named(raw: Mapping[str, Any], table: str, file: str) -> list[tuple[str, dict[str, Any]]]:
    """The named sub-tables of ``[table]``, each checked to be a table."""
    tables = raw.get(table, {})
    if not isinstance(tables, dict):
        raise ConfigError(file, table, f'expected named tables ([{table}."NAME"])')
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise ConfigError(file, f"{table}.{name}", "expected a table")
    return list(tables.items())


def _options(
    body: Any, file: str, prefix: str, allowed: Mapping[str, _Option]
) -> dict[str, tuple[Value, Origin]]:
    if not isinstance(body, dict):
        raise ConfigError(file, prefix, "expected a table")
    parsed: dict[str, tuple[Value, Origin]] = {}
    for name, value in body.items():
        key = f"{prefix}.{name}"
        option = allowed.get(name)
        if option is None:
            raise ConfigError(file, key, f"unknown key; expected one of {', '.join(allowed)}")
        parsed[name] = (_value(option, value, file, key), Origin(file, key))
    return parsed


def _value(option: _Option, value: Any, file: str, key: str) -> Value:
    if option.kind == "rate":
        if not isinstance(value, str):
            raise ConfigError(
                file, key, f'expected a throttle spec such as "100/min", got {value!r}'
            )
        if not value.strip():
            return None
        try:
            return ThrottleSpec.parse(value)
        except ValueError as exc:
            raise ConfigError(file, key, str(exc)) from None
    if option.kind == "tls":
        modes = ", ".join(TlsMode)
        if not isinstance(value, str) or value.lower() not in set(TlsMode):
            raise ConfigError(file, key, f"expected one of {modes}, got {value!r}")
        return TlsMode(value.lower())
    integral = option.kind == "int"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integral and isinstance(value, float))
    ):
        expected = "an integer" if integral else "a number of seconds"
        raise ConfigError(file, key, f"expected {expected}, got {value!r}")
    if not (math.isfinite(value) and option.minimum <= value <= option.maximum):
        problem = f"expected {option.minimum:g}..{option.maximum:g}, got {value!r}"
        raise ConfigError(file, key, problem)
    return int(value) if integral else float(value)


def _suffixes(value: Any, file: str, prefix: str) -> tuple[str, ...]:
    key = f"{prefix}.match"
    if not isinstance(value, list) or not value:
        raise ConfigError(file, key, f"expected a list of MX host name suffixes, got {value!r}")
    suffixes = []
    for i, suffix in enumerate(value):
        host = _canonical(suffix).lstrip(".") if isinstance(suffix, str) else ""
        if not host:
            raise ConfigError(file, f"{key}[{i}]", f"expected a host name suffix, got {suffix!r}")
        suffixes.append("." + host)
    return tuple(suffixes)


def _canonical(name: str) -> str:
    """A host name lower-cased, without surrounding space or its trailing root dot."""
    return name.strip().rstrip(".").lower()


def _hosts(site: str) -> list[str]:
    """The host names of a site name (as ``smtp_out.site`` joins them)."""
    return [host for host in map(_canonical, site.split(SITE_SEPARATOR)) if host]


FIELDS = (
    "provider",
    "connection_limit",
    "max_connection_rate",
    "max_deliveries_per_connection",
    "max_message_rate",
    "enable_tls",
    "idle_timeout_seconds",
    "provider_connection_limit",
    "provider_max_message_rate",
)
"""The fields ``explain`` shows, in order."""
_PERIOD_NAMES = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}


def explain(shaping: LaneShaping) -> list[str]:
    """One line per field: ``NAME = VALUE  (FILE: KEY)``, the origin left out when unset."""
    lines = []
    for name in FIELDS:
        if name.startswith("provider_") and not shaping.provider:
            continue
        text = f"{name} = {shown(getattr(shaping, name))}"
        origin = shaping.origins.get(name)
        lines.append(f"{text}  ({origin.file}: {origin.key})" if origin else text)
    return lines


def shown(value: object) -> str:
    """A shaping value as an operator writes it (``100/min``, ``unlimited``, ``(none)``)."""
    if value is None:
        return "unlimited"
    if value == "":
        return "(none)"
    if isinstance(value, ThrottleSpec):
        unit = _PERIOD_NAMES.get(value.period_seconds)
        if unit is None:
            return str(value)
        burst = f",max_burst={value.max_burst}" if value.max_burst != value.limit else ""
        return f"{'local:' if value.local else ''}{value.limit}/{unit}{burst}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
