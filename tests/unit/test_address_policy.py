import pytest

from engine.smtp.reply import Reply
from engine.submission.address_policy import (
    BAD_DOMAIN,
    NULL_SENDER_RECIPIENT_REFUSED,
    ROUTING_REFUSED,
    SENDER_NOT_ALLOWED,
    null_sender_recipient_problem,
    recipient_problem,
    sender_problem,
)


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
        ("", None),
        ("@", SENDER_NOT_ALLOWED),
        ("news@", SENDER_NOT_ALLOWED),
        ("a%b@news.acme.test", ROUTING_REFUSED),
    ],
)
def test_sender_must_use_a_sending_domain(address: str, expected: Reply | None) -> None:
    assert sender_problem(address, frozenset({"news.acme.test"})) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("news@news.acme.test", None),
        ("Bounces@NEWS.acme.test.", None),
        ("someone@example.com", NULL_SENDER_RECIPIENT_REFUSED),
        ("news@app1.news.acme.test", NULL_SENDER_RECIPIENT_REFUSED),
        ("news@acme.test", NULL_SENDER_RECIPIENT_REFUSED),
        ("user%victim.example@news.acme.test", ROUTING_REFUSED),
        ("@news.acme.test:user@victim.example", ROUTING_REFUSED),
        ("user@[127.0.0.1]", BAD_DOMAIN),
        ("news.acme.test", BAD_DOMAIN),
    ],
)
def test_a_null_sender_may_only_send_to_own_sending_domains(
    address: str, expected: Reply | None
) -> None:
    assert null_sender_recipient_problem(address, frozenset({"news.acme.test"})) == expected
