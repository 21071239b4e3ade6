import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_settings, redacted_url
from config.example import render_example
from config.loader import DEFAULT_CONFIG, parse_host_port, parse_settings
from config.schema import Settings


def test_shipped_config_is_the_rendered_schema() -> None:
    assert DEFAULT_CONFIG.read_text() == render_example()


def test_shipped_config_loads_to_the_defaults() -> None:
    assert load_settings() == Settings()


ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("config", "engine", "smtp_out", "bounce_in", "tracking_edge", "admin_api")


def attributes_read() -> set[str]:
    """Every attribute name the runtime code reads (``x.name``)."""
    names: set[str] = set()
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    names.add(node.attr)
    return names


def settings_keys(table: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """(dotted key, attribute name) of every table and setting under ``table``."""
    for f in dataclasses.fields(table):
        key = f"{prefix}{f.name}"
        yield key, f.name
        value = getattr(table, f.name)
        item = f.metadata.get("item")
        if item is not None:
            yield from settings_keys(item(), f"{key}.*.")
        elif dataclasses.is_dataclass(value):
            yield from settings_keys(value, f"{key}.")


def test_every_setting_is_read_by_the_code() -> None:
    read = attributes_read()
    unread = [key for key, name in settings_keys(Settings(), "") if name not in read]
    assert not unread, f"settings nothing reads: {unread}"


def test_every_setting_is_documented() -> None:
    lines = render_example().splitlines()
    keys = [i for i, line in enumerate(lines) if " = " in line and not line.startswith("#")]
    assert keys
    for i in keys:
        assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 10, lines[i]


def test_values_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[database]\nurl = "postgresql://postgres@127.0.0.1/x"\n'
        '[dns]\nnameservers = ["127.0.0.1:5353"]\n'
        "[delivery]\nport = 2526\n"
        '[sources.ip2]\naddress = "127.0.0.2"\nehlo_hostname = "mta2.example.com"\n'
        '[pools.main]\nsources = ["default", "ip2"]\n'
        "[retry]\nfirst_retry_seconds = 60\n"
    )
    s = load_settings(path)
    assert s.database.url.startswith("postgresql://")
    assert s.dns.nameservers == ["127.0.0.1:5353"]
    assert s.delivery.port == 2526
    assert s.sources["ip2"].address == "127.0.0.2"
    assert s.pools["main"].sources == ["default", "ip2"]
    assert s.retry.first_retry_seconds == 60.0


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ("[submission]\nmax_recipients = 0\n", "submission.max_recipients", "at least 1"),
        ('[submission]\nmax_recipients = "ten"\n', "submission.max_recipients", "expected int"),
        ("[submission]\nmax_recipients = true\n", "submission.max_recipients", "expected int"),
        ('[submission]\nlisten = "127.0.0.1:2587"\n', "submission.listen", "list of str"),
        ('[submission]\nlisten = ["nowhere"]\n', "submission.listen[0]", "host:port"),
        ("[submision]\nx = 1\n", "submision", "unknown key"),
        ("[delivery]\nprot = 25\n", "delivery.prot", "unknown key"),
        ("[delivery]\nport = 70000\n", "delivery.port", "at most 65535"),
        ('[logging]\nlevel = "LOUD"\n', "logging.level", "one of DEBUG"),
        ('[pools.main]\nsources = ["ghost"]\n', "pools.main.sources", "unknown source 'ghost'"),
        ('[dns]\nnameservers = ["1.2.3.4:x"]\n', "dns.nameservers[0]", "host:port"),
        ('[database]\nurl = "mysql://x"\n', "database.url", "sqlite:PATH"),
        ('[redis]\nurl = "127.0.0.1:6379"\n', "redis.url", "redis://"),
        ("[redis]\ntimeout_seconds = 0\n", "redis.timeout_seconds", "at least 0.01"),
        ("database = 3\n", "database", "expected a table"),
        (
            "[submission]\nauth_failure_delay_after = 5\nauth_failure_refuse_after = 2\n",
            "submission.auth_failure_refuse_after",
            "at least",
        ),
        ('[submission]\ntls_cert = "/x.pem"\n', "submission.tls_key", "go together"),
        ("[retry]\nfirst_retry_seconds = nan\n", "retry.first_retry_seconds", "finite number"),
        ("[submission]\nidle_timeout_seconds = nan\n", "submission.idle_timeout_seconds", "finite"),
        ("[submission]\nidle_timeout_seconds = inf\n", "submission.idle_timeout_seconds", "finite"),
        ("[retry]\njitter = -inf\n", "retry.jitter", "finite number"),
        ('[engine]\nhostname = "mta example.com"\n', "engine.hostname", "host name of ASCII"),
        ('[engine]\nhostname = ""\n', "engine.hostname", "host name of ASCII"),
        ('[engine]\nhostname = "café.example"\n', "engine.hostname", "xn-- form"),
        ('[engine]\nhostname = "-mta.example"\n', "engine.hostname", "host name"),
        ('[engine]\nhostname = "mta..example"\n', "engine.hostname", "host name"),
        ('[engine]\ndata_dir = ""\n', "engine.data_dir", "expected a directory"),
        ('[engine]\ndata_dir = "a\\u0000b"\n', "engine.data_dir", "no NUL character"),
        (
            "[engine]\nrestart_delay_seconds = 10\nrestart_delay_max_seconds = 5\n",
            "engine.restart_delay_max_seconds",
            "at least engine.restart_delay_seconds",
        ),
        ("[pools.default]\nsources = []\n", "pools.default.sources", "at least one source"),
        ('[sources.x]\naddress = "mta.example"\n', "sources.x.address", "an IP address"),
        ('[sources.x]\nehlo_hostname = "a b"\n', "sources.x.ehlo_hostname", "host name"),
        ('[dns]\nnameservers = ["ns.example:53"]\n', "dns.nameservers[0]", "an IP address"),
        ('[dns]\nnameservers = ["127.0.0.1:\u0665\u0663"]\n', "dns.nameservers[0]", "host:port"),
        ('[database]\nurl = "sqlite:"\n', "database.url", "sqlite:PATH"),
        ('[bounce]\nreturn_path_prefix = "b ounces"\n', "bounce.return_path_prefix", "host name"),
        ('[bounce]\nreturn_path_prefix = ""\n', "bounce.return_path_prefix", "host name"),
        ('[bounce]\ntoken_key_id = "A"\n', "bounce.token_key_id", "1 to 8 lowercase"),
        ('[bounce]\ntoken_key_id = ""\n', "bounce.token_key_id", "key id"),
        ('[bounce]\ntoken_key_id = "abcdefghi"\n', "bounce.token_key_id", "key id"),
        ('[bounce]\naccepted_key_ids = ["a", "b-1"]\n', "bounce.accepted_key_ids[1]", "got 'b-1'"),
        ('[bounce]\naccepted_key_ids = "a"\n', "bounce.accepted_key_ids", "list of str"),
        ('[tracking]\ncname_target = "edge example"\n', "tracking.cname_target", "host name"),
        ("[tracking]\nrefresh_seconds = 0\n", "tracking.refresh_seconds", "at least 0.1"),
        ('[tenants.acme]\ntrack_opens = "no"\n', "tenants.acme.track_opens", "expected bool"),
        (
            '[campaigns."acme:spring"]\ntrack_clicks = 0\n',
            "campaigns.acme:spring.track_clicks",
            "expected bool, got 0",
        ),
        (
            '[campaigns."acme:spring"]\ntracking_domain = "click acme"\n',
            'campaigns."acme:spring".tracking_domain',
            "host name",
        ),
        ('[tracking]\ntoken_key_id = "A"\n', "tracking.token_key_id", "1 to 8 lowercase"),
        ('[tracking]\naccepted_key_ids = ["b-1"]\n', "tracking.accepted_key_ids[0]", "got 'b-1'"),
        ('[tracking]\nscheme = "ftp"\n', "tracking.scheme", "https"),
        ('[tracking]\nlisten = "nowhere"\n', "tracking.listen", "host:port"),
        (
            '[tracking]\ntrusted_proxies = ["10.0.0.0/33"]\n',
            "tracking.trusted_proxies[0]",
            "network",
        ),
        (
            '[database]\nurl = "mysql://u:secret@db/x"\n',
            "database.url",
            "got 'mysql://u:***@db/x'",
        ),
    ],
)
def test_bad_values_name_file_key_and_expectation(
    tmp_path: Path, toml: str, key: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.file == str(path)
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(path) in str(err.value) and key in str(err.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[engine\n", "not valid TOML"),
        (b'[engine]\nhostname = "caf\xc3\xa9 \xff"\n', "expected UTF-8 text, got byte 0xff"),
        (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert (err.value.file, err.value.key) == (str(path), "-")
    assert problem in err.value.problem


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="expected a regular file"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("raw", "database_url", "record_log"),
    [
        ({}, "sqlite:var/penguin.db", "var/records.jsonl"),
        (
            {"engine": {"data_dir": "/srv/penguin"}},
            "sqlite:/srv/penguin/penguin.db",
            "/srv/penguin/records.jsonl",
        ),
        (
            {
                "engine": {"data_dir": "/srv/penguin"},
                "database": {"url": "sqlite:db/x.db"},
                "records": {"json_log": "/var/log/penguin.jsonl"},
            },
            "sqlite:db/x.db",
            "/var/log/penguin.jsonl",
        ),
        (
            {"database": {"url": "postgresql://u@h/db"}, "records": {"json_log_enabled": False}},
            "postgresql://u@h/db",
            "",
        ),
    ],
)
def test_store_and_record_log_default_to_the_data_dir(
    raw: dict[str, Any], database_url: str, record_log: str
) -> None:
    settings = parse_settings(raw)
    assert settings.database_url() == database_url
    assert settings.record_log_path() == record_log


def path_fields() -> list[tuple[str, str]]:
    """(table, key) of every schema setting that names a file or directory."""
    defaults = Settings()
    return [
        (table.name, f.name)
        for table in dataclasses.fields(Settings)
        if dataclasses.is_dataclass(value := getattr(defaults, table.name))
        for f in dataclasses.fields(value)
        if f.metadata.get("path")
    ]


def test_relative_paths_are_relative_to_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = path_fields()
    assert {("engine", "data_dir"), ("records", "json_log")} <= set(fields)
    defaults = Settings()
    lists = {
        (table, key)
        for table, key in fields
        if isinstance(getattr(getattr(defaults, table), key), list)
    }
    tables: dict[str, list[str]] = {}
    for table, key in fields:
        value = f'["rel/{key}"]' if (table, key) in lists else f'"rel/{key}"'
        tables.setdefault(table, []).append(f"{key} = {value}")
    text = "".join(f"[{table}]\n" + "\n".join(keys) + "\n" for table, keys in tables.items())
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "penguin.toml").write_text(text)
    monkeypatch.chdir(tmp_path)

    settings = load_settings("etc/penguin.toml")
    base = tmp_path / "etc"
    for table, key in fields:
        anchored = str(base / "rel" / key)
        expected = [anchored] if (table, key) in lists else anchored
        assert getattr(getattr(settings, table), key) == expected, key
    assert settings.database_url() == f"sqlite:{base / 'rel/data_dir/penguin.db'}"


@pytest.mark.parametrize(
    ("text", "database_url", "data_dir"),
    [
        ("", "sqlite:{base}/var/penguin.db", "{base}/var"),
        ('[database]\nurl = "sqlite:db/p.db"\n', "sqlite:{base}/db/p.db", "{base}/var"),
        ('[database]\nurl = "sqlite://db/p.db"\n', "sqlite:{base}/db/p.db", "{base}/var"),
        ('[database]\nurl = "sqlite:/srv/p.db"\n', "sqlite:/srv/p.db", "{base}/var"),
        ('[engine]\ndata_dir = "/srv/penguin"\n', "sqlite:/srv/penguin/penguin.db", "/srv/penguin"),
        (
            '[database]\nurl = "postgresql://u@h/db"\n',
            "postgresql://u@h/db",
            "{base}/var",
        ),
    ],
)
def test_defaults_and_absolute_paths_under_a_config_file(
    tmp_path: Path, text: str, database_url: str, data_dir: str
) -> None:
    config = tmp_path / "penguin.toml"
    config.write_text(text)
    settings = load_settings(config)
    assert settings.database_url() == database_url.format(base=tmp_path)
    assert settings.engine.data_dir == data_dir.format(base=tmp_path)
    assert settings.engine.secret_file == ""
    assert settings.records.json_log == ""


def test_without_a_config_file_paths_stay_relative_to_the_working_directory() -> None:
    settings = load_settings()
    assert settings.engine.data_dir == "var"
    assert settings.database_url() == "sqlite:var/penguin.db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u:secret@db.example:5432/penguin",
            "postgresql://u:***@db.example:5432/penguin",
        ),
        ("postgresql://u:p@ss:w@rd@127.0.0.1/x", "postgresql://u:***@127.0.0.1/x"),
        (
            "postgresql://u@127.0.0.1/x?password=secret&sslmode=off",
            "postgresql://u@127.0.0.1/x?password=***&sslmode=off",
        ),
        ("postgresql://u@127.0.0.1/x", "postgresql://u@127.0.0.1/x"),
        ("sqlite:var/penguin.db", "sqlite:var/penguin.db"),
        ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_redacted_url_hides_the_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_integers_are_accepted_for_floats() -> None:
    s = parse_settings({"engine": {"shutdown_grace_seconds": 3}})
    assert s.engine.shutdown_grace_seconds == 3.0


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("127.0.0.1:25", None, ("127.0.0.1", 25)),
        ("[::1]:5353", None, ("::1", 5353)),
        ("127.0.0.1", 53, ("127.0.0.1", 53)),
        ("::1", 53, ("::1", 53)),
    ],
)
def test_parse_host_port(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, default) == expected


def test_named_tables_add_and_override_key_by_key() -> None:
    s = parse_settings(
        {
            "sources": {
                "default": {"ehlo_hostname": "mta.example.com"},
                "ip2": {"address": "192.0.2.7"},
            }
        }
    )
    assert s.sources["default"].address == Settings().sources["default"].address
    assert s.sources["default"].ehlo_hostname == "mta.example.com"
    assert s.sources["ip2"].ehlo_hostname == "localhost"
    assert list(s.sources) == ["default", "ip2"]


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ("[sources.x]\nport = 3\n", "sources.x.port", "unknown key"),
        ("sources = 3\n", "sources", "table of named tables"),
        ("[providers.google]\nconnection_limit = 3\n", "providers", "unknown key"),
        ("[delivery]\ntls = 'required'\n", "delivery.tls", "unknown key"),
    ],
)
def test_bad_named_tables(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert (err.value.file, err.value.key) == (str(path), key)
    assert problem in err.value.problem


def test_tracking_switches_of_a_campaign_are_unset_unless_given() -> None:
    s = parse_settings(
        {
            "tenants": {"acme": {"track_clicks": False}},
            "campaigns": {
                "acme:spring": {"tracking_domain": "click.acme.test", "track_opens": False},
            },
            "tracking": {"cname_target": "edge.penguin.test", "refresh_seconds": 2},
        }
    )
    assert (s.tenants["acme"].track_opens, s.tenants["acme"].track_clicks) == (True, False)
    spring = s.campaigns["acme:spring"]
    assert spring.tracking_domain == "click.acme.test"
    assert (spring.track_opens, spring.track_clicks, spring.track_unsubscribe) == (
        False,
        None,
        None,
    )
    assert (s.tracking.cname_target, s.tracking.refresh_seconds) == ("edge.penguin.test", 2.0)
