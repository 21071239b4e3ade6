"""``/v1/messages``: sending over HTTP (scope ``send``) and a message's state (``read``).

``POST /v1/messages`` takes structured JSON (composed by
``engine.submission.composition``, templates rendered by
``engine.submission.templating``) or a raw RFC 5322 message with its envelope,
and accepts it through the same ``Acceptor`` as SMTP submission: durable before
the ``202``, the same sender-domain, header and suppression rules, Reception
records with protocol ``HTTP``. The answer names one message id per queued
recipient and the suppressed recipients. With per-recipient ``variables``,
each ``to`` recipient gets a message of their own.

Every recipient counts against the tenant's quotas, all of a request or none:
over them, 429 ``quota_exceeded`` with ``Retry-After``.

``Idempotency-Key`` (at most 255 characters): the same key with the same body
within a day answers the first response again; with another body, 422
``idempotency_mismatch``; while the first request with the key is still being
accepted (by any engine process), 409 ``idempotency_in_progress`` with
``Retry-After: 1``.

``GET /v1/messages/{id}``: the message and its records (KumoMTA's shape);
another tenant's id answers 404 like an unknown one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.services import ApiServices
from config.schema import MESSAGE_BYTES_CEILING
from engine.model import Tenant
from engine.submission.acceptance import HeaderField, Reception
from engine.submission.acceptor import (
    Acceptor,
    Idempotency,
    IdempotencyInProgress,
    IdempotencyMismatch,
    NotStored,
    Outgoing,
    OverQuota,
    Refused,
)
from engine.submission.composition import (
    Attachment,
    CompositionError,
    Draft,
    Mailbox,
    composed_message,
    raw_message,
)
from engine.submission.templating import TemplateProblem, render_draft

router = APIRouter(tags=["messages"])
send = tenant_caller(Scope.SEND)
read = tenant_caller(Scope.READ)

MAX_SEND_AHEAD_SECONDS = 72 * 3600.0
"""How far ahead ``send_at`` may be."""
SEND_AT_SLACK_SECONDS = 300.0
"""How far in the past ``send_at`` may be (clock skew); earlier is refused."""


def _text_of(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _mailbox_of(value: Any) -> Any:
    return {"email": value} if isinstance(value, str) else value


def _empty(kind: type[list[Any]] | type[dict[str, Any]], **info: Any) -> Any:
    """A field that is empty (``kind()``) unless given: made afresh rather than copied
    from a shared default on every request, and documented with that default."""
    return Field(default_factory=kind, json_schema_extra={"default": kind()}, **info)


class MailboxIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254, description="The address, `user@example.com`.")
    name: str = Field(default="", max_length=200, description="The display name.")


class RecipientIn(MailboxIn):
    variables: dict[str, Any] | None = Field(
        default=None,
        description="Template variables for this recipient, over the message's `variables`; "
        "with them each `to` recipient gets a message of their own.",
    )


AddressIn = Annotated[
    MailboxIn, BeforeValidator(_mailbox_of, json_schema_input_type=str | MailboxIn)
]
RecipientAddressIn = Annotated[
    RecipientIn, BeforeValidator(_mailbox_of, json_schema_input_type=str | RecipientIn)
]


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255, description="The file's name.")
    content_type: str = Field(
        default="application/octet-stream", max_length=129, description="Its MIME type."
    )
    content: str = Field(description="Its bytes, base64-encoded.")
    content_id: str | None = Field(
        default=None,
        max_length=200,
        description="Makes it inline: the HTML refers to it as `cid:<content_id>`.",
    )


class MessageIn(BaseModel):
    """A message to send: structured fields, or ``raw`` with its envelope."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: AddressIn = Field(
        alias="from",
        description="The sender, on a sending domain of the tenant; with `raw`, the "
        "envelope sender.",
    )
    to: list[RecipientAddressIn] = _empty(
        list, max_length=1000, description="Recipients: addresses or {email, name}."
    )
    cc: list[AddressIn] = _empty(list, max_length=1000, description="Copy recipients.")
    bcc: list[AddressIn] = _empty(list, max_length=1000, description="Blind copies: in no header.")
    reply_to: list[AddressIn] = _empty(list, max_length=10, description="Reply-To.")
    subject: str = Field(default="", max_length=900, description="The subject (a template).")
    text: str | None = Field(default=None, description="The plain text body (a template).")
    html: str | None = Field(default=None, description="The HTML body (a template).")
    attachments: list[AttachmentIn] = _empty(list, max_length=100)
    headers: dict[str, str] = _empty(
        dict,
        max_length=50,
        description="Extra header fields; not From, To, Cc, Bcc, Subject, Date, Message-ID, "
        "MIME-Version, Content-* or DKIM-*.",
    )
    tags: list[Annotated[str, Field(max_length=64)]] = _empty(
        list, max_length=20, description="Labels kept on the records (`meta.tags`)."
    )
    metadata: dict[str, str] = _empty(
        dict, max_length=50, description="Kept on the records (`meta.metadata`)."
    )
    variables: dict[str, Any] | None = Field(
        default=None,
        description="Template variables: with them (or a recipient's) subject, text and html "
        "render as Jinja2 templates; a missing variable is an error.",
    )
    campaign: str | None = Field(
        default=None, max_length=64, description="Names the queue `campaign:tenant@domain`."
    )
    priority: Annotated[str | None, BeforeValidator(_text_of)] = Field(
        default=None,
        pattern=r"^(bulk|normal|transactional|[0-9])$",
        description="bulk, normal, transactional or 0..9 (`X-Priority-Class` over SMTP).",
    )
    send_at: datetime | None = Field(
        default=None, description="When to send (RFC 3339), at most 72 hours ahead."
    )
    raw: str | None = Field(
        default=None,
        description="A whole RFC 5322 message; then only `from`, `to`, `tags`, `metadata`, "
        "`send_at` may be given besides.",
    )


class AcceptedMessage(BaseModel):
    id: str = Field(description="The message's id (one per recipient).")
    recipient: str = Field(description="Its recipient.")


class Accepted(BaseModel):
    submission_id: str | None = Field(description="The submission's id (the first, if several).")
    messages: list[AcceptedMessage] = Field(description="One per queued recipient.")
    suppressed: list[str] = Field(description="Recipients not queued: on the suppression list.")


class MessageOut(BaseModel):
    id: str
    submission_id: str
    state: str = Field(description="queued, leased, delivered, bounced, expired, ...")
    sender: str
    recipient: str
    queue: str = Field(description="The scheduled queue, `campaign:tenant@domain`.")
    campaign: str
    attempts: int
    priority: int
    due_at: float = Field(description="When it is (or was) due (POSIX seconds).")
    created_at: float
    last_error: str | None
    records: list[dict[str, Any]] = Field(description="Its records, oldest first.")


IDEMPOTENCY_KEY_MAX = 255
"""The longest ``Idempotency-Key``."""
FIELDS_ROOM = 64 * 1024
"""Bytes a request body may have beyond twice the largest message (``body_limit``)."""


def body_limit(max_message_bytes: int) -> int:
    """The largest body taken by the sending routes (``POST /v1/messages``, KumoMTA's
    injection): its text and attachments, escaped as JSON strings and base64, stay
    within twice the message they make. ``admin_api.send_route`` holds every such body
    to it before anything else."""
    return 2 * max_message_bytes + FIELDS_ROOM


SENDING_BODY_CEILING = body_limit(MESSAGE_BYTES_CEILING)
"""The sending routes' own ``max_body_size``, above the application's: the body
bound of the largest message that can be configured (``body_limit`` holds them to
the configured one first)."""
_RAW_ONLY = frozenset({"from_", "to", "tags", "metadata", "send_at", "raw"})


@router.post(
    "/messages",
    status_code=202,
    summary="Send a message",
    responses=responses(401, 403, 409, 413, 422, 429, 503),
    max_body_size=SENDING_BODY_CEILING,
)
async def send_message(
    body: MessageIn,
    request: Request,
    caller: Caller = Depends(send),
    services: ApiServices = Depends(api_services),
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Repeats of a request with this key within a day get the first answer.",
    ),
) -> Accepted:
    accepted = await sent(
        services, caller, body, await request.body(), idempotency_key, peer_host(request.client)
    )
    return Accepted.model_validate(accepted)


async def sent(
    services: ApiServices,
    caller: Caller,
    body: MessageIn,
    request_body: bytes,
    idempotency_key: str | None,
    peer: str,
) -> dict[str, Any]:
    """``POST /v1/messages``: ``body`` (``request_body`` as it came, for its idempotency
    hash) accepted for ``caller``, from the client at ``peer``; the receipt (``Accepted``'s
    fields). ``ApiError`` for what the route answers with an error. Served by the route
    and by ``admin_api.send_route``, which calls it without FastAPI's machinery."""
    acceptor = acceptor_of(services)
    limit = services.settings.submission.max_message_bytes
    now = services.clock.now()
    due_at = _due_at(body.send_at, now)
    if body.raw is not None:
        extra = sorted(body.model_fields_set - _RAW_ONLY)
        if extra:
            raise ApiError(422, "invalid", "not allowed with raw", field=_alias(extra[0]))
        for index, recipient in enumerate(body.to):
            if recipient.variables is not None:
                field = f"to[{index}].variables"
                raise ApiError(422, "invalid", "not allowed with raw", field=field)
        recipients = [r.email for r in body.to]
        if not recipients:
            raise ApiError(422, "invalid", "at least one recipient is needed", field="to")
        raw = raw_message(body.raw)
        outgoing = [Outgoing(raw, recipients)]

        def field_of(message: int, recipient: int) -> str:
            return f"to[{recipient}]"
    else:
        drafts = _drafts(body)
        outgoing = []
        for draft in drafts:
            raw, header_fields = composed(draft)
            outgoing.append(Outgoing(raw, draft.recipients, header_fields))

        def field_of(message: int, recipient: int) -> str:
            return _recipient_fields(body, drafts[message])[recipient]

    count = sum(len(o.recipients) for o in outgoing)
    if count > services.settings.submission.max_recipients:
        limit_text = services.settings.submission.max_recipients
        raise ApiError(422, "invalid", f"more than {limit_text} recipients", field="to")
    for message in outgoing:
        if len(message.raw) > limit:
            raise ApiError(413, "too_large", f"the message is larger than {limit} bytes")
    return await accept_outgoing(
        acceptor,
        services,
        caller,
        peer,
        body.from_.email,
        outgoing,
        field_of,
        header_field="from" if body.raw is None else "raw",
        due_at=due_at,
        meta={"tags": body.tags, "metadata": body.metadata},
        idempotency=_idempotency(idempotency_key, request_body),
    )


@router.get(
    "/messages/{message_id}",
    summary="A message, with its records",
    responses=responses(401, 403, 404, 429),
)
async def get_message(
    message_id: str, caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> MessageOut:
    found = await services.store.tenant_message(caller.tenant.id, message_id)
    if found is None:
        raise ApiError(404, "not_found", f"no message {message_id!r}")
    message, records = found
    return MessageOut(
        id=message.id,
        submission_id=message.submission_id,
        state=message.state.value,
        sender=message.sender,
        recipient=message.recipient,
        queue=message.queue,
        campaign=message.campaign,
        attempts=message.attempts,
        priority=message.priority,
        due_at=message.due_at,
        created_at=message.created_at,
        last_error=message.last_error,
        records=records,
    )


def acceptor_of(services: ApiServices) -> Acceptor:
    """The process's acceptance path; 503 where it accepts no mail."""
    if services.acceptor is None:
        raise ApiError(503, "unavailable", "this process accepts no mail")
    return services.acceptor


def _due_at(send_at: datetime | None, now: float) -> float | None:
    if send_at is None:
        return None
    if send_at.tzinfo is None:
        raise ApiError(422, "invalid", "needs a time zone (e.g. Z)", field="send_at")
    due = send_at.timestamp()
    if due < now - SEND_AT_SLACK_SECONDS:
        raise ApiError(422, "invalid", "is in the past", field="send_at")
    if due > now + MAX_SEND_AHEAD_SECONDS:
        raise ApiError(422, "invalid", "is more than 72 hours ahead", field="send_at")
    return max(due, now)


def _alias(name: str) -> str:
    return "from" if name == "from_" else name


def _drafts(body: MessageIn) -> list[Draft]:
    """The drafts of ``body``: one, or one per ``to`` recipient with per-recipient
    variables; templates rendered when variables are given."""
    draft = Draft(
        sender=Mailbox(body.from_.email, body.from_.name),
        to=_mailboxes(body.to),
        cc=_mailboxes(body.cc),
        bcc=_mailboxes(body.bcc),
        reply_to=_mailboxes(body.reply_to),
        subject=body.subject,
        text=body.text,
        html=body.html,
        attachments=tuple([_attachment(a, i) for i, a in enumerate(body.attachments)]),
        headers=tuple(body.headers.items()),
        campaign=body.campaign,
        priority=body.priority,
    )
    personal = any(r.variables is not None for r in body.to)
    if not personal:
        return [draft] if body.variables is None else [rendered(draft, body.variables)]
    for name in ("cc", "bcc"):
        if getattr(body, name):
            raise ApiError(422, "invalid", "not allowed with per-recipient variables", field=name)
    base = body.variables or {}
    return [
        rendered(draft._replace(to=(draft.to[i],)), {**base, **(r.variables or {})})
        for i, r in enumerate(body.to)
    ]


def _mailboxes(given: Sequence[MailboxIn]) -> tuple[Mailbox, ...]:
    return tuple([Mailbox(m.email, m.name) for m in given]) if given else ()


def rendered(
    draft: Draft, variables: dict[str, Any], field_of: Callable[[str], str] = str
) -> Draft:
    """``draft`` rendered with ``variables``; a 422 naming ``field_of(its field)``."""
    try:
        return render_draft(draft, variables)
    except TemplateProblem as exc:
        raise ApiError(422, "invalid", exc.message, field=field_of(exc.field)) from exc


def composed(draft: Draft, field_of: Callable[[str], str] = str) -> tuple[bytes, list[HeaderField]]:
    """The raw message of ``draft`` and its header fields; a 422 naming
    ``field_of(its field)``."""
    try:
        return composed_message(draft)
    except CompositionError as exc:
        raise ApiError(422, "invalid", exc.message, field=field_of(exc.field)) from exc


def _attachment(attachment: AttachmentIn, index: int) -> Attachment:
    try:
        content = base64.b64decode(attachment.content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid", "not base64", field=f"attachments[{index}].content") from exc
    return Attachment(attachment.filename, attachment.content_type, content, attachment.content_id)


def _recipient_fields(body: MessageIn, draft: Draft) -> list[str]:
    """The request field of each envelope recipient of ``draft``."""
    if len(draft.to) == 1 and len(body.to) > 1 and not draft.cc and not draft.bcc:
        index = [r.email for r in body.to].index(draft.to[0].email)
        return [f"to[{index}]"]
    return [
        *(f"to[{i}]" for i in range(len(draft.to))),
        *(f"cc[{i}]" for i in range(len(draft.cc))),
        *(f"bcc[{i}]" for i in range(len(draft.bcc))),
    ]


def _idempotency(key: str | None, body: bytes) -> Idempotency | None:
    if key is None:
        return None
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = body.decode("utf-8", "replace")
    return Idempotency(key, hashlib.sha256(canonical.encode()).hexdigest())


def peer_host(client: tuple[str, int] | None) -> str:
    """The address of a request's client (its ``request.client``, or the ASGI scope's
    ``client``); ``unknown`` when the server does not know it."""
    return client[0] if client else "unknown"


def http_reception(services: ApiServices, caller: Caller, peer: str) -> Reception:
    """How a request from ``peer`` came in, for the Received field and the Reception
    records."""
    who = f"api-key:{caller.key_prefix}" if caller.key_prefix else "operator"
    return Reception(
        protocol="HTTP",
        peer_host=peer,
        ehlo_name="api",
        # An id to find the request's records by, no secret: no system call per request.
        session_id=f"{random.getrandbits(64):016x}",
        username=who,
        tls_version=None,
        tls_cipher=None,
        hostname=services.settings.engine.hostname,
        nodeid=services.nodeid,
    )


async def accept_outgoing(
    acceptor: Acceptor,
    services: ApiServices,
    caller: Caller,
    peer: str,
    sender: str,
    outgoing: Sequence[Outgoing],
    field_of: Callable[[int, int], str],
    *,
    header_field: str,
    due_at: float | None,
    meta: dict[str, Any],
    idempotency: Idempotency | None,
) -> dict[str, Any]:
    """``outgoing`` accepted through the acceptor; its refusals as 422 naming the field,
    ``field_of(message, recipient)`` for a recipient's (their indexes in ``outgoing``)."""
    try:
        return await acceptor.accept(
            tenant=caller.tenant,
            domains=await sending_domains(services, caller.tenant, sender),
            sender=sender,
            messages=outgoing,
            reception=http_reception(services, caller, peer),
            due_at=due_at,
            meta=meta,
            idempotency=idempotency,
        )
    except Refused as exc:
        if exc.recipient is not None:
            field = field_of(exc.message, exc.recipient)
        else:
            field = header_field if exc.header else "from"
        raise ApiError(422, "invalid", exc.reply.text, field=field) from exc
    except IdempotencyMismatch as exc:
        raise ApiError(
            422,
            "idempotency_mismatch",
            "this Idempotency-Key was used with another request body",
            field="Idempotency-Key",
        ) from exc
    except IdempotencyInProgress as exc:
        raise ApiError(
            409,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is being accepted; retry shortly",
            headers={"Retry-After": "1"},
        ) from exc
    except OverQuota as exc:
        retry = str(max(1, math.ceil(exc.verdict.retry_after)))
        raise ApiError(429, "quota_exceeded", exc.reason, headers={"Retry-After": retry}) from exc
    except NotStored as exc:
        raise ApiError(503, "unavailable", "the message was not stored; try again") from exc


async def sending_domains(services: ApiServices, tenant: Tenant, sender: str) -> frozenset[str]:
    """The tenant's sending domains, lower-cased, for the checks of a message from
    ``sender`` (cached by provisioning; read again when they lack the sender's)."""
    _, at, domain = sender.rpartition("@")
    return await services.provisioning.sending_domains(tenant, domain.lower() if at else None)
