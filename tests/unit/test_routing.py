"""Pools and priorities of tenants' mail (``engine.scheduler.routing``) and their config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.loader import parse_settings
from config.schema import Settings, priority_value
from engine.model import CampaignRoute
from engine.scheduler.routing import campaign_tables, pool_of, priority_of, tenant_sources

ROUTED = parse_settings(
    {
        "sources": {"ip2": {"address": "127.0.0.2"}},
        "pools": {"warm": {"sources": ["ip2"]}, "news": {"sources": ["default", "ip2"]}},
        "tenants": {
            "acme": {"pool": "warm", "priority": "transactional"},
            "beta": {"priority": "3"},
        },
        "campaigns": {
            "acme:promo": {"pool": "news", "priority": "bulk"},
            "acme:alerts": {"priority": "7"},
            "beta:weekly": {"pool": "news"},
        },
    }
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("bulk", 0),
        ("normal", 5),
        ("transactional", 9),
        (" Transactional ", 9),
        ("BULK", 0),
        ("0", 0),
        ("9", 9),
        ("4", 4),
        ("10", None),
        ("-1", None),
        ("", None),
        ("urgent", None),
        ("٣", None),
        ("5.0", None),
    ],
)
def test_priority_values(text: str, value: int | None) -> None:
    assert priority_value(text) == value


@pytest.mark.parametrize(
    ("tenant", "campaign", "pool"),
    [
        ("acme", "", "warm"),
        ("acme", "other", "warm"),
        ("acme", "promo", "news"),
        ("acme", "alerts", "warm"),  # the campaign sets no pool: the tenant's
        ("beta", "", "default"),
        ("beta", "weekly", "news"),
        ("nobody", "", "default"),
        ("nobody", "promo", "default"),
    ],
)
def test_pool_of(tenant: str, campaign: str, pool: str) -> None:
    assert pool_of(ROUTED, tenant, campaign) == pool


@pytest.mark.parametrize(
    ("tenant", "sources"),
    [
        ("acme", {"ip2", "default"}),  # its pool warm, and its campaign promo's pool news
        ("beta", {"default", "ip2"}),  # the default pool, and weekly's news
        ("other", {"default"}),  # no table: the default pool
        ("acm", {"default"}),  # no other tenant's campaigns by a shared prefix
    ],
)
def test_tenant_sources(tenant: str, sources: set[str]) -> None:
    assert tenant_sources(ROUTED, tenant) == sources


@pytest.mark.parametrize(
    ("tenant", "campaign", "header", "priority"),
    [
        ("acme", "", None, 9),
        ("acme", "promo", None, 0),
        ("acme", "alerts", None, 7),
        ("acme", "promo", "transactional", 9),
        ("acme", "", "bulk", 0),
        ("acme", "", "2", 2),
        ("acme", "", "urgent", 9),  # unreadable: the default applies
        ("acme", "promo", "", 0),
        ("beta", "", None, 3),
        ("beta", "weekly", None, 3),  # the campaign sets no priority: the tenant's
        ("nobody", "", None, 5),
        ("nobody", "x", "Transactional", 9),
    ],
)
def test_priority_of(tenant: str, campaign: str, header: str | None, priority: int) -> None:
    assert priority_of(ROUTED, tenant, campaign, header) == priority


def test_defaults_without_tables() -> None:
    assert pool_of(Settings(), "acme", "news") == "default"
    assert priority_of(Settings(), "acme", "news", None) == 5


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('[tenants.acme]\npool = "nope"\n', "tenants.acme.pool", "unknown pool 'nope'"),
        ('[tenants.acme]\npool = ""\n', "tenants.acme.pool", "unknown pool ''"),
        ('[tenants.acme]\npriority = "urgent"\n', "tenants.acme.priority", "got 'urgent'"),
        ('[tenants.acme]\npriority = ""\n', "tenants.acme.priority", "got ''"),
        ("[tenants.acme]\nweight = 1\n", "tenants.acme.weight", "unknown key"),
        ('[campaigns."acme:x"]\npool = "nope"\n', 'campaigns."acme:x".pool', "unknown pool"),
        ('[campaigns."acme:x"]\npriority = "11"\n', 'campaigns."acme:x".priority', "got '11'"),
        ('[campaigns.acme]\npool = "default"\n', "campaigns.acme", "TENANT:CAMPAIGN"),
        ('[campaigns.":x"]\n', "campaigns.:x", "TENANT:CAMPAIGN"),
    ],
)
def test_routing_errors_name_the_key(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_routing_tables_load(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[sources.ip2]\naddress = "127.0.0.2"\n[pools.warm]\nsources = ["ip2"]\n'
        '[tenants.acme]\npool = "warm"\npriority = "bulk"\n'
        '[campaigns."acme:alerts"]\npriority = "transactional"\n'
    )
    settings = load_settings(path)
    assert pool_of(settings, "acme", "alerts") == "warm"
    assert priority_of(settings, "acme", "alerts", None) == 9
    assert priority_of(settings, "acme", "", None) == 0


ACME, BETA = 1, 2
ROUTES = [
    CampaignRoute(ACME, "promo", "warm", "t.acme.test"),  # over the config's table
    CampaignRoute(ACME, "alerts", None, "t.acme.test"),  # the table's pool stays
    CampaignRoute(ACME, "spring", "news", None),  # no table in the config
    CampaignRoute(BETA, "weekly", "gone", None),  # a pool removed from [pools] since
    CampaignRoute(3, "orphan", "news", None),  # a tenant not in the snapshot
]


@pytest.mark.parametrize(
    ("tenant", "campaign", "pool"),
    [
        ("acme", "promo", "warm"),
        ("acme", "alerts", "warm"),
        ("acme", "spring", "news"),
        ("beta", "weekly", "news"),
        ("acme", "other", "warm"),
    ],
)
def test_a_stored_campaigns_pool_wins_over_the_configs_table(
    tenant: str, campaign: str, pool: str
) -> None:
    tables = campaign_tables(ROUTED, {ACME: "acme", BETA: "beta"}, ROUTES)
    assert pool_of(dataclasses.replace(ROUTED, campaigns=tables), tenant, campaign) == pool


def test_a_stored_campaign_keeps_the_configs_priority_and_sets_its_tracking_domain() -> None:
    tables = campaign_tables(ROUTED, {ACME: "acme", BETA: "beta"}, ROUTES)
    assert (tables["acme:promo"].priority, tables["acme:promo"].tracking_domain) == (
        "bulk",
        "t.acme.test",
    )
    assert tables["acme:spring"].tracking_domain == ""
    assert "3:orphan" not in tables and len(tables) == 4
