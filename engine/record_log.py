"""The JSON-lines file of log records: one record per line, appended.

Written after the store has committed the same records, so the file never
shows a record the store does not have. An empty path disables the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from engine.records import Record

log = logging.getLogger(__name__)


class RecordLog:
    def __init__(self, path: str) -> None:
        self._file: TextIO | None = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, records: Sequence[Record]) -> None:
        if self._file is None or not records:
            return
        try:
            self._file.write("".join(r.to_json_line() + "\n" for r in records))
            self._file.flush()
        except OSError:
            log.exception("cannot append %d records to the record log", len(records))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
