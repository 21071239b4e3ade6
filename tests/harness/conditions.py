"""Waiting on a condition with a deadline, for work another task or process does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str = "the condition", seconds: float = 15.0
) -> None:
    """Return once ``condition`` holds; fail naming ``what`` after ``seconds`` of real time."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        await asyncio.sleep(0.02)
