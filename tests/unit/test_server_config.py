"""ServerConfig takes what the config schema has from the schema, defaults included."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from config.schema import SubmissionSettings
from engine.smtp.server_config import ServerConfig

SHARED = sorted(
    {field.name for field in dataclasses.fields(ServerConfig)}
    & {field.name for field in dataclasses.fields(SubmissionSettings)}
)


def default(cls: type, name: str) -> Any:
    [field] = [field for field in dataclasses.fields(cls) if field.name == name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def other_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    return value + 1 if isinstance(value, int) else value * 2 + 0.5


def test_the_settings_it_shares_with_the_schema() -> None:
    assert SHARED == [
        "allow_plaintext_auth_on_loopback",
        "data_timeout_seconds",
        "idle_timeout_seconds",
        "max_commands",
        "max_message_bytes",
        "max_recipients",
        "max_sessions",
    ]


@pytest.mark.parametrize("name", SHARED)
def test_a_runtime_default_is_the_schema_default(name: str) -> None:
    assert default(ServerConfig, name) == default(SubmissionSettings, name)


def test_from_settings_takes_every_shared_value_from_the_table() -> None:
    table = SubmissionSettings(
        **{name: other_value(default(SubmissionSettings, name)) for name in SHARED}
    )
    config = ServerConfig.from_settings(
        "mx.test", table, tls_context=None, auth_enabled=True, require_tls_for_auth=False
    )
    assert {name: getattr(config, name) for name in SHARED} == {
        name: getattr(table, name) for name in SHARED
    }
    assert (config.hostname, config.auth_enabled, config.require_tls_for_auth) == (
        "mx.test",
        True,
        False,
    )
