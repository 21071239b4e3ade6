"""``penguin explain`` and ``penguin config check`` with traffic shaping files, as an
operator runs them: a real process, MX records from the test DNS server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PENGUIN, write_config
from tests.harness.dns_server import ThreadedDnsServer, Zones

pytestmark = pytest.mark.slow

SOURCES = """
[sources.ip1]
address = "127.0.0.1"
ehlo_hostname = "ip1.mta.test"
[sources.ip-new]
address = "127.0.0.1"
ehlo_hostname = "ip-new.mta.test"
[pools.default]
sources = ["ip1", "ip-new"]
[pools.fresh]
sources = ["ip-new"]
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[ThreadedDnsServer]:
    zones = Zones()
    zones.add_mx("gmail.test", [(5, "gmail-smtp-in.l.google.com"), (10, "alt1.aspmx.l.google.com")])
    zones.add_mx("example.test", [(10, "mx.example.test")])
    for host in ("gmail-smtp-in.l.google.com", "alt1.aspmx.l.google.com", "mx.example.test"):
        zones.add_a(host, ["192.0.2.1"])
    with ThreadedDnsServer(zones) as server:
        yield server


def penguin(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PENGUIN, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def configured(tmp_path: Path, dns: ThreadedDnsServer, shaping: str) -> Path:
    (tmp_path / "shaping").mkdir()
    (tmp_path / "shaping" / "local.toml").write_text(shaping)
    tables = f'{SOURCES}\n[scheduler]\nshaping_files = ["shaping/local.toml"]\n'
    return write_config(tmp_path, nameserver=dns.address, tables=tables)


def test_explain_shows_each_lane_and_where_its_values_come_from(
    tmp_path: Path, dns: ThreadedDnsServer
) -> None:
    local = tmp_path / "shaping" / "local.toml"
    config = configured(tmp_path, dns, '[source."ip-new"]\nmax_message_rate = "10/min"\n')
    done = penguin(config, "explain", "gmail.test", "--tenant", "acme")
    assert done.returncode == 0, done.stderr
    site = "alt1.aspmx.l.google.com,gmail-smtp-in.l.google.com"
    lines = done.stdout.splitlines()
    assert lines[0] == f"gmail.test: site {site}, provider google, pool default"
    assert f"lane ip1|{site}" in lines and f"lane ip-new|{site}" in lines
    assert "  enable_tls = required  (shaping.toml: provider.google.enable_tls)" in lines
    assert f"  max_message_rate = 10/min  ({local}: source.ip-new.max_message_rate)" in lines
    assert "  max_message_rate = 100/s  (shaping.toml: default.max_message_rate)" in lines

    done = penguin(config, "explain", "example.test", "--source", "ip-new", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["site"], shown["provider"], shown["pool"]) == ("mx.example.test", "", "default")
    (lane,) = shown["lanes"]
    assert lane["source"] == "ip-new"
    assert lane["values"]["max_message_rate"] == "10/min"
    assert lane["values"]["max_deliveries_per_connection"] == "100"
    assert lane["origins"]["max_message_rate"] == f"{local}: source.ip-new.max_message_rate"


def test_explain_follows_the_pool_set_for_the_tenant(
    tmp_path: Path, dns: ThreadedDnsServer
) -> None:
    config = configured(tmp_path, dns, "")
    assert penguin(config, "tenant", "create", "acme").returncode == 0
    assert penguin(config, "tenant", "set", "acme", "--pool", "fresh").returncode == 0
    done = penguin(config, "explain", "example.test", "--tenant", "acme", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["pool"] == "fresh"
    assert [lane["source"] for lane in shown["lanes"]] == ["ip-new"]


def test_explain_says_why_it_cannot(tmp_path: Path, dns: ThreadedDnsServer) -> None:
    config = configured(tmp_path, dns, "")
    done = penguin(config, "explain", "absent.test")
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot resolve absent.test:")
    done = penguin(config, "explain", "example.test", "--source", "nope")
    assert (done.returncode, done.stderr) == (1, "error: no source named 'nope' in [sources]\n")


def test_config_check_reports_a_bad_shaping_file_in_one_line(
    tmp_path: Path, dns: ThreadedDnsServer
) -> None:
    config = configured(tmp_path, dns, '[provider.google]\nmax_message_rate = "lots"\n')
    done = penguin(config, "config", "check")
    local = tmp_path / "shaping" / "local.toml"
    assert done.returncode == 1
    assert done.stderr.startswith(f"config error: {local}: provider.google.max_message_rate: ")
    assert done.stderr.count("\n") == 1
    (tmp_path / "shaping" / "local.toml").write_text(
        '[provider.google]\nmax_message_rate = "9/s"\n'
    )
    done = penguin(config, "config", "check")
    assert done.returncode == 0, done.stderr
