"""DKIM signing: dkimpy verifies what we sign; our canonicalization equals dkimpy's."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import dkim
import pytest
from dkim.canonicalization import Relaxed

from engine.dkim.keys import DkimKeyError, DkimKeyPair, generate_key, load_private_key
from engine.dkim.signer import (
    LINE_MAX,
    DkimSigner,
    DkimSignError,
    KeyCache,
    parse_header_section,
    relaxed_body,
    relaxed_fields,
    relaxed_header_value,
)

DOMAIN = "example.com"
SELECTOR = "pm202611"
NOW = 1_790_000_000

HEADERS = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Hello\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.com/u/abc>, <mailto:u-abc@example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Mailer: penguin\r\n"
)

MESSAGES = {
    "plain": HEADERS + b"\r\nHello Bob,\r\nsee you.\r\n",
    "folded headers": (
        b"From: Alice\r\n <alice@example.com>\r\n"
        b"To: bob@example.org,\r\n\tcarol@example.org,\r\n   dave@example.org\r\n"
        b"Subject:   A   long\t subject \r\n  that is  folded  \r\n"
        b"Cc: eve@example.org\r\n"
        b"\r\nBody\r\n"
    ),
    "crlf body": HEADERS + b"\r\n" + b"line one\r\nline two\r\n\r\nafter blank\r\n",
    "empty body": HEADERS + b"\r\n",
    "no body": HEADERS,
    "trailing blank lines": HEADERS + b"\r\ntext\r\n\r\n\r\n\r\n",
    "only blank lines": HEADERS + b"\r\n\r\n\r\n",
    "whitespace": HEADERS + b"\r\n a  b\t\tc \t\r\n\t\r\n  \r\nend  \r\n \r\n",
    "8-bit": (
        b"From: =?utf-8?q?Zo=C3=A9?= <zoe@example.com>\r\n"
        b"Subject: Caf\xc3\xa9 \xe2\x98\x95\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\nCaf\xc3\xa9 cr\xe8me \xff\xfe\r\n"
    ),
    "long lines": (
        b"From: a@example.com\r\n"
        b"Subject: " + b"word " * 150 + b"\r\n"
        b"References: " + b" ".join(b"<%d@example.com>" % i for i in range(60)) + b"\r\n"
        b"\r\n" + b"x" * 998 + b"\r\n" + b"y " * 400 + b"\r\n"
    ),
    "lf only": HEADERS.replace(b"\r\n", b"\n") + b"\nline\nline two  \n\n",
    "no final newline": HEADERS + b"\r\nlast line",
    "repeated fields": (
        b"From: a@example.com\r\nTo: one@example.org\r\nX-A: 1\r\nTo: two@example.org\r\n"
        b"Feedback-ID: c1:t1:s1:penguin\r\nList-Id: <news.example.com>\r\n"
        b"In-Reply-To: <0@example.com>\r\nReply-To: r@example.com\r\n\r\nbody\r\n"
    ),
}


@pytest.fixture(scope="module")
def pairs() -> dict[str, DkimKeyPair]:
    return {"rsa": generate_key("rsa"), "ed25519": generate_key("ed25519")}


def dns_for(pair: DkimKeyPair) -> Callable[..., bytes | None]:
    expected = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        if name != expected:
            return None
        return f"v=DKIM1; k={pair.algorithm}; p={pair.public_b64}".encode()

    return txt


def verifies(signed: bytes, pair: DkimKeyPair) -> bool:
    return bool(dkim.verify(signed, dnsfunc=dns_for(pair)))


def sign(message: bytes, pair: DkimKeyPair, **kwargs: int) -> bytes:
    key = load_private_key(pair.private_pem)
    return DkimSigner().sign(message, DOMAIN, SELECTOR, pair.algorithm, key, now=NOW, **kwargs)


def tags(signed: bytes) -> dict[str, str]:
    header = signed.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    value = [header[0]]
    for line in header[1:]:
        if not line.startswith(b" "):
            break
        value.append(line)
    text = b"".join(value).decode().split(":", 1)[1]
    return dict(
        (k.strip(), re.sub(r"\s+", "", v)) for k, v in (t.split("=", 1) for t in text.split(";"))
    )


ALGORITHMS = ["rsa", "ed25519"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("name", list(MESSAGES))
def test_signed_message_verifies(pairs: dict[str, DkimKeyPair], algorithm: str, name: str) -> None:
    signed = sign(MESSAGES[name], pairs[algorithm])
    assert verifies(signed, pairs[algorithm])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_header_field_shape(pairs: dict[str, DkimKeyPair], algorithm: str) -> None:
    message = MESSAGES["plain"]
    key = load_private_key(pairs[algorithm].private_pem)
    header = DkimSigner().signature_header(message, DOMAIN, SELECTOR, algorithm, key, now=NOW)
    assert header.startswith(b"DKIM-Signature: v=1; ")
    assert header.endswith(b"\r\n") and not header.endswith(b"\r\n\r\n")
    assert all(len(line) <= LINE_MAX for line in header.split(b"\r\n"))
    assert all(line.startswith(b" ") for line in header[:-2].split(b"\r\n")[1:])
    t = tags(header + message)
    assert t["a"] == {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}[algorithm]
    assert t["c"] == "relaxed/relaxed"
    assert (t["d"], t["s"], t["t"]) == (DOMAIN, SELECTOR, str(NOW))
    assert "x" not in t
    assert t["h"] == (
        "from:to:subject:date:message-id:mime-version:content-type:"
        "list-unsubscribe:list-unsubscribe-post:from"
    )


def test_sign_is_header_then_message(pairs: dict[str, DkimKeyPair]) -> None:
    pair = pairs["ed25519"]
    key = load_private_key(pair.private_pem)
    signer = DkimSigner()
    message = MESSAGES["plain"]
    header = signer.signature_header(message, DOMAIN, SELECTOR, "ed25519", key, now=NOW)
    assert signer.sign(message, DOMAIN, SELECTOR, "ed25519", key, now=NOW) == header + message


def test_expiry_is_optional(pairs: dict[str, DkimKeyPair]) -> None:
    ten_years = 10 * 365 * 86_400
    signed = sign(MESSAGES["plain"], pairs["rsa"], expire_after=ten_years)
    assert tags(signed)["x"] == str(NOW + ten_years)
    assert verifies(signed, pairs["rsa"])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_from_is_over_signed(pairs: dict[str, DkimKeyPair], algorithm: str) -> None:
    signed = sign(MESSAGES["repeated fields"], pairs[algorithm])
    assert tags(signed)["h"].split(":").count("from") == 2
    assert tags(signed)["h"].split(":").count("to") == 2
    head, body = signed.split(b"\r\n\r\n", 1)
    added_below = head + b"\r\nFrom: mallory@example.net\r\n\r\n" + body
    added_above = b"From: mallory@example.net\r\n" + signed
    assert verifies(signed, pairs[algorithm])
    assert not verifies(added_below, pairs[algorithm])
    assert not verifies(added_above, pairs[algorithm])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<https://example.com/u/abc>", b"<https://evil.example/u/abc>"),
        (b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks"),
        (b"Subject: Hello", b"Subject: Hello!"),
        (b"see you.", b"see you!"),
    ],
)
def test_tampering_breaks_the_signature(
    pairs: dict[str, DkimKeyPair], algorithm: str, old: bytes, new: bytes
) -> None:
    signed = sign(MESSAGES["plain"], pairs[algorithm])
    assert old in signed
    assert not verifies(signed.replace(old, new), pairs[algorithm])


def test_unsigned_fields_may_change(pairs: dict[str, DkimKeyPair]) -> None:
    signed = sign(MESSAGES["plain"], pairs["rsa"])
    assert verifies(signed.replace(b"X-Mailer: penguin", b"X-Mailer: other"), pairs["rsa"])


def test_relaxed_changes_survive(pairs: dict[str, DkimKeyPair]) -> None:
    signed = sign(MESSAGES["plain"], pairs["rsa"])
    refolded = signed.replace(b"Subject: Hello", b"SUBJECT:\r\n   Hello  ").replace(
        b"see you.\r\n", b"see   you.  \r\n\r\n"
    )
    assert verifies(refolded, pairs["rsa"])


def test_message_without_from_is_refused(pairs: dict[str, DkimKeyPair]) -> None:
    with pytest.raises(DkimSignError, match="From"):
        sign(b"To: b@example.org\r\n\r\nbody\r\n", pairs["rsa"])


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b" leading continuation\r\nFrom: a@b\r\n\r\n", "line 1 begins with white space"),
        (b"From: a@b\r\nnot a field\r\n\r\n", "line 2 has no colon"),
        (b"From alice Mon Nov  2 10:00:00 2026\r\nFrom: a@b\r\n\r\n", "line 1 has white space"),
        ("From: a@b\r\nSübject: x\r\n\r\n".encode(), "line 2 has a field name that is not"),
    ],
)
def test_malformed_header_section_is_refused(
    pairs: dict[str, DkimKeyPair], message: bytes, reason: str
) -> None:
    with pytest.raises(DkimSignError, match=f"malformed header section: {reason}"):
        sign(message, pairs["rsa"])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_white_space_before_a_colon_is_not_part_of_the_relaxed_field(
    pairs: dict[str, DkimKeyPair], algorithm: str
) -> None:
    # RFC 6376 §3.4.2 deletes it; dkimpy cannot parse it, so the same signature
    # is checked on the message as acceptance stores it (RFC 5322 §4.5 syntax dropped).
    obsolete = b"From : a@example.com\r\nSubject\t :  Hello\r\n\r\nbody\r\n"
    stored = b"From: a@example.com\r\nSubject:  Hello\r\n\r\nbody\r\n"
    key = load_private_key(pairs[algorithm].private_pem)
    header = DkimSigner().signature_header(obsolete, DOMAIN, SELECTOR, algorithm, key, now=NOW)
    assert tags(header + obsolete)["h"] == "from:subject:from"
    assert verifies(header + stored, pairs[algorithm])


def test_algorithm_must_match_key(pairs: dict[str, DkimKeyPair]) -> None:
    key = load_private_key(pairs["ed25519"].private_pem)
    with pytest.raises(DkimKeyError, match="not an rsa key"):
        DkimSigner().sign(MESSAGES["plain"], DOMAIN, SELECTOR, "rsa", key, now=NOW)
    with pytest.raises(DkimKeyError, match="unknown DKIM algorithm"):
        DkimSigner().sign(MESSAGES["plain"], DOMAIN, SELECTOR, "dsa", key, now=NOW)
    with pytest.raises(DkimKeyError, match="no key cache"):
        DkimSigner().sign(MESSAGES["plain"], DOMAIN, SELECTOR, "rsa", now=NOW)


# --- key cache -------------------------------------------------------------------------------


def test_key_cache_loads_each_key_once(pairs: dict[str, DkimKeyPair]) -> None:
    store = {
        (DOMAIN, "old"): pairs["rsa"].private_pem,
        (DOMAIN, "new"): pairs["ed25519"].private_pem,
    }
    calls: list[tuple[str, str]] = []

    def loader(domain: str, selector: str) -> bytes:
        calls.append((domain, selector))
        return store[(domain, selector)]

    cache = KeyCache(loader)
    signer = DkimSigner(cache)
    for _ in range(3):
        signer.sign(MESSAGES["plain"], DOMAIN, "old", "rsa", now=NOW)
        signer.sign(MESSAGES["plain"], DOMAIN, "new", "ed25519", now=NOW)
    assert calls == [(DOMAIN, "old"), (DOMAIN, "new")]
    assert len(cache) == 2
    assert cache.get("EXAMPLE.com", "OLD") is cache.get(DOMAIN, "old")
    cache.forget(DOMAIN, "old")
    cache.get(DOMAIN, "old")
    assert calls[-1] == (DOMAIN, "old") and len(calls) == 3


def test_cached_keys_sign_verifiably(pairs: dict[str, DkimKeyPair]) -> None:
    cache = KeyCache(lambda domain, selector: pairs["rsa"].private_pem)
    signed = DkimSigner(cache).sign(MESSAGES["plain"], DOMAIN, SELECTOR, "rsa", now=NOW)
    assert verifies(signed, pairs["rsa"])


# --- canonicalization equivalence with dkimpy ------------------------------------------------


def dkimpy_body(body: bytes) -> bytes:
    """dkimpy's relaxed body: its message parser (line ends to CRLF), then its canonicalizer."""
    _, parsed = dkim.rfc822_parse(b"X: y\r\n\r\n" + body)
    return bytes(Relaxed.canonicalize_body(parsed))


def on_the_wire(body: bytes) -> bytes:
    """The body as SMTP carries it: a final line break is added if missing (RFC 5321 §4.1.1.4)."""
    return body if not body or body.endswith(b"\n") else body + b"\r\n"


BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"a",
    b"a\r\n",
    b"a\r\n\r\n",
    b"a\r\n\r\nb\r\n\r\n",
    b" \r\n",
    b"\t\r\n",
    b"  a  b  \r\n",
    b"a\t \tb\t\r\n",
    b"a \r\n \r\n\t\r\n",
    b"a\nb\n",
    b"a\n\n\n",
    b"a\r\r\nb\r\n",
    b"a\rb\r\n",
    b"a \r \r\n",
    b"a\r",
    b"\r",
    b"a\r\n\r",
    b"a\x0b \x0c\r\n",
    b"caf\xc3\xa9  cr\xe8me\t\r\n",
    b"x" * 2000 + b"   \r\n" + b"y\t" * 500 + b"\r\n\r\n",
    b"   ",
    b"a \t ",
    b"a\r\n  ",
    b"a\r\n \t\r\n  ",
]


@pytest.mark.parametrize("body", BODIES)
def test_relaxed_body_matches_dkimpy(body: bytes) -> None:
    assert relaxed_body(body) == dkimpy_body(on_the_wire(body))


@pytest.mark.parametrize("body", [b"   ", b"a \t ", b"a\r\n  ", b"a\r\n \t\r\n  "])
def test_unterminated_last_line_is_canonicalized_as_sent(body: bytes) -> None:
    # dkimpy keeps one space of an unterminated last line; on the wire the line is
    # terminated, so its trailing whitespace goes (RFC 6376 §3.4.4).
    assert dkimpy_body(body) != dkimpy_body(on_the_wire(body))
    assert relaxed_body(body) == dkimpy_body(on_the_wire(body))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_unterminated_body_verifies_as_sent(pairs: dict[str, DkimKeyPair], algorithm: str) -> None:
    signed = sign(HEADERS + b"\r\nlast line \t ", pairs[algorithm])
    assert verifies(on_the_wire(signed), pairs[algorithm])


def test_relaxed_body_matches_dkimpy_on_random_bodies() -> None:
    rng = random.Random(6376)
    alphabet = [b"a", b"b", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xe9"]
    for _ in range(3000):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        assert relaxed_body(body) == dkimpy_body(on_the_wire(body)), body
        if not body or body.endswith(b"\n") or body.rstrip(b" \t") == body:
            assert relaxed_body(body) == dkimpy_body(body), body


HEADER_VALUES = [
    b"",
    b" plain",
    b"  spaced   out  ",
    b"\ttabbed\t\tvalue\t",
    b" folded\r\n continuation\r\n\tand more ",
    b" lf folded\n next",
    b" cr\r inside",
    b" \xc3\xa9\xe2\x98\x95 8-bit",
    b" \x0b vertical tab \x0c",
]


@pytest.mark.parametrize("value", HEADER_VALUES)
def test_relaxed_header_value_matches_dkimpy(value: bytes) -> None:
    [(name, expected)] = Relaxed.canonicalize_headers([(b"Subject", value + b"\r\n")])
    assert name == b"subject"
    assert relaxed_header_value(value) + b"\r\n" == expected


def test_relaxed_fields_match_dkimpy() -> None:
    theirs = [(b"X-%d" % i, value + b"\r\n") for i, value in enumerate(HEADER_VALUES)]
    unfolded = [
        (name.lower(), value.replace(b"\r\n", b"").replace(b"\n", b"")) for name, value in theirs
    ]
    assert relaxed_fields(unfolded) == b"".join(
        name + b":" + value for name, value in Relaxed.canonicalize_headers(theirs)
    )


@pytest.mark.parametrize("name", list(MESSAGES))
def test_header_parsing_matches_dkimpy(name: str) -> None:
    message = MESSAGES[name]
    fields, body_start = parse_header_section(message)
    theirs, body = dkim.rfc822_parse(message)
    assert [(n, relaxed_header_value(v)) for n, v in fields] == [
        (n.lower(), v.rstrip(b"\r\n")) for n, v in Relaxed.canonicalize_headers(theirs)
    ]
    assert relaxed_fields(fields) == b"".join(
        name.lower() + b":" + value for name, value in Relaxed.canonicalize_headers(theirs)
    )
    assert relaxed_body(message[body_start:]) == dkimpy_body(on_the_wire(body))
