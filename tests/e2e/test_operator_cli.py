"""The operator's CLI as a newcomer tries it: options anywhere, every provisioning
command, and one store whatever the working directory."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.store import open_store
from tests.e2e.conftest import PENGUIN, penguin_lines, write_config
from tests.integration.test_store_contract import message, submission

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PENGUIN, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process (no interpreter start): exit status, stdout, stderr."""
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def in_process(capsys: pytest.CaptureFixture[str], config: Path) -> Callable[..., Any]:
    """Runs a command with ``--config config --json`` in this process; its parsed output."""

    def command(*args: str) -> Any:
        status, out, err = run_main(capsys, *args, "--config", str(config), "--json")
        assert status == 0, err
        return json.loads(out)

    return command


def cli_json(*args: str, cwd: Path | None = None) -> Any:
    done = cli(*args, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_global_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    created = cli_json("--json", "--config", config, "tenant", "create", "acme")
    assert cli_json("tenant", "list", "--config", config, "--json") == [created]
    text = cli("--config", config, "tenant", "list")
    assert (text.returncode, text.stdout) == (0, f"{created['id']}\tacme\n")


def test_version() -> None:
    done = cli("--version")
    assert (done.returncode, done.stdout) == (
        0,
        f"penguin {importlib.metadata.version('penguinmails')}\n",
    )


def test_a_command_group_alone_shows_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "tenant")
    assert status == 2
    assert "tenants: the platform's customers" in out
    assert all(command in out for command in ("create", "list", "remove"))


def test_the_store_is_found_from_any_working_directory(tmp_path: Path) -> None:
    etc, here, there = tmp_path / "etc", tmp_path / "here", tmp_path / "there"
    for directory in (etc, here, there):
        directory.mkdir()
    (etc / "penguin.toml").write_text('[engine]\nhostname = "mta.penguin.test"\n')

    created = cli_json(
        "tenant", "create", "acme", "--json", "--config", "../etc/penguin.toml", cwd=here
    )
    listed = cli_json("tenant", "list", "--json", "--config", str(etc / "penguin.toml"), cwd=there)
    assert listed == [created]
    assert (etc / "var" / "penguin.db").is_file()
    assert list(here.iterdir()) == list(there.iterdir()) == []


def test_provisioning_from_tenant_to_suppression_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = in_process(capsys, write_config(tmp_path))
    tenant = command("tenant", "create", "acme")
    added = command("domain", "add", "acme", "News.Acme.Test", "--algo", "ed25519")
    assert (added["domain"], added["algorithm"]) == ("news.acme.test", "ed25519")
    assert command("domain", "list", "acme") == [
        {"name": "news.acme.test", "selector": added["selector"], "algorithm": "ed25519"}
    ]
    first = command("smtp-user", "create", "acme")
    second = command("smtp-user", "create", "acme")
    users = command("smtp-user", "list", "acme")
    assert sorted(u["username"] for u in users) == sorted([first["username"], second["username"]])
    assert "password" not in json.dumps(users)
    removed = command("smtp-user", "remove", first["username"])
    assert removed == {"username": first["username"], "removed": True}
    assert [u["username"] for u in command("smtp-user", "list", "acme")] == [second["username"]]

    for address in ("Bob@Example.com", "alice@example.com", "carol@example.com"):
        command("suppression", "add", "acme", address, "--reason", "complaint")
    page = command("suppression", "list", "acme", "-n", "2")
    assert [(s["address"], s["reason"]) for s in page] == [
        ("alice@example.com", "complaint"),
        ("bob@example.com", "complaint"),
    ]
    rest = command("suppression", "list", "acme", "--after", "bob@example.com")
    assert [s["address"] for s in rest] == ["carol@example.com"]
    assert command("suppression", "remove", "acme", "BOB@example.com") == {
        "tenant": "acme",
        "address": "bob@example.com",
        "removed": True,
    }
    assert [s["address"] for s in command("suppression", "list", "acme")] == [
        "alice@example.com",
        "carol@example.com",
    ]

    assert command("domain", "remove", "news.acme.test") == {
        "domain": "news.acme.test",
        "selector": added["selector"],
    }
    assert command("domain", "list", "acme") == []
    assert command("tenant", "remove", "acme") == {"tenant": tenant, "removed": []}
    assert command("tenant", "list") == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("tenant", "remove", "ghost"), "no tenant named 'ghost'"),
        (("domain", "remove", "ghost.test"), "no sending domain 'ghost.test'"),
        (("smtp-user", "remove", "ghost-1234"), "no SMTP user 'ghost-1234'"),
        (("smtp-user", "list", "ghost"), "no tenant named 'ghost'"),
        (("api-key", "create", "ghost"), "no tenant named 'ghost'"),
        (("api-key", "revoke", "zzzzzzzz"), "no API key 'zzzzzzzz'"),
        (("suppression", "list", "ghost"), "no tenant named 'ghost'"),
        (("suppression", "remove", "acme", "x@example.com"), "'x@example.com' is not suppressed"),
        (("domain", "add", "acme", "not a domain"), "not a valid DNS name"),
        (("tenant", "create", "acme"), "tenant 'acme' exists"),
    ],
)
def test_a_failed_command_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], error: str
) -> None:
    config = str(write_config(tmp_path))
    assert run_main(capsys, "--config", config, "tenant", "create", "acme")[0] == 0
    status, out, err = run_main(capsys, *args, "--config", config)
    assert (status, out) == (1, "")
    assert err.startswith("error: ") and error in err and err.count("\n") == 1, err
    status, out, err = run_main(capsys, "--json", *args, "--config", config)
    assert (status, err) == (1, "")
    assert error in json.loads(out)["error"]


def test_api_keys_are_shown_once_listed_and_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    command = in_process(capsys, config)
    command("tenant", "create", "acme")
    app = command(
        "api-key", "create", "acme", "--scope", "send", "--scope", "read", "--name", "app"
    )
    assert app["scopes"] == ["read", "send"] and app["name"] == "app"
    assert app["token"].startswith(f"pm_{app['prefix']}_")
    every = command("api-key", "create", "acme")
    assert every["scopes"] == ["manage", "read", "send"]

    listed = command("api-key", "list", "acme")
    assert [k["prefix"] for k in listed] == [app["prefix"], every["prefix"]]
    assert "token" not in json.dumps(listed) and app["token"] not in json.dumps(listed)
    revoked = command("api-key", "revoke", app["prefix"])
    assert revoked["prefix"] == app["prefix"] and revoked["revoked_at"] is not None
    assert [k["revoked_at"] is None for k in command("api-key", "list", "acme")] == [False, True]

    status, out, _ = run_main(capsys, "api-key", "list", "acme", "--config", str(config))
    assert status == 0 and f"{app['prefix']}\tread,send\tcreated " in out and "revoked" in out


def test_a_tenant_with_queued_mail_is_removed_only_by_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    command = in_process(capsys, config)
    tenant = command("tenant", "create", "acme")
    queued = [message("s1", n, tenant["id"]) for n in range(2)]

    async def enqueue() -> None:
        store = open_store(f"sqlite:{tmp_path / 'var' / 'penguin.db'}")
        try:
            await store.accept([submission("s1", tenant["id"], queued)], [])
        finally:
            await store.close()

    asyncio.run(enqueue())

    status, _, err = run_main(capsys, "tenant", "remove", "acme", "--config", str(config))
    assert status == 1
    assert err == (
        "error: tenant 'acme' still has 2 messages queued, being delivered or shunted; "
        "wait for it, or pass --force to remove its queued and shunted messages first\n"
    )
    assert command("tenant", "list") == [tenant]

    removed = command("tenant", "remove", "acme", "--force")
    assert removed == {"tenant": tenant, "removed": sorted(m.id for m in queued)}
    assert command("tenant", "list") == []
    assert command("queue", "summary") == []
    records = penguin_lines(config, "records", "tail")
    assert [(r["type"], r["id"]) for r in records] == [("AdminBounce", m.id) for m in queued]


def test_a_tenants_pool_and_quotas_are_set_shown_and_cleared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = (
        '[sources.s1]\naddress = "127.0.0.1"\nehlo_hostname = "s1.penguin.test"\n'
        '[pools.default]\nsources = ["s1"]\n[pools.warm]\nsources = ["s1"]\n'
        '[tenants.acme]\ndaily_quota = 500\nrate_quota = "10/s"\n'
    )
    config = write_config(tmp_path, tables=tables)
    command = in_process(capsys, config)
    tenant = command("tenant", "create", "acme")
    shown = command("tenant", "show", "acme")
    assert shown == {
        **tenant,
        "pool": "default",
        "priority": "normal",
        "daily_quota": 500,
        "rate_quota": "10/s",
        "overridden": [],
        "accepted_today": 0,
    }
    changed = command(
        "tenant", "set", "acme", "--pool", "warm", "--daily-quota", "1000", "--rate", ""
    )
    assert (changed["pool"], changed["daily_quota"], changed["rate_quota"]) == ("warm", 1000, "")
    assert changed["overridden"] == ["pool", "daily_quota", "rate_quota"]
    assert command("tenant", "show", "acme") == changed
    cleared = command("tenant", "set", "acme", "--clear", "daily_quota", "--clear", "rate_quota")
    assert (cleared["daily_quota"], cleared["rate_quota"]) == (500, "10/s")

    status, out, err = run_main(capsys, "tenant", "show", "acme", "--config", str(config))
    assert status == 0, err
    assert "  pool: warm (set with penguin tenant set)\n" in out
    assert "  daily_quota: 500 (config)\n" in out
    for args, error in [
        (("--pool", "cold"), "error: tenant 'acme': pool: unknown pool 'cold'"),
        (("--rate", "fast"), "error: tenant 'acme': rate_quota: not a throttle spec"),
        ((), "error: nothing to set"),
    ]:
        status, _, err = run_main(capsys, "tenant", "set", "acme", *args, "--config", str(config))
        assert status == 1 and err.startswith(error), err
