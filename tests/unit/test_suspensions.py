"""Suspension targets as operators name them, and their AdminAction records."""

from __future__ import annotations

import pytest

from engine.model import Suspension, SuspensionScope
from engine.records.record import RecordType
from engine.scheduler.suspensions import (
    BadTarget,
    describe,
    resume_record,
    scoped_target,
    suspension_record,
)

T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("word", "target", "provider", "scope", "stored"),
    [
        (
            "lane",
            "ip1|MX1.Example.net,mx2.example.net",
            "",
            "lane",
            "ip1|mx1.example.net,mx2.example.net",
        ),
        ("lane", " ip1|example.com ", "", "lane", "ip1|example.com"),
        ("source", "ip1", "", "source", "ip1"),
        ("source", "ip1", "Google", "source_provider", "ip1|google"),
        ("tenant", "acme", "", "tenant", "acme"),
        ("campaign", "acme:spring", "", "campaign", "acme:spring"),
    ],
)
def test_targets(word: str, target: str, provider: str, scope: str, stored: str) -> None:
    assert scoped_target(word, target, provider) == (SuspensionScope(scope), stored)


@pytest.mark.parametrize(
    ("word", "target", "provider", "problem"),
    [
        ("lane", "ip1", "", "SOURCE|SITE"),
        ("lane", "|mx.example", "", "SOURCE|SITE"),
        ("lane", "ip1|", "", "SOURCE|SITE"),
        ("lane", "ip1|a|b", "", "SOURCE|SITE"),
        ("lane", "ip1|mx", "google", "--provider"),
        ("tenant", "acme", "google", "--provider"),
        ("source", "", "", "source name"),
        ("source", "ip1|x", "", "source name"),
        ("tenant", " ", "", "tenant name"),
        ("campaign", "acme", "", "TENANT:CAMPAIGN"),
        ("campaign", ":x", "", "TENANT:CAMPAIGN"),
        ("campaign", "acme:", "", "TENANT:CAMPAIGN"),
        ("pool", "x", "", "expected one of"),
    ],
)
def test_bad_targets(word: str, target: str, provider: str, problem: str) -> None:
    with pytest.raises(BadTarget, match=problem.replace("|", r"\|")):
        scoped_target(word, target, provider)


def test_records_say_what_why_and_until_when() -> None:
    suspension = Suspension(
        SuspensionScope.SOURCE_PROVIDER, "ip1|microsoft", "S3150 listed", T0, T0 + 86400, "admin"
    )
    record = suspension_record(suspension, nodeid="n1").to_json()
    assert record["type"] == "AdminAction"
    assert record["response"]["content"] == (
        "suspended source ip1 for provider microsoft until 2023-11-15T22:13:20Z: S3150 listed"
    )
    assert record["egress_source"] == "ip1"
    assert record["meta"] == {
        "scope": "source_provider",
        "target": "ip1|microsoft",
        "tenant": None,
        "action": "suspend",
        "until": T0 + 86400,
        "reason": "S3150 listed",
        "origin": "admin",
    }
    lifted = resume_record(SuspensionScope.CAMPAIGN, "acme:x", now=T0, nodeid="n1", tenant_id=4)
    assert lifted.type is RecordType.ADMIN_ACTION and lifted.tenant_id == 4
    assert lifted.to_json()["response"]["content"] == "resumed campaign acme:x"
    assert lifted.to_json()["meta"]["tenant"] == "acme"
    assert describe(SuspensionScope.LANE, "ip1|mx") == "lane ip1|mx"
