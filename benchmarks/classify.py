"""Bounce classification against labelled real-world diagnostics, before and after.

Reads ``tests/data/classify_diagnostics.tsv`` (reply text, stage or ``-``,
expected category: replies and DSN diagnostic codes written from the
providers' and MTAs' documented texts) and classifies each line with two
classifiers: the current ``engine.delivery.bounce_classify`` and the module as
it was at ``--before`` (a git revision, read with ``git show``; by default the
commit before the rules were reworked). Prints, as a Markdown table, each
expected category's count and the share of lines each classifier agrees on,
then the totals and both classifiers' speed.

Run: ``python -m benchmarks.classify [--before REV] [--data PATH]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from engine.delivery.bounce_classify import BounceClassifier
from engine.smtp.reply import Reply, Stage, split_enhanced_code

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "classify_diagnostics.tsv"
MODULE = "engine/delivery/bounce_classify.py"
BEFORE = "09f11de"
"""The last commit with the classifier the issue measured."""


class Labelled(NamedTuple):
    reply: Reply
    expected: str


def parse_reply(line: str, stage: Stage | None) -> Reply:
    """``"550 5.1.1 text"`` as a Reply (a leading code of three digits, then an
    optional enhanced status code)."""
    code_text, _, rest = line.partition(" ")
    enhanced, text = split_enhanced_code(rest)
    return Reply(int(code_text), "" if enhanced is None else str(enhanced), text, stage)


def load(path: Path) -> list[Labelled]:
    """The labelled lines of a diagnostics file (after its header line)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        text, stage, expected = line.split("\t")
        reply = parse_reply(text, None if stage == "-" else Stage(stage))
        rows.append(Labelled(reply, expected))
    return rows


def old_classifier(revision: str) -> Callable[[Reply], str]:
    """The ``classify`` of the module at ``revision``, loaded from git."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{MODULE}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("bounce_classify_before")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{revision}:{MODULE}", "exec"), module.__dict__)
    classifier = module.BounceClassifier([])
    classify: Callable[[Reply], str] = classifier.classify
    return classify


def agreement(rows: Sequence[Labelled], classify: Callable[[Reply], str]) -> Counter[str]:
    """Per expected category, the lines ``classify`` agrees on."""
    agreed: Counter[str] = Counter()
    for row in rows:
        if classify(row.reply) == row.expected:
            agreed[row.expected] += 1
    return agreed


def speed(rows: Sequence[Labelled], classify: Callable[[Reply], str], seconds: float) -> float:
    """Classifications per second over about ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for row in rows:
            classify(row.reply)
        done += len(rows)
    return done / (time.perf_counter() - start)


def _share(agreed: int, total: int) -> str:
    return f"{100 * agreed / total:.0f}% ({agreed})"


def table(rows: Sequence[Labelled], before: Counter[str], after: Counter[str]) -> str:
    """The Markdown table of per-category agreement."""
    totals = Counter(row.expected for row in rows)
    lines = ["| category | lines | before | after |", "|---|---:|---:|---:|"]
    for category in sorted(totals):
        n = totals[category]
        lines.append(
            f"| {category} | {n} | {_share(before[category], n)} | {_share(after[category], n)} |"
        )
    n = len(rows)
    lines.append(
        f"| **all** | {n} | {_share(sum(before.values()), n)} | {_share(sum(after.values()), n)} |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the old classifier")
    parser.add_argument("--data", type=Path, default=DATA, help="labelled diagnostics (TSV)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time for the speed figure")
    args = parser.parse_args(argv)
    rows = load(args.data)
    current, old = BounceClassifier().classify, old_classifier(args.before)
    before, after = agreement(rows, old), agreement(rows, current)
    print(table(rows, before, after))
    rates = (speed(rows, classify, args.seconds) for classify in (old, current))
    print("\nclassifications/s on one core: before {:,.0f}, after {:,.0f}".format(*rates))
    misses = [row for row in rows if current(row.reply) != row.expected]
    for row in misses:
        print(f"miss: expected {row.expected}, got {current(row.reply)}: {row.reply}")


if __name__ == "__main__":
    main()
