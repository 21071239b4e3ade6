"""Quoted-printable as link rewriting writes it: every octet comes back, in CRLF lines of at
most 76 characters, whatever line breaks the text had; a line spliced around a URL is what
encoding the whole line gives."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking_edge.rewriting.transfer import (
    QuotedPrintableSplice,
    decode_quoted_printable,
    encode_quoted_printable,
    logical_lines,
)

text = st.lists(
    st.one_of(
        st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\t", b"=", b".", b"\r\n.", b"\xc3\xa9"]),
        st.binary(max_size=90),
        st.text("ab <>&=\"'./", max_size=200).map(str.encode),
    ),
    max_size=12,
).map(b"".join)


@given(text)
def test_the_octets_come_back_from_crlf_lines_of_at_most_76_characters(data: bytes) -> None:
    encoded = encode_quoted_printable(data)
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    hard_lines = [decode_quoted_printable(line) for line in logical_lines(encoded)]
    assert b"\r\n".join(hard_lines) == data


@given(text.filter(lambda data: data.count(b"\n") == data.count(b"\r\n")))
def test_text_with_crlf_line_breaks_is_encoded_as_binascii_does(data: bytes) -> None:
    ours, theirs = encode_quoted_printable(data), binascii.b2a_qp(data + b"\r\n")[:-2]
    if all(len(line) <= 76 for line in theirs.split(b"\r\n")):
        assert ours == theirs
    else:  # b2a_qp encoded the white space ending a line past the 76th character
        assert ours.replace(b"=\r\n", b"") == theirs.replace(b"=\r\n", b"")


def test_white_space_ending_a_full_line_goes_on_a_line_of_its_own() -> None:
    data = b"x" * 74 + b" \r\nnext"
    assert encode_quoted_printable(data) == b"x" * 74 + b"=\r\n=20\r\nnext"


def test_a_bare_line_feed_is_encoded_and_the_last_octet_kept() -> None:
    assert encode_quoted_printable(b'\n<a href="x">x</a>') == b'=0A<a href=3D"x">x</a>'


line = st.lists(
    st.one_of(
        st.sampled_from([b" ", b"\t", b"=", b".", b"\xc3\xa9", b"\x00", b'"', b"&amp;"]),
        st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        st.text("ab <>&=\"'./", max_size=90).map(str.encode),
    ),
    max_size=6,
).map(b"".join)
url = st.text("abcXYZ0129-_./:?&%~+", min_size=1, max_size=260).map(str.encode)


@given(line, url, line)
def test_a_spliced_line_is_the_whole_line_encoded(
    before: bytes, value: bytes, after: bytes
) -> None:
    spliced = QuotedPrintableSplice(before, after).encode(value)
    whole = encode_quoted_printable(before + value + after)
    assert spliced == whole or (spliced is None and not after and b"." in value)


@given(line, st.binary(min_size=1, max_size=100), line)
def test_a_value_that_needs_encoding_is_left_to_the_whole_line(
    before: bytes, value: bytes, after: bytes
) -> None:
    spliced = QuotedPrintableSplice(before, after).encode(value)
    assert spliced is None or spliced == encode_quoted_printable(before + value + after)


def test_a_splice_is_one_hard_line() -> None:
    with pytest.raises(ValueError):
        QuotedPrintableSplice(b'<a href="', b'">\r\nx')
