import pytest

from engine.address_policy import (
    BAD_DOMAIN,
    ROUTING_REFUSED,
    SENDER_NOT_ALLOWED,
    recipient_problem,
    sender_problem,
)
from engine.smtp_policy import Reply


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("user@example.com", None),
        ("first.last+tag@sub.example.co.uk", None),
        ("ünï@bücher.example", None),
        ("user%other@example.com", ROUTING_REFUSED),
        ("a!b@example.com", ROUTING_REFUSED),
        ('"user@other"@example.com', ROUTING_REFUSED),
        ('"quoted"@example.com', ROUTING_REFUSED),
        ("@a.example:user@b.example", ROUTING_REFUSED),
        ("user@[192.0.2.1]", BAD_DOMAIN),
        ("user@localhost", BAD_DOMAIN),
        ("user@-bad.example", BAD_DOMAIN),
        ("user@", BAD_DOMAIN),
        ("@example.com", ROUTING_REFUSED),
        ("user", BAD_DOMAIN),
    ],
)
def test_recipient_relay_tricks_are_refused(address: str, expected: Reply | None) -> None:
    assert recipient_problem(address) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("news@news.acme.test", None),
        ("news@NEWS.acme.test", None),
        ("news@other.test", SENDER_NOT_ALLOWED),
        ("news@sub.news.acme.test", SENDER_NOT_ALLOWED),
        ("", SENDER_NOT_ALLOWED),
        ("a%b@news.acme.test", ROUTING_REFUSED),
    ],
)
def test_sender_must_use_a_sending_domain(address: str, expected: Reply | None) -> None:
    assert sender_problem(address, frozenset({"news.acme.test"})) == expected
