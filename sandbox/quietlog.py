"""The local stack's log lines for people: no EMF metric blobs and no poller run that did nothing."""

from __future__ import annotations

import json
from collections.abc import Callable

# A poller run's report fields that say nothing happened when all are zero or empty (iterations always counts).
IDLE_REPORT_IGNORES = frozenset({"iterations", "skipped"})


def worth_showing(line: str) -> bool:
    """False for a metric blob (`{"_aws": ...}`, what CloudWatch reads, not people) or an idle poller run."""
    if not line.startswith("{"):
        return True
    try:
        document = json.loads(line)
    except ValueError:
        return True
    if not isinstance(document, dict):
        return True
    if "_aws" in document:
        return False
    report = document.get("report")
    if document.get("message") == "poller run done" and isinstance(report, dict):
        return any(value for key, value in report.items() if key not in IDLE_REPORT_IGNORES)
    return True


def quiet(sink: Callable[[str, str], None]) -> Callable[[str, str], None]:
    """`sink`, passed only the lines worth showing."""

    def filtered(function: str, line: str) -> None:
        if worth_showing(line):
            sink(function, line)

    return filtered
