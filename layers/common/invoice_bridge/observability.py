"""Logger, Tracer and Metrics shared by every function, configured by the POWERTOOLS_* variables."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _NoSegment(BaseSegment):
    """What a disabled tracer records into: nothing."""

    def close(self, end_time: int | None = None) -> None:
        """Nothing to close."""

    def add_subsegment(self, subsegment: Any) -> None:
        """Nothing recorded."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Nothing recorded."""

    def put_annotation(self, key: str, value: Any) -> None:
        """Nothing recorded."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Nothing recorded."""

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        """Nothing recorded."""


class DisabledTracingProvider(BaseProvider):
    """The tracer's provider where tracing is off (outside Lambda, POWERTOOLS_TRACE_DISABLED, tests).

    Powertools' default provider imports the X-Ray SDK (aws_xray_sdk.core, which loads botocore's session
    machinery) even when tracing is disabled; this one imports nothing, so a cold start with tracing off
    pays only for what it uses. With tracing on, the X-Ray SDK provider is used as before.
    """

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        """A segment that records nothing."""
        yield _NoSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncGenerator[BaseSegment, None]:
        """A segment that records nothing."""
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        """Nothing recorded."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Nothing recorded."""

    def patch(self, modules: Sequence[str]) -> None:
        """Nothing to patch."""

    def patch_all(self) -> None:
        """Nothing to patch."""


def _tracer() -> Tracer:
    # Powertools' own rule for "tracing is off" (POWERTOOLS_TRACE_DISABLED, outside Lambda, SAM local).
    if Tracer._is_tracer_disabled():
        return Tracer(disabled=True, provider=DisabledTracingProvider())
    return Tracer()


logger = Logger()
tracer = _tracer()
metrics = Metrics()
_emit = {"metrics": True}

# Of Powertools' per-line keys, those another source already gives: the log group names the function, the
# REPORT line its memory, and a line's place in the code is not what an operator searches by. About 190 bytes
# of every line, and CloudWatch bills each ingested byte.
DROPPED_LOG_KEYS = ("location", "function_name", "function_arn", "function_memory_size")


def logged_invocation[R](handler: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
    """Powertools' `inject_lambda_context(clear_state=True)` without the keys in DROPPED_LOG_KEYS."""
    inject = logger.inject_lambda_context(clear_state=True)

    def trimmed(event: Any, context: Any) -> R:
        logger.remove_keys(DROPPED_LOG_KEYS)
        return handler(event, context)

    return functools.wraps(handler)(inject(trimmed))


def quiet_for_command_line() -> None:
    """For tools that reuse the layer outside Lambda: no metric lines on stdout, only warnings logged."""
    _emit["metrics"] = False
    logger.setLevel("WARNING")


def count(name: str, dimensions: Mapping[str, str] | None = None) -> None:
    """Count one occurrence of `name`; with dimensions it is flushed on its own so they do not leak."""
    if not _emit["metrics"]:
        return
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        return
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        for key, value in dimensions.items():
            metric.add_dimension(name=key, value=value)


# The service dimension of a series that stands for something every function shares (a credential), so the
# template's one alarm on it reads one series whichever function published it.
BUNDLE_SERVICE = "invoice-bridge"


def count_for_bundle(name: str, dimensions: Mapping[str, str]) -> None:
    """Count one occurrence of `name` under the bundle's service rather than the function's."""
    count(name, {**dimensions, "service": BUNDLE_SERVICE})


def observe(name: str, value: float, dimensions: Mapping[str, str] | None = None) -> None:
    """Record a duration in milliseconds under `name` (flushed on its own with its dimensions)."""
    if not _emit["metrics"]:
        return
    with single_metric(
        name=name,
        unit=MetricUnit.Milliseconds,
        value=value,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        for key, item in (dimensions or {}).items():
            metric.add_dimension(name=key, value=item)


def gauge(name: str, value: float) -> None:
    """Record a level (a count of things open now) under `name`; a level of zero is not published.

    A custom metric is billed for every hour it is published in ($0.30 a month if always): a gauge the idle
    scheduled poller set to 0 every minute was a fixed cost. No data point reads as nothing open.
    """
    if not _emit["metrics"] or not value:
        return
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
