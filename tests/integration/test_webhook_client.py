"""The webhook client against a real HTTP server on loopback (uvicorn), plain and TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.clock import FakeClock
from engine.webhooks.client import HttpPoster
from engine.webhooks.endpoints import parse_endpoint
from engine.webhooks.retries import PostResult
from tests.harness.tlsutil import make_tls_pair
from tests.harness.webhook_receiver import WebhookReceiver, webhook_receiver

BODY = b'{"type":"Delivery"}'


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(FakeClock().now) as running:
        yield running


async def post(poster: HttpPoster, url: str) -> PostResult:
    endpoint = parse_endpoint(url, allow_http=True, allow_private=True)
    return await poster.post(endpoint, BODY, {"Penguin-Signature": "t=1,v1=00"})


async def test_a_post_carries_the_body_and_headers_and_returns_the_status(
    receiver: WebhookReceiver,
) -> None:
    poster = HttpPoster(timeout=5, allow_private=True)
    assert await post(poster, receiver.url("/ok?x=1")) == PostResult(200)
    assert await post(poster, receiver.url("/fail")) == PostResult(500)
    assert await post(poster, receiver.url("/status/404")) == PostResult(404)
    first = receiver.requests[0]
    assert (first.path, first.body) == ("/ok", BODY)
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(BODY))
    assert first.headers["penguin-signature"] == "t=1,v1=00"
    assert first.headers["host"] == receiver.base.removeprefix("http://")


async def test_a_slow_endpoint_meets_the_deadline(receiver: WebhookReceiver) -> None:
    poster = HttpPoster(timeout=0.3, allow_private=True)
    result = await post(poster, receiver.url("/slow"))
    assert result.status is None and result.error == "no status within 0.3 s"


async def test_a_refused_connection_is_an_error_value() -> None:
    poster = HttpPoster(timeout=5, allow_private=True)
    result = await post(poster, "http://127.0.0.1:9/")
    assert result.status is None and result.error is not None
    assert "ConnectionRefusedError" in result.error


async def test_private_addresses_are_refused_before_connecting(receiver: WebhookReceiver) -> None:
    poster = HttpPoster(timeout=5, allow_private=False)
    result = await post(poster, receiver.url("/ok"))
    assert result.status is None and result.error is not None
    assert result.error.startswith("refused:")

    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    rebinding = HttpPoster(timeout=5, allow_private=False, resolve=to_loopback)
    port = int(receiver.base.rsplit(":", 1)[1])
    endpoint = parse_endpoint(
        f"http://public.example:{port}/ok", allow_http=True, allow_private=False
    )
    result = await rebinding.post(endpoint, BODY, {})
    assert result.status is None and "127.0.0.1, which is not public" in str(result.error)
    assert receiver.requests == []


async def test_tls_is_verified_against_the_host_name(tmp_path: Path) -> None:
    tls = make_tls_pair(tmp_path)
    async with webhook_receiver(FakeClock().now, ssl_context=tls.server) as receiver:
        trusting = HttpPoster(timeout=5, allow_private=True, ssl_context=tls.client)
        assert receiver.base.startswith("https://localhost:")
        assert await post(trusting, receiver.url("/ok")) == PostResult(200)
        distrusting = HttpPoster(timeout=5, allow_private=True)
        result = await post(distrusting, receiver.url("/ok"))
        assert result.status is None and str(result.error).startswith("TLS:")
        assert len(receiver.requests) == 1
