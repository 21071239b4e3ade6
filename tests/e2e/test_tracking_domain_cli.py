"""``penguin tracking-domain``: a tenant's tracking domains registered, listed, made the
default and removed from the command line, with the CNAME to publish."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.cli import main
from tests.e2e.conftest import PENGUIN, write_config

pytestmark = pytest.mark.slow


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    status = main([*args, "--config", str(config)])
    out, err = capsys.readouterr()
    return status, out, err


def command(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> object:
    status, out, err = run(capsys, config, *args, "--json")
    assert status == 0, err
    return json.loads(out)


def test_add_prints_the_cname_to_publish(tmp_path: Path) -> None:
    config = write_config(tmp_path, tracking='cname_target = "edge.penguin.test"')
    for args in (
        ("tenant", "create", "acme"),
        ("tracking-domain", "add", "acme", "Click.Acme.Test"),
    ):
        done = subprocess.run(
            [*PENGUIN, *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert "tracking domain click.acme.test added for tenant acme\n" in done.stdout
    assert "click.acme.test. 3600 IN CNAME edge.penguin.test.\n" in done.stdout
    assert "penguin tracking-domain default acme click.acme.test" in done.stdout


def test_tracking_domains_from_add_to_default_to_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    command(capsys, config, "tenant", "create", "acme")
    added = command(capsys, config, "tracking-domain", "add", "acme", "click.acme.test")
    assert added == {
        "domain": "click.acme.test",
        "default": False,
        "created_at": added["created_at"],  # type: ignore[index]
        "dns_records": [
            {
                "name": "click.acme.test",
                "type": "CNAME",
                "value": "mta.penguin.test.",
                "purpose": "tracking domain: its links, open pixels and unsubscribes go to "
                "the edge",
            }
        ],
    }
    command(capsys, config, "tracking-domain", "add", "acme", "links.acme.test", "--default")

    def listed() -> list[tuple[object, object]]:
        rows = command(capsys, config, "tracking-domain", "list", "acme")
        assert isinstance(rows, list)
        return [(r["domain"], r["default"]) for r in rows]

    assert listed() == [("click.acme.test", False), ("links.acme.test", True)]
    status, out, _ = run(capsys, config, "tracking-domain", "list", "acme")
    assert (status, out) == (0, "click.acme.test\t-\nlinks.acme.test\tdefault\n")

    chosen = command(capsys, config, "tracking-domain", "default", "acme", "click.acme.test")
    assert chosen["default"] is True  # type: ignore[index]
    assert listed() == [("click.acme.test", True), ("links.acme.test", False)]

    status, out, _ = run(capsys, config, "tracking-domain", "remove", "click.acme.test")
    assert status == 0 and "no default tracking domain now" in out
    assert listed() == [("links.acme.test", False)]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("tracking-domain", "add", "ghost", "click.ghost.test"), "no tenant named 'ghost'"),
        (("tracking-domain", "add", "acme", "click acme"), "is not a host name"),
        (("tracking-domain", "add", "acme", "localhost"), "is not a host name with a domain"),
        (("tracking-domain", "add", "acme", "192.0.2.1"), "is an IP address"),
        (("tracking-domain", "add", "acme", "go.beta.test"), "registered for another tenant"),
        (("tracking-domain", "add", "acme", "x.news.beta.test"), "a sending domain of another"),
        (("tracking-domain", "default", "acme", "go.beta.test"), "not a tracking domain of"),
        (("tracking-domain", "remove", "ghost.test"), "no tracking domain 'ghost.test'"),
        (("tracking-domain", "list", "ghost"), "no tenant named 'ghost'"),
    ],
)
def test_a_refused_tracking_domain_command_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], error: str
) -> None:
    config = write_config(tmp_path)
    command(capsys, config, "tenant", "create", "acme")
    command(capsys, config, "tenant", "create", "beta")
    command(capsys, config, "domain", "add", "beta", "news.beta.test", "--algo", "ed25519")
    command(capsys, config, "tracking-domain", "add", "beta", "go.beta.test")
    status, out, err = run(capsys, config, *args)
    assert (status, out) == (1, "")
    assert err.startswith("error: ") and error in err and err.count("\n") == 1, err
