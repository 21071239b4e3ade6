"""``penguin run --role tracking`` runs the tracking edge alone; role all runs it beside
submission and delivery when ``tracking.listen`` is set, in one process of several."""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import PENGUIN, EngineProcess, start_engine, write_config

pytestmark = pytest.mark.slow


def status_of(address: tuple[str, int], path: str, host: str) -> int:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_tracking_role_serves_the_edge_alone(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    engine = start_engine(engine_factory, write_config(tmp_path), role="tracking")
    assert engine.tracking[1] > 0
    assert engine.submission == ("", 0) and engine.admin == ("", 0)
    assert status_of(engine.tracking, "/o/AAAA", "unknown.test") == 404
    assert status_of(engine.tracking, "/", "unknown.test") == 404
    assert (tmp_path / "var" / "tracking" / "journal").is_file()
    assert engine.terminate() == 0


def test_role_all_runs_one_edge_among_several_processes(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    engine = start_engine(engine_factory, write_config(tmp_path, engine="processes = 2"))
    assert engine.tracking[1] > 0 and engine.submission[1] > 0
    assert sum(line.startswith("tracking listening") for line in engine.output) == 1
    assert status_of(engine.tracking, "/c/AAAA", "unknown.test") == 404
    assert engine.terminate() == 0
    assert "is in use by another" not in "".join(engine.output)


def test_the_tracking_role_without_an_address_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace('[tracking]\nlisten = "127.0.0.1:0"', '[tracking]\nlisten = ""')
    )
    done = subprocess.run(
        [*PENGUIN, "run", "--role", "tracking", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"config error: {config}: tracking.listen: expected host:port" in done.stderr
    assert "Traceback" not in done.stderr
