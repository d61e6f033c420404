"""FacturaDirectaExporterFunction: purchase order events from FacturaDirectaQueue become FacturaDirecta orders."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.facturadirecta.exporter import ExporterFunction, FacturaDirectaExporter
from invoice_bridge.facturadirecta.settings import FacturaDirectaSettings
from invoice_bridge.observability import logged_invocation, metrics, tracer


@cache
def exporter() -> ExporterFunction:
    """Built on the first invocation: settings validated once, clients injectable before it."""
    return FacturaDirectaExporter.from_settings(FacturaDirectaSettings.from_env())


@logged_invocation
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for the SQS event source (partial batch responses)."""
    return exporter().handle(event, context)
