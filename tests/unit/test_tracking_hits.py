"""Hits become records: journal frames, first or repeat, machine or person."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from engine.records.record import RecordType
from tracking_edge.bots import ClickBursts
from tracking_edge.hits import EventIds, HitRecords, hit_entry, hit_json, hit_prefix
from tracking_edge.journal import Entry, frame, frames, json_frame
from tracking_edge.tokens import TokenClaims, TokenKind

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def claims(kind: TokenKind, message_id: str = "ab-1", url: str | None = None) -> TokenClaims:
    return TokenClaims(kind, message_id, 7, "jane@example.com", "click.acme.test", 1000, url)


def hit(kind: TokenKind, at: float, **changes: object) -> Entry:
    url = "https://acme.test/a" if kind is TokenKind.CLICK else None
    fields: dict[str, object] = {
        "at": at,
        "address": "203.0.113.9",
        "user_agent": BROWSER,
        "method": "GET",
        "prefetch": False,
        "event_id": f"e{at}",
    }
    fields.update(changes)
    return hit_entry(claims(kind, url=url), **fields)  # type: ignore[arg-type]


def test_frames_round_trip_and_stop_at_a_torn_tail() -> None:
    entries: list[Entry] = [{"a": 1}, {"b": "é"}, {"c": [1, 2]}]
    data = b"".join(frame(entry) for entry in entries)
    assert frames(data) == (entries, len(data))
    assert frames(data, limit=2) == (entries[:2], len(frame(entries[0]) + frame(entries[1])))
    torn = data + frame({"d": 4})[:-3]
    assert frames(torn) == (entries, len(data))


@pytest.mark.parametrize(
    "bad",
    [
        b"00000000 {}\n",  # wrong checksum
        b"zzzzzzzz {}\n",
        b"short\n",
        b"%08x [1]\n" % zlib.crc32(b"[1]"),  # not an object
        b"%08x {]\n" % zlib.crc32(b"{]"),
    ],
)
def test_a_corrupt_frame_ends_the_entries(bad: bytes) -> None:
    good = frame({"a": 1})
    assert frames(good + bad + good) == ([{"a": 1}], len(good))


def test_records_of_hits() -> None:
    records = HitRecords(scanner_seconds=10, nodeid="n1", bursts=ClickBursts())
    opened = records.record(hit(TokenKind.OPEN, 5000.0), seen_in_store=False)
    again = records.record(hit(TokenKind.OPEN, 5001.0), seen_in_store=False)
    click = records.record(hit(TokenKind.CLICK, 5002.0), seen_in_store=False)
    assert (opened.type, again.type, click.type) == (
        RecordType.OPEN,
        RecordType.OPEN,
        RecordType.CLICK,
    )
    assert opened.meta["first"] and not again.meta["first"] and click.meta["first"]
    assert opened.id == "ab-1" and opened.tenant_id == 7 and opened.recipient == "jane@example.com"
    assert opened.peer_address == ("", "203.0.113.9") and opened.nodeid == "n1"
    assert opened.meta["user_agent"] == BROWSER and opened.meta["machine"] is False
    assert opened.meta["event_id"] == "e5000.0"
    assert click.meta["url"] == "https://acme.test/a"
    assert "machine_reason" not in click.meta


def test_a_hit_the_store_has_seen_is_a_repeat() -> None:
    records = HitRecords(scanner_seconds=10, nodeid="n1", bursts=ClickBursts())
    assert not records.record(hit(TokenKind.OPEN, 5000.0), seen_in_store=True).meta["first"]


def test_machines_are_flagged_with_their_reason() -> None:
    records = HitRecords(scanner_seconds=10, nodeid="n1", bursts=ClickBursts())
    proxy = records.record(
        hit(TokenKind.OPEN, 5000.0, user_agent="GoogleImageProxy"), seen_in_store=False
    )
    assert proxy.meta["machine"] is True and proxy.meta["machine_reason"] == "google image proxy"
    early = records.record(hit(TokenKind.CLICK, 1003.0), seen_in_store=False)
    assert early.meta["machine_reason"] == "clicked within seconds of the send"
    head = records.record(hit(TokenKind.CLICK, 9000.0, method="HEAD"), seen_in_store=False)
    assert head.meta["machine_reason"] == "head request"


def test_an_unsubscribe_record_names_its_method() -> None:
    records = HitRecords(scanner_seconds=10, nodeid="n1", bursts=ClickBursts())
    record = records.record(
        hit(TokenKind.UNSUBSCRIBE, 5000.0, method="one-click"), seen_in_store=False
    )
    assert record.type is RecordType.UNSUBSCRIBE
    assert record.meta["method"] == "one-click" and record.meta["machine"] is False


def test_long_user_agents_are_cut() -> None:
    entry = hit(TokenKind.OPEN, 5000.0, user_agent="x" * 5000)
    assert len(entry["ua"]) == 512


@pytest.mark.parametrize(
    ("kind", "url", "agent"),
    [
        (TokenKind.CLICK, 'https://acme.test/a?q="x"&é=1\u2028', 'Bot "quoted" \\ é\x01' * 60),
        (TokenKind.OPEN, None, BROWSER),
        (TokenKind.UNSUBSCRIBE, None, ""),
    ],
)
def test_the_hot_paths_json_is_the_entrys(kind: TokenKind, url: str | None, agent: str) -> None:
    token = TokenClaims(kind, "ab-1", 7, 'jäne"@example.com', "click.acme.test", 1000, url)
    fields: dict[str, Any] = {
        "at": 1_764_000_000.123456,
        "address": "2001:db8::1",
        "user_agent": agent,
        "method": "HEAD",
        "prefetch": True,
        "event_id": "0a1b2c",
    }
    data = hit_json(hit_prefix(token), **fields)
    [entry], _ = frames(json_frame(data))
    assert entry == hit_entry(token, **fields)
    assert json_frame(data) == frame(hit_entry(token, **fields))


def test_event_ids_do_not_repeat() -> None:
    ids = EventIds("f00d")
    assert len({ids.next() for _ in range(1000)}) == 1000
