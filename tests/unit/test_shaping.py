"""Traffic shaping: the shipped defaults, matching, precedence, errors and explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config import ConfigError
from config.schema import DeliverySettings
from engine.clock import FakeClock
from engine.delivery.outcome import Outcome, OutcomeKind, Scope
from engine.limits.local import LocalLimiter
from engine.limits.throttle import ThrottleSpec
from engine.scheduler.shaping import SHIPPED_NAME, Origin, Shaping, TlsMode, explain
from engine.smtp.reply import Reply, Stage
from smtp_out.pool import ConnectionPool
from smtp_out.settings import ClientSettings
from smtp_out.site import site_name

SHIPPED = Shaping.load()
GMAIL = site_name(["aspmx.l.google.com", "alt1.aspmx.l.google.com"])


def shaping(*documents: dict[str, Any]) -> Shaping:
    return Shaping.parse(*((f"f{i}.toml", doc) for i, doc in enumerate(documents, 1)))


def test_shipped_defaults_follow_the_conservative_field_values() -> None:
    lane = SHIPPED.for_lane("default", "mx.example.com")
    assert lane.provider == ""
    assert (lane.connection_limit, lane.max_deliveries_per_connection) == (10, 100)
    assert lane.max_connection_rate == ThrottleSpec.parse("100/min")
    assert lane.max_message_rate == ThrottleSpec.parse("100/s")
    assert lane.enable_tls is TlsMode.OPPORTUNISTIC
    assert lane.provider_connection_limit is None and lane.provider_max_message_rate is None
    assert lane.origins["connection_limit"] == Origin(SHIPPED_NAME, "default.connection_limit")


@pytest.mark.parametrize(
    ("hosts", "provider", "per_connection", "tls", "provider_connections"),
    [
        (["aspmx.l.google.com"], "google", 50, TlsMode.REQUIRED, 5),
        (["gmail-smtp-in.l.googlemail.com"], "google", 50, TlsMode.REQUIRED, 5),
        (["mta5.am0.yahoodns.net"], "yahoo", 20, TlsMode.OPPORTUNISTIC, None),
        (["example-com.mail.protection.outlook.com"], "microsoft", 50, TlsMode.OPPORTUNISTIC, 5),
        (["mx01.mail.icloud.com"], "apple", 5, TlsMode.OPPORTUNISTIC, None),
        (["mx.me.com"], "apple", 5, TlsMode.OPPORTUNISTIC, None),
        (["mx.notgoogle.com"], "", 100, TlsMode.OPPORTUNISTIC, None),
    ],
)
def test_shipped_providers(
    hosts: list[str],
    provider: str,
    per_connection: int,
    tls: TlsMode,
    provider_connections: int | None,
) -> None:
    lane = SHIPPED.for_lane("default", site_name(hosts))
    assert lane.provider == provider
    assert lane.max_deliveries_per_connection == per_connection
    assert lane.enable_tls is tls
    assert lane.provider_connection_limit == provider_connections


@pytest.mark.parametrize(
    ("suffixes", "hosts", "matches"),
    [
        ([".mailco.com"], ["aspmx.l.mailco.com"], True),
        (["mailco.com"], ["aspmx.l.mailco.com"], True),
        (["MAILCO.COM."], ["ASPMX.L.Mailco.com."], True),
        ([".mailco.com"], ["mailco.com"], True),
        ([".mailco.com"], ["notmailco.com"], False),
        ([".mailco.com"], ["mailco.com.evil.test"], False),
        ([".x.test"], ["mx.other.test", "mx.x.test"], True),
    ],
)
def test_provider_matching(suffixes: list[str], hosts: list[str], matches: bool) -> None:
    found = shaping({"provider": {"p": {"match": suffixes}}}).provider_of(site_name(hosts))
    assert found == ("p" if matches else "")


@pytest.mark.parametrize(
    ("hosts", "winner"),
    [
        (["mx.mail.inner.relay.test"], "inner"),
        (["mx.outer.relay.test"], "relay"),
        (["mx.outer.relay.test", "mx.mail.inner.relay.test"], "inner"),
        (["mx.tie.test"], "first"),
    ],
)
def test_longest_suffix_wins_then_the_first(hosts: list[str], winner: str) -> None:
    providers = {
        "relay": {"match": [".relay.test"]},
        "inner": {"match": [".inner.relay.test"]},
        "first": {"match": [".tie.test"]},
        "second": {"match": ["tie.test"]},
    }
    assert shaping({"provider": providers}).provider_of(site_name(hosts)) == winner


def test_result_ignores_host_order_case_and_repetition() -> None:
    first = SHIPPED.for_lane("default", GMAIL)
    hosts = [h.upper() for h in reversed(GMAIL.split(",") * 2)]
    assert SHIPPED.for_lane("default", site_name(hosts)) == first


PRECEDENCE = shaping(
    {
        "default": {"connection_limit": 20, "max_message_rate": "50/s"},
        "provider": {"corp": {"match": [".corp.test"], "connection_limit": 4}},
        "site": {
            "mx1.corp.test": {"connection_limit": 3, "max_message_rate": "10/s"},
            "corp.test": {"connection_limit": 2},
        },
        "source": {"ip-new": {"max_message_rate": "10/min", "enable_tls": "disabled"}},
    },
    {"default": {"max_message_rate": ""}, "source": {"ip-new": {"connection_limit": 1}}},
)


@pytest.mark.parametrize(
    ("source", "hosts", "domain", "limit", "rate", "tls", "limit_from"),
    [
        ("ip1", ["mx.other.test"], "", 20, None, "opportunistic", "f1.toml: default"),
        ("ip1", ["mx2.corp.test"], "", 4, None, "opportunistic", "f1.toml: provider.corp"),
        ("ip1", ["mx1.corp.test"], "", 3, "10/s", "opportunistic", "f1.toml: site.mx1.corp.test"),
        (
            "ip1",
            ["mx1.corp.test"],
            "corp.test",
            2,
            "10/s",
            "opportunistic",
            "f1.toml: site.corp.test",
        ),
        (
            "ip-new",
            ["mx1.corp.test"],
            "corp.test",
            1,
            "10/min",
            "disabled",
            "f2.toml: source.ip-new",
        ),
        ("ip-new", ["mx.other.test"], "", 1, "10/min", "disabled", "f2.toml: source.ip-new"),
    ],
)
def test_precedence_default_provider_site_source_and_later_files(
    source: str,
    hosts: list[str],
    domain: str,
    limit: int,
    rate: str | None,
    tls: str,
    limit_from: str,
) -> None:
    lane = PRECEDENCE.for_lane(source, site_name(hosts), domain)
    assert lane.connection_limit == limit
    assert lane.max_message_rate == (ThrottleSpec.parse(rate) if rate else None)
    assert lane.enable_tls == tls
    origin = lane.origins["connection_limit"]
    assert f"{origin.file}: {origin.key}" == f"{limit_from}.connection_limit"


def test_a_later_file_changes_only_the_keys_it_sets() -> None:
    changed = shaping({"provider": {"google": {"max_deliveries_per_connection": 30}}})
    lane = changed.for_lane("default", GMAIL)
    assert (lane.provider, lane.max_deliveries_per_connection) == ("google", 30)
    assert lane.enable_tls is TlsMode.REQUIRED and lane.provider_connection_limit == 5
    assert lane.origins["max_deliveries_per_connection"].file == "f1.toml"
    assert lane.origins["enable_tls"].file == SHIPPED_NAME


def test_load_reads_the_operators_files_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text('[default]\nconnection_limit = 3\nmax_message_rate = "5/s"\n')
    second.write_text("[default]\nconnection_limit = 4\n")
    loaded = Shaping.load([first, str(second)])
    assert loaded.files == (SHIPPED_NAME, str(first), str(second))
    lane = loaded.for_lane("default", "mx.example.com")
    assert lane.connection_limit == 4 and lane.max_message_rate == ThrottleSpec.parse("5/s")
    assert lane.origins["max_message_rate"] == Origin(str(first), "default.max_message_rate")


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ("[defaults]\nconnection_limit = 1\n", "defaults", "unknown table"),
        ("[default]\nconnections = 1\n", "default.connections", "unknown key"),
        ('[default]\nconnection_limit = "3"\n', "default.connection_limit", "an integer"),
        ("[default]\nconnection_limit = 0\n", "default.connection_limit", "expected 1.."),
        ("[default]\nconnection_limit = 2.5\n", "default.connection_limit", "an integer"),
        ("[default]\nidle_timeout_seconds = true\n", "default.idle_timeout_seconds", "seconds"),
        ("[default]\nidle_timeout_seconds = nan\n", "default.idle_timeout_seconds", "expected"),
        ('[default]\nmax_message_rate = "fast"\n', "default.max_message_rate", "throttle spec"),
        ("[default]\nmax_message_rate = 100\n", "default.max_message_rate", "throttle spec"),
        (
            '[provider.google]\nmax_message_rate = "10/fortnight"\n',
            "provider.google.max_message_rate",
            "unknown period",
        ),
        ('[site."x.test"]\nenable_tls = "always"\n', "site.x.test.enable_tls", "opportunistic"),
        ("[provider.corp]\nconnection_limit = 2\n", "provider.corp.match", "needs match"),
        ('[provider.corp]\nmatch = ".corp.test"\n', "provider.corp.match", "list"),
        ('[provider.corp]\nmatch = [".corp.test", "."]\n', "provider.corp.match[1]", "suffix"),
        (
            "[site.x]\nprovider_connection_limit = 2\n",
            "site.x.provider_connection_limit",
            "unknown",
        ),
        ("source = 3\n", "source", "named tables"),
        ("[source]\nx = 3\n", "source.x", "expected a table"),
        ("[default\n", "-", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key(
    tmp_path: Path, toml: str, key: str, problem: str
) -> None:
    path = tmp_path / "shaping.local.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        Shaping.load([path])
    assert (err.value.file, err.value.key) == (str(path), key)
    assert problem in err.value.problem
    assert "\n" not in str(err.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Shaping.load([tmp_path / "absent.toml"])
    assert err.value.file == str(tmp_path / "absent.toml")
    assert "not found" in err.value.problem


def test_explain_names_each_value_and_where_it_was_set() -> None:
    lines = explain(
        shaping({"source": {"ip-new": {"max_message_rate": "10/min"}}}).for_lane("ip-new", GMAIL)
    )
    assert lines == [
        "provider = google  (shaping.toml: provider.google.match)",
        "connection_limit = 10  (shaping.toml: default.connection_limit)",
        "max_connection_rate = 100/min  (shaping.toml: default.max_connection_rate)",
        "max_deliveries_per_connection = 50  "
        "(shaping.toml: provider.google.max_deliveries_per_connection)",
        "max_message_rate = 10/min  (f1.toml: source.ip-new.max_message_rate)",
        "enable_tls = required  (shaping.toml: provider.google.enable_tls)",
        "idle_timeout_seconds = 5  (shaping.toml: default.idle_timeout_seconds)",
        "provider_connection_limit = 5  (shaping.toml: provider.google.provider_connection_limit)",
        "provider_max_message_rate = unlimited",
    ]
    plain = explain(SHIPPED.for_lane("default", "mx.example.com"))
    assert plain[0] == "provider = (none)"
    assert not any(line.startswith("provider_") for line in plain)


def test_pool_window_is_the_lane_connection_limit() -> None:
    lanes = shaping(
        {
            "provider": {"slow": {"match": [".slow.test"], "connection_limit": 2}},
            "source": {"one": {"connection_limit": 1}},
        }
    )
    clock = FakeClock()
    settings = ClientSettings.from_delivery(DeliverySettings())
    pool = ConnectionPool(settings, lanes, clock, LocalLimiter(clock))
    slow = ("default", "mx.slow.test")
    assert pool.window(slow) == 2
    assert pool.window(("default", "mx.other.test")) == 10
    assert pool.window(("one", "mx.other.test")) == 1
    reply = Reply(421, "4.7.0", "try later", Stage.CONNECT)
    failed = Outcome(OutcomeKind.TRANSIENT, Scope.SITE, reply, "Throttled")
    delivered = Outcome(OutcomeKind.DELIVERED, Scope.MESSAGE, Reply(250, "", "ok"), "")
    pool.record(slow, failed)
    assert pool.window(slow) == 1
    assert pool.window(("one", "mx.slow.test")) == 1
    for _ in range(3):
        pool.record(slow, delivered)
    assert pool.window(slow) == 2
