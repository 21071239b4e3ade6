"""Process-table lookups under /proc (Linux) for tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def child_pids(parent: int) -> set[int]:
    """The live (not zombie) processes whose parent is ``parent``."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        state = process_state(int(entry.name))
        if state is not None and state[1] == parent and state[0] != "Z":
            found.add(int(entry.name))
    return found


def process_state(pid: int) -> tuple[str, int] | None:
    """The state letter and parent pid of ``pid``; None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def exited(pids: set[int]) -> bool:
    """Whether none of ``pids`` is still running (zombies count as exited)."""
    return all((state := process_state(pid)) is None or state[0] == "Z" for pid in pids)
