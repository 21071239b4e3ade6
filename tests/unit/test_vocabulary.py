"""One SMTP vocabulary: engine.smtp.reply is the only home of a reply type and of
the enhanced status code's syntax."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "engine", "smtp_out", "bounce_in", "tracking_edge", "admin_api")
HOME = ROOT / "engine" / "smtp" / "reply.py"
REPLY_CLASS = re.compile(r"\w*(Reply|Response)")
PARSER_NAME = re.compile(r"\w*(parse|split)_enhanced\w*")
ENHANCED_SYNTAX = re.compile(r"\[245\]|\\d\{1,3\}\\\.\\d\{1,3\}")
"""Source text of a regex that spells out ``class.subject.detail``: ``[245]`` or
``\\d{1,3}\\.\\d{1,3}``."""


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from (path for path in sorted((ROOT / package).rglob("*.py")) if path != HOME)


def test_no_other_reply_class() -> None:
    found = [
        f"{path.relative_to(ROOT)}: class {node.name}"
        for path in sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and REPLY_CLASS.fullmatch(node.name)
        and not _is_exception(node)
    ]
    assert found == []


def _is_exception(node: ast.ClassDef) -> bool:
    """An error about replies (``MalformedReply``) is not a reply type."""
    return any(
        isinstance(b, ast.Name) and b.id.endswith(("Exception", "Error")) for b in node.bases
    )


def test_no_other_enhanced_code_parser() -> None:
    found = [
        f"{path.relative_to(ROOT)}: def {node.name}"
        for path in sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and PARSER_NAME.fullmatch(node.name)
    ]
    assert found == []


def test_no_other_enhanced_code_regex() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ENHANCED_SYNTAX.search(line)
    ]
    assert found == []


def test_the_home_holds_what_the_others_may_not() -> None:
    """The checks above look for the right things: they find them in their home."""
    text = HOME.read_text()
    tree = ast.parse(text)
    assert any(isinstance(n, ast.ClassDef) and n.name == "Reply" for n in ast.walk(tree))
    assert any(
        isinstance(n, ast.FunctionDef) and PARSER_NAME.fullmatch(n.name) for n in ast.walk(tree)
    )
    assert ENHANCED_SYNTAX.search(text)
