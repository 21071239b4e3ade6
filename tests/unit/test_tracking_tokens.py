"""Tracking tokens: they round-trip, stay compact, and refuse tampering, foreign hosts and
unknown keys."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.loader import parse_settings
from engine import return_path
from engine.model import MessageState, QueuedMessage
from engine.token_keys import derive_key
from tracking_edge.tokens import (
    KEY_PURPOSE,
    TokenClaims,
    TokenKind,
    TrackingTokens,
    tokens_from_settings,
)

SECRET = bytes(range(32))
KEYS = {k: derive_key(SECRET, k, KEY_PURPOSE) for k in ("a", "b")}
TOKENS = TrackingTokens({"a": KEYS["a"]}, "a")
DOMAIN = "click.acme.test"
URL = "https://acme.test/spring-sale?utm_source=mail&id=42"
MESSAGE = QueuedMessage(
    id="0192f3a4b5c6d7e8f90a1b2c3d4e-1",
    submission_id="0192f3a4b5c6d7e8f90a1b2c3d4e",
    tenant_id=7,
    queue="spring:acme@example.com",
    campaign="spring",
    sender="news@acme.test",
    recipient="jane.doe@example.com",
    domain="example.com",
    state=MessageState.LEASED,
    due_at=1_764_000_000.5,
    created_at=1_764_000_000.0,
)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_links_are_on_the_tracking_domain_with_their_kind() -> None:
    assert TOKENS.open_url(MESSAGE, DOMAIN).startswith(f"https://{DOMAIN}/o/")
    assert TOKENS.click_url(MESSAGE, DOMAIN, URL).startswith(f"https://{DOMAIN}/c/")
    assert TOKENS.unsubscribe_url(MESSAGE, "Click.Acme.Test.").startswith(f"https://{DOMAIN}/u/")
    http = TrackingTokens({"a": KEYS["a"]}, "a", scheme="http")
    assert http.open_url(MESSAGE, DOMAIN).startswith(f"http://{DOMAIN}/o/")


def test_a_click_token_carries_what_the_edge_needs() -> None:
    claims = TOKENS.decode(token_of(TOKENS.click_url(MESSAGE, DOMAIN, URL)), DOMAIN)
    assert claims == TokenClaims(
        kind=TokenKind.CLICK,
        message_id=MESSAGE.id,
        tenant_id=7,
        recipient="",
        domain=DOMAIN,
        sent_at=1_764_000_000,
        url=URL,
        key_id="a",
    )


def test_the_send_time_can_be_given() -> None:
    url = TOKENS.open_url(MESSAGE, DOMAIN, sent_at=1_764_000_123.9)
    claims = TOKENS.decode(token_of(url), DOMAIN)
    assert claims is not None and claims.sent_at == 1_764_000_123 and claims.url is None


def test_tokens_are_compact_and_url_safe() -> None:
    """Typical lengths (a real message id, a 20-octet address): open and unsubscribe
    tokens 84 characters, a click token 84 plus 4/3 of its URL's length."""
    open_token = token_of(TOKENS.open_url(MESSAGE, DOMAIN))
    click_token = token_of(TOKENS.click_url(MESSAGE, DOMAIN, URL))
    assert len(open_token) <= 88
    assert len(click_token) <= 88 + len(URL) * 4 // 3 + 1
    for token in (open_token, click_token):
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


messages = st.builds(
    lambda mid, tenant, rcpt, due: dataclasses.replace(
        MESSAGE, id=mid, tenant_id=tenant, recipient=rcpt, due_at=due
    ),
    st.binary(min_size=1, max_size=16).map(lambda raw: f"{raw.hex()}-3")
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.text(min_size=1, max_size=80),
    st.floats(min_value=0, max_value=2**32 - 1),
)
urls = st.text(min_size=1, max_size=300).map(lambda path: "https://x.test/" + path)


@given(messages, urls, st.sampled_from(list(TokenKind)))
def test_every_token_round_trips(message: QueuedMessage, url: str, kind: TokenKind) -> None:
    token = TOKENS.token(kind, message, DOMAIN, url if kind is TokenKind.CLICK else "")
    claims = TOKENS.decode(token, DOMAIN)
    assert claims is not None
    assert (claims.kind, claims.message_id) == (kind, message.id)
    assert claims.tenant_id == message.tenant_id
    assert claims.recipient == (message.recipient if kind is TokenKind.UNSUBSCRIBE else "")
    assert claims.url == (url if kind is TokenKind.CLICK else None)
    assert claims.sent_at == int(message.due_at)


def test_only_the_unsubscribe_token_carries_the_address() -> None:
    def raw(url: str) -> bytes:
        token = token_of(url)
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

    address = MESSAGE.recipient.encode()
    assert address not in raw(TOKENS.click_url(MESSAGE, DOMAIN, URL))
    assert address not in raw(TOKENS.open_url(MESSAGE, DOMAIN))
    assert address in raw(TOKENS.unsubscribe_url(MESSAGE, DOMAIN))


def test_tampering_with_any_character_is_refused() -> None:
    token = token_of(TOKENS.click_url(MESSAGE, DOMAIN, URL))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for at, char in enumerate(token):
        for other in alphabet:
            if other != char:
                forged = token[:at] + other + token[at + 1 :]
                assert TOKENS.decode(forged, DOMAIN) is None, (at, other)
    assert TOKENS.decode(token[:-1], DOMAIN) is None
    assert TOKENS.decode(token + "A", DOMAIN) is None
    assert TOKENS.decode(token + "=", DOMAIN) is None


def test_a_changed_url_with_the_old_mac_is_refused() -> None:
    raw = base64.urlsafe_b64decode(token_of(TOKENS.click_url(MESSAGE, DOMAIN, URL)) + "==")
    mac = raw[-12:]
    forged = raw[:-12].replace(b"acme.test/spring", b"evil.test/spring") + mac
    token = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert TOKENS.decode(token, DOMAIN) is None


@pytest.mark.parametrize("host", ["click.other.test", "acme.test", "click.acme.test.evil", ""])
def test_a_token_for_one_domain_is_refused_on_another(host: str) -> None:
    token = token_of(TOKENS.click_url(MESSAGE, DOMAIN, URL))
    assert TOKENS.decode(token, host) is None
    assert TOKENS.decode(token, "CLICK.ACME.TEST") is not None


def test_rotation_accepted_keys_verify_unknown_ones_do_not() -> None:
    old = TrackingTokens({"a": KEYS["a"]}, "a")
    rotated = TrackingTokens(KEYS, "b")
    retired = TrackingTokens({"b": KEYS["b"]}, "b")
    old_token = token_of(old.open_url(MESSAGE, DOMAIN))
    claims = rotated.decode(old_token, DOMAIN)
    assert claims is not None and claims.key_id == "a"
    new_claims = rotated.decode(token_of(rotated.open_url(MESSAGE, DOMAIN)), DOMAIN)
    assert new_claims is not None and new_claims.key_id == "b"
    assert retired.decode(old_token, DOMAIN) is None
    assert TrackingTokens({"a": bytes(32)}, "a").decode(old_token, DOMAIN) is None


@pytest.mark.parametrize("token", ["", "A", "!!!!", "é", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "a/b"])
def test_garbage_is_refused(token: str) -> None:
    assert TOKENS.decode(token, DOMAIN) is None


def test_tokens_from_settings_use_the_configured_keys() -> None:
    settings = parse_settings(
        {"tracking": {"token_key_id": "b", "accepted_key_ids": ["a"], "scheme": "http"}}
    )
    tokens = tokens_from_settings(settings, SECRET)
    url = tokens.open_url(MESSAGE, DOMAIN)
    assert url.startswith("http://")
    assert TrackingTokens(KEYS, "a").decode(token_of(url), DOMAIN) is not None
    assert TOKENS.decode(token_of(tokens.open_url(MESSAGE, DOMAIN)), DOMAIN) is None
    assert tokens.decode(token_of(TOKENS.open_url(MESSAGE, DOMAIN)), DOMAIN) is not None
    other_secret = tokens_from_settings(settings, bytes(32))
    assert other_secret.decode(token_of(url), DOMAIN) is None


def test_tracking_keys_differ_from_return_path_keys() -> None:
    assert derive_key(SECRET, "a", KEY_PURPOSE) != return_path.derive_key(SECRET, "a")


MADE_BEFORE = {
    TokenKind.CLICK: "https://click.acme.test/c/AWFjaSSBAAAAAAcRAQ4BkvOktcbX6PkKGyw9TgEAAGh0dHBzOi8v"
    "YWNtZS50ZXN0L3NwcmluZy1zYWxlP3V0bV9zb3VyY2U9bWFpbCZpZD00MqSKOIYMCDo4Z3uZww",
    TokenKind.UNSUBSCRIBE: "https://click.acme.test/u/AWF1aSSBAAAAAAcRAQ4BkvOktcbX6PkKGyw9TgEAFGph"
    "bmUuZG9lQGV4YW1wbGUuY29tdBaZeL4ic0EcL7Jv",
}
"""Links of ``MESSAGE`` as mail already sent carries them: the format does not change."""


def test_links_are_made_as_they_always_were_and_still_verify() -> None:
    assert TOKENS.click_url(MESSAGE, DOMAIN, URL) == MADE_BEFORE[TokenKind.CLICK]
    assert TOKENS.click_urls(MESSAGE, DOMAIN)(URL) == MADE_BEFORE[TokenKind.CLICK]
    assert TOKENS.unsubscribe_url(MESSAGE, DOMAIN) == MADE_BEFORE[TokenKind.UNSUBSCRIBE]
    for kind, url in MADE_BEFORE.items():
        claims = TOKENS.decode(token_of(url), DOMAIN)
        assert claims is not None and claims.kind is kind


@given(
    urls=st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=5),
    domain=st.sampled_from([DOMAIN, "Click.Acme.Test.", "t.example.org"]),
    sent_at=st.one_of(st.none(), st.floats(0, 2**32 - 1)),
)
def test_the_click_urls_of_a_message_are_its_click_url_for_each_link(
    urls: list[str], domain: str, sent_at: float | None
) -> None:
    click_urls = TOKENS.click_urls(MESSAGE, domain, sent_at=sent_at)
    for url in urls:
        made = click_urls(url)
        assert made == TOKENS.click_url(MESSAGE, domain, url, sent_at=sent_at)
        claims = TOKENS.decode(token_of(made), domain)
        assert claims is not None and claims.url == url
