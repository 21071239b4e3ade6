"""How many engine processes `penguin run` starts for a role when the config says 0."""

from __future__ import annotations

import os

import pytest

from config.loader import parse_settings
from engine.cli import engine_processes

CPUS = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("config", "role", "delivering", "expected"),
    [
        ({}, "all", 1, max(1, CPUS - 1)),  # the default: accepting workers beside one deliverer
        ({}, "submission", 0, CPUS),
        ({}, "delivery", 0, 1),  # limits kept in process: one deliverer
        ({}, "all", 0, 1),
        ({"redis": {"url": "redis://127.0.0.1:6379/0"}}, "delivery", 0, CPUS),
        ({"redis": {"url": "redis://127.0.0.1:6379/0"}}, "all", 0, CPUS),
        ({"engine": {"processes": 3}}, "delivery", 0, 3),
        ({}, "tracking", 0, 2 if CPUS > 1 else 1),  # the edge, its flusher on another core
    ],
)
def test_auto_processes_never_split_limits_kept_in_process(
    config: dict[str, object], role: str, delivering: int, expected: int
) -> None:
    assert engine_processes(parse_settings(config), role, delivering) == expected
