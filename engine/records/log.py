"""The JSON-lines file of log records: one record per line, appended.

Written after the store has committed the same records, so the file never
shows a record the store does not have. An empty path disables the file.
Each batch goes out in one ``write`` on a descriptor opened with
``O_APPEND``, so the engine processes sharing the file never interleave
within a line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from engine.records.record import Record

log = logging.getLogger(__name__)


class RecordLog:
    def __init__(self, path: str) -> None:
        self._fd = -1
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, records: Sequence[Record]) -> None:
        if self._fd < 0 or not records:
            return
        data = "".join([r.to_json_line() + "\n" for r in records]).encode()
        try:
            written = os.write(self._fd, data)
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            log.exception("cannot append %d records to the record log", len(records))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
