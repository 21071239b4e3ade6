"""One source of truth for settings: a runtime default equals the schema's.

Runtime objects are built from ``config.schema`` values; where a constructor
or function still has a default for a setting of the schema, it must be the
schema's default, so code that leaves it out behaves as the shipped config.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import schema
from engine.scheduler.sources import Source
from engine.smtp.server import SmtpServer
from engine.smtp.server_config import ServerConfig
from engine.store import open_store
from engine.store.postgres import PostgresStore
from tracking_edge.tokens import TrackingTokens

RUNTIME_PACKAGES = ("engine", "smtp_out", "bounce_in", "tracking_edge", "admin_api")

BUILT_FROM: dict[Callable[..., Any], type] = {
    ServerConfig: schema.SubmissionSettings,
    open_store: schema.DatabaseSettings,
    PostgresStore: schema.DatabaseSettings,
    Source: schema.SourceSettings,
    TrackingTokens: schema.TrackingSettings,
}
"""Each runtime callable with defaults named like settings, and the table they come from."""

NOT_SETTINGS = {
    "engine.smtp.server.SmtpServer.start": "port: the port to listen on, 0 for any",
    "engine.model.QueuedMessage": "priority: the message's own, 0 as the store's column",
    "engine.delivery.settling.RecordContext": "pool: the pool a record names, not a tenant's",
    "engine.scheduler.backoff.Level": "level: steps a target is slowed by, not the log level",
    "engine.scheduler.Dispatch": "pool: the pool its queue sends from, not a tenant's setting",
    "engine.runtime.http_serving.HttpService": (
        "trusted_proxies: None keeps uvicorn's default for the admin listener; "
        "the tracking edge passes its setting"
    ),
    "tracking_edge.tokens.TokenClaims": "url: the link a click token carries, not a database's",
    "tracking_edge.tokens.TrackingTokens.token": "url: the link of a click token",
    "admin_api.routes.webhooks.WebhookCreate": "enabled: a webhook's own, not [webhooks]'s",
    "admin_api.routes.webhooks.WebhookUpdate": "url, enabled: a webhook's, not settings",
    "engine.provisioning.webhooks.WebhookChange": "url, enabled: a webhook's, not settings",
    "admin_api.routes.suppressions.SuppressionsIn": "address: a suppressed one, not a source's",
    "engine.model.TenantOverrides": "pool, priority, quotas: None leaves the config's value",
    "engine.scheduler.tenant_settings.TenantQuotas": "daily: a tenant's quota, not a warmup plan",
    "admin_api.routes.operators.TenantSettingsIn": "a request body: None sets nothing",
    "admin_api.routes.operators.TenantCreate": "a request body: None sets nothing",
    "admin_api.routes.messages.MessageIn": "priority: the message's own, not its tenant's setting",
    "admin_api.routes.campaigns.CampaignIn": "pool, priority, tracking_domain: a campaign's own",
    "engine.campaigns.service.CampaignSpec": "pool, priority, tracking_domain: a campaign's own",
    "engine.rollup.service.StatsRollup": "lease_seconds: the rollup's lease, not a message's",
    "engine.submission.composition.Draft": "priority: the message's own, not its tenant's setting",
}
"""Callables whose parameters share a setting's name but are not that setting."""


def dotted(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def schema_defaults(table: type) -> dict[str, Any]:
    defaults = {}
    for f in dataclasses.fields(table):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


SETTING_NAMES = {
    name
    for table in vars(schema).values()
    if isinstance(table, type) and dataclasses.is_dataclass(table) and table is not schema.Settings
    for name in schema_defaults(table)
}


def parameter_defaults(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(function).parameters
    except ValueError:  # a class without a signature of its own (an exception type)
        return {}
    return {
        name: p.default
        for name, p in parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def runtime_callables() -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every class and function defined in the runtime packages, by dotted name."""
    for package_name in RUNTIME_PACKAGES:
        package = importlib.import_module(package_name)
        modules = [package] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, f"{package_name}.")
        ]
        for module in modules:
            for name, value in vars(module).items():
                if getattr(value, "__module__", None) != module.__name__:
                    continue
                if inspect.isfunction(value):
                    yield f"{module.__name__}.{name}", value
                elif inspect.isclass(value):
                    yield f"{module.__name__}.{name}", value
                    for method_name, method in vars(value).items():
                        if inspect.isfunction(method) and method_name != "__init__":
                            yield f"{module.__name__}.{name}.{method_name}", method


@pytest.mark.parametrize("function", list(BUILT_FROM), ids=dotted)
def test_runtime_defaults_equal_the_schema_defaults(function: Callable[..., Any]) -> None:
    table = BUILT_FROM[function]
    expected = schema_defaults(table)
    shared = {k: v for k, v in parameter_defaults(function).items() if k in expected}
    assert shared, f"{dotted(function)} has no default named like a setting of {table.__name__}"
    differing = {
        key: (value, expected[key]) for key, value in shared.items() if value != expected[key]
    }
    assert not differing, f"{dotted(function)}: runtime default vs schema default: {differing}"


def test_every_runtime_default_named_like_a_setting_is_checked() -> None:
    checked = {dotted(function) for function in BUILT_FROM}
    unchecked = sorted(
        name
        for name, function in runtime_callables()
        if name not in checked
        and name not in NOT_SETTINGS
        and SETTING_NAMES & set(parameter_defaults(function))
    )
    assert not unchecked, f"defaults named like settings, not compared with the schema: {unchecked}"


def test_the_discovery_sees_a_callable_with_setting_defaults() -> None:
    found = dict(runtime_callables())
    assert found["engine.smtp.server.SmtpServer.start"] is SmtpServer.start
    assert "pool_size" in parameter_defaults(found["engine.store.open_store"])
