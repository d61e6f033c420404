"""Helpers for tests that run the local stack: bounded waits on observable conditions."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for[T](probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # poll interval of a bounded wait on a condition
