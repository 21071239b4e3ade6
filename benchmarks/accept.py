"""The acceptance benchmark: accepted messages per second, durability on.

For each store backend (SQLite; PostgreSQL in a fresh database that is
dropped afterwards) it makes a temporary directory and config, provisions a
tenant, a sending domain and SMTP credentials through ``engine.cli``, starts
``engine.cli run --role submission`` as a subprocess (so nothing is delivered
while it accepts) and waits for ``engine ready``. Then
``benchmarks.smtp_load`` (in this process, so apart from the engine) submits
``--messages`` messages over ``--clients`` connections for every size and mode,
``--runs`` times, interleaved (run 1 of every case, then run 2, ...) so slow
drift on the machine spreads over all cases. Before each run it waits (up to
``--settle`` seconds) for the machine to be under 10% busy; a run during which
other processes used more than ``--max-foreign`` CPU seconds is disturbed and
is tried again, up to ``--attempts`` times (the method of the peers' scripts).

Durability check: after each run the store (``engine.cli queue summary``) must
hold exactly as many more messages as there were ``250`` replies to DATA.

Prints one line per run and a table: backend | size | mode | clients | runs |
median accepted msgs/s | min | max, with the median CPU used by the engine and
by the load generator (in cores), how busy the whole machine was and how many
of the runs kept were disturbed all the same.
Writes nothing else; results go into ``benchmarks/RESULTS.md`` by hand.

    python -m benchmarks.accept [--messages N] [--clients C] [--sizes 2048,20480]
        [--backends sqlite,postgres] [--modes conn,reuse] [--runs 3] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import uvloop

from benchmarks.smtp_load import MODES, LoadResult, LoadSpec, Mode, run_load
from tests.harness.processes import child_pids

BACKENDS = ("sqlite", "postgres")
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
TENANT = "bench"
DOMAIN = "bench.test"
SENDER = f"bench@{DOMAIN}"
READY_LINE = "engine ready"
LISTENING = re.compile(r"^submission listening on (\S+):(\d+)$", re.MULTILINE)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000


class BenchError(Exception):
    """The benchmark could not be set up or run."""


@dataclass(frozen=True)
class Options:
    messages: int
    clients: int
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    modes: tuple[Mode, ...]
    runs: int
    tls: bool
    warmup: int
    settle_seconds: float
    max_foreign_seconds: float
    attempts: int
    keep: bool
    processes: int = 1


@dataclass(frozen=True)
class RunRow:
    """One measured run."""

    backend: str
    size: int
    mode: str
    clients: int
    run: int
    result: LoadResult
    stored: int
    engine_cores: float
    loadgen_cores: float
    machine_busy_pct: float
    foreign_seconds: float
    disturbed: bool

    @property
    def durable(self) -> bool:
        return self.stored == self.result.accepted

    def line(self) -> str:
        r = self.result
        check = "ok" if self.durable else f"MISMATCH (stored {self.stored})"
        errors = f" errors={dict(r.errors.most_common(3))}" if r.errors else ""
        return (
            f"{self.backend} {self.size} B {self.mode} run {self.run}: "
            f"{r.rate:.0f} msgs/s ({r.accepted} accepted, {r.failed} failed, "
            f"{r.elapsed_seconds:.2f} s) durability {check}; engine "
            f"{self.engine_cores:.2f} cores, loadgen {self.loadgen_cores:.2f} cores, "
            f"machine {self.machine_busy_pct:.0f}% busy, others {self.foreign_seconds:.2f} "
            f"CPU s{' DISTURBED' if self.disturbed else ''}{errors}"
        )


def _toml_string(value: str) -> str:
    return json.dumps(value)


def write_config(directory: Path, database_url: str, options: Options) -> Path:
    """A config for one benchmark engine, everything under ``directory``."""
    data = directory / "var"
    text = f"""\
[engine]
data_dir = {_toml_string(str(data))}
hostname = "bench.localhost"
node_id = "bench"
processes = {options.processes}

[database]
url = {_toml_string(database_url)}

[admin]
listen = "127.0.0.1:0"
key_rate = "1000000/s,max_burst=1000000"

[submission]
listen = ["127.0.0.1:0"]
allow_plaintext_auth_on_loopback = {"false" if options.tls else "true"}
max_sessions = {max(1000, 4 * options.clients)}
max_commands = 10000000

[records]
json_log = {_toml_string(str(data / "records.jsonl"))}
"""
    path = directory / "penguin.toml"
    path.write_text(text)
    return path


def cli(config: Path, *args: str) -> Any:
    """Run ``engine.cli ARGS --config F --json``; its JSON output."""
    command = [sys.executable, "-m", "engine.cli", *args, "--config", str(config), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed: {done.stdout.strip()} {done.stderr.strip()}")
    return json.loads(done.stdout)


def provision(config: Path) -> tuple[str, str]:
    """Tenant, sending domain and SMTP credentials; the username and password."""
    cli(config, "tenant", "create", TENANT)
    cli(config, "domain", "add", TENANT, DOMAIN)
    user = cli(config, "smtp-user", "create", TENANT)
    return str(user["username"]), str(user["password"])


def stored_messages(config: Path) -> int:
    """Messages in the store, in every state."""
    rows = cast(list[dict[str, Any]], cli(config, "queue", "summary"))
    return sum(int(row["count"]) for row in rows)


class EngineProcess:
    """``engine.cli run`` as a subprocess, with its output in files."""

    def __init__(self, config: Path, directory: Path, role: str = "submission") -> None:
        self._config = config
        self._role = role
        self._directory = directory
        self._stdout = directory / "engine.out"
        self._stderr = directory / "engine.err"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def pids(self) -> set[int]:
        """The engine process and its workers (``engine.processes``)."""
        return {self.pid, *child_pids(self.pid)}

    def start(self, timeout: float = 120.0) -> tuple[str, int] | None:
        """Start and wait for ``engine ready``; the submission address, if it has one."""
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "engine.cli",
                    "run",
                    "--role",
                    self._role,
                    "--config",
                    str(self._config),
                ],
                stdout=out,
                stderr=err,
                cwd=self._directory,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self._stdout.read_text(errors="replace")
            if READY_LINE in text:
                found = LISTENING.search(text)
                if found is None:
                    if self._role == "delivery":
                        return None
                    raise BenchError(f"engine ready but no submission address in {text!r}")
                return found.group(1), int(found.group(2))
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise BenchError(f"engine did not become ready: {self.output_tail()}")

    def listening(self, service: str) -> tuple[str, int]:
        """The first address ``service`` (``submission``, ``admin``, ...) listens on."""
        text = self._stdout.read_text(errors="replace")
        found = re.search(rf"^{re.escape(service)} listening on (\S+):(\d+)$", text, re.MULTILINE)
        if found is None:
            raise BenchError(f"the engine announced no {service} address in {text!r}")
        return found.group(1), int(found.group(2))

    def output_tail(self) -> str:
        text = self._stdout.read_text(errors="replace") + self._stderr.read_text(errors="replace")
        return text[-2000:]

    def cpu_seconds(self) -> float:
        """User plus system CPU of the engine process and its workers so far."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[int, float]:
        """User plus system CPU so far of the engine process and of each worker, by pid."""
        seconds = {}
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return seconds

    def stop(self, timeout: float = 60.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _machine_jiffies() -> tuple[int, int]:
    """Busy and total jiffies of the whole machine."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total > 0 else 0.0


def wait_quiet(max_seconds: float, threshold_pct: float = 10.0) -> float:
    """Wait until the machine is under ``threshold_pct`` busy over 2 s; that figure."""
    deadline = time.monotonic() + max_seconds
    while True:
        before = _machine_jiffies()
        time.sleep(2.0)
        busy = _busy_pct(before, _machine_jiffies())
        if busy < threshold_pct or time.monotonic() >= deadline:
            return busy


def foreign_cpu_seconds(ours: set[int], skip_postgres: bool) -> float:
    """CPU charged so far to user-space processes that are not part of the benchmark.

    Kernel threads are skipped; children's CPU counts through their parents.
    """
    jiffies = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[6]) & PF_KTHREAD or (skip_postgres and name.startswith("postgres")):
            continue
        jiffies += sum(int(value) for value in fields[11:15])
    return jiffies / CLOCK_TICKS


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Workload(Protocol):
    """What one run sends: ``LoadSpec`` for SMTP, or another generator's spec."""

    @property
    def size(self) -> int: ...
    @property
    def mode(self) -> str: ...
    @property
    def clients(self) -> int: ...


W = TypeVar("W", bound=Workload)


def measure(
    engine: EngineProcess,
    config: Path,
    spec: W,
    backend: str,
    run: int,
    max_foreign_seconds: float = 0.5,
    load: Callable[[W], Coroutine[Any, Any, LoadResult]] = run_load,  # type: ignore[assignment]
) -> RunRow:
    """One run of ``spec`` by ``load``, with its durability check and CPU figures.

    ``load`` counts in ``LoadResult.accepted`` the messages it had queued (one
    per recipient). A run is disturbed when other processes used more than
    ``max_foreign_seconds`` of CPU meanwhile.
    """
    ours, skip_postgres = {os.getpid(), *engine.pids()}, backend == "postgres"
    before = stored_messages(config)
    foreign0 = foreign_cpu_seconds(ours, skip_postgres)
    engine0, own0, machine0 = engine.cpu_seconds(), _own_cpu_seconds(), _machine_jiffies()
    result: LoadResult = uvloop.run(load(spec))
    engine1, own1, machine1 = engine.cpu_seconds(), _own_cpu_seconds(), _machine_jiffies()
    foreign = foreign_cpu_seconds(ours, skip_postgres) - foreign0
    stored = stored_messages(config) - before
    elapsed = result.elapsed_seconds
    return RunRow(
        backend=backend,
        size=spec.size,
        mode=spec.mode,
        clients=spec.clients,
        run=run,
        result=result,
        stored=stored,
        engine_cores=(engine1 - engine0) / elapsed,
        loadgen_cores=(own1 - own0) / elapsed,
        machine_busy_pct=_busy_pct(machine0, machine1),
        foreign_seconds=foreign,
        disturbed=foreign > max_foreign_seconds,
    )


async def _postgres(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    """The store URL for ``backend``; a PostgreSQL database is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:{directory / 'penguin.db'}"
        return
    name = f"penguin_bench_{secrets.token_hex(6)}"
    asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def bench_backend(backend: str, options: Options) -> list[RunRow]:
    """Every case on one backend, in a fresh store and engine."""
    directory = Path(tempfile.mkdtemp(prefix=f"penguin-bench-{backend}-"))
    try:
        with database(backend, directory) as url:
            config = write_config(directory, url, options)
            username, password = provision(config)
            engine = EngineProcess(config, directory)
            try:
                address = engine.start()
                assert address is not None
                host, port = address
                print(f"{backend}: engine pid {engine.pid} on {host}:{port}", file=sys.stderr)
                base = LoadSpec(
                    host,
                    port,
                    username,
                    password,
                    options.messages,
                    clients=options.clients,
                    tls=options.tls,
                    sender=SENDER,
                )
                return _cases(engine, config, base, backend, options)
            finally:
                engine.stop()
    finally:
        if options.keep:
            print(f"{backend}: kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _cases(
    engine: EngineProcess, config: Path, base: LoadSpec, backend: str, options: Options
) -> list[RunRow]:
    if options.warmup:
        for mode in options.modes:
            spec = replace(base, messages=options.warmup, size=options.sizes[0], mode=mode)
            warm = measure(engine, config, spec, backend, 0)
            print(f"warm-up: {warm.line()}", file=sys.stderr, flush=True)
    rows = []
    for run in range(1, options.runs + 1):
        for size in options.sizes:
            for mode in options.modes:
                spec = replace(base, size=size, mode=mode)
                rows.append(attempts(engine, config, spec, backend, run, options))
    return rows


def attempts(
    engine: EngineProcess,
    config: Path,
    spec: W,
    backend: str,
    run: int,
    options: Options,
    load: Callable[[W], Coroutine[Any, Any, LoadResult]] = run_load,  # type: ignore[assignment]
) -> RunRow:
    """Run until one attempt is undisturbed, at most ``options.attempts`` times."""
    for _ in range(options.attempts):
        busy = wait_quiet(options.settle_seconds)
        row = measure(engine, config, spec, backend, run, options.max_foreign_seconds, load)
        print(f"{row.line()} (before: {busy:.0f}% busy)", file=sys.stderr, flush=True)
        if not row.disturbed:
            break
    return row


def table(rows: list[RunRow]) -> str:
    """Medians per backend, size and mode, as a Markdown table."""
    groups: dict[tuple[str, int, str, int], list[RunRow]] = {}
    for row in rows:
        groups.setdefault((row.backend, row.size, row.mode, row.clients), []).append(row)
    lines = [
        "| backend | size | mode | clients | runs | median accepted msgs/s | min | max "
        "| engine cores | loadgen cores | machine busy | disturbed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backend, size, mode, clients), group in groups.items():
        rates = [r.result.rate for r in group]
        engine = statistics.median(r.engine_cores for r in group)
        loadgen = statistics.median(r.loadgen_cores for r in group)
        busy = statistics.median(r.machine_busy_pct for r in group)
        lines.append(
            f"| {backend} | {size} | {mode} | {clients} | {len(group)} "
            f"| **{statistics.median(rates):.0f}** | {min(rates):.0f} | {max(rates):.0f} "
            f"| {engine:.2f} | {loadgen:.2f} | {busy:.0f}% "
            f"| {sum(r.disturbed for r in group)} |"
        )
    return "\n".join(lines)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def add_run_arguments(parser: argparse.ArgumentParser, warmup_help: str) -> None:
    """The options of how runs are made: runs, warm-up, quiet waits, attempts, keep."""
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500, help=warmup_help)
    parser.add_argument(
        "--settle",
        type=float,
        default=600.0,
        help="most seconds to wait for a quiet machine (under 10%% busy) before a run",
    )
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.5,
        help="CPU seconds other processes may use during a run before it counts as disturbed",
    )
    parser.add_argument("--attempts", type=int, default=4, help="tries per disturbed run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accept", description="accepted messages/s, durability on"
    )
    parser.add_argument("--messages", type=int, default=10000, help="messages per run")
    parser.add_argument("--clients", type=int, default=20, help="concurrent connections")
    parser.add_argument("--sizes", default="2048,20480", help="message sizes in octets")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--modes", default="conn,reuse", help="conn and/or reuse")
    parser.add_argument("--tls", action="store_true", help="STARTTLS before AUTH")
    add_run_arguments(parser, warmup_help="messages per mode first")
    parser.add_argument(
        "--processes", type=int, default=1, help="engine processes (engine.processes; 0 = per CPU)"
    )
    args = parser.parse_args(argv)
    backends, modes = _csv(args.backends), _csv(args.modes)
    for name, chosen, allowed in (("backend", backends, BACKENDS), ("mode", modes, MODES)):
        unknown = set(chosen) - set(allowed)
        if unknown or not chosen:
            parser.error(f"{name}s: expected some of {', '.join(allowed)}")
    return Options(
        messages=args.messages,
        clients=args.clients,
        sizes=tuple(int(size) for size in _csv(args.sizes)),
        backends=backends,
        modes=cast(tuple[Mode, ...], modes),
        runs=args.runs,
        tls=args.tls,
        warmup=args.warmup,
        settle_seconds=args.settle,
        max_foreign_seconds=args.max_foreign,
        attempts=max(1, args.attempts),
        keep=args.keep,
        processes=args.processes,
    )


def unwind_on_sigterm() -> None:
    """Let SIGTERM unwind like Ctrl-C, so the engines and databases started are removed."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    return run_backends(
        "accept", options.backends, lambda backend: bench_backend(backend, options), table
    )


def run_backends(
    name: str,
    backends: Sequence[str],
    bench: Callable[[str], list[RunRow]],
    tabulate: Callable[[list[RunRow]], str],
) -> int:
    """Run ``bench`` on each backend, print the table of what ran (also when one fails),
    and the exit status: 1 when a run failed its checks or the benchmark could not go on."""
    unwind_on_sigterm()
    rows: list[RunRow] = []
    try:
        for backend in backends:
            rows += bench(backend)
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        if rows:
            print(tabulate(rows))
    broken = [row for row in rows if not row.durable or row.result.failed]
    for row in broken:
        print(f"{name}: check failed: {row.line()}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
