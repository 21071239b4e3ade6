"""The tracking edge under load: click redirects and open pixels per second, p99 latency.

One edge process (the real ``TrackingEdge`` on uvicorn, uvloop and httptools
through ``HttpService``, appending every hit to its journal) pinned to CPU 0;
the flusher, in another process as the engine runs it, writing every record
to a SQLite store, and ``wrk`` (keep-alive, ``--connections``) pinned to
CPU 1, wrk spreading its requests over ``--tokens`` signed links of as many
messages. After each run the store must hold one record per
request answered: records flow while the edge serves.

    python -m benchmarks.tracking --duration 10 --connections 50 --runs 3

nginx ``return 302`` and ``empty_gif`` on the same machine:
``../shared/peers/run-nginx-bench.sh 3 10s 50 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.model import MessageState, QueuedMessage
from engine.token_keys import derive_key
from tracking_edge.tokens import KEY_PURPOSE, TrackingTokens

DOMAIN = "click.bench.test"
SECRET = b"b" * 32
TARGET = "https://example.com/landing?utm_source=newsletter&utm_campaign=spring"


def tokens() -> TrackingTokens:
    return TrackingTokens({"a": derive_key(SECRET, "a", KEY_PURPOSE)}, "a", scheme="http")


def message(index: int) -> QueuedMessage:
    return QueuedMessage(
        id=f"0192f3a4b5c6d7e8f90a1b2c3d4e-{index}",
        submission_id="0192f3a4b5c6d7e8f90a1b2c3d4e",
        tenant_id=1,
        queue="spring:bench@example.com",
        campaign="spring",
        sender="news@bench.test",
        recipient=f"reader{index}@example.com",
        domain="example.com",
        state=MessageState.LEASED,
        due_at=time.time() - 86_400,
        created_at=time.time() - 86_400,
    )


async def bare_redirect(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's ceiling here: a 302 with the edge's headers, no token, no record."""
    await send(_BARE_START)
    await send(_BARE_BODY)


_BARE_START = {
    "type": "http.response.start",
    "status": 302,
    "headers": [(b"location", TARGET.encode()), (b"content-length", b"0")],
}
_BARE_BODY = {"type": "http.response.body", "body": b""}


async def serve(directory: Path, port_file: Path, bare: bool) -> None:
    """The edge appending to its journal (or, ``bare``, a bare redirect), until SIGTERM;
    its records are written by ``flush``, another process."""
    from engine.clock import SystemClock
    from engine.runtime.http_serving import HttpService, listening_socket
    from engine.store import open_store
    from tracking_edge.app import TrackingEdge
    from tracking_edge.journal import JournalWriter

    store = open_store(f"sqlite:{directory / 'penguin.db'}")
    await store.migrate()
    await store.create_tenant("bench", time.time())
    journal = JournalWriter(directory / "tracking" / "journal")
    app = TrackingEdge(
        tokens=tokens(),
        tenant_of={DOMAIN: 1}.get,
        journal=journal,
        store=store,
        clock=SystemClock(),
    )
    served = bare_redirect if bare else app
    http = HttpService("tracking", served, listening_socket("127.0.0.1", 0), trusted_proxies=[])
    [(_, port)] = await http.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(http.run())
    port_file.with_suffix(".tmp").write_text(str(port))
    port_file.with_suffix(".tmp").replace(port_file)
    await stop.wait()
    await http.stop(1)
    await task
    journal.close()
    await store.close()


async def flush(directory: Path) -> None:
    """The flusher of the edge's journal, as the engine runs it in another worker: until
    SIGTERM, then until the journal is empty."""
    from engine.store import open_store
    from tracking_edge.bots import ClickBursts
    from tracking_edge.flusher import Flusher
    from tracking_edge.hits import HitRecords
    from tracking_edge.journal import JournalReader

    store = open_store(f"sqlite:{directory / 'penguin.db'}")
    reader = JournalReader(directory / "tracking" / "journal")
    records = HitRecords(scanner_seconds=10, nodeid="bench", bursts=ClickBursts())
    flusher = Flusher(reader, store, records, interval=0.5, batch_max=2000)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(flusher.run())
    await stop.wait()
    flusher.stop()  # its last attempt empties the journal
    await task
    reader.close()
    await store.close()


def lua_script(paths: list[str]) -> str:
    listed = ",\n".join(f'"{path}"' for path in paths)
    return (
        f"local paths = {{\n{listed}\n}}\nlocal i = 0\n"
        'wrk.headers["Host"] = "' + DOMAIN + '"\n'
        'wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"\n'
        "request = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n'
    )


def paths_of(kind: str, count: int) -> list[str]:
    edge = tokens()
    urls = [
        edge.click_url(message(i), DOMAIN, TARGET)
        if kind == "click"
        else edge.open_url(message(i), DOMAIN)
        for i in range(count)
    ]
    return ["/" + url.split("/", 3)[3] for url in urls]


def run_wrk(port: int, script: Path, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {1}),
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "requests": total,
        "bad": int(bad.group(1)) if bad else 0,
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def records_in(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])


NGINX_CONF = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "nginx-bench.conf"
"""Written by ``../shared/peers/setup-nginx.sh`` (beside the repository)."""


def measure_nginx(path: str, args: argparse.Namespace) -> dict[str, float]:
    """nginx from the peers' config (``setup-nginx.sh``), pinned like the edge: ``/r`` is
    its ``return 302``, ``/o.gif`` its ``empty_gif``."""
    with tempfile.TemporaryDirectory(prefix="penguin-nginx-") as tmp:
        prefix = Path(tmp)
        for sub in ("logs", "body", "proxy", "fcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir()
        conf = Path(args.nginx_conf).read_text().replace("/tmp/peers-nginx", tmp)
        conf = conf.replace("worker_processes auto", "worker_processes 1")
        (prefix / "nginx.conf").write_text(conf)
        server = subprocess.Popen(
            ["nginx", "-p", tmp, "-c", str(prefix / "nginx.conf")],
            preexec_fn=lambda: os.sched_setaffinity(0, {0}),
        )
        try:
            time.sleep(1)
            script = prefix / "paths.lua"
            script.write_text(lua_script([path]))
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            pids = [server.pid, *map(int, children)]
            cpu0 = sum(_cpu_seconds(pid) for pid in pids)
            result = run_wrk(8080, script, args.duration, args.connections)
            result["cpu"] = (sum(_cpu_seconds(pid) for pid in pids) - cpu0) / args.duration
        finally:
            server.send_signal(signal.SIGQUIT)
            server.wait(30)
        result["records"] = 0
        return result


def measure(kind: str, args: argparse.Namespace) -> dict[str, float]:
    if kind.startswith("nginx"):
        return measure_nginx("/o.gif" if kind == "nginx-gif" else "/r", args)
    with tempfile.TemporaryDirectory(prefix="penguin-tracking-") as tmp:
        directory = Path(tmp)
        port_file = directory / "port"
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.tracking", "--serve", tmp, "--kinds", kind],
            preexec_fn=lambda: os.sched_setaffinity(0, {0}),
        )
        flusher = None
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the edge did not start")
                time.sleep(0.05)
            flusher = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.tracking", "--flush", tmp],
                preexec_fn=lambda: os.sched_setaffinity(0, {1}),
            )
            port = int(port_file.read_text())
            script = directory / "paths.lua"
            script.write_text(lua_script(paths_of(kind, args.tokens)))
            cpu0 = _cpu_seconds(server.pid)
            flusher_cpu0 = _cpu_seconds(flusher.pid)
            result = run_wrk(port, script, args.duration, args.connections)
            result["cpu"] = (_cpu_seconds(server.pid) - cpu0) / args.duration
            result["flusher_cpu"] = (_cpu_seconds(flusher.pid) - flusher_cpu0) / args.duration
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            if flusher is not None:
                flusher.send_signal(signal.SIGTERM)
                flusher.wait(120)
        result["records"] = records_in(directory / "penguin.db")
        return result


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--kinds",
        default="click,open,bare,nginx,nginx-gif",
        help="click, open, bare (uvicorn alone), nginx (return 302), nginx-gif (empty_gif)",
    )
    parser.add_argument("--nginx-conf", default=str(NGINX_CONF))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--flush", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flush:
        import uvloop

        uvloop.run(flush(Path(args.flush)))
        return
    if args.serve:
        import uvloop

        directory = Path(args.serve)
        uvloop.run(serve(directory, directory / "port", args.kinds == "bare"))
        return
    print(f"nproc {os.cpu_count()}, {args.connections} connections, {args.duration} s per run")
    print(
        "| kind | requests/s (runs) | p50 ms | p99 ms | server CPU | per CPU-second "
        "| records / requests | flusher CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kinds.split(","):
        runs = [measure(kind, args) for _ in range(args.runs)]
        best = statistics.median_high([r["rps"] for r in runs])
        chosen = next(r for r in runs if r["rps"] == best)
        listed = ", ".join(f"{r['rps']:,.0f}" for r in runs)
        print(
            f"| {kind} | {best:,.0f} ({listed}) | {chosen['p50']:.2f} | {chosen['p99']:.2f} "
            f"| {chosen['cpu']:.0%} | {best / max(chosen['cpu'], 0.01):,.0f} "
            f"| {chosen['records']:,.0f} / {chosen['requests']:,.0f} "
            f"(non-2xx/3xx {chosen['bad']:.0f}) | {chosen.get('flusher_cpu', 0):.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
