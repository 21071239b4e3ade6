"""What a message costs the PostgreSQL server: acceptance, claim and settlement.

No engine and no network but the store's own connections: this process drives
``PostgresStore`` as the engine does, in a fresh database dropped afterwards. A
round accepts ``--messages`` messages of ``--size`` octets in batches of
``--batch`` (``accept_unless_suppressed``, one Reception record each; the spool's
group commit makes batches of about 6 at 1,000 msgs/s), spread over ``--queues``
queues; then claims them ``--claim`` per queue at a time (``claim_queues``, all
queues in one call, as the lane scheduler asks) and settles each claim as
delivered in batches of 30 (``settle``, one Delivery record each), until none is
left. It reports the server's CPU per message (every ``postgres`` process's
utime + stime, so the WAL writer's and checkpointer's too) and the wall time per
message, per round and as medians.

Compare two revisions by running this from each checkout in turn, on an idle
machine; the server's CPU per message is steadier than a rate.

    python -m benchmarks.store_cost [--rounds 5] [--messages 3000] [--batch 6]
        [--claim 40] [--queues 50] [--size 2048]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.accept import database, unwind_on_sigterm
from benchmarks.throughput import postgres_cpu_seconds
from engine.delivery.settling import RecordContext, message_record
from engine.model import MessageState, QueuedMessage, Settlement, Submission
from engine.records.record import Record, RecordType
from engine.store.postgres import PostgresStore

SETTLE_BATCH = 30
SENDER = "news@bench.test"
OWNER = "bench:1"
CONTEXT = RecordContext(nodeid="bench", tenant="bench")
LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class Options:
    rounds: int
    messages: int
    batch: int
    claim: int
    queues: int
    size: int


@dataclass(frozen=True)
class Round:
    server_us: float
    """The PostgreSQL server's CPU per message, in microseconds."""
    wall_us: float


def body_of(size: int) -> bytes:
    head = b"From: news@bench.test\r\nSubject: store cost\r\n\r\n"
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


def _queue(n: int) -> str:
    return f"default:bench@site{n}.test"


async def _accept(store: PostgresStore, tenant_id: int, options: Options, tag: str) -> None:
    body = body_of(options.size)
    now = time.time()
    for first in range(0, options.messages, options.batch):
        submissions: list[Submission] = []
        records: list[Record] = []
        for n in range(first, min(first + options.batch, options.messages)):
            message_id = f"{tag}-{n}"
            domain = f"site{n % options.queues}.test"
            m = QueuedMessage(
                id=message_id,
                submission_id=message_id,
                tenant_id=tenant_id,
                queue=_queue(n % options.queues),
                campaign="default",
                sender=SENDER,
                recipient=f"user{n}@{domain}",
                domain=domain,
                state=MessageState.QUEUED,
                due_at=now,
                created_at=now,
            )
            submissions.append(Submission(message_id, tenant_id, body, (m,), now))
            records.append(message_record(RecordType.RECEPTION, m, now=now, context=CONTEXT))
        await store.accept_unless_suppressed(submissions, records)


async def _deliver(store: PostgresStore, options: Options) -> int:
    wanted = [(_queue(q), options.claim) for q in range(options.queues)]
    settled = 0
    while True:
        claimed = await store.claim_queues(wanted, OWNER, time.time(), LEASE_SECONDS)
        batch = [m for queue in claimed.values() for m in queue.messages]
        if not batch:
            return settled
        for first in range(0, len(batch), SETTLE_BATCH):
            now = time.time()
            await store.settle(
                [
                    (
                        Settlement(m.id, m.lease_token or "", MessageState.DELIVERED, 1, now),
                        message_record(RecordType.DELIVERY, m, now=now, context=CONTEXT),
                    )
                    for m in batch[first : first + SETTLE_BATCH]
                ]
            )
        settled += len(batch)


async def bench(url: str, options: Options) -> list[Round]:
    store = PostgresStore(url)
    try:
        await store.migrate()
        tenant = await store.create_tenant("bench", time.time())
        rounds: list[Round] = []
        for number in range(options.rounds):
            cpu = postgres_cpu_seconds()
            started = time.perf_counter()
            await _accept(store, tenant.id, options, f"r{number}")
            settled = await _deliver(store, options)
            wall = time.perf_counter() - started
            cpu = postgres_cpu_seconds() - cpu
            if settled != options.messages:
                raise SystemExit(f"round {number}: {settled} settled of {options.messages}")
            row = Round(1e6 * cpu / options.messages, 1e6 * wall / options.messages)
            print(
                f"round {number}: server {row.server_us:.0f} us/msg, wall {row.wall_us:.0f} us/msg",
                flush=True,
            )
            rounds.append(row)
        return rounds
    finally:
        await store.close()


def table(options: Options, rounds: list[Round]) -> str:
    return "\n".join(
        (
            "| messages | batch | claim x queues | size | rounds"
            " | server CPU µs/msg (median, min-max) | wall µs/msg (median) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {options.messages} | {options.batch} | {options.claim} x {options.queues}"
            f" | {options.size} | {len(rounds)}"
            f" | **{statistics.median(r.server_us for r in rounds):.0f}**"
            f" ({min(r.server_us for r in rounds):.0f}-{max(r.server_us for r in rounds):.0f})"
            f" | {statistics.median(r.wall_us for r in rounds):.0f} |",
        )
    )


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.store_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=3000, help="messages a round")
    parser.add_argument("--batch", type=int, default=6, help="messages an acceptance stores")
    parser.add_argument("--claim", type=int, default=40, help="messages a claim takes per queue")
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--size", type=int, default=2048, help="octets a message")
    args = parser.parse_args(argv)
    for name in ("rounds", "messages", "batch", "claim", "queues"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return Options(args.rounds, args.messages, args.batch, args.claim, args.queues, args.size)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    unwind_on_sigterm()
    directory = Path(tempfile.mkdtemp(prefix="penguin-store-cost-"))
    try:
        with database("postgres", directory) as url:
            rounds = asyncio.run(bench(url, options))
    finally:
        directory.rmdir()
    print(table(options, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
