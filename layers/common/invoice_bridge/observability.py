"""Logger, Tracer and Metrics shared by every function, configured by the POWERTOOLS_* variables."""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
tracer = Tracer()
metrics = Metrics()
_emit = {"metrics": True}


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
    """Record a level (a count of things open now) under `name`."""
    if not _emit["metrics"]:
        return
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
