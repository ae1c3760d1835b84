"""Waiting for a condition with a deadline: the only way tests synchronise."""

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.05


async def eventually(probe: Callable[[], Any], until: Callable[[Any], bool], *, within: float, what: str) -> Any:
    """Call `probe` (sync or async) until `until(result)` holds; fail with the last result
    after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = probe()
        result = await outcome if inspect.isawaitable(outcome) else outcome
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {result!r}")
        await asyncio.sleep(POLL_S)  # polling interval, not synchronisation


def eventually_sync(probe: Callable[[], Any], until: Callable[[Any], bool], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {result!r}")
        threading.Event().wait(POLL_S)  # polling interval, not synchronisation
