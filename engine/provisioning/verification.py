"""Verification of a sending domain's DNS: what is published against what should be.

Pure: the DNS answers come in as ``DnsAnswer`` values (the ``DnsLookup``
seam fetches them; ``smtp_out.dns_lookup`` is the adapter on dnspython),
and a ``VerificationReport`` goes out, one ``Check`` per record:

- ``spf``: the domain's own SPF (RFC 7208 §4.5): exactly one ``v=spf1``
  record whose terms parse. Mail leaves with the return-path domain as the
  envelope sender, so it does not need to name the engine; its presence
  and shape are checked because receivers judge a broken one.
- ``dkim``: ``<selector>._domainkey.<domain>`` holds a DKIM key record
  (RFC 6376 §3.6.1) whose ``p=`` is the domain's public key.
- ``dmarc``: ``_dmarc.<domain>`` holds exactly one ``v=DMARC1`` record
  with a ``p=`` of none, quarantine or reject (RFC 7489 §6.3, §6.6.3).
- ``return_path_mx``: the return-path domain's MX names the engine, so
  bounces come back to it.
- ``return_path_spf``: the return-path domain has one SPF record that
  authorises the engine (``a:<engine host>``).
- ``tracking_cname``: each of the tenant's tracking domains is a CNAME to
  the tracking target.

Every check ends ``pass``, ``fail`` (something is published, but wrong, or
the lookup failed) or ``missing`` (nothing of the kind is published), with
what was found and what was expected. The expectations are the records
``penguin domain records`` prints (``engine.dkim.keys.dns_records``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from engine.dkim.keys import DnsRecord


class CheckStatus(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The records of one (name, type): TXT as their joined text, MX as
    ``preference exchange.``, CNAME as ``target.``. An unknown name or one
    without that type answers no values; ``failure`` says why a lookup failed."""

    values: tuple[str, ...] = ()
    failure: str | None = None


class DnsLookup(Protocol):
    """The DNS seam of verification."""

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """The ``rdtype`` (``TXT``, ``MX``, ``CNAME``) records of ``name``."""
        ...


@dataclass(frozen=True, slots=True)
class Check:
    """One record checked: ``found`` is what DNS holds, ``expected`` what should be there."""

    check: str
    name: str
    type: str
    status: CheckStatus
    expected: str
    found: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The checks of one sending domain; ``verified`` when each passed."""

    domain: str
    checks: list[Check]

    @property
    def verified(self) -> bool:
        return all(c.status is CheckStatus.PASS for c in self.checks)


@dataclass(frozen=True, slots=True)
class Expectations:
    """What a sending domain should publish: the records ``dns_records`` made for it,
    and the tracking domains' CNAMEs."""

    domain: str
    records: list[DnsRecord]
    tracking: list[DnsRecord] = field(default_factory=list)

    def lookups(self) -> list[tuple[str, str]]:
        """Every (name, type) to ask DNS, once each."""
        wanted = [(self.domain, "TXT")]
        wanted += [(_bare(r.name), r.type) for r in [*self.records, *self.tracking]]
        return list(dict.fromkeys(wanted))


_SPF_TERM = re.compile(
    r"[+\-~?]?(all|include:\S+|a(:\S+)?(/\d+)?(//\d+)?|mx(:\S+)?(/\d+)?(//\d+)?"
    r"|ptr(:\S+)?|ip4:[0-9./]+|ip6:[0-9a-f:./]+|exists:\S+)"
    r"|[a-z][a-z0-9_.\-]*=\S*",
    re.IGNORECASE,
)
"""A directive or modifier of RFC 7208 §12 (domain specs are not expanded)."""
DMARC_POLICIES = ("none", "quarantine", "reject")


def report(
    expectations: Expectations, answers: dict[tuple[str, str], DnsAnswer]
) -> VerificationReport:
    """The report for ``expectations`` from the answers to its ``lookups()``."""

    def answer(name: str, rdtype: str) -> DnsAnswer:
        return answers.get((_bare(name), rdtype), DnsAnswer(failure="not looked up"))

    checks = [check_spf(expectations.domain, answer(expectations.domain, "TXT"))]
    for record in expectations.records:
        found = answer(record.name, record.type)
        if record.name.startswith("_dmarc."):
            checks.append(check_dmarc(record, found))
        elif "._domainkey." in record.name:
            checks.append(check_dkim(record, found))
        elif record.type == "MX":
            checks.append(check_return_path_mx(record, found))
        else:
            checks.append(check_return_path_spf(record, found))
    checks += [check_cname(r, answer(r.name, r.type)) for r in expectations.tracking]
    return VerificationReport(expectations.domain, checks)


def check_spf(domain: str, answer: DnsAnswer) -> Check:
    """The domain's own SPF: one record, parseable (RFC 7208 §4.5)."""
    expected = "one v=spf1 record"
    spf = _records(answer, "v=spf1")
    made = _check("spf", domain, "TXT", expected, spf)
    return _spf_status(made, answer, spf, required_term=None)


def check_return_path_spf(record: DnsRecord, answer: DnsAnswer) -> Check:
    """The return-path domain's SPF: one record, authorising the engine."""
    spf = _records(answer, "v=spf1")
    made = _check("return_path_spf", record.name, "TXT", record.value, spf)
    engine_term = next(t for t in record.value.split() if t.startswith("a:"))
    return _spf_status(made, answer, spf, required_term=engine_term)


def check_dkim(record: DnsRecord, answer: DnsAnswer) -> Check:
    """The selector's key record holds the domain's public key."""
    keys = [v for v in answer.values if "p=" in v]
    made = _check("dkim", record.name, "TXT", record.value, keys)
    unsure = _not_one(made, answer, "DKIM key record")
    if unsure is not None:
        return unsure
    published, wanted = _tags(keys[0]), _tags(record.value)
    if published.get("p", "").replace(" ", "") != wanted["p"]:
        return _status(made, CheckStatus.FAIL, "the public key (p=) is not this domain's")
    if published.get("k", "rsa").lower() != wanted["k"]:
        return _status(made, CheckStatus.FAIL, f"the key type (k=) is not {wanted['k']}")
    return _status(made, CheckStatus.PASS, "")


def check_dmarc(record: DnsRecord, answer: DnsAnswer) -> Check:
    """One DMARC record with a policy (RFC 7489 §6.6.3)."""
    dmarc = _records(answer, "v=DMARC1")
    made = _check("dmarc", record.name, "TXT", record.value, dmarc)
    unsure = _not_one(made, answer, "v=DMARC1 record", ": none applies (RFC 7489 §6.6.3)")
    if unsure is not None:
        return unsure
    policy = _tags(dmarc[0]).get("p", "")
    if policy.lower() not in DMARC_POLICIES:
        shown = f"p={policy}" if policy else "no p="
        expected = ", ".join(DMARC_POLICIES)
        return _status(made, CheckStatus.FAIL, f"{shown}; expected one of {expected}")
    return _status(made, CheckStatus.PASS, f"policy {policy.lower()}")


def check_return_path_mx(record: DnsRecord, answer: DnsAnswer) -> Check:
    """The return-path domain's MX names the engine host."""
    made = _check("return_path_mx", record.name, "MX", record.value, list(answer.values))
    if answer.failure is not None:
        return _failed(made, answer.failure)
    if not answer.values:
        return _status(made, CheckStatus.MISSING, "no MX: bounces cannot come back")
    wanted = _bare(record.value.split()[-1])
    exchanges = {_bare(v.split()[-1]) for v in answer.values}
    if wanted not in exchanges:
        return _status(made, CheckStatus.FAIL, f"no MX names {wanted}")
    return _status(made, CheckStatus.PASS, "")


def check_cname(record: DnsRecord, answer: DnsAnswer) -> Check:
    """A tracking domain is a CNAME to the tracking target."""
    made = _check("tracking_cname", record.name, "CNAME", record.value, list(answer.values))
    if answer.failure is not None:
        return _failed(made, answer.failure)
    if not answer.values:
        return _status(made, CheckStatus.MISSING, "no CNAME")
    if {_bare(v) for v in answer.values} != {_bare(record.value)}:
        return _status(made, CheckStatus.FAIL, f"the CNAME does not point to {record.value}")
    return _status(made, CheckStatus.PASS, "")


def spf_errors(record: str) -> list[str]:
    """The terms of SPF ``record`` that do not parse (RFC 7208 §12); empty when it does."""
    terms = record.split()
    if not terms or terms[0].lower() != "v=spf1":
        return ["it does not start with v=spf1"]
    return [t for t in terms[1:] if not _SPF_TERM.fullmatch(t)]


def _spf_status(
    made: Check, answer: DnsAnswer, spf: list[str], *, required_term: str | None
) -> Check:
    unsure = _not_one(made, answer, "v=spf1 record", ": SPF fails (RFC 7208 §4.5)")
    if unsure is not None:
        return unsure
    bad = spf_errors(spf[0])
    if bad:
        return _status(made, CheckStatus.FAIL, f"terms that do not parse: {' '.join(bad)}")
    terms = {t.lower().lstrip("+") for t in spf[0].split()}
    if required_term is not None and required_term.lower() not in terms:
        detail = f"it does not authorise the engine ({required_term})"
        return _status(made, CheckStatus.FAIL, detail)
    return _status(made, CheckStatus.PASS, "")


def _not_one(made: Check, answer: DnsAnswer, what: str, why_one: str = "") -> Check | None:
    """``made`` failed or missing when the lookup failed or ``made.found`` is not exactly
    one ``what`` (``why_one`` said after "more than one"); None when it is."""
    if answer.failure is not None:
        return _failed(made, answer.failure)
    if not made.found:
        return _status(made, CheckStatus.MISSING, f"no {what}")
    if len(made.found) > 1:
        return _status(made, CheckStatus.FAIL, f"more than one {what}{why_one}")
    return None


def _records(answer: DnsAnswer, version: str) -> list[str]:
    """The values that start with the version tag ``version`` (case-insensitive)."""
    prefix = version.lower()
    return [
        v
        for v in answer.values
        if v.lower() == prefix or re.match(re.escape(prefix) + r"[\s;]", v.lower())
    ]


def _tags(value: str) -> dict[str, str]:
    """The tag=value list of a DKIM or DMARC record (RFC 6376 §3.2), tag names lower-case."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, text = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), text.strip())
    return tags


def _check(check: str, name: str, rdtype: str, expected: str, found: Sequence[str]) -> Check:
    return Check(check, _bare(name), rdtype, CheckStatus.MISSING, expected, list(found))


def _status(made: Check, status: CheckStatus, detail: str) -> Check:
    return replace(made, status=status, detail=detail)


def _failed(made: Check, failure: str) -> Check:
    return _status(made, CheckStatus.FAIL, f"DNS lookup failed: {failure}")


def _bare(name: str) -> str:
    return name.rstrip(".").lower()
