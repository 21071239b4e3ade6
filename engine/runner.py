"""``penguin run``: the engine process under uvloop, with signal handling.

SIGTERM and SIGINT stop accepting, let in-flight sessions finish up to
``engine.shutdown_grace_seconds``, drain the spool and exit 0.

With more than one engine process (``engine.processes``, plus
``engine.delivery_processes`` delivering-only workers for role all), the
process started is a supervisor: it prepares what a first start creates,
binds the submission listeners and forks the workers, which accept on the
shared sockets and share the store. It prints the addresses and ``engine
ready`` once every worker is serving, forwards SIGTERM/SIGINT to the workers
and exits 0 when they all have. A worker that dies unexpectedly stops the
others (exit 1, so systemd restarts the service); a supervisor that dies
takes its workers with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable

import uvloop
from prometheus_client.multiprocess import mark_process_dead

from config import ConfigError, Settings
from engine import metrics
from engine.app import Engine, Role, accepted_pipe, bind_listeners, prepare
from engine.logs import configure_logging

Addresses = dict[str, list[tuple[str, int]]]
_PR_SET_PDEATHSIG = 1
GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default is 700, which
runs the cycle collector every message or two; reference counting frees the rest)."""

log = logging.getLogger(__name__)


def worker_roles(role: Role, processes: int, delivery_processes: int = 0) -> list[Role]:
    """The role of each engine process: ``processes`` of ``role``, or with
    ``delivery_processes`` (role all only) that many delivering and the rest accepting."""
    if role is Role.ALL and delivery_processes > 0:
        return [Role.SUBMISSION] * processes + [Role.DELIVERY] * delivery_processes
    return [role] * processes


def run(settings: Settings, roles: list[Role], config_file: str = "<config>") -> int:
    """Run one engine process per role in ``roles`` until SIGTERM/SIGINT; the exit status."""
    configure_logging(settings.logging.level)
    raise_open_file_limit()
    if len(roles) == 1:
        return uvloop.run(_serve(Engine(settings, roles[0], config_file), _print_ready))
    return _supervise(settings, roles, config_file)


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit: an MTA holds many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open file limit raised from %d to %d", soft, target)


def _print_ready(addresses: Addresses) -> None:
    for name, bound in addresses.items():
        for host, port in bound:
            print(f"{name} listening on {host}:{port}", flush=True)
    print("engine ready", flush=True)


async def _serve(engine: Engine, announce: Callable[[Addresses], None]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        announce(await engine.start())
        gc.freeze()  # start-up objects live as long as the process: keep them out of GC scans
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        stopping = asyncio.create_task(stop.wait())
        failure = asyncio.create_task(engine.wait_for_failure())
        await asyncio.wait([stopping, failure], return_when=asyncio.FIRST_COMPLETED)
        status = 0
        if failure.done():
            log.error("service %s stopped unexpectedly; shutting down", failure.result())
            status = 1
        else:
            failure.cancel()
        log.info("stopping: finishing in-flight sessions and deliveries")
    finally:
        await engine.stop()
    log.info("stopped")
    return status


def _supervise(settings: Settings, roles: list[Role], config_file: str) -> int:
    processes = len(roles)
    submitting = [index for index, role in enumerate(roles) if role.submits]
    uvloop.run(prepare(settings, certificate=bool(submitting)))
    sockets = bind_listeners(settings, config_file) if submitting else []
    accepted = accepted_pipe() if submitting and len(submitting) < processes else None
    ready_read, ready_write = os.pipe()
    workers: dict[int, int] = {}
    for index, role in enumerate(roles):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:  # a worker never returns into the supervisor's code
                os.close(ready_read)
                worker = Engine(
                    settings,
                    role,
                    config_file,
                    submission_sockets=sockets if role.submits else None,
                    serve_admin=bool(submitting) and index == submitting[0],
                    accepted_pipe=accepted,
                )
                status = _work(worker, index, ready_write)
            finally:
                os._exit(status)
        workers[pid] = index
    os.close(ready_write)
    addresses: Addresses = {}
    if sockets:
        addresses["submission"] = [_address(sock) for sock in sockets]
    for sock in sockets:
        sock.close()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    reports = _read_reports(ready_read)
    if len(reports) == processes:
        for report in reports:
            for name, bound in report.items():
                addresses.setdefault(name, [(host, port) for host, port in bound])
        log.info("%d engine processes serving: %s", processes, ", ".join(roles))
        _print_ready(addresses)
    else:
        log.error("%d of %d engine processes failed to start", processes - len(reports), processes)
        forward(signal.SIGTERM, None)
    status = 0 if len(reports) == processes else 1
    while workers:
        pid, wait_status = os.waitpid(-1, 0)
        if pid not in workers:
            continue
        index = workers.pop(pid)
        if metrics.SHARED_DIR_ENV in os.environ:
            mark_process_dead(pid)  # type: ignore[no-untyped-call]
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 or not stopping:
            log.error("engine process %d (pid %d) exited with status %d", index, pid, code)
            status = 1
            if not stopping:
                forward(signal.SIGTERM, None)
    log.info("stopped")
    return status


def _work(engine: Engine, index: int, ready_write: int) -> int:
    """A forked worker's life; its exit status."""
    _die_with_parent()

    def report(addresses: Addresses) -> None:
        with os.fdopen(ready_write, "w") as pipe:
            pipe.write(json.dumps(addresses) + "\n")

    status = 1
    try:
        status = uvloop.run(_serve(engine, report))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
    except BaseException:
        log.exception("engine process %d failed", index)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return status


def _read_reports(ready_read: int) -> list[Addresses]:
    """Each worker's addresses, until every worker has reported or exited."""
    with os.fdopen(ready_read) as pipe:
        return [json.loads(line) for line in pipe if line.strip()]


def _address(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


def _die_with_parent() -> None:
    """Have the kernel kill this worker when the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
