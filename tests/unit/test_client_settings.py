"""The SMTP client's settings come from the ``[delivery]`` schema and from nowhere else."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from config.schema import DeliverySettings
from smtp_out.settings import ClientSettings

CLIENT_FIELDS = [field.name for field in dataclasses.fields(ClientSettings)]
SCHEMA_DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in dataclasses.fields(DeliverySettings)
}


def test_client_settings_have_no_defaults_of_their_own() -> None:
    restated = [
        field.name
        for field in dataclasses.fields(ClientSettings)
        if field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    ]
    assert restated == []


@pytest.mark.parametrize("name", CLIENT_FIELDS)
def test_runtime_defaults_are_the_schema_defaults(name: str) -> None:
    assert name in SCHEMA_DEFAULTS, f"{name} is not a [delivery] setting"
    assert getattr(ClientSettings.from_delivery(DeliverySettings()), name) == SCHEMA_DEFAULTS[name]


def test_every_client_setting_follows_the_config() -> None:
    changed: dict[str, Any] = {name: SCHEMA_DEFAULTS[name] + 1 for name in CLIENT_FIELDS}
    client = ClientSettings.from_delivery(DeliverySettings(**changed))
    assert {name: getattr(client, name) for name in CLIENT_FIELDS} == changed
