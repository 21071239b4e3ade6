"""Suppression CSV reading: header, rows, refused rows with their line numbers."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from engine.provisioning.suppression_csv import (
    BadRow,
    CsvHeaderError,
    CsvRow,
    address_problem,
    read_rows,
)


def rows(text: str, reason: str = "import") -> list[CsvRow | BadRow]:
    return list(read_rows(io.StringIO(text, newline=""), reason))


def test_rows_have_their_address_lower_cased_and_their_reason_or_the_default() -> None:
    text = "Reason,Address\r\nbounced,Ann@Example.COM\r\n,bob@example.com\r\n"
    assert rows(text) == [
        CsvRow(2, "ann@example.com", "bounced"),
        CsvRow(3, "bob@example.com", "import"),
    ]


def test_an_address_column_alone_and_an_email_column_are_read() -> None:
    assert rows("address\nann@example.com\n\n  \ncarl@example.com") == [
        CsvRow(2, "ann@example.com", "import"),
        CsvRow(5, "carl@example.com", "import"),
    ]
    assert rows("name,email\nAnn,ann@example.com\n") == [CsvRow(2, "ann@example.com", "import")]


def test_refused_rows_say_their_line_and_why() -> None:
    text = (
        "address,reason\n"
        "ann@example.com,ok\n"
        "not-an-address,x\n"
        '"multi\nline@example.com",x\n'
        "user%other@example.com,x\n"
        "bob@localhost,x\n"
        f"{'a' * 250}@example.com,x\n"
        "carl@example.com," + "r" * 201 + "\n"
        "dora@example.com\n"
    )
    got = rows(text)
    assert got[0] == CsvRow(2, "ann@example.com", "ok")
    assert [(r.line, r.error) for r in got[1:] if isinstance(r, BadRow)] == [
        (3, "recipient domain must be a fully qualified domain name"),
        (5, "contains white space"),
        (6, "relay-style or routed addresses are not accepted"),
        (7, "recipient domain must be a fully qualified domain name"),
        (8, "longer than 254 characters"),
        (9, "reason longer than 200 characters"),
    ]
    assert got[-1] == CsvRow(10, "dora@example.com", "import")
    assert isinstance(got[1], BadRow)
    assert got[1].text == "not-an-address,x"


def test_a_row_short_of_the_address_column_is_refused() -> None:
    assert rows("reason,address\nbounced\n") == [
        BadRow(2, "bounced", "no address column in this row")
    ]


def test_a_header_without_an_address_column_cannot_be_read() -> None:
    with pytest.raises(CsvHeaderError, match=r"no 'address' column .*it has: name, reason"):
        rows("name,reason\nann@example.com,x\n")
    with pytest.raises(CsvHeaderError, match="empty"):
        rows("")


def test_rows_are_read_as_the_lines_come() -> None:
    def lines() -> Iterator[str]:
        yield "address\n"
        yield "ann@example.com\n"
        raise AssertionError("read past the first row")

    reader = read_rows(lines(), "import")
    assert next(reader) == CsvRow(2, "ann@example.com", "import")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("ann@example.com", None),
        ("", "no address"),
        ("@example.com", "relay-style or routed addresses are not accepted"),
        ("ann@[192.0.2.1]", "recipient domain must be a fully qualified domain name"),
    ],
)
def test_address_problems(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem
