"""The plain-text scanner of link rewriting: bare URLs, sentence punctuation, placeholders."""

from __future__ import annotations

import pytest

from tracking_edge.rewriting.slots import SlotKind
from tracking_edge.rewriting.text import text_slots


def marked(text: str) -> str:
    out, pos = [], 0
    for slot in text_slots(text):
        marker = f"[{slot.target}]" if slot.kind is SlotKind.CLICK else "[unsubscribe]"
        out += [text[pos : slot.start], marker]
        pos = slot.end
    return "".join(out) + text[pos:]


CASES = [
    ("Shop at https://x.test/a?b=1&c=2 now", "Shop at [https://x.test/a?b=1&c=2] now"),
    ("End: https://x.test/a.", "End: [https://x.test/a]."),
    ("Really? http://x.test/?q=1!", "Really? [http://x.test/?q=1]!"),
    ("(see https://x.test/a)", "(see [https://x.test/a])"),
    ("https://x.test/wiki/Foo_(bar)", "[https://x.test/wiki/Foo_(bar)]"),
    ("Link: <https://x.test/a>", "Link: <[https://x.test/a]>"),
    ('"https://x.test/q"', '"[https://x.test/q]"'),
    ("HTTPS://X.TEST/UP;", "[HTTPS://X.TEST/UP];"),
    ("a https://x.test/1\r\nb https://x.test/2,", "a [https://x.test/1]\r\nb [https://x.test/2],"),
    ("no scheme: https:// alone", "no scheme: https:// alone"),
    ("mailto:a@x.test ftp://x.test/f www.x.test", "mailto:a@x.test ftp://x.test/f www.x.test"),
    ("Unsubscribe: {{unsubscribe_url}}", "Unsubscribe: [unsubscribe]"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_bare_urls(source: str, expected: str) -> None:
    assert marked(source) == expected
