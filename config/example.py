"""Render the documented default config from the schema.

``config/penguin.toml`` is this output; a test keeps the two equal, so every
setting is documented in one place, the schema.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from config.schema import Settings


def render_example() -> str:
    """The default configuration as commented TOML."""
    lines = [
        "# PenguinMails engine configuration.",
        "# Generated from config/schema.py by `penguin config example`; every key is optional.",
        "# Relative paths are relative to the directory of this file when it is loaded with",
        "# --config (or PENGUIN_CONFIG); with no config file, to the working directory.",
    ]
    defaults = Settings()
    for table in dataclasses.fields(Settings):
        value = getattr(defaults, table.name)
        if isinstance(value, dict) and not value:
            lines += ["", f"# {table.metadata['doc']} None by default; for example:"]
            lines += [f"# [{table.name}.NAME]"]
            keys = _keys(table.metadata["item"]())
            lines += [line if line.startswith("#") else f"# {line}" for line in keys]
        elif isinstance(value, dict):
            for item_name, item in value.items():
                lines += ["", f"# {table.metadata['doc']}", f"[{table.name}.{item_name}]"]
                lines += _keys(item)
        else:
            lines += ["", f"# {table.metadata['doc']}", f"[{table.name}]"]
            lines += _keys(value)
    return "\n".join(lines) + "\n"


def _keys(obj: Any) -> list[str]:
    out: list[str] = []
    for f in dataclasses.fields(obj):
        meta = f.metadata
        bounds = []
        if meta.get("min") is not None:
            bounds.append(f"min {meta['min']:g}")
        if meta.get("max") is not None:
            bounds.append(f"max {meta['max']:g}")
        if meta.get("choices"):
            bounds.append("one of " + ", ".join(meta["choices"]))
        suffix = f" ({'; '.join(bounds)})" if bounds else ""
        out.append(f"# {meta['doc']}{suffix}")
        value = getattr(obj, f.name)
        out.append(f"# {f.name} = (unset)" if value is None else f"{f.name} = {_toml(value)}")
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r}")
