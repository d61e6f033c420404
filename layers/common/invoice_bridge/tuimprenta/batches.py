"""The poller's own state-table items: batches (open until their results are read) and waiting cancels.

Batches live under `pk=tuimprenta#batches` with `status=open` from the moment their invoices are claimed
until their result CSV is recorded, which is what `/local/status` counts as `open_batches`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from invoice_bridge.keys import TUIMPRENTA_BATCHES_PK, TUIMPRENTA_CANCELS_PK, batch_sk
from invoice_bridge.store import BATCH_OPEN

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from invoice_bridge.ledger import StateTable

BATCH_CLOSED = "closed"
CANCELS_PK = TUIMPRENTA_CANCELS_PK
CLOSED_RETENTION_SECONDS = 30 * 24 * 3600


class BatchItem(BaseModel):
    """One claimed set of invoices: submitted as one batch under `key`, `batch_id` once tuimprenta took it."""

    model_config = ConfigDict(frozen=True)

    key: str
    members: list[str]
    attempt: int = 1
    status: str = BATCH_OPEN
    batch_id: str | None = None
    created_at: float
    next_poll_at: float
    polls: int = 0
    outcome: str | None = None
    misses: int = 0  # polls in a row that found no such batch (404)
    lookups: int = 0  # GET /invoices listings that could not decide yet

    @property
    def submitted(self) -> bool:
        """Whether tuimprenta answered the POST with a batch id."""
        return self.batch_id is not None

    def to_item(self) -> dict[str, AttributeValueTypeDef]:
        """The DynamoDB item (the body as JSON text, the status queryable)."""
        item: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": TUIMPRENTA_BATCHES_PK},
            "sk": {"S": batch_sk(self.key)},
            "status": {"S": self.status},
            "batch": {"S": self.model_dump_json()},
        }
        if self.status != BATCH_OPEN:
            item["ttl"] = {"N": str(int(time.time()) + CLOSED_RETENTION_SECONDS)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BatchItem:
        """Read an item written by `to_item`."""
        return cls.model_validate_json(item["batch"]["S"])


class BatchStore:
    """Reads and writes of batch items (one poller at a time holds the lease, so plain puts suffice)."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def put(self, item: BatchItem) -> None:
        """Write (or overwrite) a batch item."""
        self._table.put(item.to_item())

    def get(self, key: str) -> BatchItem | None:
        """The item of a submission key."""
        found = self._table.get(TUIMPRENTA_BATCHES_PK, batch_sk(key))
        return BatchItem.from_item(found) if found else None

    def open(self) -> list[BatchItem]:
        """Every open batch, oldest first."""
        items: list[BatchItem] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table.table_name,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "#status = :open",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":pk": {"S": TUIMPRENTA_BATCHES_PK}, ":open": {"S": BATCH_OPEN}},
        }
        while True:
            page = self._table.client.query(**kwargs)
            items.extend(BatchItem.from_item(dict(i)) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(items, key=lambda i: i.created_at)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class CancelStore:
    """Cancels asked for while an invoice's batch is open: done once the invoice is issued."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def put(self, object_id: str, event_id: str) -> None:
        """Remember that `object_id` must be canceled."""
        self._table.put({"pk": {"S": CANCELS_PK}, "sk": {"S": object_id}, "event_id": {"S": event_id}})

    def waiting(self) -> Iterator[str]:
        """The object ids waiting for their cancel."""
        for item in self._table.query(CANCELS_PK):
            yield item["sk"]["S"]

    def done(self, object_id: str) -> None:
        """Forget a cancel that is done (or has nothing left to do)."""
        self._table.delete(CANCELS_PK, object_id)
