"""Imports go one way, package by package, with no exception by name:

    config <- core and protocol <- services <- edges <- composition

A *unit* is a top-level package or a sub-package of ``engine`` (a module at
the top of ``engine`` belongs to the core, except the composition root's).
A unit may import units of lower layers, and units of its own layer when no
cycle results; edges never import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "engine", "smtp_out", "bounce_in", "tracking_edge", "admin_api")
EDGES = ("smtp_out", "bounce_in", "tracking_edge", "admin_api")
COMPOSITION = ("engine.cli", "engine.runtime")
LAYERS: dict[str, int] = {
    "config": 0,
    "engine": 1,  # the core: clock, model, sealing, header_section, the glossary
    "engine.smtp": 1,
    "engine.records": 1,
    "engine.stats": 1,
    "engine.store": 2,
    "engine.dkim": 2,
    "engine.submission": 2,
    "engine.delivery": 2,
    "engine.provisioning": 2,
    "engine.scheduler": 2,
    "engine.limits": 2,
    "engine.rollup": 2,
    "engine.webhooks": 2,
    "engine.campaigns": 2,
    **dict.fromkeys(EDGES, 3),
    **dict.fromkeys(COMPOSITION, 4),
}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] != "engine" or len(parts) == 1:
        return parts[0]
    candidate = f"engine.{parts[1]}"
    return candidate if candidate in LAYERS else "engine"


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """The absolute modules of our packages that ``path`` imports."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def unit_graph() -> dict[str, set[str]]:
    """Each unit and the other units it imports."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            unit = unit_of(module_name(path))
            edges = graph.setdefault(unit, set())
            edges.update(unit_of(name) for name in imports(path))
            edges.discard(unit)
    return graph


GRAPH = unit_graph()


def test_every_unit_has_a_layer() -> None:
    assert set(GRAPH) <= set(LAYERS), set(GRAPH) - set(LAYERS)


@pytest.mark.parametrize("unit", sorted(GRAPH))
def test_imports_go_down_the_layers(unit: str) -> None:
    upward = {other for other in GRAPH[unit] if LAYERS[other] > LAYERS[unit]}
    assert not upward, f"{unit} (layer {LAYERS[unit]}) imports {upward}"


@pytest.mark.parametrize("edge", EDGES)
def test_edges_do_not_import_each_other(edge: str) -> None:
    assert not GRAPH.get(edge, set()) & set(EDGES)


def test_no_cycle_between_units() -> None:
    done: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, "import cycle: " + " -> ".join((*path, unit))
        if unit in done:
            return
        for other in sorted(GRAPH.get(unit, ())):
            visit(other, (*path, unit))
        done.add(unit)

    for unit in sorted(GRAPH):
        visit(unit, ())


def test_the_checks_see_a_violation() -> None:
    """The graph is read from real imports: the composition root imports edges."""
    assert "smtp_out" in GRAPH["engine.runtime"]
    assert unit_of("engine.smtp.reader") == "engine.smtp"
    assert unit_of("engine.clock") == "engine"
