"""A campaign's recipient rows, checked as they stream in. Pure.

In: rows from a JSON list (``{"email": ..., "variables": {...}}``) or a CSV
(header ``email,var1,var2...``; each other column a variable), and the
variables the campaign's template uses. Out, one at a time: a
``CampaignRecipient`` to store or a ``BadRow`` (its line or index and why):
an address delivery would refuse, or a variable the template needs missing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from engine.model import CampaignRecipient
from engine.provisioning.suppression_csv import (
    ADDRESS_COLUMNS,
    BadRow,
    CsvHeaderError,
    CsvRecord,
    address_problem,
    read_records,
)


def checked(
    line: int, text: str, address: str, variables: Mapping[str, Any], needed: Collection[str]
) -> CampaignRecipient | BadRow:
    """The recipient of one row (its ``row`` is set when stored), or why not."""
    address = address.strip()
    problem = address_problem(address.lower())
    if problem is not None:
        return BadRow(line, text, problem)
    missing = sorted(name for name in needed if name not in variables)
    if missing:
        return BadRow(line, text, f"missing variable {', '.join(missing)}")
    return CampaignRecipient(0, address, dict(variables))


def json_rows(
    items: Iterable[Mapping[str, Any]], needed: Collection[str]
) -> Iterator[CampaignRecipient | BadRow]:
    """Each item of a JSON list, checked; a ``BadRow``'s line is the item's index."""
    for index, item in enumerate(items):
        variables = item.get("variables") or {}
        yield checked(
            index, str(item.get("email", "")), str(item.get("email", "")), variables, needed
        )


def csv_rows(lines: Iterable[str], needed: Collection[str]) -> Iterator[CampaignRecipient | BadRow]:
    """Each record of a CSV after its header, checked; ``CsvHeaderError`` when the header
    has no ``email`` column."""
    header, records = read_records(lines)
    found = [header.index(name) for name in ADDRESS_COLUMNS if name in header]
    if not found:
        raise CsvHeaderError(
            f"the header row has no 'email' column (it has: {', '.join(header) or 'nothing'})"
        )
    address_at = found[0]
    names = [(i, name) for i, name in enumerate(header) if i != address_at]
    for record in records:
        yield _csv_row(record, address_at, names, needed)


def _csv_row(
    record: CsvRecord | BadRow,
    address_at: int,
    names: list[tuple[int, str]],
    needed: Collection[str],
) -> CampaignRecipient | BadRow:
    if isinstance(record, BadRow):
        return record
    fields = record.fields
    if address_at >= len(fields):
        return BadRow(record.line, record.text, "no email column in this row")
    variables = {name: fields[i] for i, name in names if i < len(fields)}
    return checked(record.line, record.text, fields[address_at], variables, needed)
