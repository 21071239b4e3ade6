"""``penguin run``: the engine process under uvloop, with signal handling.

SIGTERM and SIGINT stop accepting, let in-flight sessions finish up to
``engine.shutdown_grace_seconds``, drain the spool and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from config import Settings
from engine.app import Engine
from engine.logs import configure_logging

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; the process exit status."""
    configure_logging(settings.logging.level)
    uvloop.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    engine = Engine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        addresses = await engine.start()
        for name, bound in addresses.items():
            for host, port in bound:
                print(f"{name} listening on {host}:{port}", flush=True)
        print("engine ready", flush=True)
        await stop.wait()
        log.info("stopping: finishing in-flight sessions")
    finally:
        await engine.stop()
    log.info("stopped")
