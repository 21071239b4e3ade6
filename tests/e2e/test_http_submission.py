"""A message sent over HTTP (``POST /v1/messages`` on the admin listener of
``penguin run``) is delivered, DKIM-signed, to a loopback sink like one
submitted over SMTP, and its records follow it to Delivery."""

from __future__ import annotations

import email
import re
import socket
from email import policy
from pathlib import Path

import dkim
import httpx
import pytest

from admin_api.routes.messages import body_limit
from config.schema import Settings
from tests.e2e.conftest import (
    Account,
    EngineProcess,
    Receivers,
    dkim_lookup,
    penguin,
    provision,
    start_engine,
    wait_for,
)

pytestmark = pytest.mark.slow

TOKEN = "e2e-operator-token-0123456789abcdef"


def with_operator_token(config: Path) -> None:
    token_file = config.parent / "operator.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    text = config.read_text()
    admin = '[admin]\nlisten = "127.0.0.1:0"\n'
    assert admin in text
    config.write_text(text.replace(admin, f'{admin}operator_token_file = "{token_file}"\n'))


def engine_with_operator(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> tuple[Path, Account, EngineProcess]:
    """A running engine whose admin API takes ``TOKEN``, and a provisioned tenant whose
    sending domain is published."""
    config = receivers.config(tmp_path)
    with_operator_token(config)
    account = provision(config)
    receivers.publish(account)
    return config, account, start_engine(engine_factory, config)


def test_a_message_sent_over_http_is_delivered_signed(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config, account, engine = engine_with_operator(tmp_path, receivers, engine_factory)
    host, port = engine.admin
    body = {
        "from": {"email": f"news@{account.domain}", "name": "Acme Nëws"},
        "to": [{"email": "user0@example.com", "variables": {"name": "Ann"}}],
        "subject": "Hello {{ name }}",
        "text": "Hi {{ name }}",
        "html": "<p>Hi {{ name }}</p>",
        "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content": "aGk="}],
    }
    headers = {"Authorization": f"Bearer {TOKEN}", "Penguin-Tenant": account.tenant}
    sent = httpx.post(f"http://{host}:{port}/v1/messages", json=body, headers=headers, timeout=30)
    assert sent.status_code == 202, sent.text
    [accepted] = sent.json()["messages"]

    [copy] = receivers.sink.wait_for_count(1, timeout=30)
    assert dkim.verify(copy.data, dnsfunc=dkim_lookup(receivers.dns.address))
    assert list(copy.rcpt_tos) == ["user0@example.com"]
    parsed = email.message_from_bytes(copy.data, policy=policy.default)
    assert parsed["Subject"] == "Hello Ann"
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["a.txt"]

    def delivered() -> bool:
        return bool(penguin(config, "queue", "show", accepted["id"])["state"] == "delivered")

    wait_for(delivered, what="the message delivered")
    shown = httpx.get(
        f"http://{host}:{port}/v1/messages/{accepted['id']}", headers=headers, timeout=30
    ).json()
    assert [r["type"] for r in shown["records"]] == ["Reception", "Delivery"]
    assert shown["records"][0]["reception_protocol"] == "HTTP"


def test_the_admin_listener_answers_what_it_refuses_as_the_route_does(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    _, account, engine = engine_with_operator(tmp_path, receivers, engine_factory)
    host, port = engine.admin
    url = f"http://{host}:{port}/v1/messages"
    headers = {"Authorization": f"Bearer {TOKEN}", "Penguin-Tenant": account.tenant}
    body = {"from": f"news@{account.domain}", "to": ["user0@example.com"], "text": "hi"}

    unknown = httpx.post(url, json=body, headers={"Authorization": "Bearer pm_x"}, timeout=30)
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthorized"
    assert unknown.headers["www-authenticate"] == "Bearer"

    elsewhere = httpx.post(url, json={**body, "from": "a@other.example"}, headers=headers)
    assert elsewhere.status_code == 422 and elsewhere.json()["error"]["field"] == "from"

    malformed = httpx.post(url, json={**body, "to": "user0@example.com"}, headers=headers)
    assert malformed.status_code == 422 and malformed.json()["error"]["field"] == "to"

    over = body_limit(Settings().submission.max_message_bytes) + 1
    huge = httpx.post(url, content=b"{" + b" " * over, headers=headers, timeout=30)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"

    with httpx.Client(timeout=30) as client:  # kept alive across answers
        answers = [client.post(url, json=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert len({a.json()["messages"][0]["id"] for a in answers}) == 3


def _answer_on(sock: socket.socket, request: bytes) -> bytes:
    """The whole answer of the listener to ``request`` (its body as long as its
    Content-Length says), so that the next answer on ``sock`` starts clean."""
    sock.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length is not None and len(body) < int(length.group(1)):
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_each_http_listener_holds_the_connections_its_setting_allows(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(tmp_path, tracking="max_connections = 2")
    admin = '[admin]\nlisten = "127.0.0.1:0"\n'
    config.write_text(config.read_text().replace(admin, f"{admin}max_connections = 3\n"))
    engine = start_engine(engine_factory, config)
    for (host, port), allowed in ((engine.admin, 3), (engine.tracking, 2)):
        request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        held = [socket.create_connection((host, port), timeout=10) for _ in range(allowed)]
        try:
            for sock in held:  # answered, so held by the listener, and kept
                assert _answer_on(sock, request).startswith(b"HTTP/1.1 ")
            with socket.create_connection((host, port), timeout=10) as over:
                answer = b""
                while chunk := over.recv(4096):  # to the end: closed at once, or a timeout
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 503 ")
            for sock in held:  # the held ones are still served
                assert _answer_on(sock, request).startswith(b"HTTP/1.1 ")
        finally:
            for sock in held:
                sock.close()
