"""This node's name in records and delivery leases: ``engine.node_id``, else the host name."""

from __future__ import annotations

import socket

from config import Settings


def node_id(settings: Settings) -> str:
    return settings.engine.node_id or socket.gethostname()
