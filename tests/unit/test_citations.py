"""The code cites facts by their public source, never by a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("config", "engine", "smtp_out", "bounce_in", "tracking_edge", "admin_api", "tests")
OUTSIDE = re.compile(r"compat\.md|DESIGN\.md|STYLE\.md|\.\./shared\b|/work/shared\b")
THIS_FILE = Path(__file__).resolve()


def sources() -> list[Path]:
    files = [path for package in CODE for path in (ROOT / package).rglob("*.py")]
    files += [ROOT / "README.md", ROOT / "config" / "penguin.toml"]
    return sorted(path for path in files if path.resolve() != THIS_FILE)


def test_no_citation_of_a_file_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not found, found


def test_the_check_sees_a_citation() -> None:
    assert OUTSIDE.search("after KumoMTA (``compat.md``)")
    assert OUTSIDE.search("see ../shared/reference")
    assert not OUTSIDE.search("https://docs.kumomta.com/reference/log_record/")
