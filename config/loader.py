"""Load and validate a TOML config file into ``Settings``.

Every key is checked against ``config.schema``: unknown keys, wrong types,
values out of bounds (NaN and infinities included), malformed host names and
addresses and broken cross-references fail with a ``ConfigError`` naming the
file, the dotted key and what was expected; so does a file that cannot be
read or is not UTF-8 TOML. Nothing else escapes ``load_settings``.
This is pure validation of the file: whether the paths, certificates and
database it names are usable is checked by ``engine.runtime.preflight``.

Relative paths (the schema's ``path`` fields and a ``sqlite:PATH`` database
URL, set or left at their default) are made absolute against the directory
of the file loaded, so every command sees the same store from any working
directory. The shipped default config, used when no file is given, keeps
them relative to the working directory.

Named tables (``[sources.NAME]``, ``[pools.NAME]``, ``[tenants.NAME]``,
``[campaigns."TENANT:CAMPAIGN"]``, ``[warmup_plans.NAME]``) are added to the
shipped ones; a table with a shipped name overrides only the keys it sets, so
``[sources.default]`` with one key keeps the default source's other keys.
Traffic shaping has files of its own (``engine.scheduler.shaping``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import stat
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from config.schema import (
    BUILTIN_WARMUP_PLANS,
    KEY_ID,
    BounceSettings,
    EngineSettings,
    Settings,
    TrackingSettings,
    priority_value,
)

DEFAULT_CONFIG = Path(__file__).with_name("penguin.toml")
_HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
"""RFC 1123 host name syntax (letters, digits, hyphens; labels of 1-63 octets); IDNs as A-labels."""
_PASSWORD_PARAMETER = re.compile(r"(?i)([?&]password=)[^&]*")


class ConfigError(Exception):
    """A config file that cannot be used: names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from ``path``, its relative paths made relative to its directory; the
    shipped default config, relative paths kept, when None."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    settings = parse_settings(read_toml(file), str(file))
    return settings if path is None else anchored(settings, file.absolute().parent)


def read_toml(file: Path, name: str | None = None) -> dict[str, Any]:
    """The TOML document in ``file``; a ``ConfigError`` naming ``name`` (default: the
    path) when it cannot be read or parsed."""
    shown = str(file) if name is None else name
    try:
        return tomllib.loads(_read_text(file))
    except ConfigError as exc:
        raise ConfigError(shown, exc.key, exc.problem) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(shown, "-", f"not valid TOML: {exc}") from exc
    except RecursionError:
        raise ConfigError(shown, "-", "not valid TOML: nested too deeply") from None


def anchored(settings: Settings, base: Path) -> Settings:
    """``settings`` with each relative path (``path`` fields, ``sqlite:PATH``) under ``base``."""
    tables: dict[str, Any] = {}
    for table in dataclasses.fields(settings):
        value = getattr(settings, table.name)
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            continue
        paths = {
            f.name: _anchored_path(base, getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("path") and getattr(value, f.name)
        }
        if paths:
            tables[table.name] = dataclasses.replace(value, **paths)
    database = settings.database
    store_file = sqlite_path(database.url)
    if store_file:
        tables["database"] = dataclasses.replace(database, url=f"sqlite:{base / store_file}")
    return dataclasses.replace(settings, **tables)


def _anchored_path(base: Path, value: str | list[str]) -> str | list[str]:
    """A ``path`` field's value (one path or a list of them) under ``base``."""
    if isinstance(value, list):
        return [str(base / item) for item in value]
    return str(base / value)


def _read_text(file: Path) -> str:
    try:
        if not stat.S_ISREG(file.stat().st_mode):
            raise ConfigError(str(file), "-", "expected a regular file")
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(file), "-", "file not found") from None
    except OSError as exc:
        raise ConfigError(str(file), "-", f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        problem = f"expected UTF-8 text, got byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(str(file), "-", problem) from None


def parse_settings(raw: dict[str, Any], file: str = "<config>") -> Settings:
    """Validate an already parsed TOML document."""
    settings: Settings = _build(Settings, raw, file, "")
    _check_references(settings, file)
    return settings


def _build(cls: type, raw: Any, file: str, prefix: str, base: Any = None) -> Any:
    """A ``cls`` from the table ``raw``; keys it lacks come from ``base``, else the defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(file, prefix.rstrip(".") or "-", "expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            file, prefix + unknown[0], f"unknown key; expected one of {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = prefix + name
        hint = hints[name]
        meta = fields[name].metadata
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type, hint), value, file, key + ".")
        elif "item" in meta:
            if not isinstance(value, dict):
                raise ConfigError(file, key, "expected a table of named tables")
            shipped = getattr(cls(), name)
            values[name] = shipped | {
                item: _build(meta["item"], body, file, f"{key}.{item}.", shipped.get(item))
                for item, body in value.items()
            }
        else:
            values[name] = _scalar(hint, value, meta, file, key)
    return cls(**values) if base is None else dataclasses.replace(base, **values)


def _scalar(hint: Any, value: Any, meta: Any, file: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(file, key, f"expected a list of {item_type.__name__}, got {value!r}")
        return [_scalar(item_type, item, {}, file, f"{key}[{i}]") for i, item in enumerate(value)]
    if isinstance(hint, types.UnionType):
        hint = _optional(hint)
    expected: type = hint
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(file, key, f"expected {expected.__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(file, key, f"expected a finite number, got {value!r}")
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(file, key, f"expected no NUL character, got {value!r}")
    low, high, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if low is not None and value < low:
        raise ConfigError(file, key, f"expected at least {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(file, key, f"expected at most {high}, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(file, key, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _optional(hint: types.UnionType) -> Any:
    """``X`` of a setting typed ``X | None``: None is its default (unset), never a value
    (TOML has no null)."""
    kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if len(kinds) != 1:
        raise TypeError(f"the schema supports X | None only, got {hint}")
    return kinds[0]


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into a pair; ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        if default_port is None:
            raise ValueError(f"expected host:port, got {text!r}")
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:PATH`` (or ``sqlite://PATH``) URL; None for other schemes."""
    if not url.startswith("sqlite:"):
        return None
    path = url.removeprefix("sqlite:")
    return path[2:] if path.startswith("//") else path


def redacted_url(url: str) -> str:
    """``url`` with its password (user info or ``password=`` parameter) shown as ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        url = f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
    return _PASSWORD_PARAMETER.sub(r"\1***", url)


def _check_references(settings: Settings, file: str) -> None:
    for i, text in enumerate(settings.submission.listen):
        _check_address(text, file, f"submission.listen[{i}]")
    _check_address(settings.admin.listen, file, "admin.listen")
    for i, text in enumerate(settings.bounce.listen):
        _check_address(text, file, f"bounce.listen[{i}]")
    for i, text in enumerate(settings.bounce.feedback_addresses):
        local, at, domain = text.rpartition("@")
        if not (at and local and domain) or any(c.isspace() or c in "<>" for c in text):
            problem = f"expected an address local@domain, got {text!r}"
            raise ConfigError(file, f"bounce.feedback_addresses[{i}]", problem)
    for i, text in enumerate(settings.dns.nameservers):
        key = f"dns.nameservers[{i}]"
        try:
            host, _ = parse_host_port(text, default_port=53)
        except ValueError as exc:
            raise ConfigError(file, key, str(exc)) from None
        _check_ip_address(host, file, key)
    _check_engine(settings.engine, file)
    _check_sources(settings, file)
    _check_routing(settings, file)
    _check_bounce(settings.bounce, file)
    _check_tracking(settings, file)
    sub = settings.submission
    if sub.auth_failure_refuse_after < sub.auth_failure_delay_after:
        raise ConfigError(
            file,
            "submission.auth_failure_refuse_after",
            "expected at least submission.auth_failure_delay_after",
        )
    if bool(sub.tls_cert) != bool(sub.tls_key):
        raise ConfigError(file, "submission.tls_key", "tls_cert and tls_key go together")
    url = settings.database.url
    if url and not (sqlite_path(url) or url.startswith(("postgresql://", "postgres://"))):
        problem = f"expected empty, sqlite:PATH or postgresql://..., got {redacted_url(url)!r}"
        raise ConfigError(file, "database.url", problem)
    url = settings.redis.url
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        problem = (
            f"expected empty, redis://..., rediss://... or unix://..., got {redacted_url(url)!r}"
        )
        raise ConfigError(file, "redis.url", problem)


def _check_engine(engine: EngineSettings, file: str) -> None:
    _check_host_name(engine.hostname, file, "engine.hostname")
    if not engine.data_dir:
        raise ConfigError(file, "engine.data_dir", "expected a directory, got ''")
    if engine.restart_delay_max_seconds < engine.restart_delay_seconds:
        raise ConfigError(
            file,
            "engine.restart_delay_max_seconds",
            "expected at least engine.restart_delay_seconds",
        )


def _check_sources(settings: Settings, file: str) -> None:
    for plan_name, plan in settings.warmup_plans.items():
        key = f"warmup_plans.{plan_name}.daily"
        if not plan.daily:
            raise ConfigError(file, key, "expected at least one daily cap")
        for i, cap in enumerate(plan.daily):
            if cap < 1:
                raise ConfigError(file, f"{key}[{i}]", f"expected at least 1, got {cap!r}")
    plans = set(BUILTIN_WARMUP_PLANS) | set(settings.warmup_plans)
    for name, source in settings.sources.items():
        _check_ip_address(source.address, file, f"sources.{name}.address")
        _check_host_name(source.ehlo_hostname, file, f"sources.{name}.ehlo_hostname")
        if source.warmup and source.warmup not in plans:
            expected = f"expected empty or one of {', '.join(sorted(plans))}"
            raise ConfigError(file, f"sources.{name}.warmup", f"{expected}, got {source.warmup!r}")
    for pool_name, pool in settings.pools.items():
        key = f"pools.{pool_name}.sources"
        if not pool.sources:
            raise ConfigError(file, key, "expected at least one source")
        for source_name in pool.sources:
            if source_name not in settings.sources:
                raise ConfigError(file, key, f"unknown source {source_name!r}")


def _check_bounce(bounce: BounceSettings, file: str) -> None:
    """The return-path prefix is a host name; key ids are 1 to 8 of a-z, 0-9."""
    _check_host_name(bounce.return_path_prefix, file, "bounce.return_path_prefix")
    _check_key_ids("bounce", bounce.token_key_id, bounce.accepted_key_ids, file)


def _check_tracking_edge(tracking: TrackingSettings, file: str) -> None:
    """The edge's address, its key ids and its trusted proxies' networks."""
    if tracking.listen:
        _check_address(tracking.listen, file, "tracking.listen")
    _check_key_ids("tracking", tracking.token_key_id, tracking.accepted_key_ids, file)
    for i, text in enumerate(tracking.trusted_proxies):
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            problem = f"expected an IP address or network, got {text!r}"
            raise ConfigError(file, f"tracking.trusted_proxies[{i}]", problem) from None


def _check_key_ids(table: str, current: str, accepted: list[str], file: str) -> None:
    """Token key ids are 1 to 8 of a-z, 0-9."""
    keys = [(f"{table}.token_key_id", current)]
    keys += [(f"{table}.accepted_key_ids[{i}]", k) for i, k in enumerate(accepted)]
    for key, key_id in keys:
        if not KEY_ID.fullmatch(key_id):
            problem = f"expected a key id of 1 to 8 lowercase letters or digits, got {key_id!r}"
            raise ConfigError(file, key, problem)


def _check_tracking(settings: Settings, file: str) -> None:
    """The CNAME target and campaigns' tracking domains are host names (whether a
    campaign's is registered for its tenant is known only at run time), and the edge's
    settings are sound."""
    _check_tracking_edge(settings.tracking, file)
    if settings.tracking.cname_target:
        _check_host_name(settings.tracking.cname_target, file, "tracking.cname_target")
    for name, campaign in settings.campaigns.items():
        if campaign.tracking_domain:
            key = f'campaigns."{name}".tracking_domain'
            _check_host_name(campaign.tracking_domain, file, key)


def _check_routing(settings: Settings, file: str) -> None:
    """Tenants' and campaigns' pools exist and their priorities are priorities."""
    tables = [(f"tenants.{name}", t.pool, t.priority) for name, t in settings.tenants.items()]
    for name, c in settings.campaigns.items():
        tenant, colon, campaign = name.partition(":")
        if not (tenant and colon and campaign):
            problem = f"expected a table named TENANT:CAMPAIGN, got {name!r}"
            raise ConfigError(file, f"campaigns.{name}", problem)
        tables.append((f'campaigns."{name}"', c.pool, c.priority))
    for key, pool, priority in tables:
        inherits = key.startswith("campaigns.")
        if pool not in settings.pools and not (inherits and pool == ""):
            raise ConfigError(file, f"{key}.pool", f"unknown pool {pool!r}")
        if priority_value(priority) is None and not (inherits and priority == ""):
            problem = f"expected bulk, normal, transactional or a digit 0..9, got {priority!r}"
            raise ConfigError(file, f"{key}.priority", problem)


def _check_address(text: str, file: str, key: str) -> None:
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise ConfigError(file, key, str(exc)) from None


def is_host_name(name: str) -> bool:
    """Whether ``name`` is an RFC 1123 host name (ASCII; an IDN as its A-labels)."""
    return _HOST_NAME.fullmatch(name) is not None


def _check_host_name(name: str, file: str, key: str) -> None:
    if not is_host_name(name):
        problem = (
            "expected a host name of ASCII letters, digits, hyphens and dots "
            f"(an IDN as its xn-- form), got {name!r}"
        )
        raise ConfigError(file, key, problem)


def _check_ip_address(text: str, file: str, key: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(file, key, f"expected an IP address, got {text!r}") from None
