"""``POST /api/inject/v1``: KumoMTA's injection API, so tools written for it work.

The body and the reply are KumoMTA's: ``envelope_sender``, ``recipients``
(each with its own ``substitutions``), global ``substitutions`` and
``content``, raw RFC 5322 text or structured (``subject``, ``text_body``,
``html_body``, ``from``, ``reply_to``, ``headers``, ``attachments``); the
reply ``{"success_count", "fail_count", "failed_recipients", "errors"}``. Each
recipient gets a message of their own; with substitutions, the content is a
template (Jinja2, sandboxed, strict) rendered per recipient. A recipient the
rules refuse or the suppression list holds is counted as failed; a template
or content that does not render or compose answers 422. Accepted through the
same ``Acceptor`` as ``/v1/messages`` and SMTP; authenticated the same way
(scope ``send``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.routes.messages import (
    SENDING_BODY_CEILING,
    accept_outgoing,
    acceptor_of,
    composed,
    peer_host,
    rendered,
    sending_domains,
)
from admin_api.services import ApiServices
from engine.submission.acceptance import HeaderField
from engine.submission.acceptor import Outgoing, Refused, check_envelope
from engine.submission.composition import Attachment, Draft, Mailbox, raw_message
from engine.submission.templating import TemplateProblem, render

router = APIRouter(tags=["messages"])
_CONTENT_NAMES = {"text": "text_body", "html": "html_body"}
"""Draft fields named otherwise in ``content``."""
send = tenant_caller(Scope.SEND)


class InjectAddress(BaseModel):
    email: str = Field(max_length=254)
    name: str | None = Field(default=None, max_length=200)


class InjectRecipient(InjectAddress):
    substitutions: dict[str, Any] | None = Field(
        default=None, description="Template variables for this recipient."
    )


class InjectAttachment(BaseModel):
    data: str = Field(description="The content: text, or base64 when `base64` is true.")
    base64: bool = False
    content_type: str = Field(default="application/octet-stream", max_length=129)
    file_name: str | None = Field(default=None, max_length=255)
    content_id: str | None = Field(default=None, max_length=200)


class InjectContent(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    subject: str = ""
    text_body: str | None = None
    html_body: str | None = None
    from_: InjectAddress = Field(alias="from")
    reply_to: InjectAddress | None = None
    headers: dict[str, str] = Field(default={}, max_length=50)
    attachments: list[InjectAttachment] = Field(default=[], max_length=100)


class InjectRequest(BaseModel):
    envelope_sender: str = Field(max_length=254)
    recipients: list[InjectRecipient] = Field(min_length=1, max_length=1000)
    substitutions: dict[str, Any] | None = None
    content: str | InjectContent = Field(
        description="A whole RFC 5322 message, or its parts to compose."
    )


class InjectResult(BaseModel):
    success_count: int
    fail_count: int
    failed_recipients: list[str]
    errors: list[str]


@router.post(
    "/api/inject/v1",
    summary="Inject messages (KumoMTA's API)",
    responses=responses(401, 403, 413, 422, 429, 503),
    max_body_size=SENDING_BODY_CEILING,
)
async def inject(
    body: InjectRequest,
    request: Request,
    caller: Caller = Depends(send),
    services: ApiServices = Depends(api_services),
) -> InjectResult:
    acceptor = acceptor_of(services)
    domains = await sending_domains(services, caller.tenant, body.envelope_sender)
    limit = services.settings.submission.max_message_bytes
    failed: list[str] = []
    errors: list[str] = []
    outgoing: list[Outgoing] = []
    try:
        check_envelope(body.envelope_sender, [], domains)
    except Refused as exc:
        raise ApiError(422, "invalid", exc.reply.text, field="envelope_sender") from exc
    attachments = _attachments(body.content)
    for index, recipient in enumerate(body.recipients):
        try:
            check_envelope(body.envelope_sender, [recipient.email], domains)
        except Refused as exc:
            failed.append(recipient.email)
            errors.append(f"{recipient.email}: {exc.reply.text}")
            continue
        variables = _variables(body, recipient)
        raw, header_fields = _message(body.content, recipient, variables, attachments, index)
        if len(raw) > limit:
            raise ApiError(413, "too_large", f"the message is larger than {limit} bytes")
        outgoing.append(Outgoing(raw, [recipient.email], header_fields))
    accepted: dict[str, Any] = {"messages": [], "suppressed": []}
    if outgoing:
        accepted = await accept_outgoing(
            acceptor,
            services,
            caller,
            peer_host(request.client),
            body.envelope_sender,
            outgoing,
            lambda message, recipient: "recipients",
            header_field="content",
            due_at=None,
            meta={},
            idempotency=None,
        )
    for address in accepted["suppressed"]:
        failed.append(address)
        errors.append(f"{address}: the recipient is on the suppression list")
    return InjectResult(
        success_count=len(accepted["messages"]),
        fail_count=len(failed),
        failed_recipients=failed,
        errors=errors,
    )


def _variables(body: InjectRequest, recipient: InjectRecipient) -> dict[str, Any] | None:
    if body.substitutions is None and recipient.substitutions is None:
        return None
    return {**(body.substitutions or {}), **(recipient.substitutions or {})}


def _message(
    content: str | InjectContent,
    recipient: InjectRecipient,
    variables: dict[str, Any] | None,
    attachments: tuple[Attachment, ...],
    index: int,
) -> tuple[bytes, list[HeaderField] | None]:
    """The message to ``recipient`` and, when composed here, its header fields."""
    if isinstance(content, str):
        text = content
        if variables is not None:
            try:
                text = render(content, variables, "content")
            except TemplateProblem as exc:
                raise ApiError(422, "invalid", exc.message, field=exc.field) from exc
        return raw_message(text), None
    draft = Draft(
        sender=Mailbox(content.from_.email, content.from_.name or ""),
        to=(Mailbox(recipient.email, recipient.name or ""),),
        reply_to=() if content.reply_to is None else (_mailbox(content.reply_to),),
        subject=content.subject,
        text=content.text_body,
        html=content.html_body,
        attachments=attachments,
        headers=tuple(content.headers.items()),
    )

    def field_of(name: str) -> str:
        """A draft's field as the inject body names it."""
        if name.startswith(("to", "cc", "bcc")):
            return f"recipients[{index}]"
        head, dot, rest = name.partition(".")
        head = _CONTENT_NAMES.get(head, head)
        return f"content.{head}{dot}{rest}"

    if variables is not None:
        draft = rendered(draft, variables, field_of)
    return composed(draft, field_of)


def _mailbox(address: InjectAddress) -> Mailbox:
    return Mailbox(address.email, address.name or "")


def _attachments(content: str | InjectContent) -> tuple[Attachment, ...]:
    if isinstance(content, str):
        return ()
    found = []
    for index, attachment in enumerate(content.attachments):
        data = attachment.data.encode("utf-8")
        if attachment.base64:
            try:
                data = base64.b64decode(attachment.data, validate=True)
            except (binascii.Error, ValueError) as exc:
                field = f"content.attachments[{index}].data"
                raise ApiError(422, "invalid", "not base64", field=field) from exc
        name = attachment.file_name or f"attachment-{index + 1}"
        found.append(Attachment(name, attachment.content_type, data, attachment.content_id))
    return tuple(found)
