"""What the engine does about one attributed bounce or complaint.

In: a parsed ``BounceReport``, the original messages it was attributed to
(``Finding``: a message of ours and the recipient status the report gives
for it), the soft bounces already counted for those recipients, and the
``Policy``. Out: a ``Plan``: the OOB and Feedback records to store on the
original messages (KumoMTA fields), the suppressions and the soft bounces
to count. Pure: the time and every count are parameters.

The policy is the common one (PowerMTA's categories, see the reference in
``engine.delivery.bounce_classify``): a hard bounce (failed, the address is
bad: InvalidRecipient, BadDomain, InactiveMailbox) and a complaint (abuse,
fraud) suppress at once; a soft bounce (delayed, or failed for a full
mailbox, an unreachable host, a routing error) suppresses once
``soft_after`` of them fall within ``soft_window``; an auto-reply is
recorded and never suppresses; sender-side and reputation failures
(policy, spam, content, connection and protocol errors, rate limits) never
suppress the recipient, delayed or failed.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bounce_in.report import Action, BounceReport, RecipientStatus, ReportKind
from config.schema import BounceSettings, Settings, TenantSettings
from engine.delivery.bounce_classify import Category
from engine.durations import parse_duration
from engine.model import QueuedMessage, SoftBounce, Suppression
from engine.records.record import Record, RecordType
from engine.smtp.reply import Reply

HARD_CATEGORIES = frozenset(
    {Category.INVALID_RECIPIENT, Category.BAD_DOMAIN, Category.INACTIVE_MAILBOX}
)
"""Failed for these, the address itself is bad: suppressed at once."""
SOFT_CATEGORIES = frozenset(
    {
        Category.QUOTA_ISSUES,
        Category.NO_ANSWER_FROM_HOST,
        Category.ROUTING_ERRORS,
        Category.DNS_FAILURE,
        Category.MESSAGE_EXPIRED,
    }
)
"""Failed for these, the address may work again: suppressed after repeats."""
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
"""Feedback types that suppress; ``not-spam``, ``virus``, ``auth-failure`` do not."""


class Effect(enum.Enum):
    """What one recipient status does to the recipient's standing."""

    NONE = "none"
    SOFT = "soft"
    HARD = "hard"


@dataclass(frozen=True, slots=True)
class Policy:
    """The suppression policy's numbers (``[bounce]``)."""

    soft_after: int
    soft_window_seconds: float
    soft_window: str
    """As written, for suppression reasons."""

    @classmethod
    def from_settings(
        cls, settings: BounceSettings, tenant: TenantSettings | None = None
    ) -> Policy:
        """The policy of ``[bounce]``, with the overrides of ``[tenants.NAME]`` if given;
        a bad ``soft_window`` raises ``ValueError``."""
        after, window = settings.soft_suppress_after, settings.soft_window
        if tenant is not None:
            after = tenant.soft_suppress_after or after
            window = tenant.soft_window or window
        return cls(after, parse_duration(window), window)


def tenant_policies(settings: Settings) -> Callable[[str], Policy]:
    """Each tenant's policy by name (``[bounce]`` for tenants without overrides); a bad
    window raises ``ValueError`` naming its key."""
    default = Policy.from_settings(settings.bounce)
    policies: dict[str, Policy] = {}
    for name, tenant in settings.tenants.items():
        if tenant.soft_suppress_after is None and tenant.soft_window is None:
            continue
        try:
            policies[name] = Policy.from_settings(settings.bounce, tenant)
        except ValueError as exc:
            raise ValueError(f"tenants.{name}.soft_window: {exc}") from exc
    return lambda tenant: policies.get(tenant, default)


@dataclass(frozen=True, slots=True)
class Finding:
    """An original message a report is about, and what the report says of it."""

    message: QueuedMessage
    tenant: str
    status: RecipientStatus | None = None
    """``None`` for a complaint or an auto-reply, which carry no status."""


@dataclass(frozen=True, slots=True)
class Context:
    """Where the report came from: the inbound message and this node."""

    inbound_id: str
    peer: str
    now: float
    nodeid: str


@dataclass(frozen=True, slots=True)
class Plan:
    records: tuple[Record, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    soft_bounces: tuple[SoftBounce, ...] = ()


NOT_THE_RECIPIENT = frozenset(
    {
        Category.AUTO_REPLY,
        Category.CHALLENGE_RESPONSE,
        Category.RATE_LIMITED,
        Category.TOO_MANY_RECIPIENTS,
        Category.POLICY_RELATED,
        Category.SPAM_BLOCK,
        Category.SPAM_RELATED,
        Category.SPAM_CONTENT,
        Category.CONTENT_RELATED,
        Category.VIRUS_RELATED,
        Category.PROHIBITED_ATTACHMENT,
        Category.INVALID_SENDER,
        Category.AUTHENTICATION_FAILED,
        Category.RELAY_DENIED,
        Category.RELAYING_ISSUES,
        Category.BAD_CONFIGURATION,
        Category.BAD_CONNECTION,
        Category.PROTOCOL_ERRORS,
    }
)
"""Categories that say the sender, the content or the sending rate is the matter, or
that the reply is not a bounce: they never count against the recipient, delayed or not."""


def effect(status: RecipientStatus) -> Effect:
    """The effect of one recipient status under the policy."""
    if status.category in NOT_THE_RECIPIENT:
        return Effect.NONE
    if status.action is Action.DELAYED:
        return Effect.SOFT
    if status.action is not Action.FAILED:
        return Effect.NONE
    if status.category in HARD_CATEGORIES:
        return Effect.HARD
    return Effect.SOFT if status.category in SOFT_CATEGORIES else Effect.NONE


def soft_keys(findings: Sequence[Finding]) -> list[tuple[int, str]]:
    """The (tenant id, address) pairs whose earlier soft bounces ``plan`` needs counted."""
    keys = {
        (f.message.tenant_id, f.message.recipient.lower())
        for f in findings
        if f.status is not None and effect(f.status) is Effect.SOFT
    }
    return sorted(keys)


def plan(
    report: BounceReport,
    findings: Sequence[Finding],
    soft_counts: Mapping[tuple[int, str], int],
    policy: Policy,
    context: Context,
) -> Plan:
    """Records, suppressions and soft bounces for ``findings``; ``soft_counts`` holds the
    soft bounces already stored within the window (``soft_keys``)."""
    if report.kind is ReportKind.FEEDBACK:
        return _complaints(report, findings, context)
    records: list[Record] = []
    suppressions: list[Suppression] = []
    soft: list[SoftBounce] = []
    for finding in findings:
        status = finding.status or _missing_status(finding, report.kind)
        records.append(oob_record(finding, status, report, context))
        address = finding.message.recipient.lower()
        tenant_id = finding.message.tenant_id
        kind = effect(status) if report.kind is ReportKind.DSN else Effect.NONE
        if kind is Effect.HARD:
            reason = f"bounce: {status.status or 'failed'} {status.category}"
            suppressions.append(Suppression(tenant_id, address, reason, context.now))
        elif kind is Effect.SOFT:
            soft.append(SoftBounce(context.inbound_id, tenant_id, address, context.now))
            seen = soft_counts.get((tenant_id, address), 0) + 1
            if seen >= policy.soft_after:
                reason = (
                    f"bounce: {seen} soft bounces in {policy.soft_window},"
                    f" last {status.status or status.action.value} {status.category}"
                )
                suppressions.append(Suppression(tenant_id, address, reason, context.now))
    return Plan(tuple(records), _unique(suppressions), tuple(soft))


def unverified(plan: Plan) -> Plan:
    """``plan`` for a report attributed only through our reference header to one of
    several recipients: its records, marked so, and no suppression or soft bounce."""
    records = tuple(
        dataclasses.replace(r, meta={**r.meta, "attribution": "unverified"}) for r in plan.records
    )
    return Plan(records)


def _complaints(report: BounceReport, findings: Sequence[Finding], context: Context) -> Plan:
    feedback_type = report.feedback.feedback_type.lower() if report.feedback else "other"
    records = tuple(feedback_record(f, report, context) for f in findings)
    suppressions: list[Suppression] = []
    if feedback_type in COMPLAINT_TYPES:
        reason = f"complaint: {feedback_type}"
        suppressions = [
            Suppression(f.message.tenant_id, f.message.recipient.lower(), reason, context.now)
            for f in findings
        ]
    return Plan(records, _unique(suppressions))


def _missing_status(finding: Finding, kind: ReportKind) -> RecipientStatus:
    """The status of a report that gives none: an auto-reply's, or a DSN's that says
    no more than that delivery failed."""
    if kind is ReportKind.DSN:
        action, category = Action.FAILED, Category.UNCATEGORIZED
    else:
        action, category = Action.DELIVERED, Category.AUTO_REPLY
    return RecipientStatus(finding.message.recipient, action, "", category)


def _unique(suppressions: list[Suppression]) -> tuple[Suppression, ...]:
    kept: dict[tuple[int, str], Suppression] = {}
    for suppression in suppressions:
        kept.setdefault((suppression.tenant_id, suppression.address), suppression)
    return tuple(kept.values())


def response(status: RecipientStatus) -> Reply:
    """The reply a recipient status stands for: its SMTP code (or one its status or
    action implies), enhanced status and diagnostic text."""
    code = status.smtp_code
    if code is None:
        klass = status.status[:1]
        if klass not in ("2", "4", "5"):
            klass = {Action.FAILED: "5", Action.DELAYED: "4"}.get(status.action, "2")
        code = int(klass) * 100 + 50
    return Reply(code, status.status, status.diagnostic)


def oob_record(
    finding: Finding, status: RecipientStatus, report: BounceReport, context: Context
) -> Record:
    """KumoMTA's ``OOB`` record of ``status`` on the original message."""
    message = finding.message
    return Record(
        type=RecordType.OOB,
        timestamp=context.now,
        tenant_id=message.tenant_id,
        id=message.id,
        sender=message.sender,
        recipient=message.recipient,
        queue=message.queue,
        response=response(status),
        peer_address=(status.remote_mta or report.reporting_mta, context.peer),
        created=message.created_at,
        bounce_classification=status.category,
        meta=_meta(finding, report, context),
        reception_protocol="ESMTP",
        nodeid=context.nodeid,
    )


def feedback_record(finding: Finding, report: BounceReport, context: Context) -> Record:
    """KumoMTA's ``Feedback`` record of a complaint on the original message."""
    message = finding.message
    feedback = report.feedback
    fields = {} if feedback is None else _feedback_json(report)
    return Record(
        type=RecordType.FEEDBACK,
        timestamp=context.now,
        tenant_id=message.tenant_id,
        id=message.id,
        sender=message.sender,
        recipient=message.recipient,
        queue=message.queue,
        peer_address=(report.reporting_mta, context.peer),
        created=message.created_at,
        feedback_report=fields,
        meta=_meta(finding, report, context),
        reception_protocol="ESMTP",
        nodeid=context.nodeid,
    )


def _feedback_json(report: BounceReport) -> dict[str, object]:
    fields = report.to_json()["feedback"]
    assert isinstance(fields, dict)
    return fields


def _meta(finding: Finding, report: BounceReport, context: Context) -> dict[str, object]:
    return {
        "tenant": finding.tenant,
        "campaign": finding.message.campaign,
        "inbound_id": context.inbound_id,
        "report": report.kind.value,
    }
