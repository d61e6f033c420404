"""The shared observability objects as the operator CLI uses them outside Lambda."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools import Tracer

from invoice_bridge import observability
from invoice_bridge.observability import count, gauge, logger, metrics, observe, quiet_for_command_line
from sandbox.lambda_host import LocalLambdaContext


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


def test_with_tracing_off_the_tracer_is_disabled_and_loads_no_xray_sdk() -> None:
    # A fresh interpreter, as a cold start: importing the layer with tracing off must not pay for the X-Ray SDK
    probe = (
        "import sys; from invoice_bridge.observability import tracer; "
        "print(bool(tracer.disabled), 'aws_xray_sdk.core' in sys.modules)"
    )
    # The layer this test imported (the source tree, or a mutation run's copy), not whatever is installed.
    layer_root = str(Path(observability.__file__).resolve().parents[1])
    environment = {
        **os.environ,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join([layer_root, *sys.path]),
    }
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True, timeout=60
    )
    assert answer.stdout.split() == ["True", "False"]


@pytest.fixture
def fresh_tracer_config() -> Iterator[None]:
    """Powertools keeps the tracer's settings on the class; a test that builds one puts them back after."""
    saved = dict(Tracer._config)
    Tracer._config = dict(Tracer._default_config)
    yield
    Tracer._config = saved


def test_with_tracing_off_the_tracer_is_built_disabled_on_the_provider_that_records_nothing(
    fresh_tracer_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    tracer = observability._tracer()
    assert tracer.disabled is True
    assert isinstance(tracer.provider, observability.DisabledTracingProvider)


def emf_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]


def test_a_count_with_dimensions_is_one_occurrence_in_the_bundles_namespace_with_its_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    count("DocumentSynced", {"destination": "quipu"})
    (line,) = emf_lines(capsys.readouterr().out)
    directive = cast(Any, line["_aws"])["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "InvoiceBridge"
    assert (line["DocumentSynced"], line["destination"], line["service"]) == ([1.0], "quipu", "webhook-receiver")


def test_a_duration_is_recorded_in_the_bundles_namespace_with_its_service(capsys: pytest.CaptureFixture[str]) -> None:
    observe("PlatformLatency", 12.0, {"platform": "quipu"})
    (line,) = emf_lines(capsys.readouterr().out)
    assert cast(Any, line["_aws"])["CloudWatchMetrics"][0]["Namespace"] == "InvoiceBridge"
    assert (line["PlatformLatency"], line["platform"], line["service"]) == ([12.0], "quipu", "webhook-receiver")


def test_counts_and_gauges_without_dimensions_wait_for_the_handlers_flush() -> None:
    metrics.clear_metrics()
    count("WebhookReceived")
    gauge("TuimprentaOpenBatches", 3)
    assert metrics.metric_set["WebhookReceived"]["Value"] == [1.0]
    assert metrics.metric_set["TuimprentaOpenBatches"]["Value"] == [3.0]
    metrics.clear_metrics()


def test_a_level_of_zero_is_not_published() -> None:
    metrics.clear_metrics()
    gauge("TuimprentaOpenBatches", 0)
    assert "TuimprentaOpenBatches" not in metrics.metric_set
    metrics.clear_metrics()


def test_the_command_line_records_no_gauge(quiet: None) -> None:
    metrics.clear_metrics()
    gauge("TuimprentaOpenBatches", 3)
    assert "TuimprentaOpenBatches" not in metrics.metric_set


def test_a_handlers_lines_carry_the_request_id_and_not_the_keys_other_sources_give(log_stream: io.StringIO) -> None:
    # Given a handler wrapped as the four functions' are, invoked twice (two requests of one container)
    @observability.logged_invocation
    def handler(event: dict[str, str], context: object) -> None:
        logger.append_keys(object_id=event["object_id"])
        logger.info("document synced")

    handler({"object_id": "inv_1"}, LocalLambdaContext("QuipuSyncFunction", 256, "req-1", 0))
    handler({"object_id": "inv_2"}, LocalLambdaContext("QuipuSyncFunction", 256, "req-2", 0))
    first, second = (json.loads(line) for line in log_stream.getvalue().splitlines())
    # Then each line names its request and object, the second none of the first's keys
    assert (first["function_request_id"], first["object_id"]) == ("req-1", "inv_1")
    assert (second["function_request_id"], second["object_id"]) == ("req-2", "inv_2")
    assert {"level", "message", "timestamp", "service", "cold_start"} <= first.keys()
    # and none of the keys the log group, the REPORT line or the code already tell (about 190 bytes a line)
    for line in (first, second):
        assert not set(observability.DROPPED_LOG_KEYS) & line.keys()
