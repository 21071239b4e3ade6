"""``penguin suspend``, ``resume`` and ``suspensions`` on both stores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import write_config
from tests.e2e.test_operator_cli import in_process, run_main


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    tables = '[sources.ip1]\naddress = "127.0.0.2"\nehlo_hostname = "ip1.penguin.test"\n'
    return write_config(tmp_path, url, tables=tables)


def records_of(config: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    status, out, err = run_main(capsys, "records", "tail", "--config", str(config), "--json")
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_suspend_list_and_resume_with_admin_records(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    penguin = in_process(capsys, config)
    tenant = penguin("tenant", "create", "acme")
    before = time.time()
    lane = penguin(
        "suspend", "lane", "ip1|mx.example.net", "--reason", "too many 421", "--for", "2h"
    )
    assert (lane["scope"], lane["target"]) == ("lane", "ip1|mx.example.net")
    assert lane["origin"] == "admin"
    assert before + 7200 <= lane["until"] <= time.time() + 7200
    google = penguin(
        "suspend", "source", "ip1", "--provider", "google", "--reason", "4.7.28", "--for", "30min"
    )
    assert (google["scope"], google["target"]) == ("source_provider", "ip1|google")
    campaign = penguin("suspend", "campaign", "acme:spring", "--reason", "review", "--for", "1d")
    assert [s["id"] for s in penguin("suspensions")] == [lane["id"], google["id"], campaign["id"]]

    status, out, _ = run_main(capsys, "suspensions", "--config", str(config))
    assert status == 0
    assert "source ip1 for provider google\tuntil " in out and "\tadmin\t4.7.28" in out

    assert penguin("resume", "source", "ip1", "--provider", "google")["removed"] == 1
    assert [s["id"] for s in penguin("suspensions")] == [lane["id"], campaign["id"]]
    status, out, err = run_main(capsys, "resume", "source", "ip1", "--config", str(config))
    assert status == 1 and "source ip1 is not suspended" in err

    actions = [r for r in records_of(config, capsys) if r["type"] == "AdminAction"]
    contents = [r["response"]["content"] for r in actions]  # type: ignore[index]
    assert contents[0].startswith("suspended lane ip1|mx.example.net until ")
    assert contents[0].endswith(": too many 421")
    assert contents[3] == "resumed source ip1 for provider google"
    assert len(contents) == 4
    assert actions[2]["meta"]["tenant"] == "acme"  # type: ignore[index]
    assert tenant["name"] == "acme"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("suspend", "source", "ip9", "--reason", "x", "--for", "1h"), "unknown source 'ip9'"),
        (("suspend", "lane", "ip1", "--reason", "x", "--for", "1h"), "SOURCE|SITE"),
        (("suspend", "tenant", "nobody", "--reason", "x", "--for", "1h"), "no tenant 'nobody'"),
        (("suspend", "source", "ip1", "--reason", "x", "--for", "soon"), "--for: not a duration"),
        (("suspend", "source", "ip1", "--reason", "x", "--for", "0s"), "must be positive"),
        (("suspend", "source", "ip1", "--reason", " ", "--for", "1h"), "--reason"),
        (("resume", "tenant", "acme", "--provider", "google"), "--provider goes with a source"),
    ],
)
def test_bad_suspensions_are_refused(
    config: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], problem: str
) -> None:
    status, _, err = run_main(capsys, *args, "--config", str(config))
    assert status == 1
    assert problem in err
    status, out, _ = run_main(capsys, "suspensions", "--config", str(config))
    assert (status, out) == (0, "no suspensions\n")
