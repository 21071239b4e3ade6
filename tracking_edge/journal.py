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
happened, and reads start at 0.

The edge and the flusher may run in one process (``Journal``) or in two: the
edge appends through a ``JournalWriter`` and the flusher reads through a
``JournalReader`` on the same path, each the only one of its kind (``flock``
on ``<file>.writer`` and ``<file>.reader``). The reader truncates only while
it holds a lock on the file that the writer takes for each write, so no
append is lost to the truncation.

Frame encoding and decoding (``frame``, ``frames``) are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Entry = dict[str, Any]


READ_CHUNK = 1 << 20
"""Bytes read at once; a frame is far smaller (user agents and URLs are capped)."""


class JournalBusy(OSError):
    """Another process holds the journal."""


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def frame(entry: Entry) -> bytes:
    """One frame holding ``entry``."""
    return json_frame(_ENCODE(entry).encode("utf-8"))


def json_frame(data: bytes) -> bytes:
    """One frame holding the JSON object ``data`` (UTF-8, one line)."""
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
    """The append-only hit file at ``path``: appended to by the edge (``append``,
    ``durable``) and read back by the flusher (``read``, ``commit``), in one process.

    The edge and the flusher may also live in two processes: the edge's
    ``JournalWriter`` and the flusher's ``JournalReader`` on the same path.
    """

    def __init__(self, path: Path, *, fsync_seconds: float = 0.005) -> None:
        self._writer = JournalWriter(path, fsync_seconds=fsync_seconds)
        try:
            self._reader = JournalReader(path, before_read=self._writer.flush)
        except BaseException:
            self._writer.close()
            raise

    @property
    def committed(self) -> int:
        """Bytes of the file the store has."""
        return self._reader.committed

    def append(self, entry: Entry) -> None:
        """Add ``entry``; written before the loop's next iteration."""
        self._writer.append(entry)

    def append_frame(self, data: bytes) -> None:
        """Add a frame made by ``frame`` or ``json_frame``."""
        self._writer.append_frame(data)

    async def durable(self) -> None:
        """Until everything appended so far is on disk (fsynced)."""
        await self._writer.durable()

    def read(self, limit: int) -> tuple[list[Entry], int]:
        """Up to ``limit`` entries after the committed offset and the offset after them."""
        return self._reader.read(limit)

    def commit(self, offset: int) -> None:
        """The store has every entry before ``offset``; truncate the file once it has all."""
        self._reader.commit(offset)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


def _lock_file(path: Path, what: str) -> int:
    """The file descriptor of ``path``, exclusively locked; ``JournalBusy`` when taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(f"{path.with_suffix('')} is in use by another {what}") from None
    return fd


@contextlib.contextmanager
def _file_locked(fd: int) -> Iterator[None]:
    """The journal file itself locked: the writer's appends against the reader's truncation."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class JournalWriter:
    """The edge's side of the journal at ``path``: appends, fsyncs; one writer process."""

    def __init__(self, path: Path, *, fsync_seconds: float = 0.005) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = _lock_file(path.with_name(path.name + ".writer"), "writer")
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._fsync_seconds = fsync_seconds
        self._pending: list[bytes] = []
        self._dirty = False
        self._waiters: list[asyncio.Future[None]] = []
        self._syncing: asyncio.Task[None] | None = None
        with _file_locked(self._fd):
            self._cut_torn_tail(_read_offset(path, self._fd))

    def append(self, entry: Entry) -> None:
        """Add ``entry``; written before the loop's next iteration."""
        self.append_frame(frame(entry))

    def append_frame(self, data: bytes) -> None:
        """Add a frame made by ``frame`` or ``json_frame``; written before the loop's next
        iteration."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)

    async def durable(self) -> None:
        """Until everything appended so far is on disk (fsynced)."""
        self.flush()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.create_task(self._sync(), name="journal fsync")
        await waiter

    def flush(self) -> None:
        """Write what was appended (to the page cache)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            with _file_locked(self._fd):
                os.write(self._fd, data)
            self._dirty = True

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(OSError):
            os.fsync(self._fd)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        os.close(self._fd)
        os.close(self._owner)

    async def _sync(self) -> None:
        while self._waiters:
            await asyncio.sleep(self._fsync_seconds)
            waiters, self._waiters = self._waiters, []
            self.flush()
            if self._dirty:
                self._dirty = False
                await asyncio.to_thread(os.fsync, self._fd)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _cut_torn_tail(self, committed: int) -> None:
        size = os.fstat(self._fd).st_size
        at = committed
        while at < size:
            entries, used = frames(os.pread(self._fd, READ_CHUNK, at))
            if not entries:
                break
            at += used
        if at < size:
            os.ftruncate(self._fd, at)


class JournalReader:
    """The flusher's side of the journal at ``path``: reads from the committed offset,
    commits, empties the file once all is committed; one reader process.
    ``before_read`` is called first (a writer in the same process flushing)."""

    def __init__(self, path: Path, *, before_read: Callable[[], None] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = _lock_file(path.with_name(path.name + ".reader"), "reader")
        self._offset_path = path.with_name(path.name + ".offset")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._before_read = before_read
        self._committed = _read_offset(path, self._fd)

    @property
    def committed(self) -> int:
        """Bytes of the file the store has."""
        return self._committed

    def read(self, limit: int) -> tuple[list[Entry], int]:
        """Up to ``limit`` entries after the committed offset and the offset after them."""
        if self._before_read is not None:
            self._before_read()
        size = max(READ_CHUNK, 512 * limit)
        entries, used = frames(os.pread(self._fd, size, self._committed), limit)
        return entries, self._committed + used

    def commit(self, offset: int) -> None:
        """The store has every entry before ``offset``; truncate the file once it has all."""
        self._committed = offset
        if self._before_read is not None:
            self._before_read()
        if offset > 0:
            with _file_locked(self._fd):
                if offset >= os.fstat(self._fd).st_size:
                    os.ftruncate(self._fd, 0)
                    self._committed = 0
        tmp = self._offset_path.with_name(self._offset_path.name + ".tmp")
        tmp.write_text(f"{self._committed}\n")
        os.replace(tmp, self._offset_path)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._owner)


def _read_offset(path: Path, fd: int) -> int:
    """The committed offset kept beside ``path``; 0 when missing or past the file's end."""
    try:
        offset = int(path.with_name(path.name + ".offset").read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
    return offset if offset <= os.fstat(fd).st_size else 0
