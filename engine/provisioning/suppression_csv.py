"""Suppression lists in CSV: lines in, rows to suppress and rows refused out.

Pure and streaming: ``read_rows`` takes the lines of a CSV text (RFC 4180;
a quoted field may span lines) one at a time and yields, for each record
after the header, either a ``CsvRow`` (an address, lower-cased, and its
reason) or a ``BadRow`` (its line number and why). The header row names the
columns, case-insensitively: ``address`` (required, also ``email``) and
``reason`` (optional; a row without one gets the default reason). Blank
lines are skipped. A header without an address column raises
``CsvHeaderError``: nothing can be read.

An address is refused when delivery would refuse it as a recipient
(``engine.submission.address_policy.recipient_problem``) or is longer than
RFC 5321 §4.5.3.1.3 allows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from engine.submission.address_policy import recipient_problem

ADDRESS_COLUMNS = ("address", "email")
MAX_ADDRESS = 254
MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    text: str
    error: str


class CsvHeaderError(ValueError):
    """The first row does not name an address column."""


def read_rows(lines: Iterable[str], default_reason: str) -> Iterator[CsvRow | BadRow]:
    """Each record of the CSV ``lines`` after its header, checked (see the module)."""
    header, records = read_records(lines)
    address_at, reason_at = _columns(header)
    for record in records:
        if isinstance(record, BadRow):
            yield record
        else:
            yield _row(record, address_at, reason_at, default_reason)


@dataclass(frozen=True, slots=True)
class CsvRecord:
    """One non-blank record after the header: the line it ended on and its fields."""

    line: int
    fields: list[str]

    @property
    def text(self) -> str:
        return ",".join(self.fields)


def read_records(lines: Iterable[str]) -> tuple[list[str], Iterator[CsvRecord | BadRow]]:
    """The header row's column names (stripped, lower-cased) and, streamed, each
    non-blank record after it (a ``BadRow`` when it is not CSV); ``CsvHeaderError``
    when there is no header row."""
    numbered = _Numbered(lines)
    reader = csv.reader(numbered, strict=True)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise CsvHeaderError("the CSV is empty; its first row names the columns") from None
    except csv.Error as exc:
        raise CsvHeaderError(f"the header row is not CSV: {exc}") from None
    return header, _records(numbered, reader)


def _records(numbered: _Numbered, reader: Iterator[list[str]]) -> Iterator[CsvRecord | BadRow]:
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(numbered.line, numbered.last.rstrip("\r\n"), f"not CSV: {exc}")
            continue
        if any(f.strip() for f in fields):
            yield CsvRecord(numbered.line, fields)


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be suppressed, or None."""
    if not address:
        return "no address"
    if len(address) > MAX_ADDRESS:
        return f"longer than {MAX_ADDRESS} characters"
    if any(ch.isspace() for ch in address):
        return "contains white space"
    problem = recipient_problem(address)
    return None if problem is None else problem.text.lower()


def _columns(header: list[str]) -> tuple[int, int | None]:
    found = [header.index(name) for name in ADDRESS_COLUMNS if name in header]
    if not found:
        raise CsvHeaderError(
            f"the header row has no 'address' column (it has: {', '.join(header) or 'nothing'})"
        )
    return found[0], header.index("reason") if "reason" in header else None


def _row(
    record: CsvRecord, address_at: int, reason_at: int | None, default_reason: str
) -> CsvRow | BadRow:
    fields, line = record.fields, record.line
    if address_at >= len(fields):
        return BadRow(line, record.text, "no address column in this row")
    address = fields[address_at].strip().lower()
    problem = address_problem(address)
    if problem is not None:
        return BadRow(line, record.text, problem)
    reason = fields[reason_at].strip() if reason_at is not None and reason_at < len(fields) else ""
    if len(reason) > MAX_REASON:
        return BadRow(line, record.text, f"reason longer than {MAX_REASON} characters")
    return CsvRow(line, address, reason or default_reason)


class _Numbered:
    """Lines passed through, counting them: the line a record ended on."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.line = 0
        self.last = ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        self.line += 1
        return self.last
