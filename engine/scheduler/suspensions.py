"""Suspensions as operators name them, and the records of setting and lifting them. Pure.

In: the scope word of ``penguin suspend`` / ``resume`` (``lane``, ``source``,
``tenant``, ``campaign``), its target and an optional provider; ``now``, a
duration, a reason. Out: the ``SuspensionScope`` and stored target, the
``Suspension`` and its AdminAction record (``response.content`` says what
is suspended, why and until when; ``meta`` carries scope, target, until,
origin).

Targets: lane ``SOURCE|SITE`` (a site name or a destination domain), source
``SOURCE``, or with a provider ``SOURCE|PROVIDER`` (scope source_provider),
tenant ``TENANT``, campaign ``TENANT:CAMPAIGN``. ``|`` and ``:`` split the
parts; no part is empty.
"""

from __future__ import annotations

import time

from engine.model import Suspension, SuspensionScope
from engine.records.record import Record, RecordType
from engine.smtp.reply import Reply

SCOPE_WORDS = ("lane", "source", "tenant", "campaign")
ADMIN_ORIGIN = "admin"
SUSPENDED_CODE = Reply(250, "2.0.0", "")
"""The code of an AdminAction's response: the action was carried out."""


class BadTarget(ValueError):
    """A target that does not fit its scope."""


def scoped_target(word: str, target: str, provider: str = "") -> tuple[SuspensionScope, str]:
    """The scope and stored target of ``word TARGET [--provider P]``."""
    target, provider = target.strip(), provider.strip()
    if provider and word != "source":
        raise BadTarget("--provider goes with a source only")
    if word == "lane":
        source, bar, site = target.partition("|")
        if not (source and bar and site) or "|" in site:
            raise BadTarget(f"a lane is SOURCE|SITE, got {target!r}")
        return SuspensionScope.LANE, f"{source}|{site.lower()}"
    if word == "source":
        if not target or "|" in target or "|" in provider:
            raise BadTarget(f"a source is a source name, got {target!r}")
        if provider:
            return SuspensionScope.SOURCE_PROVIDER, f"{target}|{provider.lower()}"
        return SuspensionScope.SOURCE, target
    if word == "tenant":
        if not target:
            raise BadTarget("a tenant name is needed")
        return SuspensionScope.TENANT, target
    if word == "campaign":
        tenant, colon, campaign = target.partition(":")
        if not (tenant and colon and campaign):
            raise BadTarget(f"a campaign is TENANT:CAMPAIGN, got {target!r}")
        return SuspensionScope.CAMPAIGN, target
    raise BadTarget(f"expected one of {', '.join(SCOPE_WORDS)}, got {word!r}")


def source_of(scope: SuspensionScope, target: str) -> str:
    """The source a lane, source or source_provider target names; "" for the others."""
    if scope in (SuspensionScope.LANE, SuspensionScope.SOURCE_PROVIDER, SuspensionScope.SOURCE):
        return target.partition("|")[0]
    return ""


def tenant_of(scope: SuspensionScope, target: str) -> str:
    """The tenant a tenant or campaign target names; "" for the others."""
    if scope is SuspensionScope.TENANT:
        return target
    if scope is SuspensionScope.CAMPAIGN:
        return target.partition(":")[0]
    return ""


def describe(scope: SuspensionScope, target: str) -> str:
    """``lane ip1|mx.example``, ``source ip1 for provider google`` ..."""
    if scope is SuspensionScope.SOURCE_PROVIDER:
        source, _, provider = target.partition("|")
        return f"source {source} for provider {provider}"
    return f"{scope.value} {target}"


def utc_text(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def suspension_record(
    suspension: Suspension, *, nodeid: str, tenant_id: int | None = None
) -> Record:
    """The AdminAction record of ``suspension`` being set (``tenant_id``: the tenant's,
    for a tenant or campaign, so it is among that tenant's records)."""
    what = describe(suspension.scope, suspension.target)
    text = f"suspended {what} until {utc_text(suspension.until)}: {suspension.reason}"
    return _record(
        suspension.scope,
        suspension.target,
        text,
        suspension.created_at,
        nodeid,
        tenant_id,
        {
            "action": "suspend",
            "until": suspension.until,
            "reason": suspension.reason,
            "origin": suspension.origin,
        },
    )


def resume_record(
    scope: SuspensionScope,
    target: str,
    *,
    now: float,
    nodeid: str,
    tenant_id: int | None = None,
) -> Record:
    """The AdminAction record of the suspensions of (``scope``, ``target``) being lifted."""
    text = f"resumed {describe(scope, target)}"
    return _record(scope, target, text, now, nodeid, tenant_id, {"action": "resume"})


def _record(
    scope: SuspensionScope,
    target: str,
    text: str,
    now: float,
    nodeid: str,
    tenant_id: int | None,
    meta: dict[str, object],
) -> Record:
    return Record(
        type=RecordType.ADMIN_ACTION,
        timestamp=now,
        tenant_id=tenant_id,
        response=Reply(SUSPENDED_CODE.code, SUSPENDED_CODE.enhanced, text),
        egress_source=source_of(scope, target) or None,
        meta={"scope": scope.value, "target": target, "tenant": tenant_of(scope, target) or None}
        | meta,
        nodeid=nodeid,
    )
