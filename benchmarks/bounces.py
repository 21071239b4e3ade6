"""The bounce parser over the corpus: per-field accuracy and parse speed on one core.

Reads every ``.eml`` of ``tests/data/bounces/`` with its expected ``.json``
and parses it with :func:`bounce_in.parsing.parse_report` and the built-in
classifier. Accuracy, per field, is the share of expected values the parser
gives: ``kind`` and ``feedback type`` per message; ``address``, ``status``,
``action`` and ``category`` per expected recipient (a recipient missing from
the report counts as wrong in every field). Speed is messages parsed per
second in this one process (one core): each pass parses the whole corpus
once, the median of ``--passes`` passes is reported. Time is the CPU time of
this process, so a machine busy with other work does not lower the figure.

Prints a table; results go into ``benchmarks/RESULTS.md`` by hand.

    python -m benchmarks.bounces [--passes 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bounce_in.parsing import parse_report
from bounce_in.report import BounceReport
from engine.delivery.bounce_classify import BounceClassifier

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "bounces"
FIELDS = ("kind", "address", "status", "action", "category", "feedback type")


def load() -> list[tuple[bytes, dict[str, Any]]]:
    return [
        (eml.read_bytes(), json.loads(eml.with_suffix(".json").read_text(encoding="utf-8")))
        for eml in sorted(CORPUS.glob("*.eml"))
    ]


def score(
    report: BounceReport, want: dict[str, Any], right: Counter[str], total: Counter[str]
) -> None:
    """Adds one message's right and expected counts per field."""
    total["kind"] += 1
    right["kind"] += report.kind.value == want["kind"]
    if "feedback_type" in want:
        total["feedback type"] += 1
        got = report.feedback.feedback_type if report.feedback else None
        right["feedback type"] += got == want["feedback_type"]
    for i, expected in enumerate(want["recipients"]):
        found = report.recipients[i] if i < len(report.recipients) else None
        values = (
            {}
            if found is None
            else {
                "address": found.address,
                "status": found.status,
                "action": found.action.value,
                "category": found.category,
            }
        )
        for name in ("address", "status", "action", "category"):
            total[name] += 1
            right[name] += values.get(name) == expected[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--passes", type=int, default=7, help="timed passes over the corpus")
    args = parser.parse_args()
    corpus = load()
    classifier = BounceClassifier()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for raw, want in corpus:
        score(parse_report(raw, classifier), want, right, total)
    rates = []
    for _ in range(args.passes):
        started = time.process_time()
        for raw, _want in corpus:
            parse_report(raw, classifier)
        rates.append(len(corpus) / (time.process_time() - started))
    print(
        f"corpus: {len(corpus)} messages, {sum(len(w['recipients']) for _, w in corpus)} "
        f"recipients; Python {platform.python_version()}, nproc {os.cpu_count()}"
    )
    print("| field | right / expected | accuracy |")
    print("|---|---:|---:|")
    for name in FIELDS:
        share = 100 * right[name] / total[name] if total[name] else 100.0
        print(f"| {name} | {right[name]} / {total[name]} | {share:.1f}% |")
    print(
        f"\nspeed: {statistics.median(rates):,.0f} bounces/s (median of {args.passes} passes; "
        f"min {min(rates):,.0f}, max {max(rates):,.0f})"
    )


if __name__ == "__main__":
    main()
