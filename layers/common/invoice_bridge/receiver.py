"""The webhook receiver: verify, dedupe, route, enqueue. No invoicing platform is called here.

Dedupe: a BuildNexion event id is recorded in the state table once its message is on the queue (one
conditional write), and a delivery whose id is recorded is answered `duplicate` without enqueueing.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from pydantic import BaseModel, ValidationError

from invoice_bridge.aws import AwsClients
from invoice_bridge.buildnexion import signature as buildnexion_signature
from invoice_bridge.buildnexion.models import EventHead, WebhookEvent
from invoice_bridge.config import ReceiverSettings, describe_validation_error
from invoice_bridge.errors import InvalidPayload, PayloadTooLarge, SignatureError
from invoice_bridge.observability import count, logger
from invoice_bridge.queues import QueuePublisher
from invoice_bridge.secrets import BuildNexionSecret, SecretReader, TuimprentaSecret
from invoice_bridge.store import StateStore
from invoice_bridge.tuimprenta import signature as tuimprenta_signature

if TYPE_CHECKING:
    from invoice_bridge.tuimprenta.webhook import TuimprentaEvent

MAX_BODY_BYTES = 256 * 1024

Outcome = Literal["accepted", "duplicate", "ignored", "recorded"]


@dataclass(frozen=True)
class Receipt:
    """What became of one webhook delivery."""

    outcome: Outcome
    event_id: str
    destination: str | None = None

    def as_body(self) -> dict[str, str]:
        """The JSON answer: enough for the sender's logs, nothing from the event's content."""
        body = {"status": self.outcome, "event_id": self.event_id}
        if self.destination:
            body["destination"] = self.destination
        return body


def base64_decoded_size(text: str) -> int:
    """How many bytes base64 `text` decodes to, computed without decoding it."""
    padding = len(text[-2:]) - len(text[-2:].rstrip("="))
    return len(text) * 3 // 4 - padding


def raw_body(body: str | None, is_base64_encoded: bool) -> bytes:
    """The request body exactly as sent, which is what the signatures cover; size is checked first."""
    if body is None:
        return b""
    if not is_base64_encoded:
        return body.encode("utf-8")
    # Size before anything else, as README promises: an oversized body is 413 even when it is not base64.
    check_size_of(base64_decoded_size(body))
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise InvalidPayload("body", "is not valid base64") from None


def check_size_of(size: int) -> None:
    """Refuse a body of `size` bytes when it is over the limit."""
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge(size, MAX_BODY_BYTES)


def check_size(body: bytes) -> None:
    """Refuse a body over the limit before anything reads it."""
    check_size_of(len(body))


def decode_body(body: bytes) -> str:
    """The body as text: webhooks are UTF-8 JSON, and the queue message carries exactly this text."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("body", "is not UTF-8 text") from None


MAX_NUMBER_CHARS = 64
MAX_DEPTH = 64


def _parse_int(text: str) -> int:
    # Checked before int(): Python refuses over 4,300 digits with a ValueError, and far fewer are never an id,
    # a timestamp or an amount.
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidPayload("body", f"has a number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _parse_float(text: str) -> Decimal:
    # Decimal, not float: the value is never rounded, and an exponent like 1e999 stays finite text.
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidPayload("body", f"has a number longer than {MAX_NUMBER_CHARS} characters")
    return Decimal(text)


def _refuse_constant(name: str) -> Any:
    raise InvalidPayload("body", f"{name} is not JSON")


def _depth(document: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_json_object(text: str) -> dict[str, Any]:
    """The text as a JSON object, or InvalidPayload (also for numbers or nesting Python cannot hold)."""
    try:
        document = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise InvalidPayload("body", "is not valid JSON") from None
    except RecursionError:
        raise InvalidPayload("body", f"is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(document, dict):
        raise InvalidPayload("body", "must be a JSON object")
    if _depth(document) > MAX_DEPTH:
        raise InvalidPayload("body", f"is nested deeper than {MAX_DEPTH} levels")
    return document


def _validated[ModelT: BaseModel](model: type[ModelT], document: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidPayload(*describe_validation_error(exc)) from None


def parse_buildnexion_head(document: dict[str, Any]) -> EventHead:
    """The envelope's id, type and created, validated; InvalidPayload names the bad field."""
    return _validated(EventHead, document)


def parse_buildnexion_event(document: dict[str, Any]) -> WebhookEvent:
    """A routed envelope, validated down to its object's kind, id and version."""
    event = _validated(WebhookEvent, document)
    if event.data.object.object != event.object_kind():
        raise InvalidPayload("data.object.object", f"must be '{event.object_kind()}' for a {event.type} event")
    return event


def parse_tuimprenta_event(body: bytes) -> TuimprentaEvent:
    """tuimprenta's event, validated; InvalidPayload names the first bad field."""
    # Imported here: tuimprenta's route serves one delivery per batch outcome, BuildNexion's serve the rest.
    from invoice_bridge.tuimprenta.webhook import TuimprentaEvent

    return _validated(TuimprentaEvent, parse_json_object(decode_body(body)))


class WebhookReceiver:
    """Turns verified webhook deliveries into queue messages (BuildNexion) or poller hints (tuimprenta)."""

    def __init__(
        self,
        *,
        settings: ReceiverSettings,
        secrets: SecretReader,
        publisher: QueuePublisher,
        state: StateStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._publisher = publisher
        self._state = state
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: ReceiverSettings, clients: AwsClients | None = None) -> WebhookReceiver:
        """The receiver wired to real AWS clients."""
        clients = clients or AwsClients(boto3.session.Session())
        return cls(
            settings=settings,
            secrets=SecretReader(
                SecretsProvider(boto3_client=clients.secretsmanager()), settings.secrets_max_age_seconds
            ),
            publisher=QueuePublisher(clients.sqs(), settings.queue_urls()),
            state=StateStore(clients.dynamodb(), settings.state_table_name),
        )

    def receive_buildnexion(self, signature: str | None, body: bytes) -> Receipt:
        """Verify a BuildNexion delivery and enqueue its event once; unknown types are ignored."""
        check_size(body)
        secret_id = self._settings.buildnexion_secret_id
        for last_try in (False, True):
            secret = self._secrets.read(secret_id, BuildNexionSecret, "buildnexion")
            try:
                buildnexion_signature.verify_signature(
                    signature, body, [s.get_secret_value() for s in secret.webhook_secrets], now=self._clock()
                )
                break
            except SignatureError as exc:
                # A secret added by a rotation since this container read them: read them again (at most once
                # a minute however many deliveries fail), then check once more.
                if last_try or exc.reason != "signature_mismatch" or not self._secrets.refused(secret_id):
                    raise
        text = decode_body(body)
        document = parse_json_object(text)
        head = parse_buildnexion_head(document)
        logger.set_correlation_id(head.id)
        logger.append_keys(event_type=head.type)
        destination = self._settings.routes().get(head.type)
        if destination is None:
            # Answered 200 so BuildNexion does not retry an event this bundle will never handle.
            logger.info("event type not routed; ignored")
            count("WebhookIgnored")
            return Receipt("ignored", head.id)
        event = parse_buildnexion_event(document)
        logger.append_keys(object_id=event.data.object.id)
        if self._state.enqueued(event.id, self._clock()):
            logger.info("event already enqueued")
            count("WebhookDuplicate")
            return Receipt("duplicate", event.id, destination.value)
        message_id = self._publisher.publish(destination, event, text)
        if not self._state.remember_enqueued(
            event.id, destination.value, message_id, self._clock(), self._settings.idempotency_ttl_seconds
        ):
            # A concurrent delivery enqueued it too and recorded it first; on a FIFO queue its deduplication id
            # (the event id) made both one message, on a standard one the worker's ledger skips the second.
            logger.info("event enqueued by a concurrent delivery too")
            count("WebhookDuplicate")
            return Receipt("duplicate", event.id, destination.value)
        # Not a metric of ours: the queue's own NumberOfMessagesSent (free) counts what was enqueued per
        # destination, where an EMF blob per delivery cost log bytes and three $0.30-a-month series.
        logger.info("event enqueued", extra={"destination": destination.value})
        return Receipt("accepted", event.id, destination.value)

    def receive_tuimprenta(self, signature: str | None, body: bytes) -> Receipt:
        """Verify a tuimprenta delivery and record it for the batch poller."""
        check_size(body)
        if not self._settings.tuimprenta_secret_id:
            raise InvalidPayload("route", "tuimprenta is not deployed on this stack (DeployTuimprenta=false)")
        secret_id = self._settings.tuimprenta_secret_id
        for last_try in (False, True):
            secret = self._secrets.read(secret_id, TuimprentaSecret, "tuimprenta")
            try:
                tuimprenta_signature.verify_signature(signature, body, secret.webhook_secret.get_secret_value())
                break
            except SignatureError as exc:
                if last_try or exc.reason != "signature_mismatch" or not self._secrets.refused(secret_id):
                    raise
        event = parse_tuimprenta_event(body)
        from invoice_bridge.tuimprenta.events import TuimprentaEventItem, record_tuimprenta_event
        from invoice_bridge.tuimprenta.webhook import check_age

        logger.set_correlation_id(event.id)
        logger.append_keys(event_type=event.type)
        received_at = datetime.fromtimestamp(self._clock(), tz=UTC)
        check_age(event, received_at)
        if not record_tuimprenta_event(self._state, TuimprentaEventItem.from_event(event, received_at)):
            logger.info("tuimprenta event already recorded")
            return Receipt("duplicate", event.id)
        logger.info("tuimprenta event recorded for the poller")
        return Receipt("recorded", event.id)
