"""Tracked mail end to end: links rewritten per recipient at send time, then opened,
clicked and unsubscribed at the tenant's own tracking domain.

A tenant with a default tracking domain sends an HTML newsletter (quoted-
printable, a link whose query has ``&amp;``, a plain-text alternative, our
unsubscribe placeholder) to two recipients. At the sink each copy carries its
own click, open and unsubscribe URLs on that domain and a DKIM signature that
verifies. Over real HTTP to the edge: a click redirects to the original URL,
the pixel is the 43-byte GIF, a foreign host gets 404, and an RFC 8058 one-click
POST suppresses the recipient; each becomes a record on its message.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import re
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dkim
import pytest

from tests.e2e.conftest import (
    Account,
    EngineProcess,
    Receivers,
    client_tls,
    dkim_lookup,
    penguin,
    provision,
    start_engine,
    wait_for,
)

pytestmark = pytest.mark.slow

TRACKING = "click.acme.test"
SHOP = "https://shop.example/spring?utm_source=news&utm_medium=email"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HTML = (
    "<html><body><p>Spring is here.</p>"
    '<p><a href="https://shop.example/spring?utm_source=news&amp;utm_medium=email">Shop</a></p>'
    '<p><a href="mailto:help@acme.test">Write to us</a> or '
    '<a href="{{unsubscribe_url}}">unsubscribe</a>.</p></body></html>'
)
TEXT = "Spring is here: https://shop.example/text-offer\r\nUnsubscribe: {{unsubscribe_url}}\r\n"


def newsletter(sender: str, recipients: list[str]) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Spring news"
    message.set_content(TEXT, cte="quoted-printable")
    message.add_alternative(HTML, subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=email.policy.SMTP)


def send(address: tuple[str, int], account: Account, recipients: list[str]) -> str:
    sender = f"news@{account.domain}"
    with smtplib.SMTP(*address, timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        client.mail(sender)
        for rcpt in recipients:
            assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(newsletter(sender, recipients))
        assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


def request(
    edge: tuple[str, int], method: str, url: str, host: str = "", body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    headers = {"Host": host or parts.netloc, "User-Agent": BROWSER}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection = http.client.HTTPConnection(*edge, timeout=10)
    try:
        connection.request(method, parts.path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def parts_of(data: bytes) -> dict[str, str]:
    """The decoded text of each part of a delivered copy, by content type."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return {
        part.get_content_type(): part.get_content()
        for part in parsed.walk()
        if part.get_content_maintype() == "text"
    }


def records(config: Path, message_id: str, kind: str) -> list[dict[str, Any]]:
    shown = penguin(config, "queue", "show", message_id)
    return [r for r in shown["records"] if r["type"] == kind]


def test_tracked_mail_is_opened_clicked_and_unsubscribed_on_the_tenants_domain(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(tmp_path, tracking='scheme = "http"\nscanner_click_seconds = 0')
    account = provision(config)
    receivers.publish(account)
    added = penguin(config, "tracking-domain", "add", account.tenant, TRACKING, "--default")
    assert TRACKING in str(added)
    engine = start_engine(engine_factory, config)
    recipients = ["ann@example.com", "bob@example.org"]
    submission = send(engine.submission, account, recipients)
    copies = {c.rcpt_tos[0]: c for c in receivers.sink.wait_for_count(2, timeout=30)}

    clicks: dict[str, list[str]] = {}
    for index, recipient in enumerate(recipients, start=1):
        copy = copies[recipient]
        assert dkim.verify(copy.data, dnsfunc=dkim_lookup(receivers.dns.address))
        parsed = email.message_from_bytes(copy.data, policy=email.policy.default)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["List-Unsubscribe"].startswith(f"<http://{TRACKING}/u/")
        texts = parts_of(copy.data)
        html, text = texts["text/html"], texts["text/plain"]
        links = re.findall(r'href="([^"]+)"', html)
        assert links[1] == "mailto:help@acme.test", "mailto: is left alone"
        assert links[0].startswith(f"http://{TRACKING}/c/")
        assert links[2].startswith(f"http://{TRACKING}/u/")
        assert re.search(rf'<img src="http://{re.escape(TRACKING)}/o/[^"]+"', html)
        assert f"http://{TRACKING}/c/" in text and "{{unsubscribe_url}}" not in text
        clicks[f"{submission}-{index}"] = [links[0], links[2]]
    ann, bob = clicks
    assert clicks[ann][0] != clicks[bob][0], "each recipient has links of its own"

    edge = engine.tracking
    status, headers, _ = request(edge, "GET", clicks[ann][0])
    assert (status, headers["location"]) == (302, SHOP), "the & decoded once, exactly"
    assert request(edge, "GET", clicks[ann][0], host="other.test")[0] == 404
    pixel = re.search(
        rf'http://{re.escape(TRACKING)}/o/[^"]+', parts_of(copies[recipients[1]].data)["text/html"]
    )
    assert pixel is not None
    status, headers, gif = request(edge, "GET", pixel.group(0))
    assert (status, len(gif), headers["content-type"]) == (200, 43, "image/gif")
    status, _, _ = request(edge, "POST", clicks[bob][1], body=b"List-Unsubscribe=One-Click")
    assert status == 200

    def suppressed() -> set[str]:
        return {s["address"] for s in penguin(config, "suppression", "list", account.tenant)}

    wait_for(lambda: suppressed() == {recipients[1]}, 15, "the one-click unsubscribe")
    assert request(edge, "HEAD", clicks[ann][0])[0] == 302
    assert request(edge, "GET", clicks[ann][0])[0] == 302
    wait_for(lambda: len(records(config, ann, "Click")) == 3, 15, "the Click records")
    click, head, again = records(config, ann, "Click")
    assert click["meta"]["url"] == SHOP and click["meta"]["machine"] is False
    assert click["meta"]["first"] is True and click["meta"]["user_agent"] == BROWSER
    assert click["peer_address"]["addr"] == "127.0.0.1" and click["timestamp"]
    assert click["recipient"] == recipients[0], "found from the message, not the link"
    assert head["meta"]["machine"] is True and head["meta"]["machine_reason"] == "head request"
    assert again["meta"]["first"] is False and again["meta"]["machine"] is False
    wait_for(lambda: bool(records(config, bob, "Open")), 15, "the Open record")
    wait_for(lambda: bool(records(config, bob, "Unsubscribe")), 15, "the Unsubscribe record")
    assert records(config, ann, "Unsubscribe") == []
    assert engine.terminate() == 0
