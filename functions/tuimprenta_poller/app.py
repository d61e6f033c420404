"""TuimprentaPollerFunction: on a schedule, submit queued sales invoices in batches and record their outcomes."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.http import Deadline
from invoice_bridge.observability import logged_invocation, metrics, tracer
from invoice_bridge.tuimprenta.poller import TuimprentaPoller
from invoice_bridge.tuimprenta.settings import TuimprentaPollerSettings


@cache
def poller() -> TuimprentaPoller:
    """Built on the first invocation: settings validated once, clients injectable before it."""
    return TuimprentaPoller.from_settings(TuimprentaPollerSettings.from_env())


@logged_invocation
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for the EventBridge schedule: one bounded run of the poller."""
    return poller().run(Deadline.from_context(context)).as_dict()
