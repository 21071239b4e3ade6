"""Before and after, in one sitting: Postfix, acceptance and end to end for two revisions.

Checks out ``--before`` and ``--after`` (any git revision; a branch is
resolved to its commit once, at the start) as detached worktrees under
``--trees`` with a ``.venv`` each (``make install``), reusing a worktree
made earlier for the same commit (``--remove-trees`` removes them at the
end), and runs each revision's own ``benchmarks.accept`` and
``benchmarks.throughput`` in it, one run per invocation, ``--runs`` rounds.
Rounds alternate so that drift on the machine falls on both revisions alike:
before, Postfix, after; then after, Postfix, before; and so on. In a round a
revision runs the acceptance benchmark once per ``--accept-processes``
(``engine.processes``: 1 is the default config, 2 the best layout measured)
and the end-to-end benchmark once per ``--e2e-layouts`` (``split``: one
``--role submission`` and one ``--role delivery`` process). The Postfix peer
(``run-postfix-bench.sh`` in ``--peers``; root, ``setup-postfix.sh`` run
once) runs without a milter (its accept rate, every ``--modes``) and with
OpenDKIM (delivered end to end, one message per connection), at each
``--sessions`` count; every figure is compared with Postfix at its best
session count.

Prints the table of ``benchmarks.compare_report`` (medians, runs in
brackets, ratios to Postfix, after / before) and writes it with every
sample and each step's output under ``--out``. Each step has a time limit
(``--step-timeout``) and all of them one (``--max-minutes``: steps not begun
by then are skipped and reported). A step that overruns or is interrupted
(Ctrl-C, SIGTERM) gets SIGTERM (our benchmarks stop their engines and drop
their databases; the peer's script stops Postfix), then after a grace
period SIGKILL for its whole process group; then what it may have left is
removed: PostgreSQL databases named in configs under its temporary
directory, a Postfix still running.

    python -m benchmarks.compare --before f4a0326 --after main [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.accept import POSTGRES_SERVER, _csv, _postgres, unwind_on_sigterm
from benchmarks.compare_report import (
    PEER,
    Sample,
    accept_samples,
    peer_report,
    peer_samples,
    report,
    samples_tsv,
    throughput_samples,
    tsv_rows,
)

REPO = Path(__file__).resolve().parents[1]
POSTFIX_PID_FILE = Path("/var/spool/postfix/pid/master.pid")
STOP_GRACE_SECONDS = 60.0
E2E_LAYOUTS = {
    "split": ("--layout", "split"),
    "single": ("--layout", "single", "--processes", "1"),
    "single+delivery": ("--layout", "single", "--processes", "1", "--delivery-processes", "1"),
}


class CompareError(Exception):
    """A revision could not be prepared."""


@dataclass(frozen=True)
class Options:
    before: str
    after: str
    runs: int
    accept_messages: int
    e2e_messages: int
    clients: int
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    modes: tuple[str, ...]
    accept_processes: tuple[int, ...]
    e2e_layouts: tuple[str, ...]
    domains: int
    sessions: tuple[int, ...]
    accept_warmup: int
    e2e_warmup: int
    settle_seconds: float
    attempts: int
    step_timeout: float
    max_seconds: float
    trees: Path
    out: Path
    peers: Path
    skip_peer: bool
    remove_trees: bool


@dataclass(frozen=True)
class Revision:
    side: str
    ref: str
    commit: str
    tree: Path


@dataclass(frozen=True)
class Step:
    """One benchmark invocation: one run of some figures by one of the three."""

    who: str
    bench: str
    setup: str
    round: int
    argv: tuple[str, ...]
    cwd: Path

    @property
    def name(self) -> str:
        return f"{self.who}-{self.bench}-{self.setup}".replace(" ", "_")


def git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise CompareError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def prepare(side: str, ref: str, trees: Path, log: Path) -> Revision:
    """A clean worktree of ``ref`` with its own venv, made or reused."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = trees / commit[:12]
    if tree.exists():
        if git("rev-parse", "HEAD", cwd=tree) != commit:
            raise CompareError(f"{tree} is not at {commit}")
        if git("status", "--porcelain", "--untracked-files=no", cwd=tree):
            raise CompareError(f"{tree} has local changes")
        print(f"{side}: {ref} = {commit[:12]}, reusing {tree}", file=sys.stderr)
    else:
        trees.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(tree), commit)
        print(f"{side}: {ref} = {commit[:12]}, worktree {tree}", file=sys.stderr)
    with log.open("ab") as output:
        done = subprocess.run(
            ["make", "install"], cwd=tree, stdout=output, stderr=output, timeout=900, check=False
        )
    if done.returncode != 0:
        raise CompareError(f"make install failed in {tree}; see {log}")
    return Revision(side, ref, commit, tree)


def side_order(round_: int) -> tuple[str, ...]:
    """Who runs in which order in a round: the peer in the middle, the revisions alternating."""
    return ("before", PEER, "after") if round_ % 2 else ("after", PEER, "before")


def steps_of(options: Options, revisions: dict[str, Revision], round_: int) -> Iterator[Step]:
    for who in side_order(round_):
        if who == PEER:
            if not options.skip_peer:
                yield from _peer_steps(options, round_)
            continue
        yield from _our_steps(options, revisions[who], round_)


def _our_steps(options: Options, revision: Revision, round_: int) -> Iterator[Step]:
    python = str(revision.tree / ".venv" / "bin" / "python")
    common = (
        *("--clients", str(options.clients), "--runs", "1"),
        *("--sizes", ",".join(map(str, options.sizes))),
        *("--backends", ",".join(options.backends)),
        *("--settle", str(options.settle_seconds)),
    )
    for processes in options.accept_processes:
        yield Step(
            revision.side,
            "accept",
            f"{processes} process{'es' if processes > 1 else ''}",
            round_,
            (
                *(python, "-m", "benchmarks.accept", *common),
                *("--messages", str(options.accept_messages)),
                *("--modes", ",".join(options.modes), "--processes", str(processes)),
                *("--warmup", str(options.accept_warmup), "--attempts", str(options.attempts)),
            ),
            revision.tree,
        )
    for layout in options.e2e_layouts:
        yield Step(
            revision.side,
            "e2e",
            layout,
            round_,
            (
                *(python, "-m", "benchmarks.throughput", *common),
                *("--messages", str(options.e2e_messages), *E2E_LAYOUTS[layout]),
                *("--domains", str(options.domains), "--warmup", str(options.e2e_warmup)),
            ),
            revision.tree,
        )


def _peer_steps(options: Options, round_: int) -> Iterator[Step]:
    script = str(options.peers / "run-postfix-bench.sh")
    sizes = " ".join(map(str, options.sizes))
    for sessions in options.sessions:
        for bench, messages, config, modes in (
            ("accept", options.accept_messages, "nodkim", " ".join(options.modes)),
            ("e2e", options.e2e_messages, "dkim", "conn"),
        ):
            argv = (script, "1", str(messages), str(sessions), sizes, config, modes)
            yield Step(PEER, bench, f"{sessions} sessions", round_, argv, options.peers)


class StepRunner:
    """Runs steps one at a time, each bounded, and removes what a stopped one left."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._logs = options.out / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self.peer_results = options.out / "peers"
        self.peer_tsv = self.peer_results / "smtp-runs.tsv"
        self.step_timeout = options.step_timeout
        self._count = 0

    def run(self, step: Step, timeout: float) -> tuple[int | None, str, str]:
        """The step's exit status (``None`` if stopped), its output, and new peer rows."""
        self._count += 1
        stem = self._logs / f"{self._count:03d}-r{step.round}-{step.name}"
        temporary = self._options.out / "tmp" / f"{self._count:03d}"
        temporary.mkdir(parents=True)
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        environment |= {"TMPDIR": str(temporary), "PEERS_RESULTS": str(self.peer_results)}
        environment["MAX_ATTEMPTS"] = str(self._options.attempts)
        peer_offset = self._peer_text_length()
        stdout, stderr = stem.with_suffix(".out"), stem.with_suffix(".err")
        with stdout.open("wb") as out, stderr.open("wb") as err:
            err.write(f"$ {shlex.join(step.argv)}\n".encode())
            err.flush()
            process = subprocess.Popen(
                step.argv,
                cwd=step.cwd,
                env=environment,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        returncode: int | None = None
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  overran {timeout:.0f} s: stopping it", file=sys.stderr)
        finally:
            if returncode is None:
                _stop(process)
            _end_group(process.pid)
            _drop_databases(temporary)
            if returncode is None and step.who == PEER:
                _stop_postfix()
            shutil.rmtree(temporary, ignore_errors=True)
        return returncode, stdout.read_text(errors="replace"), self._peer_text(peer_offset)

    def _peer_text_length(self) -> int:
        return len(self.peer_tsv.read_text().splitlines()) if self.peer_tsv.exists() else 0

    def _peer_text(self, offset: int) -> str:
        """The TSV header and the rows appended after the first ``offset`` lines."""
        if not self.peer_tsv.exists():
            return ""
        lines = self.peer_tsv.read_text().splitlines()
        return "\n".join([lines[0], *lines[max(1, offset) :]]) + "\n"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the step (it cleans up after itself), SIGKILL to its group if it lingers."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"  {process.pid} ignored SIGTERM: killing its group", file=sys.stderr)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(group: int, signum: int) -> bool:
    """Signal process group ``group``; whether it still had members."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def _end_group(group: int) -> None:
    """End what the step left running in its process group (engines, sinks), within 20 s."""
    if not _signal_group(group, 0):
        return
    print(f"  process group {group} outlived its leader: ending it", file=sys.stderr)
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _signal_group(group, 0):
        time.sleep(0.2)
    _signal_group(group, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _signal_group(group, 0):
        time.sleep(0.2)


def _drop_databases(temporary: Path) -> None:
    """Drop the PostgreSQL databases of benchmark configs left under ``temporary``."""
    for config in temporary.rglob("penguin.toml"):
        try:
            url = str(tomllib.loads(config.read_text())["database"]["url"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            continue
        if not url.startswith(f"{POSTGRES_SERVER}/"):
            continue
        name = url.rsplit("/", 1)[1]
        print(f"  dropping database {name} left by {config}", file=sys.stderr)
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _stop_postfix() -> None:
    """Stop the Postfix a stopped peer step may have left running, and unwire the milter."""
    try:
        pid = int(POSTFIX_PID_FILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return
    print(f"  stopping Postfix (master {pid})", file=sys.stderr)
    subprocess.run(["postfix", "stop"], capture_output=True, timeout=60, check=False)
    subprocess.run(
        ["postconf", "-e", "smtpd_milters =", "non_smtpd_milters ="],
        capture_output=True,
        timeout=60,
        check=False,
    )


def samples_of(step: Step, output: str, peer_text: str) -> tuple[list[Sample], list[str]]:
    """The samples a step printed, and the runs it reports as failed."""
    if step.who == PEER:
        return peer_samples(step.round, tsv_rows(peer_text))
    parse = accept_samples if step.bench == "accept" else throughput_samples
    return parse(step.who, step.setup, step.round, output), []


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    postfix = (
        shutil.which("postconf")
        and subprocess.run(
            ["postconf", "-h", "mail_version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    )
    return (
        f'`nproc` = {os.cpu_count()}, CPU "{model}", {int(memory) // 1024**2} GB RAM, '
        f"{platform.platform()}, Python {platform.python_version()}"
        + (f", Postfix {postfix}" if postfix else "")
    )


def document(
    options: Options,
    revisions: dict[str, Revision],
    samples: list[Sample],
    notes: list[str],
    problems: list[str],
    started: datetime,
) -> str:
    ended = datetime.now(UTC)
    lines = [
        f"## Before / after, {started:%a %b %d %Y, %H:%M}-{ended:%H:%M} UTC",
        "",
        f"- Machine: {machine()}.",
        *(
            f"- {r.side}: `{r.ref}` = commit `{r.commit[:12]}` ({r.tree})"
            for r in revisions.values()
        ),
        f"- Command: `python -m benchmarks.compare {shlex.join(sys.argv[1:])}`",
        f"- Rounds: {options.runs}; accept: {options.accept_messages:,} messages, "
        f"{options.clients} clients; end to end: {options.e2e_messages:,} messages, "
        f"{options.domains} domains; "
        + (
            "no Postfix."
            if options.skip_peer
            else f"Postfix at {', '.join(map(str, options.sessions))} sessions, "
            "compared at its best."
        ),
        "- Medians, runs in brackets (* = disturbed by other load).",
        "",
        report(samples),
    ]
    if any(sample.who == PEER for sample in samples):
        lines += ["", peer_report(samples)]
    for title, items in (("Notes", notes), ("Problems", problems)):
        if items:
            lines += ["", f"{title}:", *(f"- {item}" for item in items)]
    return "\n".join(lines) + "\n"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(item) for item in _csv(text))


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="accept and end-to-end msgs/s of two revisions and Postfix, in one sitting",
    )
    parser.add_argument("--before", required=True, help="git revision measured first")
    parser.add_argument("--after", required=True, help="git revision compared with it")
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are their medians")
    parser.add_argument("--accept-messages", type=int, default=10000, help="messages per run")
    parser.add_argument("--e2e-messages", type=int, default=3000, help="messages per run")
    parser.add_argument("--clients", type=int, default=20, help="our concurrent connections")
    parser.add_argument("--sizes", default="2048,20480", help="message sizes in octets")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--modes", default="conn,reuse", help="accept modes: conn and/or reuse")
    parser.add_argument(
        "--accept-processes", default="1,2", help="engine.processes values for accept"
    )
    parser.add_argument(
        "--e2e-layouts", default="split", help=f"end-to-end layouts: {', '.join(E2E_LAYOUTS)}"
    )
    parser.add_argument("--domains", type=int, default=1000, help="recipient domains, end to end")
    parser.add_argument("--sessions", default="20,50", help="Postfix session counts")
    parser.add_argument("--accept-warmup", type=int, default=500, help="messages per mode first")
    parser.add_argument("--e2e-warmup", type=int, default=1000, help="messages sent first")
    parser.add_argument(
        "--settle", type=float, default=120.0, help="most seconds to wait for a quiet machine"
    )
    parser.add_argument("--attempts", type=int, default=4, help="tries per disturbed run")
    parser.add_argument(
        "--step-timeout", type=float, default=900.0, help="most seconds for one invocation"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=120.0,
        help="most minutes for all the steps; what is measured by then is reported",
    )
    parser.add_argument(
        "--trees", type=Path, default=Path("/tmp/penguin-compare/trees"), help="worktrees here"
    )
    parser.add_argument("--out", type=Path, help="default: /tmp/penguin-compare/<UTC time>")
    parser.add_argument(
        "--peers", type=Path, default=Path("/work/shared/peers"), help="run-postfix-bench.sh here"
    )
    parser.add_argument("--skip-peer", action="store_true", help="no Postfix (no ratios)")
    parser.add_argument(
        "--remove-trees", action="store_true", help="remove the two worktrees at the end"
    )
    args = parser.parse_args(argv)
    layouts = _csv(args.e2e_layouts)
    if not set(layouts) <= set(E2E_LAYOUTS):
        parser.error(f"--e2e-layouts: expected some of {', '.join(E2E_LAYOUTS)}")
    if not args.skip_peer and os.geteuid() != 0:
        parser.error("the Postfix peer needs root (or pass --skip-peer)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Options(
        before=args.before,
        after=args.after,
        runs=max(1, args.runs),
        accept_messages=args.accept_messages,
        e2e_messages=args.e2e_messages,
        clients=args.clients,
        sizes=_ints(args.sizes),
        backends=_csv(args.backends),
        modes=_csv(args.modes),
        accept_processes=_ints(args.accept_processes),
        e2e_layouts=layouts,
        domains=args.domains,
        sessions=_ints(args.sessions),
        accept_warmup=args.accept_warmup,
        e2e_warmup=args.e2e_warmup,
        settle_seconds=args.settle,
        attempts=max(1, args.attempts),
        step_timeout=args.step_timeout,
        max_seconds=60 * args.max_minutes,
        trees=args.trees.resolve(),
        out=(args.out or Path("/tmp/penguin-compare") / stamp).resolve(),
        peers=args.peers,
        skip_peer=args.skip_peer,
        remove_trees=args.remove_trees,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    unwind_on_sigterm()
    options.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    try:
        revisions = {
            side: prepare(side, ref, options.trees, options.out / "install.log")
            for side, ref in (("before", options.before), ("after", options.after))
        }
    except CompareError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    notes = _benchmark_changes(revisions)
    steps = [s for r in range(1, options.runs + 1) for s in steps_of(options, revisions, r)]
    print(
        f"compare: {len(steps)} steps, each at most {options.step_timeout:.0f} s, "
        f"all at most {options.max_seconds / 60:.0f} min; output in {options.out}",
        file=sys.stderr,
    )
    samples: list[Sample] = []
    problems: list[str] = []
    try:
        deadline = time.monotonic() + options.max_seconds
        run_steps(StepRunner(options), steps, deadline, samples, problems)
    except KeyboardInterrupt:
        problems.append("interrupted")
    finally:
        text = document(options, revisions, samples, notes, problems, started)
        (options.out / "summary.md").write_text(text)
        (options.out / "samples.tsv").write_text(samples_tsv(samples))
        print(text)
        if options.remove_trees:
            for revision in revisions.values():
                git("worktree", "remove", "--force", str(revision.tree))
    return 1 if problems else 0


def _benchmark_changes(revisions: dict[str, Revision]) -> list[str]:
    """A note if the benchmark code itself differs between the two revisions."""
    paths = ("benchmarks", "tests/harness")
    before, after = revisions["before"].commit, revisions["after"].commit
    changed = git("diff", "--stat", before, after, "--", *paths)
    if not changed:
        return []
    note = f"the benchmark code differs between the revisions ({changed.splitlines()[-1].strip()})"
    print(f"compare: {note}", file=sys.stderr)
    return [note]


def run_steps(
    runner: StepRunner,
    steps: list[Step],
    deadline: float,
    samples: list[Sample],
    problems: list[str],
) -> None:
    """Every step in turn until ``deadline`` (monotonic); figures go to ``samples``,
    what went wrong to ``problems``.

    The peer's script exits 1 when its last run was disturbed; its rows say
    that (and which runs failed), so only a stopped or empty peer step is a problem.
    """
    for index, step in enumerate(steps, 1):
        left = deadline - time.monotonic()
        if left <= 0:
            problems.append(f"out of time: steps {index} to {len(steps)} not run")
            return
        print(
            f"[{index}/{len(steps)}] round {step.round}: {step.name}", file=sys.stderr, flush=True
        )
        clock = time.monotonic()
        returncode, output, peer_text = runner.run(step, min(runner.step_timeout, left))
        found, failed = samples_of(step, output, peer_text)
        samples += found
        problems += [f"round {step.round}, {step.name}: {run}" for run in failed]
        status = "stopped" if returncode is None else f"exit {returncode}"
        print(
            f"  {status}, {len(found)} figures, {time.monotonic() - clock:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if not found or returncode is None or (returncode != 0 and step.who != PEER):
            problems.append(f"round {step.round}, {step.name}: {status}, {len(found)} figures")


if __name__ == "__main__":
    sys.exit(main())
