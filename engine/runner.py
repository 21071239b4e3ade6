"""``penguin run``: the engine process under uvloop, with signal handling.

SIGTERM and SIGINT stop accepting, let in-flight sessions finish up to
``engine.shutdown_grace_seconds``, drain the spool and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal

import uvloop

from config import Settings
from engine.app import Engine, Role
from engine.logs import configure_logging

log = logging.getLogger(__name__)


def run(settings: Settings, role: Role = Role.ALL, config_file: str = "<config>") -> int:
    """Run until SIGTERM/SIGINT; the process exit status."""
    configure_logging(settings.logging.level)
    raise_open_file_limit()
    return uvloop.run(_serve(Engine(settings, role, config_file)))


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit: an MTA holds many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open file limit raised from %d to %d", soft, target)


async def _serve(engine: Engine) -> int:
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
