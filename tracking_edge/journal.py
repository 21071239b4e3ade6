"""The edge's durable buffer: an append-only local file of hits, read back by the flusher.

Every hit the edge serves (an open, a click, an unsubscribe) is appended
here before it goes to the store, so the edge serves from tokens alone and
loses nothing while the store is down. Frames are lines::

    <CRC-32 of the JSON, 8 lowercase hex> <JSON object>\\n

Appends made in one event-loop iteration are written together before the
next (``os.write``, page cache: a crashed process loses none of them); the
file is fsynced at most every ``fsync_seconds`` in a worker thread, and
``durable()`` waits for the fsync covering what was appended before it (an
unsubscribe waits; opens and clicks do not, so a power loss may drop the
last interval of them).

The flusher's progress is the committed offset, kept in ``<file>.offset``
(written to a temporary file and renamed). Reading starts there and stops
at the first torn or corrupt frame: a crash mid-write leaves a tail that is
cut off when the journal opens again. Once everything is committed the file
is truncated (``compact``); an offset beyond the file's end means that
happened, and reads start at 0. One process owns a journal (``flock``).

Frame encoding and decoding (``frame``, ``frames``) are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import zlib
from pathlib import Path
from typing import Any

Entry = dict[str, Any]


READ_CHUNK = 1 << 20
"""Bytes read at once; a frame is far smaller (user agents and URLs are capped)."""


class JournalBusy(OSError):
    """Another process holds the journal."""


def frame(entry: Entry) -> bytes:
    """One frame holding ``entry``."""
    data = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(data), data)


def frames(data: bytes, limit: int | None = None) -> tuple[list[Entry], int]:
    """The entries of the whole frames at the start of ``data`` (at most ``limit``) and
    the bytes they span; the first torn or corrupt frame ends them."""
    entries: list[Entry] = []
    at = 0
    while limit is None or len(entries) < limit:
        end = data.find(b"\n", at)
        if end < 0 or end - at < 10 or data[at + 8 : at + 9] != b" ":
            return entries, at
        body = data[at + 9 : end]
        try:
            if int(data[at : at + 8], 16) != zlib.crc32(body):
                return entries, at
            entry = json.loads(body)
        except ValueError:
            return entries, at
        if not isinstance(entry, dict):
            return entries, at
        entries.append(entry)
        at = end + 1
    return entries, at


class Journal:
    """The append-only hit file at ``path`` and its committed offset."""

    def __init__(self, path: Path, *, fsync_seconds: float = 0.005) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._offset_path = path.with_name(path.name + ".offset")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise JournalBusy(f"{path} is in use by another process") from None
        self._fsync_seconds = fsync_seconds
        self._pending: list[bytes] = []
        self._dirty = False
        self._waiters: list[asyncio.Future[None]] = []
        self._syncing: asyncio.Task[None] | None = None
        self._committed = self._read_offset()
        self._cut_torn_tail()

    @property
    def committed(self) -> int:
        """Bytes of the file the store has."""
        return self._committed

    def append(self, entry: Entry) -> None:
        """Add ``entry``; written before the loop's next iteration."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._write)
        self._pending.append(frame(entry))

    async def durable(self) -> None:
        """Until everything appended so far is on disk (fsynced)."""
        self._write()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.create_task(self._sync(), name="journal fsync")
        await waiter

    def read(self, limit: int) -> tuple[list[Entry], int]:
        """Up to ``limit`` entries after the committed offset and the offset after them."""
        self._write()
        size = max(READ_CHUNK, 512 * limit)
        entries, used = frames(os.pread(self._fd, size, self._committed), limit)
        return entries, self._committed + used

    def commit(self, offset: int) -> None:
        """The store has every entry before ``offset``; truncate the file once it has all."""
        self._committed = offset
        self._write()
        if offset >= os.fstat(self._fd).st_size and offset > 0:
            os.ftruncate(self._fd, 0)
            self._committed = 0
        tmp = self._offset_path.with_name(self._offset_path.name + ".tmp")
        tmp.write_text(f"{self._committed}\n")
        os.replace(tmp, self._offset_path)

    def close(self) -> None:
        self._write()
        with contextlib.suppress(OSError):
            os.fsync(self._fd)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        os.close(self._fd)

    def _write(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            os.write(self._fd, data)
            self._dirty = True

    async def _sync(self) -> None:
        while self._waiters:
            await asyncio.sleep(self._fsync_seconds)
            waiters, self._waiters = self._waiters, []
            self._write()
            if self._dirty:
                self._dirty = False
                await asyncio.to_thread(os.fsync, self._fd)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _read_offset(self) -> int:
        try:
            offset = int(self._offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        return offset if offset <= os.fstat(self._fd).st_size else 0

    def _cut_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        at = self._committed
        while at < size:
            entries, used = frames(os.pread(self._fd, READ_CHUNK, at))
            if not entries:
                break
            at += used
        if at < size:
            os.ftruncate(self._fd, at)
