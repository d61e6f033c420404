"""Helpers for tests that run the local stack: bounded waits on observable conditions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, add the output of every local stack the test used (a fixture value with `output()`)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        output = getattr(value, "output", None)
        if callable(output):
            report.sections.append((f"local stack output ({name}, last 30000 characters)", str(output())[-30000:]))


class StackLog:
    """Log lines of an in-process stack, kept for the failure report."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def sink(self, function: str, line: str) -> None:
        self.lines.append(f"[{function}] {line}")

    def output(self) -> str:
        return "\n".join(self.lines)
