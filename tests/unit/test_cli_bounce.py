"""``penguin bounce parse``: a file or standard input, as text or JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.cli import main

CORPUS = Path(__file__).parent.parent / "data" / "bounces"


def first(pattern: str) -> Path:
    return sorted(CORPUS.glob(pattern))[0]


def test_a_dsn_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    path = first("*-dsn-postfix.eml")
    expected = json.loads(path.with_suffix(".json").read_text())["recipients"][0]
    assert main(["bounce", "parse", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("delivery status notification [rfc3464], reported by ")
    line = f"  {expected['address']}  failed  {expected['status']}  {expected['category']}"
    assert line in out.splitlines()
    assert "    diagnostic: " in out and "    remote MTA: " in out


def test_json_from_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = first("*-arf-yahoo.eml").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["bounce", "parse", "-", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "feedback" and shown["recipients"] == []
    assert shown["feedback"]["feedback_type"] == "abuse"


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("*-autoreply.eml", "auto-reply, not a bounce: no failed recipients"),
        ("*-challenge.eml", "auto-reply, not a bounce: no failed recipients [challenge-response]"),
        ("*-other.eml", "not a bounce or complaint: no failed recipients"),
    ],
)
def test_not_bounces_say_so(pattern: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounce", "parse", str(first(pattern))]) == 0
    assert capsys.readouterr().out.startswith(says)


def test_operator_rules_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\ncategory = "Ours"\npattern = "."\n')
    config = tmp_path / "penguin.toml"
    config.write_text(f'[delivery]\nbounce_rules_file = "{rules}"\n')
    path = first("*-dsn-postfix.eml")
    assert main(["bounce", "parse", str(path), "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["recipients"][0]["category"] == "Ours"


def test_an_unreadable_file_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounce", "parse", "/no/such/file.eml"]) == 1
    assert (
        capsys.readouterr().err
        == "error: cannot read /no/such/file.eml: No such file or directory\n"
    )
