"""Imports go one way: config <- engine core <- edges <- engine.app (DESIGN.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGES = ("smtp_out", "bounce_in", "tracking_edge", "admin_api")
COMPOSITION = {"engine/app.py", "engine/cli.py", "engine/runner.py"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_config_imports_nothing_of_ours() -> None:
    for path in modules("config"):
        assert not imported_packages(path) & {"engine", *EDGES}, path


def test_engine_core_does_not_import_edges() -> None:
    for path in modules("engine"):
        if str(path.relative_to(ROOT)) in COMPOSITION:
            continue
        assert not imported_packages(path) & set(EDGES), path


@pytest.mark.parametrize("edge", EDGES)
def test_edges_do_not_import_each_other(edge: str) -> None:
    others = set(EDGES) - {edge}
    for path in modules(edge):
        assert not imported_packages(path) & others, path
