"""The SMTP client's reply reader (engine.smtp.reply_reader): tables, and replies
that survive any split of the bytes that carry them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.smtp.reply import Reply
from engine.smtp.reply_reader import MAX_LINE_OCTETS, MAX_REPLY_OCTETS, MalformedReply, ReplyReader

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True)


def read_all(*chunks: bytes) -> list[Reply]:
    reader = ReplyReader()
    replies: list[Reply] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.next_reply()) is not None:
            replies.append(reply)
    return replies


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"250 ok\r\n", Reply(250, "", "ok")),
        (b"250\r\n", Reply(250, "", "")),
        (b"250 \r\n", Reply(250, "", "")),
        (b"220 mx.test ESMTP ready\r\n", Reply(220, "", "mx.test ESMTP ready")),
        (b"250 2.1.5 ok\r\n", Reply(250, "2.1.5", "ok")),
        (b"250 2.0.0\r\n", Reply(250, "2.0.0", "")),
        (b"550 5.1.1 <a@b>: no such user\r\n", Reply(550, "5.1.1", "<a@b>: no such user")),
        (b"550 5.1.1\tx\r\n", Reply(550, "5.1.1", "x")),  # any white space ends the code
        (b"550 5.1 incomplete\r\n", Reply(550, "", "5.1 incomplete")),
        (b"550 6.1.1 bad class\r\n", Reply(550, "", "6.1.1 bad class")),
        (b"250 ok\n", Reply(250, "", "ok")),
        (b"250   padded   \r\n", Reply(250, "", "padded")),
        (b"554 caf\xc3\xa9\r\n", Reply(554, "", "caf\u00e9")),
        (b"554 \xff\r\n", Reply(554, "", "\ufffd")),
        (
            b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
            Reply(250, "", "mx.test\nPIPELINING\nSIZE 1000"),
        ),
        (
            b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
            Reply(550, "5.7.1", "first\nsecond\nthird"),
        ),
        (
            b"550-5.7.1 first\r\n550-second\r\n550 4.7.1 third\r\n",
            Reply(550, "5.7.1", "first\nsecond\n4.7.1 third"),
        ),
        (b"250-\r\n250 last\r\n", Reply(250, "", "\nlast")),
    ],
)
def test_replies(wire: bytes, expected: Reply) -> None:
    assert read_all(wire) == [expected]
    assert read_all(*(wire[i : i + 1] for i in range(len(wire)))) == [expected]


@pytest.mark.parametrize(
    "wire",
    [
        b"HELLO WORLD\r\n",
        b"25 short\r\n",
        b"\r\n",
        b"150 one is no first digit\r\n",
        b"650 nor is six\r\n",
        b"2x0 letters\r\n",
        b"250ok no separator\r\n",
        b"250+ wrong separator\r\n",
        b"250-first\r\n251 other code\r\n",
        b"250-first\r\nnot a reply line\r\n",
    ],
)
def test_malformed(wire: bytes) -> None:
    with pytest.raises(MalformedReply):
        read_all(wire)


def test_replies_come_out_in_order_from_one_segment() -> None:
    wire = b"250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n"
    assert read_all(wire) == [
        Reply(250, "2.1.0", "ok"),
        Reply(550, "5.1.1", "no"),
        Reply(354, "", "go"),
    ]


def test_an_incomplete_reply_waits_for_more() -> None:
    reader = ReplyReader()
    reader.feed(b"250-one\r\n250 tw")
    assert reader.next_reply() is None
    assert reader.pending
    reader.feed(b"o\r\n")
    assert reader.next_reply() == Reply(250, "", "one\ntwo")
    assert not reader.pending


def test_clear_forgets_everything() -> None:
    reader = ReplyReader()
    reader.feed(b"250-half\r\n250 injected\r\n250 more")
    reader.clear()
    assert not reader.pending
    reader.feed(b"220 fresh\r\n")
    assert reader.next_reply() == Reply(220, "", "fresh")


def test_a_line_without_end_is_cut_at_the_limit() -> None:
    reader = ReplyReader()
    reader.feed(b"250 " + b"x" * (MAX_LINE_OCTETS - 5))
    assert reader.next_reply() is None
    reader.feed(b"xx")
    with pytest.raises(MalformedReply, match="line longer"):
        reader.next_reply()


def test_a_line_at_the_limit_is_read() -> None:
    line = b"250 " + b"x" * (MAX_LINE_OCTETS - 6) + b"\r\n"
    assert len(line) == MAX_LINE_OCTETS
    assert read_all(line) == [Reply(250, "", "x" * (MAX_LINE_OCTETS - 6))]


def test_an_endless_multiline_reply_is_cut() -> None:
    line = b"250-" + b"x" * 1000 + b"\r\n"
    reader = ReplyReader()
    reader.feed(line * (MAX_REPLY_OCTETS // len(line) + 1))
    with pytest.raises(MalformedReply, match="reply longer"):
        reader.next_reply()


# Properties

line_texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30
).filter(lambda text: text == text.strip() and not text[:1].isdigit())
replies = st.builds(
    Reply,
    st.integers(200, 599),
    st.one_of(
        st.just(""),
        st.builds(
            "{}.{}.{}".format,
            st.sampled_from("245"),
            st.integers(0, 999),
            st.integers(0, 999),
        ),
    ),
    st.lists(line_texts, min_size=1, max_size=4).map("\n".join),
)


@PROPERTY
@given(st.lists(replies, min_size=1, max_size=5), st.data())
def test_encoded_replies_read_back_under_any_split(sent: list[Reply], data: st.DataObject) -> None:
    wire = b"".join(reply.encode() for reply in sent)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(wire)), max_size=12)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert read_all(*chunks) == sent


@PROPERTY
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_any_bytes_give_replies_or_malformed_reply_only(chunks: list[bytes]) -> None:
    try:
        replies = read_all(*chunks)
    except MalformedReply:
        return
    for reply in replies:
        assert 200 <= reply.code < 600
        assert "\r" not in reply.text
