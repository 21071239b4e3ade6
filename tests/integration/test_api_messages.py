"""Sending over HTTP through the real app on a real store (SQLite and PostgreSQL):
``POST /v1/messages`` (structured and raw), idempotency, 422s naming the field,
``GET /v1/messages/{id}``, and KumoMTA's ``/api/inject/v1``."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from admin_api.services import ApiServices
from engine.clock import FakeClock
from engine.model import (
    ApiScope,
    MessageState,
    SendingDomain,
    Suppression,
    Tenant,
    TenantOverrides,
)
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.store import Store
from tests.integration.api_support import as_operator, bearer, error_of, make_tenant_key

MESSAGES = "/v1/messages"
INJECT = "/api/inject/v1"


async def sender_of(services: ApiServices, name: str = "acme") -> tuple[Tenant, dict[str, str]]:
    """Tenant ``name`` with the sending domain ``NAME.example`` and a send+read key."""
    tenant, token = await make_tenant_key(services, name, {ApiScope.SEND, ApiScope.READ})
    domain = SendingDomain(tenant.id, f"{name}.example", "s1", "rsa", b"", "", 0.0)
    await services.store.add_domain(domain)
    return tenant, bearer(token)


def structured(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": {"email": "news@acme.example", "name": "Acme News"},
        "to": ["ann@dest.example", {"email": "bob@dest.example", "name": "Bob"}],
        "subject": "Hello",
        "text": "Hi there",
        "html": "<p>Hi there</p>",
    }
    body.update(changes)
    return body


async def body_of(store: Store, tenant: Tenant, message_id: str) -> EmailMessage:
    found = await store.tenant_message(tenant.id, message_id)
    assert found is not None
    raw = await store.get_body(found[0].submission_id)
    assert raw is not None
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_a_structured_message_is_queued_once_per_recipient_with_its_records(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    tenant, auth = await sender_of(api_services)
    body = structured(
        bcc=["audit@dest.example"],
        tags=["welcome"],
        metadata={"user_id": "42"},
        campaign="spring",
        priority="transactional",
    )
    sent = await api_client.post(MESSAGES, json=body, headers=auth)
    assert sent.status_code == 202, sent.text
    answer = sent.json()
    assert [m["recipient"] for m in answer["messages"]] == [
        "ann@dest.example",
        "bob@dest.example",
        "audit@dest.example",
    ]
    assert answer["suppressed"] == []

    first = answer["messages"][0]["id"]
    got = await api_client.get(f"{MESSAGES}/{first}", headers=auth)
    assert got.status_code == 200, got.text
    message = got.json()
    assert message["state"] == "queued"
    assert message["queue"] == "spring:acme@dest.example"
    assert message["priority"] == 9
    [reception] = message["records"]
    assert reception["type"] == "Reception"
    assert reception["reception_protocol"] == "HTTP"
    assert reception["meta"]["tags"] == ["welcome"]
    assert reception["meta"]["metadata"] == {"user_id": "42"}
    assert reception["meta"]["campaign"] == "spring"

    parsed = await body_of(store, tenant, first)
    assert parsed["Bcc"] is None and "audit@" not in str(parsed)
    assert parsed["X-Campaign"] is None  # read at acceptance, not sent on
    assert parsed["Message-ID"] is not None and parsed["Date"] is not None
    assert "with HTTP" in str(parsed["Received"])


async def test_raw_messages_go_through_the_smtp_header_checks(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    tenant, auth = await sender_of(api_services)
    raw = "From: news@acme.example\nTo: ann@dest.example\nSubject: raw\n\nbody\n"
    sent = await api_client.post(
        MESSAGES,
        json={"raw": raw, "from": "bounces@acme.example", "to": ["ann@dest.example"]},
        headers=auth,
    )
    assert sent.status_code == 202, sent.text
    parsed = await body_of(store, tenant, sent.json()["messages"][0]["id"])
    assert parsed["Subject"] == "raw"

    foreign = raw.replace("news@acme.example", "ceo@bank.example")
    refused = await api_client.post(
        MESSAGES,
        json={"raw": foreign, "from": "b@acme.example", "to": ["a@d.example"]},
        headers=auth,
    )
    assert refused.status_code == 422
    assert error_of(refused)["field"] == "raw"

    mixed = await api_client.post(
        MESSAGES,
        json={"raw": raw, "from": "b@acme.example", "to": ["a@d.example"], "subject": "x"},
        headers=auth,
    )
    assert mixed.status_code == 422 and error_of(mixed)["field"] == "subject"

    templated = await api_client.post(
        MESSAGES,
        json={
            "raw": raw,
            "from": "b@acme.example",
            "to": [{"email": "a@d.example", "variables": {}}],
        },
        headers=auth,
    )
    assert templated.status_code == 422 and error_of(templated)["field"] == "to[0].variables"


async def test_suppressed_recipients_are_named_and_not_queued(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    tenant, auth = await sender_of(api_services)
    await store.add_suppression(Suppression(tenant.id, "bob@dest.example", "bounce", 0.0))
    sent = await api_client.post(MESSAGES, json=structured(), headers=auth)
    assert sent.status_code == 202
    assert sent.json()["suppressed"] == ["bob@dest.example"]
    assert [m["recipient"] for m in sent.json()["messages"]] == ["ann@dest.example"]
    states = {m.recipient: m.state for m in await store.tenant_messages(tenant.id, 10)}
    assert states == {
        "ann@dest.example": MessageState.QUEUED,
        "bob@dest.example": MessageState.SUPPRESSED,
    }


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"from": "news@other.example"}, 422, "from"),
        ({"to": ["a@dest.example", "b@dest.example", "not an address"]}, 422, "to[2]"),
        ({"to": []}, 422, "to"),
        ({"cc": ["a%b@dest.example"]}, 422, "cc[0]"),
        ({"attachments": [{"filename": "a.txt", "content": "%%%"}]}, 422, "attachments[0].content"),
        ({"headers": {"Subject": "x"}}, 422, "headers.Subject"),
        ({"subject": "{{ nope }}", "variables": {}}, 422, "subject"),
        ({"html": "{% if %}", "variables": {"a": 1}}, 422, "html"),
        ({"send_at": "2000-01-01T00:00:00Z"}, 422, "send_at"),
        ({"priority": "urgent"}, 422, "priority"),
        ({"text": None, "html": None}, 422, "text"),
        ({"unknown": 1}, 422, "unknown"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    store: Store,
    changes: dict[str, Any],
    status: int,
    field: str,
) -> None:
    tenant, auth = await sender_of(api_services)
    refused = await api_client.post(MESSAGES, json=structured(**changes), headers=auth)
    assert refused.status_code == status, refused.text
    assert error_of(refused)["field"] == field
    assert await store.tenant_messages(tenant.id, 10) == []


async def test_an_oversized_message_is_a_413_with_the_limit(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, auth = await sender_of(api_services)
    limit = api_services.settings.submission.max_message_bytes
    content = base64.b64encode(bytes(limit)).decode()
    attachments = [{"filename": "big.bin", "content": content}]
    refused = await api_client.post(
        MESSAGES, json=structured(attachments=attachments), headers=auth
    )
    assert refused.status_code == 413
    assert str(limit) in str(error_of(refused)["message"])


async def test_templates_render_per_recipient_with_their_own_variables(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    tenant, auth = await sender_of(api_services)
    body = structured(
        to=[
            {"email": "ann@dest.example", "variables": {"name": "Ann"}},
            {"email": "bob@dest.example", "variables": {"name": "<Bob>"}},
        ],
        subject="Hi {{ name }}",
        text="{{ greeting }}, {{ name }}",
        html="<p>{{ name }}</p>",
        variables={"greeting": "Hello"},
    )
    sent = await api_client.post(MESSAGES, json=body, headers=auth)
    assert sent.status_code == 202, sent.text
    parsed = [await body_of(store, tenant, m["id"]) for m in sent.json()["messages"]]
    assert [str(p["Subject"]) for p in parsed] == ["Hi Ann", "Hi <Bob>"]
    assert [str(p["To"]) for p in parsed] == ["ann@dest.example", "bob@dest.example"]
    html = parsed[1].get_body(("html",))
    assert html is not None and html.get_content().strip() == "<p>&lt;Bob&gt;</p>"


async def test_send_at_makes_the_message_due_later(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store, api_clock: FakeClock
) -> None:
    tenant, auth = await sender_of(api_services)
    later = api_clock.now() + 3600
    stamp = datetime.fromtimestamp(later, UTC).isoformat()
    sent = await api_client.post(MESSAGES, json=structured(send_at=stamp), headers=auth)
    assert sent.status_code == 202, sent.text
    found = await store.tenant_message(tenant.id, sent.json()["messages"][0]["id"])
    assert found is not None and found[0].due_at == later
    too_far = datetime.fromtimestamp(api_clock.now() + 73 * 3600, UTC).isoformat()
    refused = await api_client.post(MESSAGES, json=structured(send_at=too_far), headers=auth)
    assert refused.status_code == 422 and error_of(refused)["field"] == "send_at"


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    tenant, auth = await sender_of(api_services)
    keyed = {**auth, "Idempotency-Key": "order-1"}
    first = await api_client.post(MESSAGES, json=structured(), headers=keyed)
    again = await api_client.post(MESSAGES, json=structured(), headers=keyed)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert len(await store.tenant_messages(tenant.id, 10)) == 2

    other = await api_client.post(MESSAGES, json=structured(subject="Other"), headers=keyed)
    assert other.status_code == 422
    assert error_of(other)["code"] == "idempotency_mismatch"

    _, beta_auth = await sender_of(api_services, "beta")
    theirs = await api_client.post(
        MESSAGES,
        json=structured(**{"from": "news@beta.example"}),
        headers={**beta_auth, "Idempotency-Key": "order-1"},
    )
    assert theirs.status_code == 202 and theirs.json() != first.json()

    too_long = await api_client.post(
        MESSAGES, json=structured(), headers={**auth, "Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 422 and error_of(too_long)["field"] == "Idempotency-Key"


async def test_another_tenants_message_is_not_found(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, auth = await sender_of(api_services)
    _, beta_auth = await sender_of(api_services, "beta")
    sent = await api_client.post(MESSAGES, json=structured(), headers=auth)
    mine = sent.json()["messages"][0]["id"]
    theirs = await api_client.get(f"{MESSAGES}/{mine}", headers=beta_auth)
    missing = await api_client.get(f"{MESSAGES}/{mine}x", headers=beta_auth)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert (
        await api_client.get(f"{MESSAGES}/{mine}", headers=as_operator("acme"))
    ).status_code == 200
    assert (
        await api_client.get(f"{MESSAGES}/{mine}", headers=as_operator("beta"))
    ).status_code == 404


async def test_sending_needs_the_send_scope(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    await sender_of(api_services)
    _, reader = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    refused = await api_client.post(MESSAGES, json=structured(), headers=bearer(reader))
    assert refused.status_code == 403
    injected = await api_client.post(
        INJECT,
        json={
            "envelope_sender": "a@acme.example",
            "recipients": [{"email": "x@d.example"}],
            "content": "x",
        },
        headers=bearer(reader),
    )
    assert injected.status_code == 403
    assert (await api_client.post(MESSAGES, json=structured())).status_code == 401


async def test_kumomta_inject_sends_one_templated_message_per_recipient(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    tenant, auth = await sender_of(api_services)
    await store.add_suppression(Suppression(tenant.id, "gone@dest.example", "bounce", 0.0))
    body = {
        "envelope_sender": "bounces@acme.example",
        "recipients": [
            {"email": "ann@dest.example", "name": "Ann", "substitutions": {"name": "Ann"}},
            {"email": "b%c@dest.example"},
            {"email": "gone@dest.example", "substitutions": {"name": "Gone"}},
        ],
        "substitutions": {"name": "friend", "team": "Acme"},
        "content": {
            "subject": "Hi {{ name }}",
            "text_body": "From {{ team }}",
            "html_body": "<p>{{ name }}</p>",
            "from": {"email": "news@acme.example", "name": "Acme"},
            "headers": {"X-Thing": "1"},
            "attachments": [
                {
                    "data": base64.b64encode(b"pdf").decode(),
                    "base64": True,
                    "content_type": "application/pdf",
                    "file_name": "a.pdf",
                }
            ],
        },
    }
    injected = await api_client.post(INJECT, json=body, headers=auth)
    assert injected.status_code == 200, injected.text
    reply = injected.json()
    assert reply["success_count"] == 1
    assert reply["fail_count"] == 2
    assert reply["failed_recipients"] == ["b%c@dest.example", "gone@dest.example"]
    assert len(reply["errors"]) == 2
    [message] = [
        m for m in await store.tenant_messages(tenant.id, 10) if m.state is MessageState.QUEUED
    ]
    parsed = await body_of(store, tenant, message.id)
    assert parsed["Subject"] == "Hi Ann"
    assert parsed["To"] == "Ann <ann@dest.example>"


@pytest.mark.parametrize(
    ("content", "substitutions", "field"),
    [
        (
            {"subject": "{{ x", "from": {"email": "n@acme.example"}, "text_body": "t"},
            {"x": 1},
            "content.subject",
        ),
        (
            {"subject": "s", "from": {"email": "n@acme.example"}, "text_body": "{{ y }}"},
            {},
            "content.text_body",
        ),
        ("Subject: {{ x }\r\n\r\nbody", {"x": 1}, "content"),
        ({"subject": "s", "from": {"email": "n@other.example"}, "text_body": "t"}, None, "content"),
    ],
)
async def test_kumomta_inject_template_and_content_errors_are_422(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    content: Any,
    substitutions: dict[str, Any] | None,
    field: str,
) -> None:
    _, auth = await sender_of(api_services)
    body = {
        "envelope_sender": "bounces@acme.example",
        "recipients": [{"email": "ann@dest.example"}],
        "substitutions": substitutions,
        "content": content,
    }
    refused = await api_client.post(INJECT, json=body, headers=auth)
    assert refused.status_code == 422, refused.text
    assert error_of(refused)["field"] == field


async def test_the_openapi_document_describes_sending(api_client: httpx.AsyncClient) -> None:
    document = (await api_client.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/v1/messages"]) == {"post"}
    assert "get" in paths["/v1/messages/{message_id}"]
    assert "post" in paths["/api/inject/v1"]
    sent = paths["/v1/messages"]["post"]
    assert "202" in sent["responses"] and "413" in sent["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in sent["parameters"])
    schema = document["components"]["schemas"]["MessageIn"]["properties"]
    assert schema["to"]["description"]
    assert {"type": "string"} in schema["from"]["anyOf"]  # an address, or {email, name}


async def test_a_request_over_the_tenants_quota_is_a_429_and_takes_none_of_it(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    api_book: TenantSettingsBook,
    store: Store,
) -> None:
    tenant, auth = await sender_of(api_services)
    api_book.load([tenant], [TenantOverrides(tenant.id, daily_quota=3)])
    refused = await api_client.post(
        MESSAGES, json=structured(cc=["c@dest.example", "d@dest.example"]), headers=auth
    )
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert await store.tenant_messages(tenant.id, 10) == []

    foreign = await api_client.post(
        MESSAGES, json=structured(**{"from": "x@other.example"}), headers=auth
    )
    assert foreign.status_code == 422  # refused: its two recipients go back to the quota
    sent = await api_client.post(MESSAGES, json=structured(cc=["c@dest.example"]), headers=auth)
    assert sent.status_code == 202, sent.text
    assert len(sent.json()["messages"]) == 3
    over = await api_client.post(MESSAGES, json=structured(to=["e@dest.example"]), headers=auth)
    assert over.status_code == 429


async def test_a_keyed_request_that_fails_frees_its_key_for_the_retry(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    api_book: TenantSettingsBook,
    store: Store,
) -> None:
    tenant, auth = await sender_of(api_services)
    keyed = {**auth, "Idempotency-Key": "order-9"}
    api_book.load([tenant], [TenantOverrides(tenant.id, daily_quota=1)])
    refused = await api_client.post(MESSAGES, json=structured(), headers=keyed)
    assert refused.status_code == 429
    api_book.load([tenant], [TenantOverrides(tenant.id, daily_quota=10)])
    retried = await api_client.post(MESSAGES, json=structured(), headers=keyed)
    assert retried.status_code == 202, retried.text
    assert len(await store.tenant_messages(tenant.id, 10)) == 2
