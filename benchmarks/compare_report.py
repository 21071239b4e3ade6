"""Samples of a before/after sitting and the report made of them (pure: text in, text out).

A ``Sample`` is one figure of one run: who ran it (``before``, ``after`` or
``postfix``), which benchmark (``accept``: accepted msgs/s; ``e2e``:
delivered msgs/s end to end, with DKIM), in which setup (``1 process``,
``split``, ``50 sessions`` ...), on which backend, size and mode, in which
round. The parsers read what ``benchmarks.accept`` and
``benchmarks.throughput`` print (a Markdown table of medians; with
``--runs 1`` the median is the run) and the rows that
``run-postfix-bench.sh`` appends to its ``smtp-runs.tsv``. ``report`` turns
the samples into Markdown: each revision's medians, its ratio to Postfix at
Postfix's best session count, and after / before.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PEER = "postfix"
SIDES = ("before", "after")
BENCHES = {"accept": "accept", "e2e": "end to end"}


@dataclass(frozen=True)
class Sample:
    """One figure of one run, in msgs/s."""

    who: str
    bench: str
    setup: str
    backend: str
    size: int
    mode: str
    round: int
    rate: float
    disturbed: bool = False

    @property
    def figure(self) -> tuple[str, str, str, int, str]:
        return self.bench, self.setup, self.backend, self.size, self.mode


def markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in ``text``, keyed by its header."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if all(set(cell) <= set("-:") for cell in cells):
            continue
        rows.append(dict(zip(header, cells, strict=False)))
    return rows


def number(cell: str) -> float:
    """``**1,234**`` -> 1234.0."""
    return float(cell.replace("*", "").replace(",", "").split()[0])


def accept_samples(who: str, setup: str, round_: int, text: str) -> list[Sample]:
    """The table printed by ``benchmarks.accept``."""
    return [
        Sample(
            who,
            "accept",
            setup,
            row["backend"],
            int(row["size"]),
            row["mode"],
            round_,
            number(row["median accepted msgs/s"]),
            disturbed=int(row.get("disturbed") or 0) > 0,
        )
        for row in markdown_rows(text)
    ]


def throughput_samples(who: str, setup: str, round_: int, text: str) -> list[Sample]:
    """The table printed by ``benchmarks.throughput`` (one message per connection)."""
    return [
        Sample(
            who,
            "e2e",
            setup,
            row["backend"],
            int(row["size"]),
            "conn",
            round_,
            number(row["delivered msgs/s"]),
        )
        for row in markdown_rows(text)
    ]


def peer_samples(round_: int, tsv_rows: Iterable[dict[str, str]]) -> tuple[list[Sample], list[str]]:
    """Samples from ``smtp-runs.tsv`` rows of one invocation, and the rows that failed.

    A run retried because it was disturbed appears more than once; the last
    attempt counts, as in our benchmarks. Label ``postfix/nodkim/MODE`` gives
    the accept rate (N / time until smtp-source ends), ``postfix/dkim/MODE``
    the end-to-end rate (N / time until the sink has the N-th message).
    """
    last: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in tsv_rows:
        last[(row["label"], row["size"], row["sessions"])] = row
    samples, failed = [], []
    for (label, size, sessions), row in last.items():
        _, config, mode = label.split("/")
        if row["status"] not in ("ok", "disturbed"):
            failed.append(f"{label} {size} B {sessions} sessions: {row['status']}")
            continue
        dkim = config == "dkim"
        samples.append(
            Sample(
                PEER,
                "e2e" if dkim else "accept",
                f"{sessions} sessions",
                "",
                int(size),
                mode,
                round_,
                float(row["msgs_per_s" if dkim else "inject_per_s"]),
                disturbed=row["status"] == "disturbed",
            )
        )
    return samples, failed


def tsv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def size_label(size: int) -> str:
    return f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"


def _runs(samples: Sequence[Sample]) -> str:
    rates = ", ".join(f"{s.rate:,.0f}{'*' if s.disturbed else ''}" for s in samples)
    return f"{statistics.median(s.rate for s in samples):,.0f} ({rates})"


def _group(
    samples: Iterable[Sample],
) -> dict[tuple[str, tuple[str, str, str, int, str]], list[Sample]]:
    groups: dict[tuple[str, tuple[str, str, str, int, str]], list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.round):
        groups.setdefault((sample.who, sample.figure), []).append(sample)
    return groups


def best_peer(
    samples: Iterable[Sample], bench: str, size: int, mode: str
) -> tuple[float, str] | None:
    """Postfix's highest median for this case over its session counts, and that setup."""
    medians = [
        (statistics.median(s.rate for s in group), figure[1])
        for (who, figure), group in _group(samples).items()
        if who == PEER and (figure[0], figure[3], figure[4]) == (bench, size, mode)
    ]
    return max(medians) if medians else None


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours is not None and theirs else "n/a"


def report(samples: Sequence[Sample]) -> str:
    """Medians per figure for both revisions, their ratios to Postfix and after / before.

    Figures keep the order in which they were first measured, accept before end to end.
    """
    groups = _group(samples)
    seen = list(dict.fromkeys(s.figure for s in samples if s.who != PEER))
    figures = sorted(seen, key=lambda f: (list(BENCHES).index(f[0]), f[1], seen.index(f)))
    lines = [
        "| figure | Postfix, msgs/s | before, msgs/s (runs) | before / Postfix "
        "| after, msgs/s (runs) | after / Postfix | after / before |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for figure in figures:
        bench, setup, backend, size, mode = figure
        peer = best_peer(samples, bench, size, "conn" if bench == "e2e" else mode)
        peer_rate = peer[0] if peer else None
        medians: dict[str, float | None] = {}
        cells = []
        for side in SIDES:
            group = groups.get((side, figure), [])
            medians[side] = statistics.median(s.rate for s in group) if group else None
            cells += [_runs(group) if group else "n/a", _ratio(medians[side], peer_rate)]
        peer_cell = f"{peer[0]:,.0f} ({peer[1]})" if peer else "n/a"
        name = f"{BENCHES[bench]}, {setup}, {backend}, {size_label(size)}"
        name += f", {mode}" if bench == "accept" else ""
        lines.append(
            f"| {name} | {peer_cell} | {' | '.join(cells)} "
            f"| {_ratio(medians['after'], medians['before'])} |"
        )
    return "\n".join(lines)


def peer_report(samples: Sequence[Sample]) -> str:
    """Postfix at every session count: medians (runs)."""
    lines = [
        "| Postfix | size | mode | setup | msgs/s (runs) |",
        "|---|---|---|---|---:|",
    ]
    for (who, figure), group in sorted(_group(samples).items(), key=lambda item: item[0][1]):
        if who != PEER:
            continue
        bench, setup, _, size, mode = figure
        what = "no milter, accepted" if bench == "accept" else "+ OpenDKIM, delivered"
        lines.append(f"| {what} | {size_label(size)} | {mode} | {setup} | {_runs(group)} |")
    return "\n".join(lines)


def samples_tsv(samples: Iterable[Sample]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(
        ["who", "bench", "setup", "backend", "size", "mode", "round", "rate", "disturbed"]
    )
    for s in samples:
        row = [s.who, s.bench, s.setup, s.backend, s.size, s.mode, s.round, f"{s.rate:.1f}"]
        writer.writerow([*row, int(s.disturbed)])
    return out.getvalue()
