"""Hits: what the edge saw, as journal entries, and the records they become.

The edge appends a hit (``hit_entry``; on the hot path the same JSON made
from a per-token prefix, ``hit_prefix`` and ``hit_json``) for every open,
click and unsubscribe it serves: the token's claims and the request's facts (time,
client address, user agent, method, prefetch). The flusher turns hits into
records (``HitRecords.record``) in the order they were served, so the
judgements that need history are made there, off the request path:

- machine or person (``tracking_edge.bots``), with the reason;
- first or repeat: a hit is the first of its kind (open, click,
  unsubscribe) on its message unless this edge saw one already (a bounded
  in-memory set, ``HitRecords.seen``) or the store holds one (the flusher asks
  it for messages the set does not hold). Another edge process's hit still in
  its journal is not seen: two "first" records are possible, never none;
- the recipient: an unsubscribe's token names it; opens and clicks carry
  only the message, whose recipient the flusher finds in the message's
  records (``HitRecords.recipients`` keeps those of messages hit lately).

Each hit carries a random ``event_id`` (in the record's ``meta``): a record
the flusher wrote before a crash but did not commit is written again, and
the flusher skips those whose event id the store already has.

Pure: times and ids are given.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, Final, Generic, TypeVar

from engine.records.record import Record, RecordType
from tracking_edge.bots import HUMAN, ClickBursts, click_verdict, open_verdict
from tracking_edge.journal import Entry
from tracking_edge.tokens import TokenClaims, TokenKind

K = TypeVar("K")
V = TypeVar("V")
USER_AGENT_MAX: Final = 512
RECORD_TYPES: Final = {
    TokenKind.OPEN.value: RecordType.OPEN,
    TokenKind.CLICK.value: RecordType.CLICK,
    TokenKind.UNSUBSCRIBE.value: RecordType.UNSUBSCRIBE,
}


def hit_entry(
    claims: TokenClaims,
    *,
    at: float,
    address: str,
    user_agent: str,
    method: str,
    prefetch: bool,
    event_id: str,
) -> Entry:
    """The journal entry of one hit on a trusted token."""
    return {
        "k": claims.kind.value,
        "m": claims.message_id,
        "t": claims.tenant_id,
        "r": claims.recipient,
        "u": claims.url,
        "d": claims.domain,
        "s": claims.sent_at,
        "at": at,
        "ip": address,
        "ua": user_agent[:USER_AGENT_MAX],
        "hm": method,
        "pf": prefetch,
        "e": event_id,
    }


_STRING: Final[Callable[[str], str]] = encode_basestring  # JSON string, UTF-8 kept


def hit_prefix(claims: TokenClaims) -> str:
    """The start of the JSON of every hit on ``claims``' token (``hit_json``): computed
    once per token, since a link is hit again and again."""
    return (
        f'{{"k":{_STRING(claims.kind.value)},"m":{_STRING(claims.message_id)},'
        f'"t":{int(claims.tenant_id)},"r":{_STRING(claims.recipient)},'
        f'"u":{"null" if claims.url is None else _STRING(claims.url)},'
        f'"d":{_STRING(claims.domain)},"s":{int(claims.sent_at)}'
    )


def hit_json(
    prefix: str,
    *,
    at: float,
    address: str,
    user_agent: str,
    method: str,
    prefetch: bool,
    event_id: str,
) -> bytes:
    """``hit_entry`` as compact JSON (UTF-8), the claims' part given as ``hit_prefix``."""
    return (
        f'{prefix},"at":{float(at)!r},"ip":{_STRING(address)},'
        f'"ua":{_STRING(user_agent[:USER_AGENT_MAX])},"hm":{_STRING(method)},'
        f'"pf":{"true" if prefetch else "false"},"e":{_STRING(event_id)}}}'
    ).encode()


class EventIds:
    """Unique hit ids: a random prefix per process and a counter (no syscall per hit)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._count = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):x}"


class Recent(Generic[K, V]):
    """The ``size`` keys used last, each with a value (an LRU map)."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class HitRecords:
    """Turns hits into records, judging machines and first hits as it goes."""

    def __init__(self, *, scanner_seconds: float, nodeid: str, bursts: ClickBursts) -> None:
        self._scanner_seconds = scanner_seconds
        self._nodeid = nodeid
        self._bursts = bursts
        self.seen: Recent[tuple[str, str], None] = Recent()
        """The (kind, message) pairs recorded lately."""
        self.recipients: Recent[str, str] = Recent()
        """The recipient of each message hit lately (opens' and clicks' tokens carry none);
        empty when its records name none."""

    def record(self, entry: Entry, *, seen_in_store: bool) -> Record:
        """The record of ``entry``; ``seen_in_store`` when the store has an earlier one.
        Its recipient is the token's (unsubscribes), else the one in ``recipients``."""
        kind, message_id = entry["k"], entry["m"]
        first = not seen_in_store and (kind, message_id) not in self.seen
        self.seen.put((kind, message_id), None)
        meta: dict[str, Any] = {
            "tracking_domain": entry["d"],
            "user_agent": entry["ua"],
            "first": first,
            "event_id": entry["e"],
        }
        if kind == TokenKind.OPEN.value:
            verdict = open_verdict(entry["ua"], entry["ip"])
        elif kind == TokenKind.CLICK.value:
            meta["url"] = entry["u"]
            verdict = click_verdict(
                method=entry["hm"],
                user_agent=entry["ua"],
                address=entry["ip"],
                prefetch=entry["pf"],
                seconds_since_send=entry["at"] - entry["s"],
                scanner_seconds=self._scanner_seconds,
                burst=self._bursts.clicked(message_id, entry["u"] or "", entry["at"]),
            )
        else:
            verdict = HUMAN  # a person's choice: the form or the RFC 8058 POST
            meta["method"] = entry["hm"]
        meta["machine"] = verdict.machine
        if verdict.machine:
            meta["machine_reason"] = verdict.reason
        return Record(
            type=RECORD_TYPES[kind],
            timestamp=entry["at"],
            tenant_id=entry["t"],
            id=message_id,
            recipient=entry["r"] or self.recipients.get(message_id) or None,
            peer_address=("", entry["ip"]),
            meta=meta,
            nodeid=self._nodeid,
        )
