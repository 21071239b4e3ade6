"""``penguin run``: the engine process under uvloop, with signal handling.

SIGTERM and SIGINT stop accepting, let in-flight sessions finish up to
``engine.shutdown_grace_seconds``, drain the spool and exit 0. SIGHUP (``penguin
reload``) reloads the shaping and backoff rule files in every process, and
the tracking edge's changed certificates (``Engine.reload``): a file that does
not load is logged with its file and key and the rules in force are kept. The
process started writes its pid to ``<data_dir>/penguin.pid`` for ``penguin
reload``, and removes it at exit.

With more than one engine process (``engine.processes``, plus
``engine.delivery_processes`` delivering-only workers for role all), the
process started is a supervisor: it prepares what a first start creates,
binds the submission listeners and forks the workers, which accept on the
shared sockets and share the store; one of them serves the admin listener,
one the tracking edge and another (a delivering one when there is one) moves
the edge's journal to the store. It prints the addresses and ``engine
ready`` once every worker is serving, forwards SIGTERM/SIGINT to the workers
and exits 0 when they all have. A worker that fails to start stops the
others (exit 1). A worker that dies later is logged (pid, exit status or
signal) and forked again on the same sockets after a delay that grows with
repeated crashes; too many crashes in a short window stop the others (exit
1, so systemd restarts the service); the decisions are ``engine.runtime.restarts``'.
A supervisor that dies takes its workers with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import logging
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from prometheus_client.multiprocess import mark_process_dead

from config import ConfigError, Settings
from engine.records import metrics
from engine.records.logs import configure_logging
from engine.runtime.app import Engine, Role, accepted_pipe, bind_listeners, prepare
from engine.runtime.restarts import RestartPolicy, RestartSchedule

Addresses = dict[str, list[tuple[str, int]]]
PID_FILE = "penguin.pid"
_PR_SET_PDEATHSIG = 1
GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default is 700, which
runs the cycle collector every message or two; reference counting frees the rest)."""

log = logging.getLogger(__name__)


def worker_roles(role: Role, processes: int, delivery_processes: int) -> list[Role]:
    """The role of each engine process: ``processes`` of ``role``, or with
    ``delivery_processes`` (role all only) that many delivering and the rest accepting."""
    if role is Role.ALL and delivery_processes > 0:
        return [Role.SUBMISSION] * processes + [Role.DELIVERY] * delivery_processes
    return [role] * processes


def run(settings: Settings, roles: list[Role], config_file: str = "<config>") -> int:
    """Run one engine process per role in ``roles`` until SIGTERM/SIGINT; the exit status."""
    configure_logging(settings.logging.level)
    raise_open_file_limit()
    delivering = sum(1 for role in roles if role.delivers)
    if delivering > 1 and not settings.redis.url:
        log.warning(
            "%d delivering processes without redis.url: connection limits, rates, warmup "
            "counts and backoff are kept per process, not for the engine as a whole",
            delivering,
        )
    with pid_file(settings):
        if len(roles) == 1:
            return uvloop.run(_serve(Engine(settings, roles[0], config_file), _print_ready))
        return _supervise(settings, roles, config_file)


def pid_path(settings: Settings) -> Path:
    """Where the running engine's pid is written, for ``penguin reload``."""
    return Path(settings.engine.data_dir) / PID_FILE


@contextlib.contextmanager
def pid_file(settings: Settings) -> Iterator[None]:
    path = pid_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


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
    loop.add_signal_handler(signal.SIGHUP, engine.reload)
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


def bouncing_workers(settings: Settings, roles: list[Role]) -> list[int]:
    """The workers that run the bounce service: those of a role receiving bounces, or,
    for role all split into accepting and delivering processes, the accepting ones."""
    if not settings.bounce.listen:
        return []
    bouncing = [index for index, role in enumerate(roles) if role.receives_bounces]
    if not bouncing and Role.SUBMISSION in roles and Role.DELIVERY in roles:
        bouncing = [index for index, role in enumerate(roles) if role.submits]
    return bouncing


def _supervise(settings: Settings, roles: list[Role], config_file: str) -> int:
    submitting = [index for index, role in enumerate(roles) if role.submits]
    bouncing = bouncing_workers(settings, roles)
    uvloop.run(prepare(settings, certificate=bool(submitting or bouncing)))
    sockets = bind_listeners(settings, config_file) if submitting else []
    bounce_sockets = bind_listeners(settings, config_file, "bounce.listen") if bouncing else []
    accepted = accepted_pipe() if submitting and len(submitting) < len(roles) else None
    admin = submitting[0] if submitting else None
    tracker = next((index for index, role in enumerate(roles) if role.tracks), None)
    supervisor = _Supervisor(settings, roles, config_file, sockets, accepted, admin, tracker)
    supervisor.flusher = tracking_flusher(roles, tracker)
    supervisor.bounce_sockets = bounce_sockets
    supervisor.bouncing = set(bouncing)
    return supervisor.run()


def tracking_flusher(roles: list[Role], tracker: int | None) -> int | None:
    """The worker that moves the tracking edge's journal to the store: another than the
    edge's ``tracker`` (a delivering one first), so the edge's core only serves; the
    tracker itself when it is alone."""
    if tracker is None:
        return None
    others = [index for index in range(len(roles)) if index != tracker]
    delivering = [index for index in others if roles[index].delivers]
    return next(iter(delivering or others), tracker)


@dataclass
class _Worker:
    index: int
    pidfd: int
    """Readable once the process has ended (Linux ``pidfd_open``)."""


@dataclass
class _Supervisor:
    """Forks one worker per role, restarts those that die, forwards SIGTERM/SIGINT."""

    settings: Settings
    roles: list[Role]
    config_file: str
    sockets: list[socket.socket]
    accepted: tuple[int, int] | None
    admin: int | None
    """The index of the worker that serves the admin listener."""
    tracker: int | None
    """The index of the worker that serves the tracking edge (it owns one journal)."""
    flusher: int | None = None
    """The index of the worker that moves the edge's journal to the store."""
    workers: dict[int, _Worker] = field(default_factory=dict)
    """Running workers by pid."""
    bounce_sockets: list[socket.socket] = field(default_factory=list)
    bouncing: set[int] = field(default_factory=set)
    """The indexes of the workers that run the bounce service on ``bounce_sockets``."""
    stopping: bool = False
    status: int = 0

    def run(self) -> int:
        """Until every worker has stopped; the exit status."""
        schedule = RestartSchedule(RestartPolicy.of(self.settings.engine))
        listening = [_address(sock) for sock in self.sockets]
        wakeup = os.pipe()  # a signal ends the wait for workers at once
        for fd in wakeup:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wakeup[1], warn_on_full_buffer=False)
        for signum in _FORWARDED:
            signal.signal(signum, self._forward)
        signal.signal(signal.SIGHUP, self._reload)
        ready_read, ready_write = os.pipe()
        for index in range(len(self.roles)):
            self._spawn(index, (ready_read, ready_write), wakeup)
        os.close(ready_write)
        self._announce(_read_reports(ready_read), listening)
        while self.workers or (not self.stopping and schedule.next_due() is not None):
            self._wait(schedule.next_due(), wakeup[0])
            for pid, wait_status in _ended_children(len(self.workers)):
                self._ended(pid, wait_status, schedule)
            if not self.stopping:
                for index in schedule.due(time.monotonic()):
                    self._spawn(index, None, wakeup)
        self._close_sockets()
        log.info("stopped")
        return self.status

    def _announce(self, reports: list[Addresses], listening: list[tuple[str, int]]) -> None:
        processes = len(self.roles)
        if len(reports) < processes:
            failed = processes - len(reports)
            log.error("%d of %d engine processes failed to start", failed, processes)
            self.status = 1
            self._stop(signal.SIGTERM)
            return
        addresses: Addresses = {"submission": listening} if listening else {}
        for report in reports:
            for name, bound in report.items():
                addresses.setdefault(name, [(host, port) for host, port in bound])
        log.info("%d engine processes serving: %s", processes, ", ".join(self.roles))
        _print_ready(addresses)

    def _spawn(self, index: int, ready: tuple[int, int] | None, wakeup: tuple[int, int]) -> None:
        """Fork worker ``index``; it reports its addresses on ``ready``'s pipe, else in the log."""
        role = self.roles[index]
        mask = signal.pthread_sigmask(
            signal.SIG_BLOCK, (*_FORWARDED, signal.SIGHUP)
        )  # not mid-fork
        pid = os.fork()
        if pid == 0:
            status = 1
            try:  # a worker never returns into the supervisor's code
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the engine handles it
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                for fd in [*wakeup, *(worker.pidfd for worker in self.workers.values())]:
                    os.close(fd)
                report: Callable[[Addresses], None] = functools.partial(_log_serving, index)
                if ready is not None:
                    os.close(ready[0])
                    report = functools.partial(_report_on_pipe, ready[1])
                worker = Engine(
                    self.settings,
                    role,
                    self.config_file,
                    submission_sockets=self.sockets if role.submits else None,
                    serve_admin=index == self.admin,
                    serve_tracking=index == self.tracker,
                    flush_tracking=index == self.flusher,
                    accepted_pipe=self.accepted,
                    bounce_sockets=self.bounce_sockets if index in self.bouncing else None,
                )
                status = _work(worker, index, report)
            finally:
                os._exit(status)
        self.workers[pid] = _Worker(index, os.pidfd_open(pid))
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if ready is None:
            log.info("engine process %d restarted (pid %d)", index, pid)

    def _wait(self, until: float | None, wakeup: int) -> None:
        """Until a worker ends, a signal comes or it is ``until`` (monotonic)."""
        poller = select.poll()
        for fd in [wakeup, *(worker.pidfd for worker in self.workers.values())]:
            poller.register(fd, select.POLLIN)
        timeout = None if until is None else max(0.0, until - time.monotonic()) * 1000
        poller.poll(timeout)
        with contextlib.suppress(BlockingIOError):
            os.read(wakeup, 4096)

    def _ended(self, pid: int, wait_status: int, schedule: RestartSchedule) -> None:
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        os.close(worker.pidfd)
        if metrics.SHARED_DIR_ENV in os.environ:
            mark_process_dead(pid)  # type: ignore[no-untyped-call]
        how = _how_it_ended(wait_status)
        if self.stopping:
            if os.waitstatus_to_exitcode(wait_status) != 0:
                log.error("engine process %d (pid %d) %s", worker.index, pid, how)
                self.status = 1
            return
        delay = schedule.crashed(worker.index, time.monotonic())
        if delay is None:
            policy = schedule.policy
            log.error(
                "engine process %d (pid %d) %s: %d crashes within %g s, stopping the engine",
                worker.index,
                pid,
                how,
                policy.crash_limit,
                policy.crash_window_seconds,
            )
            self.status = 1
            self._stop(signal.SIGTERM)
        else:
            log.error(
                "engine process %d (pid %d) %s; restarting it in %g s",
                worker.index,
                pid,
                how,
                delay,
            )

    def _forward(self, signum: int, _frame: object) -> None:
        self._stop(signal.Signals(signum))

    def _reload(self, _signum: int, _frame: object) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _stop(self, signum: signal.Signals) -> None:
        """Stop listening here and send ``signum`` to every worker."""
        self.stopping = True
        self._close_sockets()
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _close_sockets(self) -> None:
        for sock in [*self.sockets, *self.bounce_sockets]:
            sock.close()


_FORWARDED = (signal.SIGTERM, signal.SIGINT)


def _ended_children(children: int) -> list[tuple[int, int]]:
    """The pid and wait status of each of at most ``children`` that have ended, reaped."""
    ended = []
    for _ in range(children):
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended.append((pid, wait_status))
    return ended


def _how_it_ended(wait_status: int) -> str:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return f"was killed by signal {-code} ({signal.Signals(-code).name})"
    return f"exited with status {code}"


def _work(engine: Engine, index: int, report: Callable[[Addresses], None]) -> int:
    """A forked worker's life; its exit status."""
    _die_with_parent()
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


def _report_on_pipe(ready_write: int, addresses: Addresses) -> None:
    with os.fdopen(ready_write, "w") as pipe:
        pipe.write(json.dumps(addresses) + "\n")


def _log_serving(index: int, addresses: Addresses) -> None:
    log.info("engine process %d serving again: %s", index, json.dumps(addresses))


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
