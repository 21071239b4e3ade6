"""Composition: every composed message parses back to what was asked, and bad
drafts are refused naming the field."""

from __future__ import annotations

import email
import random
import re
from email import policy
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.header import Header, decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.submission import composition
from engine.submission.acceptance import HeaderField, from_domains, parse_header_fields
from engine.submission.composition import (
    Attachment,
    CompositionError,
    Draft,
    Mailbox,
    compose,
    composed_message,
    display_name,
)
from engine.submission.templating import TemplateProblem, render, render_draft

SENDER = Mailbox("news@acme.example", "Acme News")

# Text a header or body may hold: any character but controls and surrogates.
header_text = st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=120).map(
    str.strip
)
long_text = st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=900)
body_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\x00"), max_size=400
)
local_parts = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
domains = st.from_regex(r"[a-z0-9]{1,12}\.(example|test|org)", fullmatch=True)
mailboxes = st.builds(
    Mailbox, st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains), header_text
)
attachments = st.builds(
    Attachment,
    filename=st.from_regex(r"[A-Za-z0-9 _-]{1,30}\.(png|pdf|txt)", fullmatch=True),
    content_type=st.sampled_from(["image/png", "application/pdf", "application/octet-stream"]),
    content=st.binary(max_size=300),
    content_id=st.none() | st.from_regex(r"[a-z0-9]{1,12}@acme\.example", fullmatch=True),
)


@st.composite
def drafts(draw: st.DrawFn) -> Draft:
    text = draw(st.none() | body_text)
    html = draw(st.none() | body_text.map(lambda t: f"<p>{t}</p>"))
    if text is None and html is None:
        text = draw(body_text)
    files = tuple(draw(st.lists(attachments, max_size=3)))
    if html is None:
        files = tuple(f for f in files if f.content_id is None)
    return Draft(
        sender=draw(mailboxes),
        to=tuple(draw(st.lists(mailboxes, min_size=1, max_size=3))),
        cc=tuple(draw(st.lists(mailboxes, max_size=2))),
        bcc=tuple(draw(st.lists(mailboxes, max_size=2))),
        reply_to=tuple(draw(st.lists(mailboxes, max_size=1))),
        subject=draw(header_text | long_text),
        text=text,
        html=html,
        attachments=files,
        headers=tuple(draw(st.lists(st.tuples(st.just("X-Tag"), header_text), max_size=2))),
    )


def lines_of(body: str) -> str:
    """A body as the reader gets it: line ends normalised, a final one added."""
    text = body.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def expected(mailboxes: tuple[Mailbox, ...]) -> list[tuple[str, str]]:
    return [(display_name(m.name), m.email) for m in mailboxes]


def addresses(raw: bytes, name: str) -> list[tuple[str, str]]:
    """(display name, address) of an address field, read by ``email.utils`` and
    ``email.header`` (the stdlib's newer parser puts spaces between adjacent encoded
    words of a display name, which RFC 2047 §6.2 says to ignore)."""
    message = email.message_from_bytes(raw, policy=policy.compat32)
    values = [str(v) for v in message.get_all(name) or []]
    return [(str(make_header(decode_header(n))), a) for n, a in getaddresses(values)]


@settings(max_examples=60, deadline=None)
@given(drafts())
def test_a_message_without_attachments_is_flattened_as_the_stdlib_does(draft: Draft) -> None:
    draft = draft._replace(attachments=())
    state = random.getstate()  # the same multipart boundary both times
    fast = composed_message(draft)
    random.setstate(state)
    with mock.patch.object(composition, "flattened", generated):
        assert composed_message(draft) == fast


def generated(fields: list[tuple[str, str]], payload: str) -> tuple[bytes, list[HeaderField]]:
    """The stdlib's generator on a message of ``fields`` and ``payload``, and the header
    fields read back from what it wrote."""
    message = EmailMessage(policy=composition.SMTP_POLICY)
    for name, value in fields:
        message.set_raw(name, value)
    message.set_payload(payload)
    raw = message.as_bytes(policy=composition.SMTP_POLICY)
    return raw, parse_header_fields(raw)


@settings(max_examples=100, deadline=None)
@given(drafts())
def test_a_composed_message_knows_its_header_fields_as_they_read_back(draft: Draft) -> None:
    raw, fields = composed_message(draft)
    assert fields == parse_header_fields(raw)


@settings(max_examples=60, deadline=None)
@given(drafts())
def test_a_composed_message_parses_back_to_its_draft(draft: Draft) -> None:
    raw = compose(draft)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()

    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert str(parsed["Subject"]) == draft.subject.strip()
    assert addresses(raw, "From") == expected((draft.sender,))
    assert addresses(raw, "To") == expected(draft.to)
    assert addresses(raw, "Cc") == expected(draft.cc)
    assert addresses(raw, "Reply-To") == expected(draft.reply_to)
    assert parsed["Bcc"] is None
    assert [str(v) for v in parsed.get_all("X-Tag") or []] == [v.strip() for _, v in draft.headers]

    for subtype, wanted in (("plain", draft.text), ("html", draft.html)):
        part = parsed.get_body((subtype,))
        if wanted is None:
            assert part is None or part.get_content_subtype() != subtype
        else:
            assert part is not None
            assert lines_of(part.get_content()) == lines_of(wanted)

    got = [
        (p.get_filename(), p.get_content_type(), p.get_payload(decode=True), p["Content-ID"])
        for p in parsed.walk()
        if p.get_filename() is not None
    ]
    wanted_files = [
        (
            a.filename.strip(),
            a.content_type,
            a.content,
            f"<{a.content_id}>" if a.content_id else None,
        )
        for a in draft.attachments
    ]
    assert sorted(got, key=repr) == sorted(wanted_files, key=repr)

    fields = parse_header_fields(raw)  # acceptance reads (and can sign) it
    assert from_domains(fields) == [draft.sender.email.rpartition("@")[2]]


def test_structure_text_html_inline_and_attached() -> None:
    draft = Draft(
        sender=SENDER,
        to=(Mailbox("a@dest.example"),),
        subject="Hi",
        text="plain",
        html='<img src="cid:logo@acme">',
        attachments=(
            Attachment("logo.png", "image/png", b"png", "logo@acme"),
            Attachment("terms.pdf", "application/pdf", b"pdf"),
        ),
        campaign="spring sale",
        priority="bulk",
    )
    parsed = email.message_from_bytes(compose(draft), policy=policy.default)
    shape = [(p.get_content_type(), p["MIME-Version"] is not None) for p in parsed.walk()]
    assert shape == [
        ("multipart/mixed", True),
        ("multipart/alternative", False),
        ("text/plain", False),
        ("multipart/related", False),
        ("text/html", False),
        ("image/png", False),
        ("application/pdf", False),
    ]
    assert parsed["X-Campaign"] == "spring sale"
    assert parsed["X-Priority-Class"] == "bulk"
    assert parsed["Date"] is None and parsed["Message-ID"] is None  # acceptance adds them


def test_non_ascii_names_and_subjects_are_encoded_words() -> None:
    draft = Draft(
        sender=Mailbox("news@acme.example", "Zoë Ünïcode, Ltd."),
        to=(Mailbox("a@dest.example"),),
        subject="Grüße " * 40,
        text="x",
    )
    raw = compose(draft)
    assert b"=?utf-8?" in raw
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert addresses(raw, "From") == [("Zoë Ünïcode, Ltd.", "news@acme.example")]
    assert str(parsed["Subject"]) == draft.subject.strip()


LONG_NAME = "X-" + "y" * 74


@pytest.mark.parametrize(
    "value",
    ["a" * 900, "é" * 900, "😀" * 900, ("x" * 70 + " ") * 12, "a " * 450, "=?utf-8?q?x?=", ""],
)
def test_long_and_odd_header_values_fit_lines_and_read_back(value: str) -> None:
    draft = Draft(
        sender=Mailbox("news@acme.example", "n" * 200),
        to=(Mailbox("a@dest.example", "é" * 200),),
        subject=value,
        text="t",
        headers=((LONG_NAME, value),),
    )
    raw = compose(draft)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert str(parsed["Subject"]) == str(parsed[LONG_NAME]) == value.strip()
    assert addresses(raw, "To") == [("é" * 200, "a@dest.example")]


BASE = Draft(sender=SENDER, to=(Mailbox("a@dest.example"),), subject="s", text="t")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": ()}, "to"),
        ({"to": (Mailbox("a@dest.example"), Mailbox("b@x"), Mailbox("not an address"))}, "to[1]"),
        ({"cc": (Mailbox("a%b@dest.example"),)}, "cc[0]"),
        ({"bcc": (Mailbox("ü@dest.example"),)}, "bcc[0]"),
        ({"sender": Mailbox("nobody")}, "from"),
        ({"to": (Mailbox("a@dest.example", "line\nbreak"),)}, "to[0].name"),
        ({"subject": "a\r\nBcc: x@y.example"}, "subject"),
        ({"text": None}, "text"),
        ({"headers": (("From", "x@y.example"),)}, "headers.From"),
        ({"headers": (("Content-Type", "text/html"),)}, "headers.Content-Type"),
        ({"headers": (("DKIM-Signature", "v=1"),)}, "headers.DKIM-Signature"),
        ({"headers": (("Bad Name", "v"),)}, "headers"),
        ({"headers": (("X-Ok", "v\nInjected: 1"),)}, "headers.X-Ok"),
        ({"attachments": (Attachment("", "image/png", b""),)}, "attachments[0].filename"),
        ({"attachments": (Attachment("a", "png", b""),)}, "attachments[0].content_type"),
        ({"attachments": (Attachment("a", "image/png", b"", "cid"),)}, "attachments"),
        (
            {"html": "<p>", "attachments": (Attachment("a", "image/png", b"", "<x>"),)},
            "attachments[0].content_id",
        ),
    ],
)
def test_bad_drafts_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    draft = BASE._replace(**changes)  # type: ignore[arg-type]
    with pytest.raises(CompositionError) as refused:
        compose(draft)
    assert refused.value.field == field


def test_templates_render_with_strict_variables_and_escaped_html() -> None:
    draft = Draft(
        sender=SENDER,
        to=(Mailbox("a@dest.example"),),
        subject="Hi {{ name }}",
        text="Dear {{ name }}",
        html="<p>{{ name }}</p>",
    )
    rendered = render_draft(draft, {"name": "<Bob>"})
    assert rendered.subject == "Hi <Bob>"
    assert rendered.text == "Dear <Bob>"
    assert rendered.html == "<p>&lt;Bob&gt;</p>"


@pytest.mark.parametrize(
    ("template", "variables", "field"),
    [
        ("{{ missing }}", {}, "subject"),
        ("{{ x }", {"x": 1}, "subject"),
        ("{% for %}", {}, "subject"),
        ("{{ x.__class__.__mro__ }}", {"x": 1}, "subject"),
    ],
)
def test_template_problems_name_the_field(
    template: str, variables: dict[str, object], field: str
) -> None:
    with pytest.raises(TemplateProblem) as problem:
        render(template, variables, field)
    assert problem.value.field == field


def _stdlib_bodies(draft: Draft) -> bytes:
    """The bodies as the stdlib's ``set_content`` writes them (the attachments' way)."""
    message = EmailMessage(policy=composition.SMTP_POLICY)
    composition._set_bodies(message, draft)
    for part in message.iter_parts() if message.is_multipart() else ():
        composition._drop_part_mime_version(part)
    return message.as_bytes(policy=composition.SMTP_POLICY)


def _parts(raw: bytes) -> list[tuple[str, str, str | None, str | None]]:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    leaves = parsed.walk() if parsed.is_multipart() else [parsed]
    return [
        (
            p.get_content_type(),
            p.get_content(),
            p["Content-Transfer-Encoding"],
            p.get_content_charset(),
        )
        for p in leaves
        if not p.is_multipart()
    ] + [(parsed.get_content_type(), "", None, None)]


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii",
        "Grüße, Jörg " * 30 + "\nline two\n",
        "x" * 200,
        "a\r\nb\nc",
        "🐧\n--===\n",
        "short piece\f" * 120,  # a form feed ends no line of the message
    ],
)
@pytest.mark.parametrize("shape", ["text", "html", "both"])
def test_text_bodies_are_written_as_the_stdlib_writes_them(text: str, shape: str) -> None:
    draft = Draft(
        sender=Mailbox("news@acme.example"),
        to=(Mailbox("ann@dest.example"),),
        subject="Hi",
        text=None if shape == "html" else text,
        html=None if shape == "text" else f"<p>{text}</p>",
    )
    raw = compose(draft)
    assert _parts(raw) == _parts(_stdlib_bodies(draft))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")


ascii_header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=126) | st.just("\t"), max_size=90
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Subject", "X-Tag", "X-Campaign"]), ascii_header_text | header_text)
def test_an_unstructured_value_is_written_as_the_stdlib_header_writes_it(
    name: str, value: str
) -> None:
    value = value.strip()
    charset = "us-ascii" if value.isascii() and "=?" not in value else "utf-8"
    header = Header(value, charset, maxlinelen=78, header_name=name)
    stdlib = header.encode(splitchars=" ", linesep="\r\n").removeprefix("\r\n ")
    assert composition._unstructured(name, value) == stdlib


@given(st.text(st.sampled_from("a\r\n\f"), max_size=40))
def test_line_ends_are_found_as_the_generator_finds_them(text: str) -> None:
    assert composition._lf_ended(text).split("\n") == re.split(r"\r\n|\r|\n", text)


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.sampled_from("ab é\r\n\f\v\x1c"), max_size=200) | st.sampled_from(["", "\n", "\r"])
)
def test_a_text_part_is_encoded_as_the_stdlib_encodes_it(text: str) -> None:
    cte = composition._text_cte(text)
    expected = _encode_text(text, "utf-8", cte, composition.SMTP_POLICY)
    assert composition._encoded_text(text) == expected
