"""The shared observability objects as the operator CLI uses them outside Lambda."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from invoice_bridge import observability
from invoice_bridge.observability import count, logger, observe, quiet_for_command_line


@pytest.fixture
def quiet() -> Iterator[None]:
    level = logger.log_level
    quiet_for_command_line()
    yield
    observability._emit["metrics"] = True
    logger.setLevel(level)


def test_the_command_line_prints_no_metrics_and_only_warnings(
    quiet: None, log_stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    count("DocumentSynced", {"destination": "quipu"})
    count("WebhookReceived")
    observe("PlatformLatency", 12.0, {"platform": "quipu"})
    logger.info("progress detail")
    logger.warning("something to look at")
    assert capsys.readouterr().out == ""
    assert logger.log_level == logging.WARNING
    assert "progress detail" not in log_stream.getvalue()
    assert "something to look at" in log_stream.getvalue()


def test_functions_emit_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    count("DocumentSynced", {"destination": "quipu"})
    assert '"DocumentSynced"' in capsys.readouterr().out
