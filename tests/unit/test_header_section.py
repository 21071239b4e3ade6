"""The header section as acceptance and the DKIM signer read it: fields, spans, refusals."""

from __future__ import annotations

import dkim
import pytest

from engine.header_section import MalformedHeader, parse_header_section

WELL_FORMED = {
    "plain": b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n",
    "folded": b"To: a@x.test,\r\n b@x.test,\r\n\tc@x.test\r\nSubject: x\r\n\r\nbody\r\n",
    "blank continuation": b"Subject: a\r\n \r\n  b\r\nFrom: a@x.test\r\n\r\n",
    "empty values": b"Subject:\r\nX-Empty:   \r\n\r\n",
    "8-bit and control values": b"Subject: Caf\xc3\xa9 \x01\x7f\xff\r\n\r\n",
    "colons in values": b"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nX-A:B: c\r\n\r\n",
    "every ftext character": bytes(range(0x21, 0x3A)) + bytes(range(0x3B, 0x7F)) + b": v\r\n\r\n",
    "lf line ends": b"From: a@x.test\nSubject: a\n folded\n\nbody\n",
    "no empty line": b"From: a@x.test\r\nSubject: hi\r\n",
    "no final line end": b"From: a@x.test\r\nSubject: hi",
    "body only": b"\r\nbody: not a field\r\n",
    "empty": b"",
}


@pytest.mark.parametrize("name", list(WELL_FORMED))
def test_fields_are_read_as_dkimpy_reads_them(name: str) -> None:
    message = WELL_FORMED[name]
    section = parse_header_section(message)
    theirs, body = dkim.rfc822_parse(message)
    expected = [(n.lower(), v.replace(b"\r\n", b"")) for n, v in theirs]
    assert section.unfolded() == expected
    assert [
        (f.name, f.value.replace(b"\r\n", b"").replace(b"\n", b"")) for f in section.fields()
    ] == [(n, v.replace(b"\r\n", b"")) for n, v in theirs]
    assert message[section.body_start :].replace(b"\r\n", b"\n") == body.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("name", list(WELL_FORMED))
def test_fields_span_the_header_section(name: str) -> None:
    message = WELL_FORMED[name]
    section = parse_header_section(message)
    fields = section.fields()
    pos = 0
    for f in fields:
        assert f.start == pos
        assert message[f.start : f.colon] == f.name
        assert message[f.colon + 1 :].startswith(f.value)
        assert message[f.colon + 1 + len(f.value) : f.end] in (b"\r\n", b"\n", b"")
        assert f.colon == f.start + len(f.name)
        pos = f.end
    assert message[pos : section.body_start] in (b"\r\n", b"\n", b"")


@pytest.mark.parametrize(
    ("message", "name", "value"),
    [
        (b"Subject : x\r\n\r\n", b"Subject", b" x"),
        (b"Subject\t:x\r\n\r\n", b"Subject", b"x"),
        (b"Subject \t : x\r\n y\r\n\r\n", b"Subject", b" x\r\n y"),
    ],
)
def test_white_space_before_the_colon_is_obsolete_syntax_read_as_such(
    message: bytes, name: bytes, value: bytes
) -> None:
    [field] = parse_header_section(message).fields()
    assert (field.name, field.value) == (name, value)
    assert field.colon > field.start + len(name)
    assert message[field.colon : field.colon + 1] == b":"
    assert parse_header_section(message).unfolded() == [(name.lower(), value.replace(b"\r\n", b""))]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"no colon here\r\n\r\nbody\r\n", "line 1 has no colon"),
        (b"From: a@x.test\r\nno colon\r\n\r\n", "line 2 has no colon"),
        (b"From: a@x.test\r\n folded\r\nbad\r\n\r\n", "line 3 has no colon"),
        (b" leading: continuation\r\n\r\n", "line 1 begins with white space but continues no"),
        (b"\tx\r\nFrom: a@x.test\r\n\r\n", "line 1 begins with white space"),
        (b": no name\r\n\r\n", "line 1 has no field name before its colon"),
        (b"  : no name\r\n\r\n", "line 1 begins with white space"),
        (b"Sub ject: x\r\n\r\n", "line 1 has white space inside its field name"),
        (b"Sub\tject : x\r\n\r\n", "line 1 has white space inside its field name"),
        (b"From alice Mon Nov  2 10:00:00 2026\r\n", "line 1 has white space inside"),
        ("Sübject: x\r\n\r\n".encode(), "line 1 has a field name that is not printable US-ASCII"),
        (b"X-\x01: x\r\n\r\n", "line 1 has a field name that is not printable US-ASCII"),
        (b"X-\x7f: x\r\n\r\n", "line 1 has a field name that is not printable US-ASCII"),
        (b"From: a@x.test\nbad\n\nbody\n", "line 2 has no colon"),
    ],
)
def test_a_line_that_is_part_of_no_field_is_named(message: bytes, reason: str) -> None:
    with pytest.raises(MalformedHeader, match=reason):
        parse_header_section(message)


def test_the_body_is_not_read() -> None:
    message = b"From: a@x.test\r\n\r\nno colon\r\n bad: name\r\n"
    section = parse_header_section(message)
    assert [f.name for f in section.fields()] == [b"From"]
    assert message[section.body_start :] == b"no colon\r\n bad: name\r\n"
