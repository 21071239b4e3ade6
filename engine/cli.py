"""The ``penguin`` command line: run the engine and administer it.

Every command takes ``--config`` (or ``PENGUIN_CONFIG``) and ``--json``.
Commands that touch the store open it directly, so they work whether or not
the engine is running (SQLite WAL and PostgreSQL both allow it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from config import DEFAULT_CONFIG, ConfigError, Settings, load_settings, redacted_url
from config.example import render_example
from engine.delivery.queue_admin import REMOVABLE, REQUEUEABLE, removal_record, requeue_record
from engine.delivery.settling import RecordContext
from engine.dkim.keys import default_selector, dns_records, generate_key, render_instructions
from engine.model import MessageState, QueuedMessage, SendingDomain, SmtpUser, Suppression
from engine.records.record import Record
from engine.runtime.preflight import check_environment
from engine.sealing import Sealer, load_or_create_secret, secret_path
from engine.store import Conflict, NotFound, Store, StoreError, open_store
from engine.submission.passwords import generate_password, generate_username, hash_password

Output = dict[str, Any] | list[Any]
_PAGE = 1000
"""Shunted messages requeued per transaction by ``queue requeue --all-shunted``."""


class CommandError(Exception):
    """A failed command: the message is shown to the user; exit status 1."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = _settings(args)
        if args.handler is None:
            config_file = _config_path(args) or str(DEFAULT_CONFIG)
            submits = args.role != "delivery"
            asyncio.run(check_environment(settings, config_file, submission=submits))
            processes = settings.engine.processes or os.cpu_count() or 1
            delivering = settings.engine.delivery_processes if args.role == "all" else 0
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
    except (CommandError, StoreError) as exc:
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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help="config file (default: $PENGUIN_CONFIG or the shipped one)"
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    parser = argparse.ArgumentParser(prog="penguin", description="PenguinMails sending engine")
    groups = parser.add_subparsers(title="commands")

    def leaf(sub: Any, name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help_text)
        p.set_defaults(handler=handler)
        return p

    run = leaf(groups, "run", None, "run the engine in the foreground")
    run.add_argument(
        "--role",
        choices=("all", "submission", "delivery"),
        default="all",
        help="services of this process (default all); several processes may share a store",
    )

    config = groups.add_parser("config", help="check or print the configuration")
    config_sub = config.add_subparsers()
    check = leaf(config_sub, "check", _config_check, "validate a config file")
    check.add_argument("file", nargs="?", help="file to check (default: --config)")
    leaf(config_sub, "example", _config_example, "print the documented default config")

    db = groups.add_parser("db", help="database maintenance")
    leaf(db.add_subparsers(), "migrate", _store_command(_db_migrate), "apply migrations")

    tenant = groups.add_parser("tenant", help="tenants")
    tenant_sub = tenant.add_subparsers()
    leaf(tenant_sub, "create", _store_command(_tenant_create), "create a tenant").add_argument(
        "name"
    )
    leaf(tenant_sub, "list", _store_command(_tenant_list), "list tenants")

    domain = groups.add_parser("domain", help="sending domains")
    domain_sub = domain.add_subparsers()
    add = leaf(domain_sub, "add", _store_command(_domain_add), "add a sending domain")
    add.add_argument("tenant")
    add.add_argument("domain")
    add.add_argument("--algo", choices=("rsa", "ed25519"), default="rsa")
    add.add_argument("--bits", type=int, default=2048, help="RSA key size")
    add.add_argument("--selector", help="DKIM selector (default: pmYYYYMM)")
    rotate = leaf(domain_sub, "rotate", _store_command(_domain_rotate), "new DKIM key")
    rotate.add_argument("domain")
    rotate.add_argument("--algo", choices=("rsa", "ed25519"), default="rsa")
    rotate.add_argument("--bits", type=int, default=2048, help="RSA key size")
    rotate.add_argument("--selector", help="new DKIM selector (default: pmYYYYMM)")
    records = leaf(domain_sub, "records", _store_command(_domain_records), "DNS to publish")
    records.add_argument("domain")
    leaf(domain_sub, "list", _store_command(_domain_list), "list domains").add_argument("tenant")

    user = groups.add_parser("smtp-user", help="SMTP credentials")
    leaf(
        user.add_subparsers(), "create", _store_command(_smtp_user_create), "new credentials"
    ).add_argument("tenant")

    suppression = groups.add_parser("suppression", help="suppression lists")
    sadd = leaf(suppression.add_subparsers(), "add", _store_command(_suppression_add), "suppress")
    sadd.add_argument("tenant")
    sadd.add_argument("address")
    sadd.add_argument("--reason", default="manual")

    records = groups.add_parser("records", help="log records")
    tail = leaf(records.add_subparsers(), "tail", _store_command(_records_tail), "show records")
    tail.add_argument("-n", "--lines", type=int, default=20, help="records to show first")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    tail.add_argument(
        "--poll", type=float, default=0.5, help="seconds between looks for new records"
    )

    queue = groups.add_parser("queue", help="the message queue")
    queue_sub = queue.add_subparsers()
    leaf(queue_sub, "summary", _store_command(_queue_summary), "messages by queue and state")
    leaf(queue_sub, "show", _store_command(_queue_show), "one message or submission").add_argument(
        "id"
    )
    shunted = leaf(queue_sub, "shunted", _store_command(_queue_shunted), "parked messages")
    shunted.add_argument("-n", "--limit", type=int, default=1000, help="messages to list")
    requeue = leaf(
        queue_sub, "requeue", _store_command(_queue_requeue), "queue shunted messages again"
    )
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="a message, or a submission's shunted messages")
    which.add_argument("--all-shunted", action="store_true", help="every shunted message")
    leaf(
        queue_sub, "delete", _store_command(_queue_delete), "remove queued or shunted messages"
    ).add_argument("id", help="a message, or a submission's queued and shunted messages")
    return parser


Handler = Callable[[Settings, argparse.Namespace], tuple[Output | None, str]]
StoreHandler = Callable[[Store, Settings, argparse.Namespace], Awaitable[tuple[Output | None, str]]]


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


def _config_check(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    """The file is valid (``main`` loaded it) and what it names is usable."""
    path = _config_path(args)
    asyncio.run(check_environment(settings, path or str(DEFAULT_CONFIG)))
    shown = dataclasses.asdict(settings)
    shown["database"]["url"] = redacted_url(shown["database"]["url"])
    source = path or "the shipped default config"
    return {"ok": True, "file": source, "settings": shown}, f"{source}: ok"


def _config_example(settings: Settings, args: argparse.Namespace) -> tuple[Output, str]:
    text = render_example()
    return {"toml": text}, text.rstrip("\n")


async def _db_migrate(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    version = await store.schema_version()
    return {"schema_version": version}, f"schema at version {version}"


async def _tenant_create(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    try:
        tenant = await store.create_tenant(args.name, time.time())
    except Conflict:
        raise CommandError(f"tenant {args.name!r} exists") from None
    return dataclasses.asdict(tenant), f"tenant {tenant.name} created (id {tenant.id})"


async def _tenant_list(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    tenants = await store.list_tenants()
    lines = [f"{t.id}\t{t.name}" for t in tenants] or ["no tenants"]
    return [dataclasses.asdict(t) for t in tenants], "\n".join(lines)


async def _require_tenant(store: Store, name: str) -> int:
    tenant = await store.get_tenant(name)
    if tenant is None:
        raise CommandError(f"no tenant named {name!r}")
    return tenant.id


def _domain_dns(settings: Settings, domain: SendingDomain) -> tuple[dict[str, Any], str]:
    records = dns_records(
        domain.name,
        domain.selector,
        (domain.algorithm, domain.public_key_b64),
        return_path_domain=f"bounces.{domain.name}",
        engine_hostname=settings.engine.hostname,
    )
    data = {
        "domain": domain.name,
        "selector": domain.selector,
        "algorithm": domain.algorithm,
        "dns_records": [dataclasses.asdict(r) for r in records],
    }
    return data, render_instructions(records)


def _keyed_domain(
    settings: Settings, args: argparse.Namespace, name: str, tenant_id: int, now: float
) -> SendingDomain:
    """``name`` with a new DKIM key pair, its private half sealed."""
    key = generate_key(args.algo, bits=args.bits) if args.algo == "rsa" else generate_key("ed25519")
    sealer = Sealer(load_or_create_secret(secret_path(settings.engine)))
    return SendingDomain(
        tenant_id=tenant_id,
        name=name,
        selector=args.selector or default_selector(now),
        algorithm=key.algorithm,
        private_key_sealed=sealer.seal(key.private_pem),
        public_key_b64=key.public_b64,
        created_at=now,
    )


async def _domain_add(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    name = args.domain.lower().rstrip(".")
    tenant_id = await _require_tenant(store, args.tenant)
    domain = _keyed_domain(settings, args, name, tenant_id, time.time())
    try:
        domain = await store.add_domain(domain)
    except Conflict:
        raise CommandError(f"domain {name!r} is already registered") from None
    data, text = _domain_dns(settings, domain)
    return data, f"domain {name} added for tenant {args.tenant}\n\n{text}"


async def _domain_rotate(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    name = args.domain.lower().rstrip(".")
    current = await store.get_domain(name)
    if current is None:
        raise CommandError(f"no sending domain {name!r}")
    rotated = _keyed_domain(settings, args, name, current.tenant_id, time.time())
    if rotated.selector == current.selector:
        raise CommandError(f"selector {rotated.selector!r} is in use; pass --selector")
    await store.rotate_domain_key(rotated)
    data, text = _domain_dns(settings, rotated)
    data["previous_selector"] = current.selector
    note = (
        f"domain {name} now signs with selector {rotated.selector} (engines pick it up within"
        f" a minute).\nKeep {current.selector}._domainkey.{name} published until mail signed"
        " with it has been delivered (the queue's maximum age).\n\n"
    )
    return data, note + text


async def _domain_records(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    domain = await store.get_domain(args.domain.lower().rstrip("."))
    if domain is None:
        raise CommandError(f"no sending domain {args.domain!r}")
    return _domain_dns(settings, domain)


async def _domain_list(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    domains = await store.list_domains(await _require_tenant(store, args.tenant))
    rows = [{"name": d.name, "selector": d.selector, "algorithm": d.algorithm} for d in domains]
    lines = [f"{r['name']}\t{r['selector']}\t{r['algorithm']}" for r in rows] or ["no domains"]
    return rows, "\n".join(lines)


async def _smtp_user_create(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    tenant_id = await _require_tenant(store, args.tenant)
    username, password = generate_username(args.tenant), generate_password()
    await store.add_smtp_user(SmtpUser(tenant_id, username, hash_password(password), time.time()))
    data = {"tenant": args.tenant, "username": username, "password": password}
    text = (
        f"username: {username}\npassword: {password}\n"
        "The password is shown only now; store it safely."
    )
    return data, text


async def _suppression_add(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    tenant_id = await _require_tenant(store, args.tenant)
    address = args.address.lower()
    await store.add_suppression(Suppression(tenant_id, address, args.reason, time.time()))
    return {"tenant": args.tenant, "address": address}, f"{address} suppressed"


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


async def _queue_summary(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    rows = await store.queue_summary()
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


async def _queue_show(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    message = await store.get_message(args.id)
    messages = [message] if message else await store.list_submission(args.id)
    if not messages:
        raise NotFound(f"no message or submission {args.id!r}")
    data = []
    lines = []
    for m in messages:
        records = await store.list_records(m.id)
        item = dataclasses.asdict(m)
        item["records"] = records
        data.append(item)
        lines.append(
            f"{m.id}  {m.state.value}  queue={m.queue}  from={m.sender}  to={m.recipient}"
            f"  attempts={m.attempts}  due={_iso(m.due_at)}"
        )
        if m.last_error:
            lines.append(f"    last error: {m.last_error}")
        lines += [f"    {_record_line(r)}" for r in records]
    return (data[0] if message else data), "\n".join(lines)


async def _queue_shunted(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    messages = await store.list_shunted(args.limit)
    lines = [
        f"{m.id}  queue={m.queue}  to={m.recipient}  attempts={m.attempts}"
        f"  shunted={_iso(m.due_at)}\n    error: {m.last_error or '-'}"
        for m in messages
    ]
    return [dataclasses.asdict(m) for m in messages], "\n".join(lines) or "no shunted messages"


async def _queue_requeue(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    now = time.time()
    records = _AdminRecords(store, settings, now)
    if args.all_shunted:
        requeued = await _requeue_all_shunted(store, records, now)
    else:
        messages = await _chosen(store, args.id, REQUEUEABLE, "shunted")
        batch = [await records.requeue(m) for m in messages]
        requeued = await store.requeue_shunted([m.id for m in messages], now, batch)
    if requeued:
        store.announce_accepted()
    text = "\n".join(f"{i} requeued" for i in requeued) or "no shunted messages"
    return {"requeued": requeued}, text


async def _requeue_all_shunted(store: Store, records: _AdminRecords, now: float) -> list[str]:
    """Requeue, a page at a time, every message shunted before ``now``, each once; the ids.

    Every page requeues at least one message not requeued before, or ends the loop.
    """
    requeued: dict[str, None] = {}
    while True:
        listed = await store.list_shunted(_PAGE)
        page = [m for m in listed if m.due_at <= now and m.id not in requeued]
        batch = [await records.requeue(m) for m in page]
        done = await store.requeue_shunted([m.id for m in page], now, batch)
        if not done:
            return list(requeued)
        requeued.update(dict.fromkeys(done))


async def _queue_delete(
    store: Store, settings: Settings, args: argparse.Namespace
) -> tuple[Output, str]:
    now = time.time()
    records = _AdminRecords(store, settings, now)
    messages = await _chosen(store, args.id, REMOVABLE, "queued or shunted")
    batch = [await records.removal(m) for m in messages]
    removed = await store.remove_messages([m.id for m in messages], batch)
    return {"removed": removed}, "\n".join(f"{i} removed" for i in removed) or "nothing removed"


async def _chosen(
    store: Store, message_or_submission: str, states: frozenset[MessageState], wanted: str
) -> list[QueuedMessage]:
    """The messages in ``states`` of a message id or a submission id."""
    message = await store.get_message(message_or_submission)
    messages = [message] if message else await store.list_submission(message_or_submission)
    if not messages:
        raise NotFound(f"no message or submission {message_or_submission!r}")
    chosen = [m for m in messages if m.state in states]
    if not chosen:
        found = ", ".join(sorted({m.state.value for m in messages}))
        raise CommandError(f"{message_or_submission}: nothing {wanted} (found: {found})")
    return chosen


class _AdminRecords:
    """The records of an operator's actions at ``now``, with each tenant's name."""

    def __init__(self, store: Store, settings: Settings, now: float) -> None:
        from engine.runtime.app import node_id

        self._store = store
        self._now = now
        self._nodeid = node_id(settings)
        self._tenants: dict[int, str] = {}

    async def requeue(self, message: QueuedMessage) -> Record:
        return requeue_record(message, now=self._now, context=await self._context(message))

    async def removal(self, message: QueuedMessage) -> Record:
        return removal_record(message, now=self._now, context=await self._context(message))

    async def _context(self, message: QueuedMessage) -> RecordContext:
        name = self._tenants.get(message.tenant_id)
        if name is None:
            tenant = await self._store.get_tenant_by_id(message.tenant_id)
            name = self._tenants[message.tenant_id] = tenant.name if tenant else ""
        return RecordContext(self._nodeid, name)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


if __name__ == "__main__":
    sys.exit(main())
