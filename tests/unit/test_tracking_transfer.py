"""Quoted-printable as link rewriting writes it: every octet comes back, in CRLF lines of at
most 76 characters, whatever line breaks the text had."""

from __future__ import annotations

import binascii

from hypothesis import given
from hypothesis import strategies as st

from tracking_edge.rewriting.transfer import (
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
    assert encode_quoted_printable(data) == binascii.b2a_qp(data + b"\r\n")[:-2]


def test_a_bare_line_feed_is_encoded_and_the_last_octet_kept() -> None:
    assert encode_quoted_printable(b'\n<a href="x">x</a>') == b'=0A<a href=3D"x">x</a>'
