"""The bounce corpus, table-driven: every message reads as its expected ``.json`` says.

``tests/data/bounces/`` holds RFC 3464 reports, plain-text bounces of many
MTAs and providers, delay notices, auto-replies, feedback reports and a few
ordinary messages (see ``generate.py`` there). Kind, recipients, status,
action, feedback type and the returned message's Message-ID must all agree,
and each recipient's category (the engine's classifier) with the person's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bounce_in.parsing import read_report
from bounce_in.report import BounceReport
from engine.delivery.bounce_classify import BounceClassifier

CORPUS = Path(__file__).parent.parent / "data" / "bounces"
FILES = sorted(CORPUS.glob("*.eml"))
CLASSIFIER = BounceClassifier()


def expected(eml: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(eml.with_suffix(".json").read_text(encoding="utf-8"))
    return loaded


def parsed(eml: Path) -> BounceReport:
    return read_report(eml.read_bytes(), CLASSIFIER)


def test_the_corpus_is_large_and_varied() -> None:
    assert len(FILES) >= 300
    kinds = {expected(f)["kind"] for f in FILES}
    assert kinds == {"dsn", "feedback", "auto_reply", "other"}
    raw = [f.read_bytes() for f in FILES]
    assert any(b"\r\n" in r for r in raw) and any(b"\r" in r and b"\n" not in r for r in raw)
    assert all(any(enc in r for r in raw) for enc in (b"base64", b"quoted-printable"))


@pytest.mark.parametrize("eml", FILES, ids=lambda p: p.stem)
def test_reads_as_expected(eml: Path) -> None:
    want = expected(eml)
    report = parsed(eml)
    assert report.kind.value == want["kind"]
    got = [(r.address, r.status, r.action.value) for r in report.recipients]
    assert got == [(r["address"], r["status"], r["action"]) for r in want["recipients"]]
    if "feedback_type" in want:
        assert report.feedback is not None
        assert report.feedback.feedback_type == want["feedback_type"]
        assert report.feedback.original_rcpt_to == want["original_rcpt_to"]
    if "original_message_id" in want:
        assert report.original is not None
        assert report.original.message_id == want["original_message_id"]
    if want["kind"] != "dsn":
        assert report.failed == ()


_WITH_RECIPIENTS = [f for f in FILES if expected(f)["recipients"]]


@pytest.mark.parametrize("eml", _WITH_RECIPIENTS, ids=lambda p: p.stem)
def test_category(eml: Path) -> None:
    got = [r.category for r in parsed(eml).recipients]
    assert got == [r["category"] for r in expected(eml)["recipients"]]
