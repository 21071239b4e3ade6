"""``penguin run --role tracking`` runs the tracking edge alone; role all runs it beside
submission and delivery when ``tracking.listen`` is set, in one process of several; both
HTTP listeners hold clients to the limits of ``engine.runtime.http_serving``."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
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


def answer_to(address: tuple[str, int], sent: bytes) -> tuple[bytes, float]:
    """What the listener sends after ``sent`` until it closes, and how long that took."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(sent)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


def test_both_http_listeners_bound_a_head_and_close_an_idle_connection(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    engine = start_engine(engine_factory, write_config(tmp_path))
    endless_head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * 1024)
    for address in (engine.tracking, engine.admin):
        answer, _ = answer_to(address, endless_head)
        assert answer.startswith(b"HTTP/1.1 431 "), address
        answer, waited = answer_to(address, b"")
        assert answer == b"" and 4 < waited < 15, (address, waited)
    assert engine.terminate() == 0
