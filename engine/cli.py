"""The ``penguin`` command line: run the engine and administer it.

Every command takes ``--config`` (or ``PENGUIN_CONFIG``) and ``--json``,
before or after the command. Commands that touch the store open it directly,
so they work whether or not the engine is running (SQLite WAL and PostgreSQL
both allow it). Tenants, sending domains, SMTP users, API keys and suppressions
are handled by ``engine.provisioning``; the commands here only parse and print.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import functools
import importlib.metadata
import io
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bounce_in.describe import describe_report
from bounce_in.parsing import parse_report
from config import (
    DEFAULT_CONFIG,
    ConfigError,
    Settings,
    load_settings,
    parse_host_port,
    redacted_url,
)
from config.example import render_example
from engine.campaigns import Campaigns
from engine.clock import SystemClock
from engine.dkim.keys import RSA_DEFAULT_BITS, render_instructions
from engine.header_section import MalformedHeader, parse_header_section
from engine.model import (
    ApiKey,
    ApiScope,
    Campaign,
    InboundState,
    MessageState,
    SuppressionFilter,
    Suspension,
    Tenant,
    TrackingDomain,
)
from engine.node import node_id
from engine.provisioning import (
    CACHE_SECONDS,
    DkimKeySpec,
    DomainRecords,
    Invalid,
    Operations,
    Provisioning,
    ProvisioningError,
    TenantDetails,
    TenantHasMail,
)
from engine.provisioning.service import IMPORT_REASON
from engine.provisioning.verification import CheckStatus
from engine.rollup.service import read_stats
from engine.runtime.preflight import check_environment
from engine.scheduler.backoff import BackoffPolicy
from engine.scheduler.routing import pool_of
from engine.scheduler.shaping import FIELDS, Shaping, explain, shown
from engine.scheduler.suspensions import (
    SCOPE_WORDS,
    describe,
    scoped_target,
)
from engine.scheduler.tenant_settings import OVERRIDABLE, TenantSettingsBook
from engine.stats.report import Dimension, StatsQuery, stats_json, stats_table
from engine.store import Store, StoreError, open_store
from smtp_out.dns import DnsFailure, MxResolver, ResolverConfigurationError, Route
from smtp_out.dns_lookup import RecordLookup

Output = dict[str, Any] | list[Any]


class CommandError(Exception):
    """A failed command: the message is shown to the user; exit status 1."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        getattr(args, "group", parser).print_help()
        return 2
    try:
        settings = _settings(args)
        if args.handler is None:
            config_file = _config_path(args) or str(DEFAULT_CONFIG)
            submits = args.role in ("all", "submission")
            asyncio.run(check_environment(settings, config_file, submission=submits))
            delivering = settings.engine.delivery_processes if args.role == "all" else 0
            processes = engine_processes(settings, args.role, delivering)
            if processes + delivering > 1:
                _share_metrics_between_workers(settings)
            from engine.runtime.app import Role
            from engine.runtime.runner import run, worker_roles

            roles = worker_roles(Role(args.role), processes, delivering)
            return run(settings, roles, config_file)
        result, text = args.handler(settings, args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    except (CommandError, ProvisioningError, StoreError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)
    return 0


def engine_processes(settings: Settings, role: str, delivering: int) -> int:
    """The ``engine.processes`` to start for ``role`` beside ``delivering`` delivery-only
    workers: as configured; for 0, one per CPU less the delivering ones when they only
    accept, but one when they deliver and no ``redis.url`` shares their limits."""
    if role == "tracking":  # the edge, and its journal's flusher beside it on another core
        return 2 if (os.cpu_count() or 1) > 1 else 1
    if settings.engine.processes:
        return settings.engine.processes
    cpus = os.cpu_count() or 1
    accepting_only = role in ("submission", "bounce") or (role == "all" and delivering > 0)
    if accepting_only:
        return max(1, cpus - delivering)
    return cpus if settings.redis.url else 1


def _config_path(args: argparse.Namespace) -> str | None:
    """The file to load: ``config check FILE``'s, else ``--config``, else ``$PENGUIN_CONFIG``."""
    path: str | None = (
        getattr(args, "file", None) or args.config or os.environ.get("PENGUIN_CONFIG")
    )
    return path


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_config_path(args))


def _share_metrics_between_workers(settings: Settings) -> None:
    """With several engine processes, metrics go to files that ``/metrics`` adds up.

    Must run before ``prometheus_client`` is imported; the directory is
    emptied, as values of an earlier run would otherwise be counted.
    """
    directory = Path(settings.engine.data_dir) / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def build_parser() -> argparse.ArgumentParser:
    """Every command; ``--config`` and ``--json`` go before or after the command."""
    parser = argparse.ArgumentParser(
        prog="penguin",
        description="PenguinMails sending engine: run it and administer its store.",
        epilog="--config and --json may also follow the command: penguin tenant list --json",
    )
    _global_options(parser, default=None)
    parser.add_argument("--version", action="version", version=f"penguin {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, default=argparse.SUPPRESS)  # keeps what came before the command
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def group(name: str, help_text: str) -> Leaf:
        group_parser = commands.add_parser(name, help=help_text, description=help_text)
        group_parser.set_defaults(group=group_parser)
        return _leaves(group_parser.add_subparsers(title="commands", metavar="COMMAND"), common)

    run = _leaves(commands, common)("run", None, "run the engine in the foreground")
    run.add_argument(
        "--role",
        choices=("all", "submission", "delivery", "bounce", "tracking"),
        default="all",
        help="services of this process (default all); several processes may share a store; "
        "tracking runs the tracking edge alone, in one process",
    )
    _config_commands(group("config", "check or print the configuration"))
    leaf = group("db", "database maintenance")
    leaf("migrate", _store_command(_db_migrate), "apply migrations")
    _tenant_commands(group("tenant", "tenants: the platform's customers"))
    _domain_commands(group("domain", "sending domains and their DKIM keys"))
    _tracking_domain_commands(
        group("tracking-domain", "tracking domains: where tenants' links and pixels are served")
    )
    _smtp_user_commands(group("smtp-user", "SMTP submission credentials of tenants"))
    _api_key_commands(group("api-key", "tenants' keys to the admin API"))
    _suppression_commands(group("suppression", "tenants' suppression lists"))
    _records_commands(group("records", "log records"))
    _bounce_commands(group("bounce", "inbound bounces and complaints"))
    _queue_commands(group("queue", "the message queue"))
    _campaign_commands(group("campaign", "tenants' campaigns: progress and control"))
    _stats_command(_leaves(commands, common))
    explain = _leaves(commands, common)(
        "explain", _explain, "show the traffic shaping of a destination's lanes and its origin"
    )
    explain.add_argument("domain", help="the destination domain (its MX hosts are resolved)")
    explain.add_argument("--tenant", default="", help="the sending tenant (picks the pool)")
    explain.add_argument("--campaign", default="", help="the tenant's campaign (may pick another)")
    explain.add_argument("--source", default="", help="only this source's lane")
    _suspension_commands(_leaves(commands, common))
    _leaves(commands, common)(
        "reload",
        _reload,
        "check the shaping and backoff rule files, then have the running engine load them",
    )
    return parser


Leaf = Callable[[str, Any, str], argparse.ArgumentParser]
"""Adds a command: its name, its handler and its help; returns its parser."""


def _leaves(commands: Any, common: argparse.ArgumentParser) -> Leaf:
    def leaf(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        p.set_defaults(handler=handler)
        return p

    return leaf


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="config file (default: $PENGUIN_CONFIG, else the shipped one); relative paths "
        "in it are relative to its directory",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="print JSON instead of text",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("penguinmails")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _config_commands(leaf: Leaf) -> None:
    check = leaf("check", _config_check, "validate a config file and what it names")
    check.add_argument("file", nargs="?", help="the file to check (default: --config)")
    leaf("example", _config_example, "print the documented default config")


def _tenant_commands(leaf: Leaf) -> None:
    create = leaf("create", _provisioning_command(_tenant_create), "create a tenant")
    create.add_argument("name", help="the tenant's name, unique")
    leaf("list", _provisioning_command(_tenant_list), "list tenants")
    remove = leaf(
        "remove",
        _provisioning_command(_tenant_remove),
        "remove a tenant with its domains, SMTP users, suppressions and delivered mail "
        "(refused while it has mail to deliver)",
    )
    remove.add_argument("name", help="the tenant to remove")
    remove.add_argument(
        "--force",
        action="store_true",
        help="first remove its queued and shunted messages (an AdminBounce record each)",
    )
    show = leaf(
        "show",
        _provisioning_command(_tenant_show),
        "show a tenant's pool, priority and quotas in force and its messages today",
    )
    show.add_argument("name", help="the tenant")
    change = leaf(
        "set",
        _provisioning_command(_tenant_set),
        "set a tenant's pool, priority or quotas over its [tenants.NAME] table "
        "(running engines apply them within [scheduler] refresh_seconds)",
    )
    change.add_argument("name", help="the tenant")
    change.add_argument("--pool", help="egress pool, one of [pools]")
    change.add_argument("--priority", help="bulk, normal, transactional or a digit 0..9")
    change.add_argument(
        "--daily-quota",
        type=int,
        metavar="N",
        help="messages (one per recipient) per UTC day; 0 for no quota",
    )
    change.add_argument(
        "--rate",
        metavar="SPEC",
        help="rate quota, a throttle spec N/period[,max_burst=B] (e.g. 100/min); '' for none",
    )
    change.add_argument(
        "--clear",
        action="append",
        default=[],
        choices=OVERRIDABLE,
        metavar="SETTING",
        help="drop what was set for SETTING (pool, priority, daily_quota, rate_quota): "
        "the config's applies again; may be repeated",
    )


def _key_options(command: argparse.ArgumentParser, selector_help: str) -> None:
    command.add_argument(
        "--algo", choices=("rsa", "ed25519"), default="rsa", help="DKIM key type (default rsa)"
    )
    command.add_argument(
        "--bits", type=int, default=RSA_DEFAULT_BITS, help="RSA key size, 1024 to 4096"
    )
    command.add_argument("--selector", help=selector_help)


def _domain_commands(leaf: Leaf) -> None:
    add = leaf("add", _provisioning_command(_domain_add), "add a sending domain with a DKIM key")
    add.add_argument("tenant", help="the tenant that sends from it")
    add.add_argument("domain", help="the domain in the header From, e.g. news.acme.test")
    _key_options(add, "DKIM selector (default: pm + year and month, e.g. pm202611)")
    rotate = leaf("rotate", _provisioning_command(_domain_rotate), "give a domain a new DKIM key")
    rotate.add_argument("domain", help="the sending domain")
    _key_options(rotate, "the new key's selector (default: pm + year and month)")
    records = leaf("records", _provisioning_command(_domain_records), "DNS records to publish")
    records.add_argument("domain", help="the sending domain")
    listing = leaf("list", _provisioning_command(_domain_list), "list a tenant's domains")
    listing.add_argument("tenant", help="the tenant")
    remove = leaf("remove", _provisioning_command(_domain_remove), "remove a sending domain")
    remove.add_argument("domain", help="the sending domain")
    verify = leaf(
        "verify",
        _provisioning_command(_domain_verify),
        "check through DNS that a domain's records are published",
    )
    verify.add_argument("domain", help="the sending domain")


def _tracking_domain_commands(leaf: Leaf) -> None:
    add = leaf("add", _provisioning_command(_tracking_domain_add), "register a tracking domain")
    add.add_argument("tenant", help="the tenant whose links it carries")
    add.add_argument("domain", help="the host name, e.g. click.acme.test")
    add.add_argument(
        "--default", action="store_true", help="make it the tenant's default tracking domain"
    )
    listing = leaf(
        "list", _provisioning_command(_tracking_domain_list), "list a tenant's tracking domains"
    )
    listing.add_argument("tenant", help="the tenant")
    remove = leaf(
        "remove", _provisioning_command(_tracking_domain_remove), "remove a tracking domain"
    )
    remove.add_argument("domain", help="the tracking domain")
    default = leaf(
        "default",
        _provisioning_command(_tracking_domain_default),
        "make a tracking domain its tenant's default",
    )
    default.add_argument("tenant", help="the tenant")
    default.add_argument("domain", help="one of the tenant's tracking domains")


def _smtp_user_commands(leaf: Leaf) -> None:
    create = leaf(
        "create", _provisioning_command(_smtp_user_create), "new credentials for a tenant"
    )
    create.add_argument("tenant", help="the tenant")
    listing = leaf("list", _provisioning_command(_smtp_user_list), "list a tenant's SMTP users")
    listing.add_argument("tenant", help="the tenant")
    remove = leaf("remove", _provisioning_command(_smtp_user_remove), "remove an SMTP user")
    remove.add_argument("username", help="the username to remove")


def _api_key_commands(leaf: Leaf) -> None:
    create = leaf("create", _provisioning_command(_api_key_create), "a new API key for a tenant")
    create.add_argument("tenant", help="the tenant")
    create.add_argument(
        "--scope",
        action="append",
        choices=[scope.value for scope in ApiScope],
        help="what the key may do (repeatable; default: every scope)",
    )
    create.add_argument("--name", default="", help="a label for people")
    listing = leaf("list", _provisioning_command(_api_key_list), "list a tenant's API keys")
    listing.add_argument("tenant", help="the tenant")
    revoke = leaf("revoke", _provisioning_command(_api_key_revoke), "revoke an API key")
    revoke.add_argument("prefix", help="the key's prefix (pm_PREFIX_...)")


def _suppression_commands(leaf: Leaf) -> None:
    add = leaf("add", _provisioning_command(_suppression_add), "suppress an address")
    add.add_argument("tenant", help="the tenant whose list it goes on")
    add.add_argument("address", help="the recipient address (any case)")
    add.add_argument("--reason", default="manual", help="why (default manual)")
    listing = leaf("list", _provisioning_command(_suppression_list), "list a tenant's suppressions")
    listing.add_argument("tenant", help="the tenant")
    listing.add_argument(
        "-n", "--limit", type=int, default=1000, help="addresses to list (default 1000)"
    )
    listing.add_argument(
        "--after", default="", metavar="ADDRESS", help="start after this address (next page)"
    )
    listing.add_argument("--reason", default="", help="only reasons starting so, e.g. bounce")
    listing.add_argument("--domain", default="", help="only addresses at this domain")
    listing.add_argument("--prefix", default="", help="only addresses starting so")
    imported = leaf(
        "import", _provisioning_command(_suppression_import), "suppress the addresses of a CSV"
    )
    imported.add_argument("tenant", help="the tenant whose list they go on")
    imported.add_argument(
        "csv_file",
        metavar="FILE",
        help="CSV with a header row naming 'address' and optionally 'reason'; - for stdin",
    )
    imported.add_argument(
        "--reason", default=IMPORT_REASON, help=f"for rows without one (default {IMPORT_REASON})"
    )
    remove = leaf("remove", _provisioning_command(_suppression_remove), "unsuppress an address")
    remove.add_argument("tenant", help="the tenant")
    remove.add_argument("address", help="the suppressed address")


def _records_commands(leaf: Leaf) -> None:
    tail = leaf("tail", _store_command(_records_tail), "show the latest records")
    tail.add_argument("-n", "--lines", type=int, default=20, help="records to show first")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    tail.add_argument(
        "--poll", type=float, default=0.5, help="seconds between looks for new records"
    )


def _bounce_commands(leaf: Leaf) -> None:
    parse = leaf(
        "parse", _bounce_parse, "show what the engine understands of a bounce or complaint"
    )
    parse.add_argument(
        "message", metavar="FILE", help="the message as received (.eml); - reads standard input"
    )
    unmatched = leaf(
        "unmatched", _store_command(_bounce_unmatched), "inbound mail not attributed to ours"
    )
    unmatched.add_argument("-n", "--limit", type=int, default=50, help="messages to list")


def _stats_command(leaf: Leaf) -> None:
    stats = leaf("stats", _store_command(_stats), "a tenant's numbers, as GET /v1/stats")
    stats.add_argument("tenant", help="the tenant's name")
    stats.add_argument(
        "--by",
        default="",
        help="group by: campaign, domain, provider, hour or day, comma-separated",
    )
    for name, what in (("campaign", "campaign"), ("domain", "sending domain")):
        stats.add_argument(f"--{name}", help=f"only this {what}")
    stats.add_argument("--provider", help="only this provider (other: none)")
    stats.add_argument("--since", type=_moment, help="from this time (RFC 3339 or POSIX)")
    stats.add_argument("--until", type=_moment, help="before this time (RFC 3339 or POSIX)")


def _moment(text: str) -> float:
    """A time given as RFC 3339 (UTC when no offset) or POSIX seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _queue_commands(leaf: Leaf) -> None:
    summary = leaf("summary", _operations_command(_queue_summary), "messages by queue and state")
    summary.add_argument("--tenant", metavar="NAME", help="only this tenant's messages")
    show = leaf("show", _operations_command(_queue_show), "one message or submission")
    show.add_argument("id", help="a message id, or a submission's (the queue id of its 250)")
    shunted = leaf("shunted", _operations_command(_queue_shunted), "parked messages")
    shunted.add_argument("-n", "--limit", type=int, default=1000, help="messages to list")
    requeue = leaf("requeue", _operations_command(_queue_requeue), "queue shunted messages again")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="a message, or a submission's shunted messages")
    which.add_argument("--all-shunted", action="store_true", help="every shunted message")
    delete = leaf("delete", _operations_command(_queue_delete), "remove queued or shunted messages")
    delete.add_argument("id", help="a message, or a submission's queued and shunted messages")


def _campaign_commands(leaf: Leaf) -> None:
    listed = leaf("list", _campaigns_command(_campaign_list), "a tenant's campaigns")
    listed.add_argument("tenant", help="the tenant's name")
    for name, help_text in (
        ("show", "a campaign's state and progress (as GET /v1/campaigns/ID)"),
        ("pause", "stop expanding a campaign and hold its queued mail"),
        ("resume", "go on with a paused campaign"),
        ("cancel", "stop a campaign and remove its queued mail"),
    ):
        action = functools.partial(_campaign_action, name)
        command = leaf(name, _campaigns_command(action), help_text)
        command.add_argument("tenant", help="the tenant's name")
        command.add_argument("campaign", help="the campaign's id or name")


def _suspension_commands(leaf: Leaf) -> None:
    for name, handler, help_text in (
        ("suspend", _suspend, "stop sending for a lane, source, tenant or campaign for a while"),
        ("resume", _resume, "lift the suspensions of a lane, source, tenant or campaign"),
    ):
        command = leaf(name, _operations_command(handler), help_text)
        command.add_argument("scope", choices=SCOPE_WORDS, help="what to act on")
        command.add_argument(
            "target",
            help="lane: SOURCE|SITE (a site or a domain); source: a source name; "
            "tenant: a tenant name; campaign: TENANT:CAMPAIGN",
        )
        command.add_argument(
            "--provider", default="", help="with a source: only its mail to this provider"
        )
        if name == "suspend":
            command.add_argument("--reason", required=True, help="why (kept in the record)")
            command.add_argument(
                "--for",
                dest="duration",
                required=True,
                metavar="DURATION",
                help="how long: 90s, 30min, 2h, 1d",
            )
    leaf("suspensions", _operations_command(_suspensions), "list the active suspensions")
    leaf(
        "lanes",
        _operations_command(_lanes),
        "each lane (source x site): connections, rate, backoff",
    )
    ips = leaf(
        "ips",
        _operations_command(_ips),
        "each source: warmup day, today's sent and cap per provider",
    )
    ips.add_argument("--tenant", metavar="NAME", help="only the sources of this tenant's mail")


Handler = Callable[[Settings, argparse.Namespace], tuple[Output | None, str]]
StoreHandler = Callable[[Store, Settings, argparse.Namespace], Awaitable[tuple[Output | None, str]]]


OperationsHandler = Callable[[Operations, argparse.Namespace], Awaitable[tuple[Output | None, str]]]
CampaignsHandler = Callable[[Campaigns, Tenant, argparse.Namespace], Awaitable[tuple[Output, str]]]
ProvisioningHandler = Callable[
    [Provisioning, Settings, argparse.Namespace], Awaitable[tuple[Output, str]]
]


def _store_command(handler: StoreHandler) -> Handler:
    """Run ``handler`` with a migrated store, closed afterwards."""

    def run(settings: Settings, args: argparse.Namespace) -> tuple[Output | None, str]:
        async def body() -> tuple[Output | None, str]:
            store = open_store(settings.database_url(), settings.database.pool_size)
            try:
                await store.migrate()
                return await handler(store, settings, args)
            finally:
                await store.close()

        return asyncio.run(body())

    return run


def _operations_command(handler: OperationsHandler) -> Handler:
    """Run ``handler`` with the operations service on a migrated store."""

    async def run(
        store: Store, settings: Settings, args: argparse.Namespace
    ) -> tuple[Output | None, str]:
        return await handler(Operations(store, settings, nodeid=node_id(settings)), args)

    return _store_command(run)


def _campaigns_command(handler: CampaignsHandler) -> Handler:
    """Run ``handler`` with the campaigns service (the API's) and the tenant named."""

    async def run(
        store: Store, settings: Settings, args: argparse.Namespace
    ) -> tuple[Output | None, str]:
        tenant = await store.get_tenant(args.tenant)
        if tenant is None:
            raise CommandError(f"no tenant {args.tenant!r}")
        operations = Operations(store, settings, nodeid=node_id(settings))
        return await handler(Campaigns(store, settings, SystemClock(), operations), tenant, args)

    return _store_command(run)


def _provisioning_command(handler: ProvisioningHandler) -> Handler:
    """Run ``handler`` with the provisioning service on a migrated store."""

    async def run(
        store: Store, settings: Settings, args: argparse.Namespace
    ) -> tuple[Output | None, str]:
        return await handler(
            Provisioning(store, settings, nodeid=node_id(settings)), settings, args
        )

    return _store_command(run)


def _config_check(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    """The file is valid (``main`` loaded it) and what it names is usable."""
    path = _config_path(args)
    asyncio.run(check_environment(settings, path or str(DEFAULT_CONFIG)))
    shown = dataclasses.asdict(settings)
    shown["database"]["url"] = redacted_url(shown["database"]["url"])
    shown["redis"]["url"] = redacted_url(shown["redis"]["url"])
    source = path or "the shipped default config"
    return {"ok": True, "file": source, "settings": shown}, f"{source}: ok"


def _explain(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    """The lanes of ``args.domain`` from the sources of the tenant's pool (as set in the
    store, else the config's), and their shaping."""
    shaping = Shaping.load(settings.scheduler.shaping_files)
    routing = asyncio.run(_routing(settings)) if args.tenant else settings
    pool = pool_of(routing, args.tenant, args.campaign)
    if args.source:
        if args.source not in settings.sources:
            raise CommandError(f"no source named {args.source!r} in [sources]")
        names = [args.source]
    else:
        names = settings.pools[pool].sources
    route = asyncio.run(_resolve(settings, args.domain))
    if isinstance(route, DnsFailure):
        raise CommandError(f"cannot resolve {args.domain}: {route.reason}")
    provider = shaping.provider_of(route.site)
    lines = [f"{args.domain}: site {route.site}, provider {provider or '(none)'}, pool {pool}"]
    lanes = []
    for name in names:
        lane = shaping.for_lane(name, route.site, route.domain)
        explained = explain(lane)
        lines.append(f"lane {name}|{route.site}")
        lines.extend(f"  {line}" for line in explained)
        values = {field: shown(getattr(lane, field)) for field in FIELDS}
        origins = {field: f"{o.file}: {o.key}" for field, o in lane.origins.items()}
        lanes.append({"source": name, "values": values, "origins": origins, "lines": explained})
    result = {
        "domain": args.domain,
        "site": route.site,
        "hosts": [host.name for host in route.hosts],
        "provider": provider,
        "tenant": args.tenant,
        "pool": pool,
        "shaping_files": list(shaping.files),
        "lanes": lanes,
    }
    return result, "\n".join(lines)


async def _routing(settings: Settings) -> Settings:
    """The settings with the tenants' tables in force (``penguin tenant set``)."""
    book = TenantSettingsBook(settings)
    store = open_store(settings.database_url(), settings.database.pool_size)
    try:
        await store.migrate()
        await book.refresh(store)
    finally:
        await store.close()
    return book.routing


async def _lanes(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    rows = await ops.lanes()
    lines = [
        f"{'LANE':50} {'CONN':>5} {'LIMIT':>5} {'READY':>6} {'RATE':>12} {'LEVEL':>5}"
        f" {'QUEUED':>8}  NEXT DUE"
    ]
    for row in rows:
        lane = f"{row['source']}|{row['site']}"[:50]
        due = "-" if row["next_due"] is None else _iso(row["next_due"])
        lines.append(
            f"{lane:50} {row['connections']:>5} {row['connection_limit']:>5}"
            f" {row['in_flight']:>6} {row['max_message_rate'] or '-':>12}"
            f" {row['backoff_level']:>5} {row['queued']:>8}  {due}"
        )
    if not rows:
        lines.append("(no lane active in the last 10 minutes, or no engine running)")
    return rows, "\n".join(lines)


async def _ips(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    rows = await (ops.tenant_ips(args.tenant) if args.tenant else ops.ips())
    lines = [f"{'SOURCE':16} {'PROVIDER':12} {'PLAN':10} {'DAY':>4} {'SENT/CAP':>18}  STATE"]
    for row in rows:
        cap = "-" if row["cap"] is None else f"{row['cap']:,}"
        day = "-" if row["day"] is None else str(row["day"])
        sent = f"{row['sent_today']:,}/{cap}"
        lines.append(
            f"{row['source']:16} {row['provider']:12} {row['plan'] or '-':10} {day:>4}"
            f" {sent:>18}  {row['state']}"
        )
    return rows, "\n".join(lines)


def _reload(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    """Load the rule files here first (a broken one is a config error and nothing is
    signalled), then SIGHUP the engine whose pid is in the data directory."""
    from engine.runtime.runner import pid_path

    shaping = Shaping.load(settings.scheduler.shaping_files)
    BackoffPolicy.from_settings(settings)
    path = pid_path(settings)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise CommandError(f"no running engine found through {path}: {exc}") from None
    files = list(shaping.files)
    return {"pid": pid, "shaping_files": files}, f"engine {pid} reloading {', '.join(files)}"


async def _resolve(settings: Settings, domain: str) -> Route:
    """``domain``'s route as the engine's resolver finds it."""
    nameservers = [parse_host_port(ns, default_port=53) for ns in settings.dns.nameservers]
    try:
        resolver = MxResolver(
            nameservers, settings.dns.timeout_seconds, SystemClock(), random.Random()
        )
    except ResolverConfigurationError as exc:
        raise CommandError(str(exc)) from None
    return await resolver.resolve(domain)


def _bounce_parse(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    """The report of one message, read with the classifier the engine runs with."""
    from engine.runtime.app import bounce_classifier

    classifier = bounce_classifier(settings, _config_path(args) or str(DEFAULT_CONFIG))
    try:
        raw = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.message}: {exc.strerror or exc}") from None
    report = parse_report(raw, classifier)
    return report.to_json(), describe_report(report)


def _config_example(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    text = render_example()
    return {"toml": text}, text.rstrip("\n")


async def _db_migrate(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    version = await store.schema_version()
    return {"schema_version": version}, f"schema at version {version}"


async def _tenant_create(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    tenant = await p.create_tenant(args.name)
    return dataclasses.asdict(tenant), f"tenant {tenant.name} created (id {tenant.id})"


async def _tenant_list(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    tenants = await p.list_tenants()
    lines = [f"{t.id}\t{t.name}" for t in tenants] or ["no tenants"]
    return [dataclasses.asdict(t) for t in tenants], "\n".join(lines)


async def _tenant_remove(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    try:
        removal = await p.remove_tenant(args.name, force=args.force)
    except TenantHasMail as exc:
        if exc.forced:
            raise
        hint = "wait for it, or pass --force to remove its queued and shunted messages first"
        raise CommandError(f"{exc}; {hint}") from exc
    data = {"tenant": dataclasses.asdict(removal.tenant), "removed": removal.removed_messages}
    text = f"tenant {removal.tenant.name} removed"
    if removal.removed_messages:
        text += f", and {len(removal.removed_messages)} queued or shunted messages"
    return data, text


async def _tenant_show(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    return _tenant_details(await p.tenant_details(args.name))


async def _tenant_set(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    given = {
        "pool": args.pool,
        "priority": args.priority,
        "daily_quota": args.daily_quota,
        "rate_quota": args.rate,
    }
    changes: dict[str, str | int | None] = {k: v for k, v in given.items() if v is not None}
    both = sorted(set(changes) & set(args.clear))
    if both:
        raise CommandError(f"{both[0]} is both set and cleared")
    changes.update(dict.fromkeys(args.clear))
    if not changes:
        raise CommandError(
            "nothing to set: give --pool, --priority, --daily-quota, --rate or --clear"
        )
    return _tenant_details(await p.set_tenant_settings(args.name, changes))


def _tenant_details(details: TenantDetails) -> tuple[Output, str]:
    data = details.to_json()
    overridden = details.overridden
    lines = [f"tenant {details.tenant.name} (id {details.tenant.id})"]
    for name in OVERRIDABLE:
        value = data[name]
        shown_value = "none" if value in ("", 0) and name.endswith("quota") else value
        origin = "set with penguin tenant set" if name in overridden else "config"
        lines.append(f"  {name}: {shown_value} ({origin})")
    lines.append(f"  accepted today (UTC): {details.accepted_today}")
    return data, "\n".join(lines)


def _domain_dns(records: DomainRecords) -> tuple[dict[str, Any], str]:
    data = {
        "domain": records.domain.name,
        "selector": records.domain.selector,
        "algorithm": records.domain.algorithm,
        "dns_records": [dataclasses.asdict(r) for r in records.dns_records],
    }
    return data, render_instructions(records.dns_records)


def _key_spec(args: argparse.Namespace) -> DkimKeySpec:
    return DkimKeySpec(args.algo, args.bits, args.selector)


async def _domain_add(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    added = await p.add_domain(args.tenant, args.domain, _key_spec(args))
    data, text = _domain_dns(added)
    return data, f"domain {added.domain.name} added for tenant {args.tenant}\n\n{text}"


async def _domain_rotate(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    rotated = await p.rotate_domain(args.domain, _key_spec(args))
    data, text = _domain_dns(rotated)
    data["previous_selector"] = rotated.previous_selector
    name, previous = rotated.domain.name, rotated.previous_selector
    note = (
        f"domain {name} now signs with selector {rotated.domain.selector} (engines pick it up"
        f" within a minute).\nKeep {previous}._domainkey.{name} published until mail signed"
        " with it has been delivered (the queue's maximum age).\n\n"
    )
    return data, note + text


async def _domain_records(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    return _domain_dns(await p.domain_records(args.domain))


async def _domain_list(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    domains = await p.list_domains(args.tenant)
    rows = [{"name": d.name, "selector": d.selector, "algorithm": d.algorithm} for d in domains]
    lines = [f"{r['name']}\t{r['selector']}\t{r['algorithm']}" for r in rows] or ["no domains"]
    return rows, "\n".join(lines)


async def _domain_verify(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    nameservers = [parse_host_port(ns, default_port=53) for ns in settings.dns.nameservers]
    try:
        lookup = RecordLookup(nameservers, settings.dns.timeout_seconds)
    except ResolverConfigurationError as exc:
        raise CommandError(str(exc)) from None
    verified = await p.verify_domain(args.domain, lookup)
    lines = [f"{verified.domain}: {'verified' if verified.verified else 'not verified'}"]
    for check in verified.checks:
        lines.append(f"{check.status.upper():8}{check.check} ({check.type} {check.name})")
        if check.status is not CheckStatus.PASS:
            lines.append(f"        expected: {check.expected}")
            found = "; ".join(check.found) or "nothing"
            lines.append(f"        found:    {found}")
        if check.detail:
            lines.append(f"        {check.detail}")
    data = {"verified": verified.verified, **dataclasses.asdict(verified)}
    return data, "\n".join(lines)


async def _domain_remove(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    removed = await p.remove_domain(args.domain)
    data = {"domain": removed.name, "selector": removed.selector}
    text = (
        f"domain {removed.name} removed; engines stop accepting and signing mail from it"
        " within a minute, and mail from it still queued then goes out unsigned.\n"
        f"Unpublish {removed.selector}._domainkey.{removed.name} once that mail has gone."
    )
    return data, text


def _tracking_row(domain: TrackingDomain) -> dict[str, Any]:
    return {"domain": domain.name, "default": domain.is_default, "created_at": domain.created_at}


async def _tracking_domain_add(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    added = await p.add_tracking_domain(args.tenant, args.domain, default=args.default)
    data = _tracking_row(added.domain)
    data["dns_records"] = [dataclasses.asdict(r) for r in added.dns_records]
    role = " as its default" if added.domain.is_default else ""
    text = (
        f"tracking domain {added.domain.name} added for tenant {args.tenant}{role}\n\n"
        f"{render_instructions(added.dns_records)}"
    )
    if not added.domain.is_default:
        text += (
            f"\nUse it for all the tenant's mail with `penguin tracking-domain default "
            f"{args.tenant} {added.domain.name}`, or for a campaign with tracking_domain in "
            f'[campaigns."{args.tenant}:CAMPAIGN"].'
        )
    return data, text


async def _tracking_domain_list(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    rows = [_tracking_row(d) for d in await p.list_tracking_domains(args.tenant)]
    lines = [f"{r['domain']}\t{'default' if r['default'] else '-'}" for r in rows]
    return rows, "\n".join(lines) or "no tracking domains"


async def _tracking_domain_remove(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    removed = await p.remove_tracking_domain(args.domain)
    text = (
        f"tracking domain {removed.name} removed; the engines stop using it within "
        f"{settings.tracking.refresh_seconds:g}s, and links already sent on it stop working."
    )
    if removed.is_default:
        text += " The tenant has no default tracking domain now: its mail goes out untracked."
    return {"domain": removed.name, "removed": True}, text


async def _tracking_domain_default(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    chosen = await p.set_default_tracking_domain(args.tenant, args.domain)
    text = f"tracking domain {chosen.name} is now the default of tenant {args.tenant}"
    return _tracking_row(chosen), text


async def _smtp_user_create(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    user = await p.create_smtp_user(args.tenant)
    data = {"tenant": user.tenant, "username": user.username, "password": user.password}
    text = (
        f"username: {user.username}\npassword: {user.password}\n"
        "The password is shown only now; store it safely."
    )
    return data, text


async def _smtp_user_list(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    users = await p.list_smtp_users(args.tenant)
    rows = [{"username": u.username, "created_at": u.created_at} for u in users]
    lines = [f"{u.username}\tcreated {_iso(u.created_at)}" for u in users] or ["no SMTP users"]
    return rows, "\n".join(lines)


async def _smtp_user_remove(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    await p.remove_smtp_user(args.username)
    text = f"SMTP user {args.username} removed (a running engine refuses it within a minute)"
    return {"username": args.username, "removed": True}, text


def _api_key_row(key: ApiKey) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


async def _api_key_create(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    scopes = {ApiScope(scope) for scope in args.scope or ApiScope}
    made = await p.create_api_key(args.tenant, scopes, args.name)
    text = (
        f"API key {made.key.prefix} of tenant {args.tenant} ({', '.join(sorted(scopes))}):\n"
        f"{made.token}\nThe key is shown only now; store it safely."
    )
    return {"tenant": args.tenant, **_api_key_row(made.key), "token": made.token}, text


async def _api_key_list(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    keys = await p.list_api_keys(args.tenant)
    lines = [
        f"{k.prefix}\t{','.join(sorted(k.scopes))}\tcreated {_iso(k.created_at)}"
        + (f"\trevoked {_iso(k.revoked_at)}" if k.revoked_at is not None else "")
        + (f"\t{k.name}" if k.name else "")
        for k in keys
    ]
    return [_api_key_row(k) for k in keys], "\n".join(lines or ["no API keys"])


async def _api_key_revoke(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    key = await p.revoke_api_key(args.prefix)
    text = f"API key {key.prefix} revoked (a running engine refuses it within {CACHE_SECONDS:g} s)"
    return _api_key_row(key), text


async def _suppression_add(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    added = await p.add_suppression(args.tenant, args.address, args.reason)
    return {"tenant": args.tenant, "address": added.address}, f"{added.address} suppressed"


async def _suppression_list(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    where = SuppressionFilter(args.reason, args.prefix, args.domain)
    listed = await p.list_suppressions(args.tenant, after=args.after, limit=args.limit, where=where)
    rows = [{"address": s.address, "reason": s.reason, "created_at": s.created_at} for s in listed]
    lines = [f"{s.address}\t{s.reason}\t{_iso(s.created_at)}" for s in listed]
    return rows, "\n".join(lines) or "no suppressions"


async def _suppression_import(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    try:  # the command does nothing else meanwhile: blocking reads hold up no one
        source = (
            io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
            if args.csv_file == "-"
            else open(args.csv_file, encoding="utf-8-sig", newline="")  # noqa: SIM115, ASYNC230
        )
    except OSError as exc:
        raise CommandError(f"cannot read {args.csv_file}: {exc}") from None
    try:
        done = await p.import_suppressions(args.tenant, source, reason=args.reason)
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.csv_file}: {exc}") from None
    finally:
        if args.csv_file != "-":
            source.close()
    data = dataclasses.asdict(done)
    lines = [f"{done.added} added, {done.duplicate} already suppressed, {done.invalid} invalid"]
    lines += [f"line {row.line}: {row.error}: {row.text}" for row in done.invalid_rows]
    return data, "\n".join(lines)


async def _suppression_remove(
    p: Provisioning, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    await p.remove_suppression(args.tenant, args.address)
    address = args.address.strip().lower()
    return {"tenant": args.tenant, "address": address, "removed": True}, f"{address} unsuppressed"


async def _records_tail(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output | None, str]:
    seq = max(0, await store.last_record_seq() - args.lines)
    while True:
        page = await store.records_after(seq, 1000)
        for _, record in page:
            print(json.dumps(record) if args.json else _record_line(record), flush=True)
        if page:
            seq = page[-1][0]
        elif args.follow:
            await asyncio.sleep(args.poll)
        else:
            return None, ""


def _record_line(record: dict[str, Any]) -> str:
    response = record.get("response") or {}
    reply = f"{response.get('code', '')} {response.get('content', '')}".strip()
    return (
        f"{record['timestamp']}  {record['type']:<16} {record.get('id') or '-'}  "
        f"{record.get('recipient') or '-'}  {reply}"
    )


def _campaign_row(campaign: Campaign) -> dict[str, Any]:
    return {"id": campaign.id, "name": campaign.name, "state": campaign.state.value}


async def _campaign_list(
    campaigns: Campaigns, tenant: Tenant, args: argparse.Namespace
) -> tuple[Output, str]:
    found = await campaigns.list(tenant)
    lines = [f"{c.id}\t{c.name}\t{c.state.value}" for c in found] or ["no campaigns"]
    return [_campaign_row(c) for c in found], "\n".join(lines)


async def _campaign_action(
    action: str, campaigns: Campaigns, tenant: Tenant, args: argparse.Namespace
) -> tuple[Output, str]:
    """``action`` (show, pause, resume, cancel) done, then the campaign's progress."""
    campaign_id = (await campaigns.find(tenant, args.campaign)).id
    removed = None
    if action == "pause":
        await campaigns.pause(tenant, campaign_id)
    elif action == "resume":
        await campaigns.resume(tenant, campaign_id)
    elif action == "cancel":
        removed = (await campaigns.cancel(tenant, campaign_id))[1]
    progress = await campaigns.progress(tenant, campaign_id)
    numbers = progress.numbers()
    data: dict[str, Any] = _campaign_row(progress.campaign) | {"progress": numbers}
    lines = [f"{progress.campaign.name} ({progress.campaign.id}): {progress.campaign.state}"]
    lines += [f"  {name:<13}{count:>10}" for name, count in numbers.items()]
    if removed is not None:
        data["removed"] = removed
        lines.append(f"removed {removed} queued messages")
    return data, "\n".join(lines)


async def _stats(store: Store, settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    tenant = await Provisioning(store, settings, nodeid=node_id(settings)).tenant(args.tenant)
    try:
        query = StatsQuery(
            group_by=tuple(Dimension(name.strip()) for name in args.by.split(",") if name.strip()),
            campaign=args.campaign,
            domain=None if args.domain is None else args.domain.lower(),
            provider=args.provider,
            since=args.since,
            until=args.until,
        )
    except ValueError as exc:
        expected = ", ".join(d.value for d in Dimension)
        raise CommandError(f"--by: {exc} (expected {expected})") from None
    rows = await read_stats(store, tenant.id, query)
    return stats_json(query, rows), stats_table(query, rows)


async def _queue_summary(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    rows = await ops.queue_summary(args.tenant)
    data = [dataclasses.asdict(r) | {"state": r.state.value} for r in rows]
    width = max([len(r.queue) for r in rows] + [5])
    lines = [f"{'QUEUE':<{width}}  {'STATE':<10}  {'COUNT':>6}  {'NEXT DUE':<20}  LAST ERROR"]
    for r in rows:
        waiting = r.state in (MessageState.QUEUED, MessageState.LEASED)
        due = _iso(r.next_due) if waiting and r.next_due is not None else "-"
        error = r.last_error or "-"
        lines.append(f"{r.queue:<{width}}  {r.state.value:<10}  {r.count:>6}  {due:<20}  {error}")
    if not rows:
        lines.append("(empty)")
    return data, "\n".join(lines)


async def _queue_show(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    found = await ops.messages(args.id)
    data = []
    lines = []
    for details in found:
        m = details.message
        data.append(dataclasses.asdict(m) | {"records": details.records})
        lines.append(
            f"{m.id}  {m.state.value}  queue={m.queue}  from={m.sender}  to={m.recipient}"
            f"  attempts={m.attempts}  due={_iso(m.due_at)}"
        )
        if m.last_error:
            lines.append(f"    last error: {m.last_error}")
        lines += [f"    {_record_line(r)}" for r in details.records]
    return (data[0] if found[0].message.id == args.id else data), "\n".join(lines)


async def _queue_shunted(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    messages = await ops.shunted(args.limit)
    lines = [
        f"{m.id}  queue={m.queue}  to={m.recipient}  attempts={m.attempts}"
        f"  shunted={_iso(m.due_at)}\n    error: {m.last_error or '-'}"
        for m in messages
    ]
    return [dataclasses.asdict(m) for m in messages], "\n".join(lines) or "no shunted messages"


async def _bounce_unmatched(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    found = await store.list_inbound(InboundState.UNMATCHED, args.limit)
    listed = [
        {
            "id": m.id,
            "received_at": _iso(m.received_at),
            "peer": m.peer,
            "mail_from": m.mail_from,
            "rcpt_tos": list(m.rcpt_tos),
            "size": len(m.data),
            "subject": _subject(m.data),
            "reason": m.reason,
        }
        for m in found
    ]
    lines = [
        f"{m.id}  {_iso(m.received_at)}  from=<{m.mail_from}> peer={m.peer}"
        f"  to={','.join(m.rcpt_tos)}  size={len(m.data)}\n"
        f"    subject: {_subject(m.data) or '-'}\n    reason: {m.reason}"
        for m in found
    ]
    return listed, "\n".join(lines) or "no unmatched inbound messages"


def _subject(raw: bytes) -> str:
    """The Subject of a stored message as written (undecoded), or ``""``."""
    try:
        fields = parse_header_section(raw).unfolded()
    except MalformedHeader:
        return ""
    value = next((value for name, value in fields if name == b"subject"), b"")
    return value.decode("utf-8", "replace").strip()


async def _queue_requeue(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    requeued = await ops.requeue(None if args.all_shunted else args.id)
    text = "\n".join(f"{i} requeued" for i in requeued) or "no shunted messages"
    return {"requeued": requeued}, text


async def _queue_delete(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    removed = await ops.delete(args.id)
    return {"removed": removed}, "\n".join(f"{i} removed" for i in removed) or "nothing removed"


SUSPENSION_OPTIONS = {"duration": "--for", "reason": "--reason"}
"""The option of ``penguin suspend`` that gives each field of the service."""


async def _suspend(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    try:
        added = await ops.suspend(
            args.scope,
            args.target,
            reason=args.reason,
            duration=args.duration,
            provider=args.provider,
        )
    except Invalid as exc:
        option = SUSPENSION_OPTIONS.get(exc.field or "")
        if option is None:
            raise
        raise CommandError(f"{option}: {exc}") from None
    text = f"suspended {describe(added.scope, added.target)} until {_iso(added.until)}"
    return _suspension_json(added), f"{text}: {added.reason}"


async def _resume(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    removed = await ops.resume(args.scope, args.target, provider=args.provider)
    scope, target = scoped_target(args.scope, args.target, args.provider)
    data = {"scope": scope.value, "target": target, "removed": removed}
    return data, f"resumed {describe(scope, target)}"


async def _suspensions(ops: Operations, args: argparse.Namespace) -> tuple[Output, str]:
    active = await ops.suspensions()
    lines = [
        f"{s.id}\t{describe(s.scope, s.target)}\tuntil {_iso(s.until)}\t{s.origin}\t{s.reason}"
        for s in active
    ]
    return [_suspension_json(s) for s in active], "\n".join(lines) or "no suspensions"


def _suspension_json(s: Suspension) -> dict[str, Any]:
    return dataclasses.asdict(s) | {"scope": s.scope.value}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


if __name__ == "__main__":
    sys.exit(main())
