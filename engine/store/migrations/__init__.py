"""Schema migrations: numbered, forward-only SQL files per backend.

``sqlite/NNNN_name.sql`` and ``postgres/NNNN_name.sql`` are shipped as package
data. ``migration_files(backend)`` lists them in order as ``(number, sql)``;
each store applies the pending ones, one transaction per file, and records
the number in its ``schema_migrations`` table. Numbers are unique and never
reused; an applied file is never edited.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

Backend = Literal["sqlite", "postgres"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files(backend: Backend) -> list[tuple[int, str]]:
    """The backend's migrations as ``(number, sql)``, lowest number first."""
    found: dict[int, str] = {}
    for entry in resources.files(__name__).joinpath(backend).iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        number = int(match.group(1))
        if number in found:
            raise RuntimeError(f"duplicate {backend} migration number {number}")
        found[number] = entry.read_text(encoding="utf-8")
    return sorted(found.items())
