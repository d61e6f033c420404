"""Publishing verified events onto the destination queues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from invoice_bridge.buildnexion.models import WebhookEvent
from invoice_bridge.config import Destination

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageRequestTypeDef


def is_fifo(queue_url: str) -> bool:
    """SQS names every FIFO queue with the .fifo suffix."""
    return queue_url.endswith(".fifo")


class QueuePublisher:
    """Sends an event to its destination's queue, ordered per object on FIFO queues."""

    def __init__(self, client: SQSClient, queue_urls: Mapping[Destination, str]) -> None:
        self._client = client
        self._queue_urls = dict(queue_urls)

    def publish(self, destination: Destination, event: WebhookEvent, body: str) -> str:
        """Enqueue the event's raw JSON; return the SQS message id."""
        url = self._queue_urls[destination]
        request: SendMessageRequestTypeDef = {
            "QueueUrl": url,
            "MessageBody": body,
            "MessageAttributes": {
                "event_id": {"DataType": "String", "StringValue": event.id},
                "event_type": {"DataType": "String", "StringValue": event.type},
            },
        }
        if is_fifo(url):
            # One group per BuildNexion object keeps its events in order without serialising the rest.
            request["MessageGroupId"] = event.data.object.id
            request["MessageDeduplicationId"] = event.id
        return self._client.send_message(**request)["MessageId"]
