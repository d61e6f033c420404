"""WebhookReceiverFunction: BuildNexion and tuimprenta webhooks in, verified events out onto the queues."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER as BUILDNEXION_SIGNATURE
from invoice_bridge.config import ReceiverSettings
from invoice_bridge.errors import InvalidPayload, PayloadTooLarge, SignatureError, WebhookRejected
from invoice_bridge.observability import count, logged_invocation, logger, metrics, tracer
from invoice_bridge.receiver import Receipt, WebhookReceiver, raw_body
from invoice_bridge.snapstart import register_after_restore_hooks
from invoice_bridge.tuimprenta.signature import SIGNATURE_HEADER as TUIMPRENTA_SIGNATURE

app = APIGatewayHttpResolver()
# With SnapStart on, restored environments reseed `random` (retry jitter); without it this registers nothing.
register_after_restore_hooks()


@cache
def receiver() -> WebhookReceiver:
    """Built on the first invocation: settings validated once, clients injectable before it."""
    return WebhookReceiver.from_settings(ReceiverSettings.from_env())


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _ok(receipt: Receipt) -> Response[str]:
    return _json(200, receipt.as_body())


@app.post("/webhooks/buildnexion")
def buildnexion_webhook() -> Response[str]:
    event = app.current_event
    body = raw_body(event.body, bool(event.is_base64_encoded))
    return _ok(receiver().receive_buildnexion(event.headers.get(BUILDNEXION_SIGNATURE), body))


@app.post("/webhooks/tuimprenta")
def tuimprenta_webhook() -> Response[str]:
    event = app.current_event
    body = raw_body(event.body, bool(event.is_base64_encoded))
    return _ok(receiver().receive_tuimprenta(event.headers.get(TUIMPRENTA_SIGNATURE), body))


def _rejected(exc: WebhookRejected, status: int, body: dict[str, Any]) -> Response[str]:
    logger.warning("webhook rejected", extra={"reason": exc.reason, "status": status})
    count("WebhookRejected", {"reason": exc.reason})
    return _json(status, body)


@app.exception_handler(SignatureError)
def unauthorized(exc: SignatureError) -> Response[str]:
    return _rejected(exc, 401, {"message": "Unauthorized"})


@app.exception_handler(PayloadTooLarge)
def too_large(exc: PayloadTooLarge) -> Response[str]:
    return _rejected(exc, 413, {"message": "Payload Too Large"})


@app.exception_handler(InvalidPayload)
def invalid(exc: InvalidPayload) -> Response[str]:
    return _rejected(exc, 400, {"message": exc.message, "field": exc.field})


@logged_invocation
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for the HTTP API's two webhook routes."""
    return app.resolve(event, context)
