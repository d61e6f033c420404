"""The SQS edge of every worker: one place that maps a record's outcome to the queue.

- success: the record is deleted by Lambda;
- a retryable error (network, 5xx, 429, a rate-limit slot or lease not available, token expiry): the record
  goes back to the queue, its visibility set to the backoff the error asked for, and, on a FIFO queue,
  the rest of its group goes back with it so nothing overtakes it;
- a permanent error (the platform's validation, a fiscal rejection): the record is sent to the
  dead-letter queue at once with the reason as attributes, counted, and deleted from the source queue.
A retryable failure on the record's last receive (MAX_RECEIVE_COUNT, its queue's maxReceiveCount) is
dead-lettered with its reason. Anything else (a bug) fails the record; SQS's redrive policy dead-letters it
after maxReceiveCount.
"""

from __future__ import annotations

import decimal
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.sqs_fifo_partial_processor import SqsFifoPartialProcessor
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from invoice_bridge.buildnexion.models import WebhookEvent
from invoice_bridge.config import describe_validation_error
from invoice_bridge.errors import DependencyUnavailable, PermanentSyncError, SyncError
from invoice_bridge.http import Deadline
from invoice_bridge.money import AmountError
from invoice_bridge.observability import count, logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        MessageAttributeValueTypeDef,
    )

# SQS caps a message's visibility timeout at 12 hours; retries never wait longer than 15 minutes.
MAX_BACKOFF_SECONDS = 900
BASE_BACKOFF_SECONDS = 5


def backoff_seconds(receive_count: int, retry_after: float | None) -> int:
    """Visibility for a retried record: what the platform asked, else exponential in the receive count."""
    if retry_after is not None:
        delay = retry_after + random.uniform(0.0, 1.0)  # noqa: S311 - jitter, not cryptographic
    else:
        delay = BASE_BACKOFF_SECONDS * 2 ** max(0, receive_count - 1) * random.uniform(0.8, 1.2)  # noqa: S311
    return max(1, min(MAX_BACKOFF_SECONDS, math.ceil(delay)))


def parse_event(record: SQSRecord) -> WebhookEvent:
    """The BuildNexion envelope a record carries (the receiver enqueued it verified); permanent if broken."""
    return parse_body(record.body)


def parse_body(body: str) -> WebhookEvent:
    """The BuildNexion envelope of a queue message's body; `malformed_message` (permanent) if broken.

    Every destination reads its queue through this one function: the SQS workers via `parse_event`, the
    tuimprenta poller, which receives its messages itself, directly.
    """
    try:
        return WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        field, message = describe_validation_error(exc)
        raise PermanentSyncError(f"message body: {field}: {message}", code="malformed_message") from None


def parse_object[M: BaseModel](event: WebhookEvent, model: type[M], event_types: frozenset[str]) -> M:
    """The event's object as a destination's model; `unexpected_event` or `malformed_message` (permanent)."""
    if event.type not in event_types:
        raise PermanentSyncError(f"event type {event.type} is not for this destination", code="unexpected_event")
    try:
        return model.model_validate(event.data.object.model_dump())
    except ValidationError as exc:
        field, message = describe_validation_error(exc)
        raise PermanentSyncError(f"message body: data.object.{field}: {message}", code="malformed_message") from None


@dataclass(frozen=True)
class Failure:
    """Why a record was dead-lettered."""

    code: str
    message: str


class DeadLetters:
    """Sends a record to its dead-letter queue with the reason, keeping group and dedupe ids on FIFO."""

    def __init__(self, sqs: SQSClient, queue_url: str, destination: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._destination = destination

    def send(
        self,
        body: str,
        attributes: dict[str, str],
        failure: Failure,
        *,
        group_id: str | None,
        dedupe_id: str | None,
        receive_count: int,
    ) -> None:
        """Dead-letter one message now."""
        message_attributes: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items() if value
        }
        message_attributes.update(
            {
                "destination": {"DataType": "String", "StringValue": self._destination},
                "error_code": {"DataType": "String", "StringValue": failure.code or "unknown"},
                "error_message": {"DataType": "String", "StringValue": (failure.message or "-")[:1000]},
                "failed_at": {"DataType": "String", "StringValue": datetime.now(UTC).isoformat()},
                "attempts": {"DataType": "Number", "StringValue": str(max(1, receive_count))},
            }
        )
        request: dict[str, Any] = {"QueueUrl": self._url, "MessageBody": body, "MessageAttributes": message_attributes}
        if self._url.endswith(".fifo"):
            request["MessageGroupId"] = group_id or "dead-letter"
            # These queues do not enable content-based deduplication: without an id of its own a message is
            # deduplicated on its body, as that setting would, instead of being refused by SQS.
            request["MessageDeduplicationId"] = (dedupe_id or hashlib.sha256(body.encode("utf-8")).hexdigest())[:128]
        self._sqs.send_message(**request)
        count("DocumentDeadLettered", {"destination": self._destination})


RecordHandler = Callable[[SQSRecord, Deadline], None]


class BatchEdge:
    """Runs a record handler over an SQS batch and answers with Lambda's partial batch response."""

    def __init__(
        self,
        *,
        sqs: SQSClient,
        queue_url: str,
        dead_letters: DeadLetters,
        destination: str,
        fifo: bool,
        max_receive_count: int,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dead_letters = dead_letters
        self._destination = destination
        self._fifo = fifo
        self._max_receive_count = max_receive_count

    def handle(self, event: dict[str, Any], context: LambdaContext, handler: RecordHandler) -> dict[str, Any]:
        """Process the batch; retried records get their backoff, permanent failures the dead-letter queue."""
        deadline = Deadline.from_context(context)
        processor: BatchProcessor = (
            SqsFifoPartialProcessor(skip_group_on_error=True) if self._fifo else BatchProcessor(EventType.SQS)
        )
        # Every record's fate is decided here; the invocation itself fails only on a bug in this edge.
        processor.raise_on_entire_batch_failure = False
        delays: dict[str, int] = {}

        def run(record: SQSRecord) -> None:
            receive_count = int(record.attributes.approximate_receive_count)  # Lambda always sets it
            logger.append_keys(message_id=record.message_id)
            try:
                handler(record, deadline)
            except SyncError as exc:
                if exc.retryable and receive_count >= self._max_receive_count:
                    # SQS would move it to the dead-letter queue with no reason: it goes there now, with one.
                    detail = f"{exc.message} (still failing after {receive_count} receives)"
                    self._dead_letter(record, Failure(exc.code or type(exc).__name__, detail), receive_count)
                    return
                if exc.retryable:
                    delays[record.message_id] = backoff_seconds(receive_count, exc.retry_after)
                    logger.warning(
                        "retrying later",
                        extra={
                            "reason": exc.code or type(exc).__name__,
                            "detail": exc.message[:300],
                            "delay_s": delays[record.message_id],
                        },
                    )
                    count("DocumentRetried", {"destination": self._destination})
                    raise
                self._dead_letter(record, Failure(exc.code or type(exc).__name__, exc.message), receive_count)
            except ValidationError as exc:
                # A document that cannot be read or built is dead-lettered at once with its reason, rather
                # than returned five times and redriven with none.
                field, problem = describe_validation_error(exc)
                self._dead_letter(record, Failure("unprocessable_document", f"{field}: {problem}"), receive_count)
            except (AmountError, decimal.InvalidOperation) as exc:
                detail = f"{type(exc).__name__}: {str(exc)[:300]}"
                self._dead_letter(record, Failure("unprocessable_document", detail), receive_count)
            except DependencyUnavailable as exc:
                delays[record.message_id] = backoff_seconds(receive_count, None)
                logger.warning("AWS dependency unavailable; retrying later", extra={"detail": str(exc)[:300]})
                raise
            finally:
                logger.remove_keys(["message_id"])

        with processor(records=event["Records"], handler=run, lambda_context=context):
            processor.process()
        response: dict[str, Any] = dict(processor.response())
        self._defer(event["Records"], response.get("batchItemFailures", []), delays)
        return response

    def _dead_letter(self, record: SQSRecord, failure: Failure, receive_count: int) -> None:
        attributes = {name: value.string_value or "" for name, value in record.message_attributes.items()}
        logger.error("dead-lettered", extra={"reason": failure.code, "detail": failure.message[:300]})
        self._dead_letters.send(
            record.body,
            attributes,
            failure,
            group_id=record.attributes.message_group_id,
            dedupe_id=record.attributes.message_deduplication_id or record.message_id,
            receive_count=receive_count,
        )

    def _defer(self, records: list[dict[str, Any]], failures: list[Any], delays: dict[str, int]) -> None:
        """Set each returned record's visibility: its own backoff, or its group's (skipped records)."""
        if not failures:
            return
        by_id = {r["messageId"]: r for r in records}
        group_delay: dict[str, int] = {}
        for message_id, delay in delays.items():
            group = by_id[message_id].get("attributes", {}).get("MessageGroupId") or message_id
            group_delay[group] = max(delay, group_delay.get(group, 0))
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = []
        for index, failure in enumerate(failures):
            message_id = failure["itemIdentifier"]
            record = by_id[message_id]
            group = record.get("attributes", {}).get("MessageGroupId") or message_id
            chosen: int | None = delays.get(message_id, group_delay.get(group))
            if chosen is None:
                continue  # an unexpected error: the queue's own visibility timeout applies
            entries.append({"Id": str(index), "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": chosen})
        for start in range(0, len(entries), 10):
            result = self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url, Entries=entries[start : start + 10]
            )
            if result.get("Failed"):
                logger.warning("could not set the backoff of some records", extra={"failed": len(result["Failed"])})
