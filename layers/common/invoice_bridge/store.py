"""The state table's key scheme and the items the receiver writes to it.

One table (pk, sk, ttl) holds the sync ledger, the token cache, the rate-limit windows and tuimprenta's
webhook events and batches; the keys of each live here and nowhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from invoice_bridge.tuimprenta.webhook import TuimprentaEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TUIMPRENTA_EVENTS_PK = "tuimprenta#webhook-events"
TUIMPRENTA_BATCHES_PK = "tuimprenta#batches"
BATCH_OPEN = "open"
TUIMPRENTA_EVENT_RETENTION = timedelta(days=7)


class TuimprentaEventItem(BaseModel):
    """A recorded tuimprenta webhook: what the poller needs, nothing personal (no customer, no totals)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: str
    invoice_id: str | None
    batch_id: str | None
    created_at: datetime
    received_at: datetime

    @classmethod
    def from_event(cls, event: TuimprentaEvent, received_at: datetime) -> TuimprentaEventItem:
        """Map the webhook model to the stored one."""
        return cls(
            event_id=event.id,
            event_type=event.type,
            invoice_id=event.invoice_id(),
            batch_id=event.batch_id(),
            created_at=event.created_at,
            received_at=received_at,
        )

    def to_item(self) -> dict[str, AttributeValueTypeDef]:
        """The DynamoDB item."""
        expires = int((self.received_at + TUIMPRENTA_EVENT_RETENTION).timestamp())
        item: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": TUIMPRENTA_EVENTS_PK},
            "sk": {"S": f"event#{self.event_id}"},
            "event_type": {"S": self.event_type},
            "created_at": {"S": self.created_at.astimezone(UTC).isoformat()},
            "received_at": {"S": self.received_at.astimezone(UTC).isoformat()},
            "ttl": {"N": str(expires)},
        }
        if self.invoice_id:
            item["invoice_id"] = {"S": self.invoice_id}
        if self.batch_id:
            item["batch_id"] = {"S": self.batch_id}
        return item


class StateStore:
    """Reads and writes of the state table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def record_tuimprenta_event(self, item: TuimprentaEventItem) -> bool:
        """Store a tuimprenta webhook event once; False when it was already recorded."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item.to_item(),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def count_open_tuimprenta_batches(self) -> int:
        """How many tuimprenta batches are created and not yet read to the end."""
        total = 0
        kwargs: dict[str, object] = {}
        while True:
            page = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                FilterExpression="#status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":pk": {"S": TUIMPRENTA_BATCHES_PK}, ":open": {"S": BATCH_OPEN}},
                Select="COUNT",
                **kwargs,  # type: ignore[arg-type]
            )
            total += page["Count"]
            if "LastEvaluatedKey" not in page:
                return total
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
