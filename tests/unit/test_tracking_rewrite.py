"""Link rewriting of whole messages: MIME structure, charsets and transfer encodings kept,
headers, per-campaign switches, the plan made once per submission, the transform chain."""

from __future__ import annotations

import base64
import email
import email.policy
import functools
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.delivery.transform import ReturnPathTransform, TransformChain
from engine.model import MessageState, QueuedMessage, TrackingPolicy
from engine.return_path import REFERENCE_HEADER, ReturnPathCodec, derive_key
from tests.harness.tracking_urls import FakeTrackingUrls, target
from tracking_edge.rewriting import PlanCache, TrackingTransform
from tracking_edge.rewriting.plan import Links, PartPlans, plan
from tracking_edge.rewriting.transfer import encode_base64, encode_quoted_printable

DOMAIN = "click.acme.test"
POLICY = TrackingPolicy(DOMAIN)


def queued(index: int = 1, submission: str = "ab12", campaign: str = "news") -> QueuedMessage:
    return QueuedMessage(
        id=f"{submission}-{index}",
        submission_id=submission,
        tenant_id=1,
        queue=f"{campaign}:acme@x.test",
        campaign=campaign,
        sender="news@acme.test",
        recipient=f"r{index}@x.test",
        domain="x.test",
        state=MessageState.LEASED,
        due_at=0.0,
        created_at=0.0,
    )


def rewrite(body: bytes, policy: TrackingPolicy | None = POLICY, index: int = 1) -> bytes:
    transform = TrackingTransform(FakeTrackingUrls(), lambda message: policy)
    return transform.body(queued(index), body)


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part_text(data: bytes, content_type: str) -> str:
    for part in parsed(data).walk():
        if part.get_content_type() == content_type and not part.is_attachment():
            content = part.get_content()
            assert isinstance(content, str)
            return content
    raise AssertionError(f"no {content_type} part")


def click_targets(text: str) -> list[str]:
    return [target(word)[2] for word in _urls(text, "/c/")]


def _urls(text: str, kind: str) -> list[str]:
    found = []
    for chunk in text.replace("'", '"').replace("<", " ").replace(">", " ").split('"'):
        for word in chunk.split():
            if word.startswith(f"https://{DOMAIN}{kind}"):
                found.append(word)
    return found


HEADERS = b"From: News <news@acme.test>\r\nTo: r@x.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
ALTERNATIVE = (
    HEADERS + b'Content-Type: multipart/alternative; boundary="==b1=="\r\n\r\n'
    b"This is a multi-part message.\r\n"
    b"--==b1==\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    b"Caf\xc3\xa9! Shop: https://x.test/shop?a=1&b=2.\r\nBye {{unsubscribe_url}}\r\n"
    b"--==b1==\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<html><body><p>Caf=C3=A9</p>\r\n"
    b'<a href=3D"https://x.test/a-very-long-path/that-goes-on/and-on/and-on/?utm=\r\n'
    b'_source=3Dnews&amp;utm_medium=3Demail">Shop</a>\r\n'
    b'<a href=3D"mailto:hi@x.test">Mail</a> <a href=3D"{{unsubscribe_url}}">Unsub</a>\r\n'
    b"</body></html>\r\n"
    b"--==b1==--\r\nepilogue\r\n"
)


def test_text_and_html_alternatives_are_both_rewritten() -> None:
    out = rewrite(ALTERNATIVE)
    text = part_text(out, "text/plain")
    assert click_targets(text) == ["https://x.test/shop?a=1&b=2"]
    assert text.startswith("Café! Shop: https://click.acme.test/c/ab12-1/")
    assert _urls(text, "/u/") and "{{unsubscribe_url}}" not in text
    markup = part_text(out, "text/html")
    assert click_targets(markup) == [
        "https://x.test/a-very-long-path/that-goes-on/and-on/and-on/?utm_source=news&utm_medium=email"
    ]
    assert '<a href="mailto:hi@x.test">' in markup and "<p>Café</p>" in markup
    assert len(_urls(markup, "/u/")) == 1 and len(_urls(markup, "/o/")) == 1
    assert markup.index("/o/") < markup.index("</body>")


def test_octets_outside_the_rewritten_parts_stay_as_they_were() -> None:
    out = rewrite(ALTERNATIVE)
    body = out[out.index(b"\r\n\r\n") :]
    original = ALTERNATIVE[ALTERNATIVE.index(b"\r\n\r\n") :]
    for unchanged in (
        b"\r\n\r\nThis is a multi-part message.\r\n--==b1==\r\n"
        b"Content-Type: text/plain; charset=utf-8",
        b"--==b1==\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<html><body><p>Caf=C3=A9</p>\r\n",
        b'<a href=3D"mailto:hi@x.test">Mail</a> <a href=3D"',
        b"--==b1==--\r\nepilogue\r\n",
    ):
        assert unchanged in original and unchanged in body
    assert body.endswith(b"</body></html>\r\n--==b1==--\r\nepilogue\r\n")


def test_quoted_printable_lines_stay_within_76_characters() -> None:
    out = rewrite(ALTERNATIVE)
    html_part = out[out.index(b"quoted-printable\r\n\r\n") : out.index(b"--==b1==--")]
    assert max(len(line) for line in html_part.split(b"\r\n")) <= 76
    assert b"=\r\n" in html_part  # the long lines were broken softly


def test_base64_parts_are_rewritten_in_76_character_lines() -> None:
    markup = '<p>Grüße</p><a href="https://x.test/b64?a=1&amp;b=2">x</a>' * 20
    body = HEADERS + (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(markup.encode()).replace(b"\n", b"\r\n")
    )
    out = rewrite(body)
    encoded = out[out.index(b"\r\n\r\n") + 4 :]
    lines = encoded.split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-2]) and lines[-1] == b""
    decoded = part_text(out, "text/html")
    assert click_targets(decoded) == ["https://x.test/b64?a=1&b=2"] * 20
    assert decoded.count("<p>Grüße</p>") == 20 and len(_urls(decoded, "/o/")) == 1


@pytest.mark.parametrize(
    ("charset", "encoding"),
    [
        ("iso-8859-1", "8bit"),
        ("windows-1252", "quoted-printable"),
        ("Shift_JIS", "base64"),
        ("shift_jis", "8bit"),
        ("euc-jp", "quoted-printable"),
        ("koi8-r", "8bit"),
    ],
)
def test_parts_keep_their_charset_and_transfer_encoding(charset: str, encoding: str) -> None:
    words = {"iso-8859-1": "Grüße", "windows-1252": "“Café” — €5", "koi8-r": "Привет"}
    word = words.get(charset, "こんにちは、世界")
    markup = (
        f'<html><body><p>{word}</p><a href="https://x.test/?q=1&amp;r=2">{word}</a></body></html>'
    )
    raw = markup.encode(charset)
    content = {
        "8bit": raw,
        "quoted-printable": encode_quoted_printable(raw),
        "base64": encode_base64(raw),
    }[encoding]
    body = (
        HEADERS
        + (
            f"Content-Type: text/html; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode()
        + content
        + b"\r\n"
    )
    out = rewrite(body)
    assert out.split(b"\r\n\r\n")[0].endswith(
        f"Content-Type: text/html; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {encoding}".encode()
    )
    decoded = part_text(out, "text/html")
    assert decoded.count(word) == 2
    assert click_targets(decoded) == ["https://x.test/?q=1&r=2"]


@pytest.mark.parametrize("charset", ["x-unknown-charset", "utf-16"])
def test_a_part_in_an_unusable_charset_is_left_alone(charset: str) -> None:
    codec = "utf-16" if charset == "utf-16" else "ascii"
    body = HEADERS + (
        f"Content-Type: text/html; charset={charset}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + encode_base64('<a href="https://x.test/">x</a></body>'.encode(codec))
        + b"\r\n"
    )
    out = rewrite(body)
    assert out.endswith(body[len(HEADERS) :])


def test_attachments_and_enclosed_messages_are_untouched() -> None:
    attached = (
        b"--mix\r\nContent-Type: text/html; charset=us-ascii\r\nContent-Disposition: attachment; "
        b'filename="page.html"\r\n\r\n<a href="https://x.test/att">x</a></body>\r\n'
        b"--mix\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encode_base64(b"%PDF-1.4 https://x.test/pdf")
        + b"\r\n--mix\r\nContent-Type: message/rfc822\r\n\r\n"
        b'Subject: fwd\r\nContent-Type: text/html\r\n\r\n<a href="https://x.test/fwd">f</a>\r\n'
    )
    body = (
        HEADERS + b"Content-Type: multipart/mixed; boundary=mix\r\n\r\n"
        b"--mix\r\nContent-Type: text/html\r\n\r\n<body><a href='https://x.test/in'>i</a></body>\r\n"
        + attached
        + b"--mix--\r\n"
    )
    out = rewrite(body)
    assert out.endswith(attached + b"--mix--\r\n")
    assert click_targets(part_text(out, "text/html")) == ["https://x.test/in"]


def test_html_without_a_body_end_tag_gets_the_pixel_at_its_end() -> None:
    body = HEADERS + b'Content-Type: text/html\r\n\r\n<p>Hi <a href="https://x.test/">x</a></p>\r\n'
    out = rewrite(body)
    assert out.endswith(b" />") and b"</p>\r\n<img src=" in out


def test_a_malformed_multipart_is_left_alone() -> None:
    body = (
        HEADERS
        + b'Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\n<a href="https://x.test/">\r\n'
    )
    assert rewrite(body).endswith(body[len(HEADERS) :])


UNSUBSCRIBE_HEADERS = (
    b"From: news@acme.test\r\n"
    b"List-Unsubscribe: <https://acme.test/unsub?id=1>,\r\n"
    b" <mailto:unsub@acme.test?subject=stop>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nSubject: hi\r\n"
    b"Content-Type: text/html\r\n\r\n"
    b'<body><a href="https://x.test/">x</a> <a data-pm-unsubscribe href="https://acme.test/u">u</a></body>\r\n'
)


def header_fields(data: bytes, name: str) -> list[str]:
    return [str(value) for value in parsed(data).get_all(name, [])]


def test_one_click_unsubscribe_replaces_the_tenants_fields_and_keeps_its_mailto() -> None:
    out = rewrite(UNSUBSCRIBE_HEADERS)
    [field] = header_fields(out, "List-Unsubscribe")
    ours, mailto = field.split(", ")
    assert (
        ours.startswith(f"<https://{DOMAIN}/u/ab12-1/")
        and mailto == "<mailto:unsub@acme.test?subject=stop>"
    )
    assert header_fields(out, "List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert out.count(b"List-Unsubscribe:") == 1 and b"acme.test/unsub?id=1" not in out
    assert out.split(b"\r\n\r\n")[0].endswith(
        b"From: news@acme.test\r\nSubject: hi\r\nContent-Type: text/html"
    )
    assert f'href="{ours[1:-1]}"'.encode() in out


@pytest.mark.parametrize(
    ("policy", "clicks", "opens", "ours"),
    [
        (TrackingPolicy(DOMAIN), 1, 1, True),
        (TrackingPolicy(DOMAIN, opens=False), 1, 0, True),
        (TrackingPolicy(DOMAIN, clicks=False), 0, 1, True),
        (TrackingPolicy(DOMAIN, unsubscribe=False), 1, 1, False),
        (TrackingPolicy(DOMAIN, opens=False, clicks=False), 0, 0, True),
    ],
)
def test_per_campaign_switches(policy: TrackingPolicy, clicks: int, opens: int, ours: bool) -> None:
    out = rewrite(UNSUBSCRIBE_HEADERS, policy)
    text = out.decode()
    assert len(_urls(text, "/c/")) == clicks and len(_urls(text, "/o/")) == opens
    assert (b'href="https://x.test/"' in out) is (clicks == 0)
    if ours:
        assert len(_urls(text, "/u/")) == 2
    else:
        assert out == UNSUBSCRIBE_HEADERS.replace(
            b'<a href="https://x.test/">',
            f'<a href="{_urls(text, "/c/")[0]}">'.encode(),
        ).replace(b"</body>", f"{text[text.index('<img') : text.index('</body>')]}</body>".encode())


@pytest.mark.parametrize(
    "policy",
    [None, TrackingPolicy(DOMAIN, opens=False, clicks=False, unsubscribe=False)],
    ids=["no policy", "all off"],
)
def test_a_message_without_tracking_goes_out_as_submitted(policy: TrackingPolicy | None) -> None:
    assert rewrite(ALTERNATIVE, policy) is ALTERNATIVE


def test_the_plan_is_made_once_per_submission_and_each_recipient_has_its_urls() -> None:
    plans = PlanCache(size=2)
    transform = TrackingTransform(FakeTrackingUrls(), lambda message: POLICY, plans=plans)
    copies = [transform.body(queued(n), bytes(ALTERNATIVE)) for n in (1, 2, 3)]
    assert plans.made == 1 and len(set(copies)) == 3
    for n, copy in enumerate(copies, 1):
        texts = [
            part_text(copy, "text/plain"),
            part_text(copy, "text/html"),
            *header_fields(copy, "List-Unsubscribe"),
        ]
        urls = [url for text in texts for url in _urls(text, "/")]
        assert len(urls) == 6 and {target(url)[1] for url in urls} == {f"ab12-{n}"}
    other = ALTERNATIVE.replace(b"/shop?", b"/sale?")
    assert click_targets(part_text(transform.body(queued(1), other), "text/plain")) == [
        "https://x.test/sale?a=1&b=2"
    ]
    assert plans.made == 2, "a reused submission id with another body gets its own plan"
    for submission in ("s2", "s3", "s4"):
        transform.body(queued(1, submission), ALTERNATIVE)
    transform.body(queued(1), ALTERNATIVE)
    assert plans.made == 6, "the least recently used plan was dropped"


def test_the_chain_rewrites_then_adds_the_reference_and_takes_the_return_path() -> None:
    codec = ReturnPathCodec({"a": derive_key(bytes(32), "a")}, "a")
    tracking = TrackingTransform(FakeTrackingUrls(), lambda message: POLICY)
    chain = TransformChain(tracking, ReturnPathTransform(codec))
    message = queued()
    out = chain.body(message, ALTERNATIVE)
    assert chain.per_recipient(message)
    assert out.startswith(
        f"{REFERENCE_HEADER}: {codec.reference('ab12')}\r\nList-Unsubscribe: <".encode()
    )
    assert out.endswith(tracking.body(message, ALTERNATIVE))
    assert chain.sender(message, "acme.test") == f"{codec.local_part(message.id)}@bounces.acme.test"
    assert not TransformChain(ReturnPathTransform(codec)).per_recipient(message)
    untracked = TrackingTransform(FakeTrackingUrls(), lambda message: None)
    assert not TransformChain(untracked, ReturnPathTransform(codec)).per_recipient(message)


class Identity(FakeTrackingUrls):
    """Click URLs that are the links themselves."""

    def click_url(self, message: QueuedMessage, domain: str, url: str) -> str:
        return url


hrefs = st.builds(
    lambda path, query: f"https://x.test/{path}" + (f"?{query}" if query else ""),
    st.text("abcé/-_.~%", max_size=10),
    st.text("a=&b1;\"'<>", max_size=8),
)
chunks = st.one_of(
    st.text(st.characters(codec="latin-1", exclude_characters="\r<&"), max_size=90),
    st.just("\r\n"),
    hrefs.map(
        lambda url: (
            '<a href="'
            + url.replace("&", "&amp;")
            .replace('"', "&quot;")
            .replace("'", "&#x27;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            + '">x</a>'
        )
    ),
)


@given(
    st.lists(chunks, max_size=20),
    st.sampled_from(["8bit", "quoted-printable", "base64"]),
    st.sampled_from(["utf-8", "iso-8859-1", "windows-1252"]),
)
def test_a_copy_round_trips_without_tracking_and_with_identity_links(
    pieces: list[str], encoding: str, charset: str
) -> None:
    markup = "".join(pieces)
    try:
        raw = markup.encode(charset)
    except UnicodeEncodeError:
        return
    content = {
        "8bit": raw,
        "quoted-printable": encode_quoted_printable(raw),
        "base64": encode_base64(raw),
    }
    body = (
        HEADERS
        + (
            f'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
            f"Content-Type: text/html; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode()
        + content[encoding]
        + b"\r\n--b--\r\n"
    )
    assert rewrite(body, None) == body
    clicks_only = TrackingPolicy(DOMAIN, opens=False, unsubscribe=False)
    identity = TrackingTransform(Identity(), lambda message: clicks_only)
    assert identity.body(queued(), body) == body


def test_submissions_of_one_template_share_the_plans_of_their_parts() -> None:
    parts = PartPlans()
    bodies = [
        f"Received: by mta.test; id s{n}\r\nX-Penguin-Ref: r{n}\r\n".encode() + ALTERNATIVE
        for n in (1, 2, 3)
    ]
    shared = [plan(body, parts) for body in bodies]
    assert parts.made == 2, "the text and the HTML part, each planned once"
    alone = [plan(body) for body in bodies]
    links = FakeTrackingUrls()
    for n, (with_shared, planned_alone) in enumerate(zip(shared, alone, strict=True), 1):
        message = queued(1, f"s{n}")
        chosen = Links(
            click=functools.partial(links.click_url, message, "t.test"),
            unsubscribe=links.unsubscribe_url(message, "t.test"),
            open=links.open_url(message, "t.test"),
        )
        assert with_shared.render(chosen) == planned_alone.render(chosen)
        assert f"id s{n}\r\nX-Penguin-Ref: r{n}\r\n".encode() in with_shared.render(chosen)
