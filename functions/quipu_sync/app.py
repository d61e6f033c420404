"""QuipuSyncFunction: BuildNexion supplier invoice events from QuipuQueue become Quipu expense invoices."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.observability import logged_invocation, metrics, tracer
from invoice_bridge.quipu.settings import QuipuSyncSettings
from invoice_bridge.quipu.worker import QuipuWorker


@cache
def worker() -> QuipuWorker:
    """Built on the first invocation: settings validated once, clients injectable before it."""
    return QuipuWorker.from_settings(QuipuSyncSettings.from_env())


@logged_invocation
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for QuipuQueue's event source mapping (partial batch responses)."""
    return worker().handle(event, context)
