"""Declared dependencies are what the code imports.

``[project].dependencies`` are exactly the distributions the runtime packages
import; the ``test`` extra holds what only the tests and benchmarks import,
among them the independent peers our code is checked against: a DKIM
verifier (dkimpy), an SMTP server (aiosmtpd) and an SMTP client (aiosmtplib).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("config", "engine", "smtp_out", "bounce_in", "tracking_edge", "admin_api")
NOT_RUNTIME = ("tests", "benchmarks")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INDEPENDENT_PEERS = {"dkimpy", "aiosmtpd", "aiosmtplib"}

USED_WITHOUT_IMPORT = {
    "pytest-asyncio": "pytest plugin: asyncio_mode = auto",
    "pytest-xdist": "pytest plugin: make test runs the suite on several workers",
    "pynacl": "dkimpy verifies Ed25519 signatures with it",
}
"""Test dependencies no ``import`` names, and what uses them."""


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: Iterable[str]) -> set[str]:
    """The distribution names of requirement specifiers like ``uvicorn[standard]>=0.54,<1``."""
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(normalized(match.group(0)))
    return names


RUNTIME_DEPENDENCIES = requirement_names(PROJECT["dependencies"])
TEST_DEPENDENCIES = requirement_names(PROJECT["optional-dependencies"]["test"])


def imported_distributions(packages: Iterable[str]) -> dict[str, set[str]]:
    """Each third-party distribution ``packages`` import, with the files importing it."""
    ours = {*RUNTIME, *NOT_RUNTIME}
    providers = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in ours or top in sys.stdlib_module_names:
                        continue
                    for distribution in providers.get(top, [f"<not installed: {top}>"]):
                        name = normalized(distribution)
                        found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


RUNTIME_IMPORTS = imported_distributions(RUNTIME)
TEST_IMPORTS = imported_distributions(NOT_RUNTIME)


def test_runtime_code_imports_only_runtime_dependencies() -> None:
    undeclared = {
        name: files for name, files in RUNTIME_IMPORTS.items() if name not in RUNTIME_DEPENDENCIES
    }
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"


def test_every_runtime_dependency_is_imported_by_runtime_code() -> None:
    unused = RUNTIME_DEPENDENCIES - set(RUNTIME_IMPORTS)
    assert not unused, f"in [project].dependencies but imported by no runtime module: {unused}"


def test_tests_and_benchmarks_import_only_declared_dependencies() -> None:
    declared = RUNTIME_DEPENDENCIES | TEST_DEPENDENCIES
    undeclared = {name: files for name, files in TEST_IMPORTS.items() if name not in declared}
    assert not undeclared, f"imported but declared nowhere: {undeclared}"


def test_every_test_dependency_is_used() -> None:
    unused = TEST_DEPENDENCIES - set(TEST_IMPORTS) - set(USED_WITHOUT_IMPORT)
    assert not unused, f"in the test extra but used by no test or benchmark: {unused}"


def test_independent_peers_are_test_dependencies_only() -> None:
    assert INDEPENDENT_PEERS <= TEST_DEPENDENCIES
    assert not INDEPENDENT_PEERS & RUNTIME_DEPENDENCIES
    assert set(TEST_IMPORTS) >= INDEPENDENT_PEERS, "each peer is used by a test"


def test_requirement_names_and_imports_are_read() -> None:
    assert requirement_names(["uvicorn[standard]>=0.54,<1", "PyNaCl>=1.6"]) == {
        "uvicorn",
        "pynacl",
    }
    assert "engine/runtime/runner.py" in RUNTIME_IMPORTS["uvloop"]
    assert "dnspython" in RUNTIME_IMPORTS
