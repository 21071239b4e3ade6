"""The bounce role as a service (``engine.service.Service``): listener, inbox, intake.

The SMTP listeners (one per listening socket) accept bounces and complaints
through ``bounce_in.listener.BounceHandler``; the inbox group-commits them;
the intake processes them, woken by each commit and by its poll interval.
``stop`` stops the listeners (sessions finish to the grace deadline), drains
the inbox and stops the intake after the message in hand.
"""

from __future__ import annotations

import asyncio
import socket

from bounce_in.intake import Intake
from bounce_in.listener import Inbox
from engine.service import Address, Health
from engine.smtp.handler import SmtpHandler
from engine.smtp.server import ServerConfig, SmtpServer


class BounceService:
    """``Service``: the bounce listener on ``sockets``, its inbox and its intake."""

    name = "bounce"

    def __init__(
        self,
        config: ServerConfig,
        handler: SmtpHandler,
        inbox: Inbox,
        intake: Intake,
        sockets: list[socket.socket],
    ) -> None:
        self._inbox = inbox
        self._intake = intake
        self._listeners = [(SmtpServer(config, handler), sock) for sock in sockets]
        self._running = False

    async def start(self) -> list[Address]:
        return [await server.start(sock=sock) for server, sock in self._listeners]

    async def run(self) -> None:
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._inbox.run(), name="bounce inbox")
                group.create_task(self._intake.run(), name="bounce intake")
        finally:
            self._running = False

    async def stop(self, grace_seconds: float) -> None:
        await asyncio.gather(*(server.stop(grace_seconds) for server, _ in self._listeners))
        self._inbox.close()
        self._intake.stop()

    def health(self) -> Health:
        if not self._running:
            return Health(False, "the bounce inbox is not running")
        sessions = sum(server.session_count for server, _ in self._listeners)
        return Health(True, f"{sessions} sessions")
