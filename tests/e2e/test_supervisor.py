"""The supervisor of several engine processes restarts a worker that dies.

A SIGKILLed worker is logged and forked again on the same listening socket
while the other goes on accepting; repeated crashes within the window stop
the whole engine (exit 1) with every worker.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    EngineProcess,
    provision,
    start_two_workers,
    submit,
    wait_for,
    worker_pids,
    write_config,
)
from tests.harness.processes import exited

pytestmark = pytest.mark.slow


def replaced_worker(engine: EngineProcess, before: set[int]) -> int:
    """The pid of the one worker that is not in ``before``, once there are two again."""
    wait_for(
        lambda: len(worker_pids(engine)) == 2 and len(worker_pids(engine) - before) == 1,
        timeout=30,
        what="a new worker",
    )
    (new,) = worker_pids(engine) - before
    return new


def test_a_killed_worker_is_restarted_and_mail_still_accepted(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(tmp_path, engine="processes = 2\ndelivery_processes = 0")
    account = provision(config)
    engine, workers = start_two_workers(engine_factory, config)
    victim = min(workers)

    os.kill(victim, signal.SIGKILL)
    replacement = replaced_worker(engine, workers)
    wait_for(lambda: "serving again" in "".join(engine.output), timeout=30, what="its start")

    output = "".join(engine.output)
    assert f"(pid {victim}) was killed by signal 9 (SIGKILL); restarting it in 1 s" in output
    assert f"restarted (pid {replacement})" in output
    for n in range(6):  # over new connections, which either worker accepts
        submit(engine.submission, account, [f"after-{n}@example.com"])
    assert engine.process is not None and engine.process.poll() is None
    assert engine.terminate() == 0
    assert exited(workers | {replacement})


def test_repeated_crashes_stop_the_engine(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        engine=(
            "processes = 2\ndelivery_processes = 0\nrestart_delay_seconds = 0.1\ncrash_limit = 2"
        ),
    )
    engine, workers = start_two_workers(engine_factory, config)
    os.kill(min(workers), signal.SIGKILL)
    replacement = replaced_worker(engine, workers)

    os.kill(replacement, signal.SIGKILL)
    assert engine.process is not None
    assert engine.process.wait(timeout=30) == 1
    wait_for(lambda: exited(workers | {replacement}), what="every worker stopped")
    output = "".join(engine.output)
    assert f"(pid {replacement}) was killed by signal 9 (SIGKILL): 2 crashes within 60 s" in output
    assert "stopping the engine" in output
