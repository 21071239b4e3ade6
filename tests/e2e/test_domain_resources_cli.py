"""``penguin domain verify`` against a DNS server on loopback, and ``penguin suppression
import`` and filtered ``list``: the commands over the provisioning service the API uses;
and the running engine's API verifying through the configured resolvers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.cli import main
from tests.e2e.conftest import EngineProcess, start_engine, write_config
from tests.harness.dns_server import ThreadedDnsServer, Zones

pytestmark = pytest.mark.slow


def command(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Any:
    status = main([*args, "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


def text(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    status = main([*args, "--config", str(config)])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def test_verify_prints_each_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ThreadedDnsServer(Zones()) as dns:
        config = write_config(
            tmp_path, nameserver=dns.address, tracking='cname_target = "edge.penguin.test"'
        )
        command(capsys, config, "tenant", "create", "acme")
        added = command(capsys, config, "domain", "add", "acme", "acme.test")
        command(capsys, config, "tracking-domain", "add", "acme", "click.acme.test")
        dkim, rp_spf, _rp_mx, dmarc = added["dns_records"]
        for record in (dkim, rp_spf, dmarc):
            dns.zones.add_txt(record["name"], record["value"])
        dns.zones.add_txt("acme.test", "v=spf1 include:_spf.mail.example -all")
        dns.zones.add_cname("click.acme.test", "edge.penguin.test")

        report = command(capsys, config, "domain", "verify", "acme.test")
        shown = text(capsys, config, "domain", "verify", "acme.test")

    assert report["verified"] is False
    assert [(c["check"], c["status"]) for c in report["checks"]] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("return_path_spf", "pass"),
        ("return_path_mx", "missing"),
        ("dmarc", "pass"),
        ("tracking_cname", "pass"),
    ]
    assert shown.startswith("acme.test: not verified\nPASS    spf (TXT acme.test)\n")
    assert (
        "MISSING return_path_mx (MX bounces.acme.test)\n"
        "        expected: 10 mta.penguin.test.\n"
        "        found:    nothing\n"
        "        no MX: bounces cannot come back\n"
    ) in shown


def test_import_and_filtered_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    command(capsys, config, "tenant", "create", "acme")
    csv = tmp_path / "list.csv"
    csv.write_text("\ufeffaddress,reason\nann@a.test,bounce: old\nbob@b.test\nnope\n")

    done = command(capsys, config, "suppression", "import", "acme", str(csv))
    shown = text(capsys, config, "suppression", "import", "acme", str(csv))

    assert done == {
        "added": 2,
        "duplicate": 0,
        "invalid": 1,
        "invalid_rows": [
            {
                "line": 4,
                "text": "nope",
                "error": "recipient domain must be a fully qualified domain name",
            }
        ],
    }
    assert shown.startswith("0 added, 2 already suppressed, 1 invalid\nline 4: ")
    listed = command(capsys, config, "suppression", "list", "acme", "--reason", "bounce")
    assert [row["address"] for row in listed] == ["ann@a.test"]
    listed = command(capsys, config, "suppression", "list", "acme", "--domain", "b.test")
    assert [(row["address"], row["reason"]) for row in listed] == [("bob@b.test", "import")]


def test_the_running_engines_api_verifies_through_its_resolvers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_factory: list[EngineProcess]
) -> None:
    with ThreadedDnsServer(Zones()) as dns:
        config = write_config(tmp_path, nameserver=dns.address)
        command(capsys, config, "tenant", "create", "acme")
        token = command(capsys, config, "api-key", "create", "acme")["token"]
        engine = start_engine(engine_factory, config)
        base = f"http://{engine.admin[0]}:{engine.admin[1]}"
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=10) as api:
            added = api.post("/v1/domains", json={"name": "acme.test"})
            assert added.status_code == 201, added.text
            for record in added.json()["dns_records"]:
                if record["type"] == "TXT":
                    dns.zones.add_txt(record["name"], record["value"])
                else:
                    dns.zones.add_mx(record["name"], [(10, record["value"].split()[-1])])
            dns.zones.add_txt("acme.test", "v=spf1 -all")
            report = api.post("/v1/domains/acme.test/verify")

    assert report.status_code == 200, report.text
    assert report.json()["verified"] is True
    assert [c["check"] for c in report.json()["checks"]] == [
        "spf",
        "dkim",
        "return_path_spf",
        "return_path_mx",
        "dmarc",
    ]
