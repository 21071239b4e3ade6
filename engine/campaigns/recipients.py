"""A campaign's recipient rows, checked as they stream in. Pure.

In: rows from a JSON list (``{"email": ..., "variables": {...}}``) or a CSV
(header ``email,var1,var2...``; each other column a variable), and the
variables the campaign's template uses. Out, one at a time: a
``CampaignRecipient`` to store or a ``BadRow`` (its line or index and why):
an address delivery would refuse, or a variable the template needs missing.

A JSON list is read from its text in chunks (``json_items``): each item is
decoded once it is whole, so memory holds one chunk and one item, not the
list. A list that cannot be read at all (not JSON, not a list, an item not an
object) is a ``RecipientListError`` naming where.
"""

from __future__ import annotations

import json
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


class RecipientListError(ValueError):
    """A JSON recipient list that cannot be read; ``field`` names where (``body``,
    ``[3]``, ``[3].variables``)."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


_WHITESPACE = " \t\n\r"


class _JsonText:
    """JSON text read from chunks: a buffer, a position in it, more read on demand."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._chunks = iter(chunks)
        self.text = ""
        self.at = 0
        self.ended = False

    def more(self) -> bool:
        """Read at least as much again as is left unread (so a long item costs linear
        time); False at the end of the text."""
        if self.ended:
            return False
        parts = [self.text[self.at :]]
        wanted, read = max(len(parts[0]), 1), 0
        while read < wanted:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.ended = True
                break
            parts.append(chunk)
            read += len(chunk)
        self.text, self.at = "".join(parts), 0
        return read > 0

    def peek(self) -> str:
        """The next character that is not white space (not consumed); ``""`` at the end."""
        while True:
            while self.at < len(self.text) and self.text[self.at] in _WHITESPACE:
                self.at += 1
            if self.at < len(self.text):
                return self.text[self.at]
            if not self.more():
                return ""

    def next_char(self) -> str:
        """The next character that is not white space (consumed); ``""`` at the end."""
        found = self.peek()
        self.at += len(found)
        return found

    def value(self, decoder: json.JSONDecoder) -> Any:
        """The JSON value at the next character that is not white space (consumed)."""
        self.peek()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.at)
            except json.JSONDecodeError as exc:
                if self.more():
                    continue
                raise RecipientListError(f"not JSON: {exc}") from None
            if end < len(self.text) or self.ended:  # a number may go on in the next chunk
                self.at = end
                return value
            self.more()


def json_items(chunks: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each item of the JSON list spelt by ``chunks``, as soon as it is read; a
    ``RecipientListError`` for text that is not a list of objects whose
    ``variables`` (when given) is an object."""
    source = _JsonText(chunks)
    decoder = json.JSONDecoder()
    if source.next_char() != "[":
        raise RecipientListError("a JSON list of recipients")
    if source.peek() == "]":
        source.next_char()
        _ended(source)
        return
    index = 0
    while True:
        item = source.value(decoder)
        if not isinstance(item, dict):
            raise RecipientListError("an object with an email", f"[{index}]")
        if not isinstance(item.get("variables", {}), dict):
            raise RecipientListError("an object", f"[{index}].variables")
        yield item
        index += 1
        separator = source.next_char()
        if separator == "]":
            _ended(source)
            return
        if separator != ",":
            raise RecipientListError(f"not JSON: expected ',' or ']' after item {index - 1}")


def _ended(source: _JsonText) -> None:
    if source.next_char():
        raise RecipientListError("not JSON: extra data after the list")


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
