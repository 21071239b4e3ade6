"""Webhooks in the running engine: records posted to a tenant's endpoints, and mail
delivered at its pace while one endpoint hangs and another fails."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    DOMAINS,
    EngineProcess,
    Receivers,
    provision,
    start_engine,
    submit,
    wait_for,
)

pytestmark = pytest.mark.slow

OPERATOR_TOKEN = "e2e-operator-token-5b0e"
HOLD_SECONDS = 30.0
"""How long the slow endpoint keeps a POST before answering."""


class Endpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, float, bytes]] = []
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def on(self, path: str) -> list[bytes]:
        return [body for p, _, body in list(self.posts) if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, time.monotonic(), body))
        if self.path == "/slow":
            self.server.release.wait(HOLD_SECONDS)
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def webhook_config(receivers: Receivers, tmp_path: Path) -> Path:
    config = receivers.config(tmp_path)
    token = tmp_path / "operator.token"
    token.write_text(OPERATOR_TOKEN)
    token.chmod(0o600)
    text = config.read_text().replace(
        '[admin]\nlisten = "127.0.0.1:0"\n',
        f'[admin]\nlisten = "127.0.0.1:0"\noperator_token_file = "{token}"\n',
    )
    config.write_text(
        text + "\n[webhooks]\nallow_http = true\nallow_private = true\npoll_seconds = 0.05\n"
        f"request_timeout_seconds = {HOLD_SECONDS + 10}\n"
    )
    return config


def add_webhook(engine: EngineProcess, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{engine.admin[0]}:{engine.admin[1]}/v1/webhooks",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {OPERATOR_TOKEN}",
            "Penguin-Tenant": tenant,
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        made: dict[str, Any] = json.loads(response.read())
        return made


def test_mail_goes_out_at_its_pace_while_one_webhook_hangs_and_another_fails(
    tmp_path: Path,
    receivers: Receivers,
    engine_factory: list[EngineProcess],
    endpoint: Endpoint,
) -> None:
    config = webhook_config(receivers, tmp_path)
    account = provision(config)
    engine = start_engine(engine_factory, config)
    add_webhook(engine, account.tenant, {"url": endpoint.url("/slow")})
    add_webhook(engine, account.tenant, {"url": endpoint.url("/fail")})
    add_webhook(
        engine,
        account.tenant,
        {"url": endpoint.url("/batch"), "record_types": ["Delivery"], "format": "batch"},
    )
    recipients = [f"user{n}@{DOMAINS[n % len(DOMAINS)]}" for n in range(20)]

    started = time.monotonic()
    submit(engine.submission, account, recipients[:10])
    wait_for(lambda: bool(endpoint.on("/slow")), what="the slow endpoint's first POST")
    submit(engine.submission, account, recipients[10:])
    receivers.sink.wait_for_count(len(recipients), timeout=HOLD_SECONDS / 2)
    delivered_in = time.monotonic() - started

    assert delivered_in < HOLD_SECONDS / 2
    assert not endpoint.release.is_set()
    assert 1 <= len(endpoint.on("/slow")) <= 4  # [webhooks] concurrency_per_endpoint
    wait_for(
        lambda: sum(len(json.loads(b)) for b in endpoint.on("/batch")) == len(recipients),
        what="every Delivery record posted in batches",
    )
    delivered = {r["recipient"] for b in endpoint.on("/batch") for r in json.loads(b)}
    assert delivered == set(recipients)
    assert endpoint.on("/fail")
