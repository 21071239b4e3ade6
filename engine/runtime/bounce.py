"""The bounce role's composition: the listener, the inbox and the intake from settings.

``bounce_parts`` is the one place the bounce role's pure parts are chosen:
the report parser (bound to the engine's classifier) and the return-path
codec (keys from the engine secret). ``bounce_service`` builds the
``bounce_in.service.BounceService`` of a process from ``[bounce]``; a throttle
spec or a duration that does not parse is a ``ConfigError`` naming its key.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from bounce_in.intake import Intake, Parse, ReturnPaths, sending_domains
from bounce_in.listener import BounceDomains, BounceHandler, Inbox
from bounce_in.parsing import parse_report
from bounce_in.service import BounceService
from config import Settings
from engine.clock import Clock
from engine.delivery.bounce_classify import BounceClassifier
from engine.limits import Limiter
from engine.node import node_id
from engine.records.log import RecordLog
from engine.return_path import codec_from_settings
from engine.runtime.preflight import bounce_client_rates, bounce_policies
from engine.smtp.server import ServerConfig
from engine.store import Store

MAX_RECIPIENTS = 50
"""RCPTs per inbound transaction: a bounce names one return path."""


@dataclass(frozen=True, slots=True)
class BounceParts:
    """The pure parts the bounce role is built from."""

    parse: Parse
    return_paths: ReturnPaths
    return_path_domain: Callable[[str], str]
    """The return-path domain of a tenant's sending domain."""


def bounce_parts(settings: Settings, secret: bytes, classifier: BounceClassifier) -> BounceParts:
    """The parser and the return-path codec the bounce role uses."""
    codec = codec_from_settings(settings, secret)
    return BounceParts(
        functools.partial(parse_report, classifier=classifier), codec, codec.return_path_domain
    )


def bounce_service(
    settings: Settings,
    config_file: str,
    *,
    store: Store,
    limiter: Limiter,
    clock: Clock,
    record_log: RecordLog | None,
    parts: BounceParts,
    tls_context: ssl.SSLContext | None,
    sockets: list[socket.socket],
) -> BounceService:
    """The bounce service of this process, serving ``sockets``."""
    bounce = settings.bounce
    policies = bounce_policies(settings, config_file)
    connection_rate, message_rate = bounce_client_rates(settings, config_file)
    inbox = Inbox(store, record_log, settings.database.commit_batch_max)
    intake = Intake(
        store=store,
        parse=parts.parse,
        return_paths=parts.return_paths,
        policies=policies,
        clock=clock,
        nodeid=node_id(settings),
        record_log=record_log,
        poll_seconds=bounce.poll_seconds,
    )
    inbox.on_accepted.append(intake.wake)
    handler = BounceHandler(
        inbox=inbox,
        domains=BounceDomains(lambda: sending_domains(store), parts.return_path_domain, clock),
        feedback_addresses=bounce.feedback_addresses,
        limiter=limiter,
        connection_rate=connection_rate,
        message_rate=message_rate,
        clock=clock,
        nodeid=node_id(settings),
    )
    sub = settings.submission
    config = ServerConfig(
        hostname=settings.engine.hostname,
        max_message_bytes=bounce.max_message_bytes,
        max_recipients=MAX_RECIPIENTS,
        idle_timeout_seconds=sub.idle_timeout_seconds,
        data_timeout_seconds=sub.data_timeout_seconds,
        tls_context=tls_context,
        auth_enabled=False,
        max_sessions=bounce.max_sessions,
    )
    return BounceService(config, handler, inbox, intake, sockets)
