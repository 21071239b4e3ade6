"""The HTML scanner of link rewriting: which links it tracks, their exact spans, the pixel."""

from __future__ import annotations

import html
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking_edge.rewriting.html import html_slots
from tracking_edge.rewriting.slots import SlotKind


def marked(text: str) -> str:
    """``text`` with each slot replaced by a marker naming what goes there."""
    out, pos = [], 0
    for slot in html_slots(text):
        marker = {
            SlotKind.CLICK: f"[click {slot.target}]",
            SlotKind.UNSUBSCRIBE: "[unsubscribe]",
            SlotKind.OPEN: "[open]",
        }[slot.kind]
        out += [text[pos : slot.start], marker]
        pos = slot.end
    return "".join(out) + text[pos:]


CASES = [
    ("double-quoted", '<a href="https://x.test/a">', '<a href="[click https://x.test/a]">[open]'),
    (
        "&amp; in the query string",
        '<a href="https://x.test/?a=1&amp;b=2">',
        '<a href="[click https://x.test/?a=1&b=2]">[open]',
    ),
    (
        "numeric and named references",
        "<a href='https://x.test/?a=1&#38;b=&quot;2&#x22;'>",
        "<a href='[click https://x.test/?a=1&b=\"2\"]'>[open]",
    ),
    (
        "upper-case tag and name",
        '<A HREF="HTTPS://X.test/A">',
        '<A HREF="[click HTTPS://X.test/A]">[open]',
    ),
    ("single-quoted", "<a href='http://x.test/'>", "<a href='[click http://x.test/]'>[open]"),
    (
        "unquoted",
        "<a href=https://x.test/a?b=1>x</a>",
        "<a href=[click https://x.test/a?b=1]>x</a>[open]",
    ),
    (
        "spaces around =",
        '<a href = "https://x.test/">',
        '<a href = "[click https://x.test/]">[open]',
    ),
    (
        "spaces in the value",
        '<a href=" https://x.test/ ">',
        '<a href="[click https://x.test/]">[open]',
    ),
    (
        "no space before name",
        '<a/href="https://x.test/">',
        '<a/href="[click https://x.test/]">[open]',
    ),
    (
        "> in another value",
        '<a title="a>b" href="https://x.test/">',
        '<a title="a>b" href="[click https://x.test/]">[open]',
    ),
    (
        "the first href counts",
        '<a href="https://x.test/1" href="https://x.test/2">',
        '<a href="[click https://x.test/1]" href="https://x.test/2">[open]',
    ),
    (
        "area of an image map",
        '<area shape="rect" href="https://x.test/m">',
        '<area shape="rect" href="[click https://x.test/m]">[open]',
    ),
    ("mailto", '<a href="mailto:a@x.test">', '<a href="mailto:a@x.test">[open]'),
    ("tel", '<a href="tel:+15550100">', '<a href="tel:+15550100">[open]'),
    ("anchor", '<a href="#top">', '<a href="#top">[open]'),
    ("relative", '<a href="/path?q=1">', '<a href="/path?q=1">[open]'),
    ("scheme-relative", '<a href="//x.test/">', '<a href="//x.test/">[open]'),
    ("javascript", '<a href="javascript:alert(1)">', '<a href="javascript:alert(1)">[open]'),
    (
        "base href leaves relative links alone",
        '<base href="https://x.test/"><a href="page.html">',
        '<base href="https://x.test/"><a href="page.html">[open]',
    ),
    (
        "skip attribute",
        '<a data-pm-notrack href="https://x.test/">',
        '<a data-pm-notrack href="https://x.test/">[open]',
    ),
    (
        "skip class",
        '<a class="btn pm-notrack" href="https://x.test/">',
        '<a class="btn pm-notrack" href="https://x.test/">[open]',
    ),
    (
        "placeholder",
        '<a href="{{unsubscribe_url}}">Unsubscribe</a>',
        '<a href="[unsubscribe]">Unsubscribe</a>[open]',
    ),
    (
        "unsubscribe attribute",
        '<a data-pm-unsubscribe href="https://x.test/unsub">',
        '<a data-pm-unsubscribe href="[unsubscribe]">[open]',
    ),
    (
        "a tag that is not a link",
        '<abbr href="https://x.test/">',
        '<abbr href="https://x.test/">[open]',
    ),
    ("href without a value", "<a href>x</a>", "<a href>x</a>[open]"),
    (
        "a comment is no markup",
        '<!-- <a href="https://x.test/c"> --><a href="https://x.test/d">',
        '<!-- <a href="https://x.test/c"> --><a href="[click https://x.test/d]">[open]',
    ),
    (
        "Outlook conditional comment",
        '<!--[if mso]><v:roundrect href="https://x.test/b"><a href="https://x.test/c"></a>'
        "</v:roundrect><![endif]-->",
        '<!--[if mso]><v:roundrect href="[click https://x.test/b]"><a href="[click https://x.test/c]">'
        "</a></v:roundrect><![endif]-->[open]",
    ),
    (
        "downlevel-revealed conditional",
        '<!--[if !mso]><!--><a href="https://x.test/e"></a><!--<![endif]-->',
        '<!--[if !mso]><!--><a href="[click https://x.test/e]"></a><!--<![endif]-->[open]',
    ),
    (
        "script and style are raw text",
        '<style>a[href="https://x.test/s"]{}</style><script>"<a href=\'https://x.test/j\'>"</script>',
        '<style>a[href="https://x.test/s"]{}</style><script>"<a href=\'https://x.test/j\'>"</script>[open]',
    ),
    (
        "doctype",
        '<!DOCTYPE html><a href="https://x.test/">',
        '<!DOCTYPE html><a href="[click https://x.test/]">[open]',
    ),
    (
        "pixel before </body>",
        "<body><p>Hi</p></body></html>",
        "<body><p>Hi</p>[open]</body></html>",
    ),
    (
        "pixel before the last </BODY>",
        "<body></body><body></BODY >",
        "<body></body><body>[open]</BODY >",
    ),
    (
        "unterminated tag",
        '<p>x</p><a href="https://x.test/',
        '<p>x</p><a href="https://x.test/[open]',
    ),
    ("a lone <", "a < b <a href=https://x.test/>", "a < b <a href=[click https://x.test/]>[open]"),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_links_and_pixel(source: str, expected: str) -> None:
    assert marked(source) == expected


NEWSLETTER = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN">
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml">
<head><meta charset="UTF-8"><title>Our <a href="https://x.test/no">news</a></title>
<!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/>
</o:OfficeDocumentSettings></xml><![endif]-->
<style type="text/css">@media only screen and (max-width:480px){
a[x-apple-data-detectors]{color:inherit}}</style>
</head>
<body style="margin:0"><center><table role="presentation" class="bodyTable"><tr><td>
<a href="*|ARCHIVE|*" target="_blank">View this email in your browser</a>
<a href="https://x.test/shop?utm_source=news&amp;utm_medium=email" target="_blank"
   style="color:#007C89"><img src="https://img.x.test/logo.png" alt="Logo"></a>
<div><!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://x.test/buy"
 style="height:40px" arcsize="10%" fillcolor="#d62828"><w:anchorlock/><center>Buy</center>
</v:roundrect><![endif]--><a href="https://x.test/buy" class="mj-button"
 style="background:#d62828">Buy</a></div>
<p>Call <a href="tel:+15550100">us</a> or <a href="mailto:hi@x.test">mail</a>,
 <a href="#footer">footer</a>.</p>
<a href="{{unsubscribe_url}}">Unsubscribe</a> ·
<a href="https://x.test/prefs" data-pm-notrack>Preferences</a>
</td></tr></table></center></body></html>
"""


def test_a_newsletter_template_tracks_its_web_links() -> None:
    slots = html_slots(NEWSLETTER)
    assert [(s.kind, s.target) for s in slots] == [
        (SlotKind.CLICK, "https://x.test/shop?utm_source=news&utm_medium=email"),
        (SlotKind.CLICK, "https://x.test/buy"),
        (SlotKind.CLICK, "https://x.test/buy"),
        (SlotKind.UNSUBSCRIBE, ""),
        (SlotKind.OPEN, ""),
    ]
    assert NEWSLETTER[slots[0].start : slots[0].end].endswith("news&amp;utm_medium=email")
    assert NEWSLETTER[slots[-1].start :].startswith("</body></html>")


class Hrefs(HTMLParser):
    """The ``href`` of every ``<a>``, read by the standard library's parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href"))


urls = st.builds(
    lambda scheme, path, query: f"{scheme}://x.test/{path}" + (f"?{query}" if query else ""),
    st.sampled_from(["http", "https", "HTTPS"]),
    st.text("abc/-_.~%", max_size=8),
    st.text("a=&b1;\"'<>", max_size=10),
)
quotes = st.sampled_from(['"', "'"])
links = st.builds(
    lambda url, quote, upper: (
        ("<A HREF=" if upper else "<a href=")
        + quote
        + html.escape(url, quote=True)
        + quote
        + ">x</a>"
    ),
    urls,
    quotes,
    st.booleans(),
)
others = st.sampled_from(
    [
        "<p>text</p>",
        '<a href="mailto:a@x.test">m</a>',
        "<!-- <a href='https://x.test/hidden'> -->",
        '<img src="https://x.test/i.png" alt="&amp;">',
        "<br/>",
        " & < > ",
        '<table role="presentation"><tr><td>',
    ]
)


@given(st.lists(st.tuples(links, urls) | others, max_size=12))
def test_rewritten_links_reparse_as_our_urls_where_the_links_were(
    fragments: list[tuple[str, str] | str],
) -> None:
    document = "".join(f if isinstance(f, str) else f[0] for f in fragments)
    out: list[str] = []
    ours: list[str] = []
    pos = 0
    for slot in html_slots(document):
        if slot.kind is SlotKind.CLICK:
            ours.append(f"https://t.test/c/{len(ours)}")
            out += [document[pos : slot.start], ours[-1]]
            pos = slot.end
    rewritten = "".join(out) + document[pos:]
    parser = Hrefs()
    parser.feed(rewritten)
    original = Hrefs()
    original.feed(document)
    expected = iter(ours)
    assert parser.hrefs == [
        next(expected) if href and href.lower().startswith("http") else href
        for href in original.hrefs
    ]
