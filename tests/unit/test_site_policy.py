"""site_limits: which [providers.NAME] override applies to a site, and what it changes."""

import pytest

from config.schema import DeliverySettings, ProviderSettings, Settings
from engine.clock import FakeClock
from engine.delivery.outcome import Outcome, OutcomeKind, Scope
from engine.smtp.reply import Reply, Stage
from smtp_out.pool import ConnectionPool
from smtp_out.settings import ClientSettings, TlsMode
from smtp_out.site import site_name
from smtp_out.site_policy import SiteLimits, SitePolicy, site_limits

DEFAULTS = SiteLimits(max_deliveries_per_connection=100, connection_limit=10, tls=TlsMode.REQUIRED)
SHIPPED = Settings().providers
GMAIL = [
    "gmail-smtp-in.l.google.com.",
    "alt1.gmail-smtp-in.l.google.com.",
    "alt2.gmail-smtp-in.l.google.com.",
]


@pytest.mark.parametrize(
    ("hosts", "override", "per_connection"),
    [
        (GMAIL, "google", 50),
        (["ASPMX.L.GOOGLE.COM"], "google", 50),
        (["mx.googlemail.com"], "google", 50),
        (["mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"], "yahoo", 20),
        (["hotmail-com.olc.protection.outlook.com"], "microsoft", 50),
        (["example-com.mail.protection.outlook.com."], "microsoft", 50),
        (["mx01.mail.icloud.com", "mx02.mail.icloud.com"], "apple", 5),
        (["mx.example.com", "alt1.aspmx.l.google.com"], "google", 50),
        (["mx.example.com"], None, 100),
        (["google.com.evil.example"], None, 100),
        (["notgoogle.com"], None, 100),
        (["example.org"], None, 100),
    ],
)
def test_shipped_overrides(hosts: list[str], override: str | None, per_connection: int) -> None:
    limits = site_limits(hosts, SHIPPED, DEFAULTS)
    assert limits.override == override
    assert limits.max_deliveries_per_connection == per_connection
    assert (limits.connection_limit, limits.tls) == (10, TlsMode.REQUIRED)


@pytest.mark.parametrize(
    ("suffixes", "hosts", "matches"),
    [
        ([".example.com"], ["mx.example.com"], True),
        (["example.com"], ["mx.example.com"], True),
        (["example.com."], ["MX.EXAMPLE.COM."], True),
        ([".Example.COM"], ["mx.example.com"], True),
        ([".example.com"], ["example.com"], True),
        ([".example.com"], ["mx.badexample.com"], False),
        (["ample.com"], ["mx.example.com"], False),
        ([".example.com"], ["mx.example.com.au"], False),
        ([], ["mx.example.com"], False),
        (["", "."], ["mx.example.com"], False),
        ([".other.test", ".example.com"], ["a.test", "mx.example.com"], True),
    ],
)
def test_suffix_matching(suffixes: list[str], hosts: list[str], matches: bool) -> None:
    overrides = {"site": ProviderSettings(mx_suffixes=suffixes, max_deliveries_per_connection=2)}
    assert (site_limits(hosts, overrides, DEFAULTS).override == "site") is matches


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (ProviderSettings(mx_suffixes=["x.test"]), DEFAULTS),
        (
            ProviderSettings(mx_suffixes=["x.test"], max_deliveries_per_connection=3),
            SiteLimits(3, 10, TlsMode.REQUIRED),
        ),
        (
            ProviderSettings(mx_suffixes=["x.test"], connection_limit=2, tls="disabled"),
            SiteLimits(100, 2, TlsMode.DISABLED),
        ),
        (
            ProviderSettings(
                mx_suffixes=["x.test"],
                max_deliveries_per_connection=1,
                connection_limit=1,
                tls="opportunistic",
            ),
            SiteLimits(1, 1, TlsMode.OPPORTUNISTIC),
        ),
    ],
)
def test_zero_and_empty_inherit(override: ProviderSettings, expected: SiteLimits) -> None:
    limits = site_limits(["mx.x.test"], {"x": override}, DEFAULTS)
    assert limits.override == "x"
    assert (limits.max_deliveries_per_connection, limits.connection_limit, limits.tls) == (
        expected.max_deliveries_per_connection,
        expected.connection_limit,
        expected.tls,
    )


@pytest.mark.parametrize(
    ("hosts", "winner"),
    [
        (["mx.mail.protection.outlook.com"], "o365"),
        (["mx.olc.outlook.com"], "outlook"),
        (["mx.olc.outlook.com", "mx.mail.protection.outlook.com"], "o365"),
        (["mx.tie.test"], "first"),
    ],
)
def test_longest_suffix_wins_then_the_first(hosts: list[str], winner: str) -> None:
    overrides = {
        "outlook": ProviderSettings(mx_suffixes=[".outlook.com"]),
        "o365": ProviderSettings(mx_suffixes=[".protection.outlook.com"]),
        "first": ProviderSettings(mx_suffixes=[".tie.test"]),
        "second": ProviderSettings(mx_suffixes=["tie.test"]),
    }
    assert site_limits(hosts, overrides, DEFAULTS).override == winner


def test_result_ignores_host_order_case_and_repetition() -> None:
    overrides = {
        "g": ProviderSettings(mx_suffixes=[".google.com"], max_deliveries_per_connection=7)
    }
    first = site_limits(GMAIL, overrides, DEFAULTS)
    assert site_limits([h.upper() for h in reversed(GMAIL * 2)], overrides, DEFAULTS) == first


def test_policy_reads_site_names() -> None:
    policy = SitePolicy(DEFAULTS, SHIPPED)
    assert policy.limits(site_name(GMAIL)).override == "google"
    assert policy.limits(site_name(["mx.example.com"])) == DEFAULTS
    assert policy.limits("example.org") == DEFAULTS


def test_pool_window_is_the_site_connection_limit() -> None:
    overrides = {"slow": ProviderSettings(mx_suffixes=[".slow.test"], connection_limit=2)}
    pool = ConnectionPool(
        ClientSettings.from_delivery(DeliverySettings()),
        SitePolicy(DEFAULTS, overrides),
        FakeClock(),
    )
    assert pool.window("mx.slow.test") == 2
    assert pool.window("mx.other.test") == 10
    reply = Reply(421, "4.7.0", "try later", Stage.CONNECT)
    failed = Outcome(OutcomeKind.TRANSIENT, Scope.SITE, reply, "Throttled")
    delivered = Outcome(OutcomeKind.DELIVERED, Scope.MESSAGE, Reply(250, "", "ok"), "")
    pool.record(("default", "mx.slow.test"), failed)
    assert pool.window("mx.slow.test") == 1
    for _ in range(3):
        pool.record(("default", "mx.slow.test"), delivered)
    assert pool.window("mx.slow.test") == 2
