"""The tracking domains snapshot: which policy a tenant's or campaign's mail gets, and
whose a host is (campaign > tenant default > none; switches inherited one by one)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from config.loader import parse_settings
from engine.model import CampaignRoute, Tenant, TrackingDomain, TrackingPolicy
from engine.provisioning import TrackingDomains

ACME, BETA, GAMMA = 1, 2, 3
TENANTS = [Tenant(ACME, "acme", 0.0), Tenant(BETA, "beta", 0.0), Tenant(GAMMA, "gamma", 0.0)]
DOMAINS = [
    TrackingDomain(ACME, "click.acme.test", True, 0.0),
    TrackingDomain(ACME, "spring.acme.test", False, 0.0),
    TrackingDomain(BETA, "go.beta.test", False, 0.0),
]


def snapshot(tables: dict[str, Any] | None = None) -> TrackingDomains:
    domains = TrackingDomains(parse_settings(tables or {}))
    domains.load(TENANTS, DOMAINS)
    return domains


@pytest.mark.parametrize(
    ("tables", "tenant_id", "campaign", "expected"),
    [
        ({}, ACME, "", TrackingPolicy("click.acme.test")),
        ({}, ACME, "any", TrackingPolicy("click.acme.test")),
        ({}, BETA, "", None),  # a tracking domain, but no default
        ({}, GAMMA, "", None),  # no tracking domain at all
        ({}, 99, "", None),  # not a tenant (yet)
        (
            {"campaigns": {"acme:spring": {"tracking_domain": "Spring.Acme.Test"}}},
            ACME,
            "spring",
            TrackingPolicy("spring.acme.test"),
        ),
        (
            {"campaigns": {"acme:spring": {"tracking_domain": "spring.acme.test"}}},
            ACME,
            "autumn",
            TrackingPolicy("click.acme.test"),
        ),
        (
            {"campaigns": {"beta:launch": {"tracking_domain": "go.beta.test"}}},
            BETA,
            "launch",
            TrackingPolicy("go.beta.test"),
        ),
        (
            {"campaigns": {"beta:launch": {"track_opens": False}}},
            BETA,
            "launch",
            None,  # switches of its own, but no domain to track on
        ),
        (
            {"campaigns": {"acme:spring": {"tracking_domain": "go.beta.test"}}},
            ACME,
            "spring",
            None,  # beta's domain never serves acme, nor does the default stand in
        ),
        (
            {"campaigns": {"acme:spring": {"tracking_domain": "unknown.acme.test"}}},
            ACME,
            "spring",
            None,
        ),
        (
            {"campaigns": {"gamma:x": {"tracking_domain": "click.acme.test"}}},
            ACME,
            "x",
            TrackingPolicy("click.acme.test"),  # another tenant's campaign of that name
        ),
    ],
)
def test_the_domain_is_the_campaigns_else_the_tenants_default_else_none(
    tables: dict[str, Any], tenant_id: int, campaign: str, expected: TrackingPolicy | None
) -> None:
    assert snapshot(tables).policy_for(tenant_id, campaign) == expected


@pytest.mark.parametrize(
    ("tenant", "campaign", "expected"),
    [
        ({}, {}, (True, True, True)),
        ({"track_opens": False}, {}, (False, True, True)),
        ({"track_opens": False}, {"track_opens": True}, (True, True, True)),
        ({}, {"track_clicks": False}, (True, False, True)),
        ({"track_unsubscribe": False}, {"track_clicks": False}, (True, False, False)),
        ({"track_clicks": False}, {"track_unsubscribe": False}, (True, False, False)),
    ],
)
def test_each_switch_is_the_campaigns_when_set_else_the_tenants(
    tenant: dict[str, bool], campaign: dict[str, bool], expected: tuple[bool, bool, bool]
) -> None:
    domains = snapshot({"tenants": {"acme": tenant}, "campaigns": {"acme:spring": campaign}})
    policy = domains.policy_for(ACME, "spring")
    assert policy is not None
    assert (policy.opens, policy.clicks, policy.unsubscribe) == expected
    outside = domains.policy_for(ACME, "")
    assert outside is not None
    assert (outside.opens, outside.clicks, outside.unsubscribe) == tuple(
        tenant.get(key, True) for key in ("track_opens", "track_clicks", "track_unsubscribe")
    )


def test_every_switch_off_is_no_tracking() -> None:
    off = {"track_opens": False, "track_clicks": False, "track_unsubscribe": False}
    domains = snapshot(
        {"tenants": {"acme": off}, "campaigns": {"acme:loud": {"track_opens": True}}}
    )
    assert domains.policy_for(ACME, "") is None
    assert domains.policy_for(ACME, "loud") == TrackingPolicy(
        "click.acme.test", opens=True, clicks=False, unsubscribe=False
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("click.acme.test", ACME),
        ("CLICK.Acme.Test", ACME),
        ("click.acme.test.", ACME),
        ("click.acme.test:8080", ACME),
        ("spring.acme.test", ACME),
        ("go.beta.test", BETA),
        ("acme.test", None),
        ("x.click.acme.test", None),
        ("", None),
    ],
)
def test_tenant_of_a_host(host: str, expected: int | None) -> None:
    assert snapshot().tenant_of(host) == expected


def test_empty_until_loaded_and_replaced_whole_by_each_load() -> None:
    domains = TrackingDomains(parse_settings({}))
    assert domains.policy_for(ACME, "") is None and domains.tenant_of("click.acme.test") is None
    domains.load(TENANTS, DOMAINS)
    assert domains.tenant_of("go.beta.test") == BETA
    domains.load(TENANTS, [TrackingDomain(BETA, "go.beta.test", True, 0.0)])
    assert domains.tenant_of("click.acme.test") is None
    assert domains.policy_for(ACME, "") is None
    assert domains.policy_for(BETA, "") == TrackingPolicy("go.beta.test")
    assert domains.loads == 2


def test_a_campaign_on_a_domain_not_its_tenants_is_logged_once_while_it_lasts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "engine.provisioning.tracking_domains")
    domains = snapshot({"campaigns": {"acme:spring": {"tracking_domain": "go.beta.test"}}})
    domains.load(TENANTS, DOMAINS)
    [logged] = caplog.records
    assert 'campaigns."acme:spring".tracking_domain: go.beta.test' in logged.getMessage()
    domains.load(TENANTS, [*DOMAINS[:2], TrackingDomain(ACME, "go.beta.test", False, 0.0)])
    assert domains.policy_for(ACME, "spring") == TrackingPolicy("go.beta.test")
    domains.load(TENANTS, DOMAINS)
    assert len(caplog.records) == 2, "logged again once it is wrong again"


def test_a_stored_campaigns_tracking_domain_wins_and_keeps_the_configs_switches() -> None:
    tables = {"campaigns": {"acme:spring": {"tracking_domain": "click.acme.test"}}}
    domains = TrackingDomains(
        parse_settings({**tables, "tenants": {"acme": {"track_opens": False}}})
    )
    routes = [
        CampaignRoute(ACME, "spring", None, "spring.acme.test"),
        CampaignRoute(ACME, "autumn", "default", "spring.acme.test"),
        CampaignRoute(ACME, "pooled", "default", None),
        CampaignRoute(BETA, "stolen", None, "click.acme.test"),  # another tenant's domain
    ]
    domains.load(TENANTS, DOMAINS, routes)
    spring = TrackingPolicy("spring.acme.test", opens=False)
    assert domains.policy_for(ACME, "spring") == spring
    assert domains.policy_for(ACME, "autumn") == spring
    assert domains.policy_for(ACME, "pooled") == TrackingPolicy("click.acme.test", opens=False)
    assert domains.policy_for(BETA, "stolen") is None
