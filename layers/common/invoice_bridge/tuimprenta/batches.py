"""The poller's own state-table items: batches (open until their results are read) and waiting cancels.

A batch is open from the moment its invoices are claimed until its result CSV is recorded: it then lives
under `pk=tuimprenta#batches#open` (what `/local/status` counts as `open_batches`). Once closed it moves to
`pk=tuimprenta#batches` for its 30 days of retention. Reading the open batches, several times a poller run,
reads only them: a DynamoDB Query bills every item it reads, so a filter over the whole history would make
each run cost O(every batch of the last 30 days).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from invoice_bridge.keys import (
    BATCH_SK_PREFIX,
    TUIMPRENTA_BATCHES_PK,
    TUIMPRENTA_CANCELS_PK,
    TUIMPRENTA_LEGACY_MOVED_SK,
    TUIMPRENTA_OPEN_BATCHES_PK,
    batch_sk,
)
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
            "pk": {"S": TUIMPRENTA_OPEN_BATCHES_PK if self.status == BATCH_OPEN else TUIMPRENTA_BATCHES_PK},
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
        self._legacy_checked = False

    def put(self, item: BatchItem) -> None:
        """Write (or overwrite) a batch item; closing one moves it out of the open partition."""
        self._table.put(item.to_item())
        if item.status != BATCH_OPEN:
            # After the closed copy exists: a crash in between leaves the batch open, and the next run reads
            # its results again and closes it, as it would have before the put.
            self._table.delete(TUIMPRENTA_OPEN_BATCHES_PK, batch_sk(item.key))

    def get(self, key: str) -> BatchItem | None:
        """The item of a submission key, open or closed."""
        for pk in (TUIMPRENTA_OPEN_BATCHES_PK, TUIMPRENTA_BATCHES_PK):
            found = self._table.get(pk, batch_sk(key))
            if found:
                return BatchItem.from_item(found)
        return None

    def open(self) -> list[BatchItem]:
        """Every open batch, oldest first: a Query of the open partition, which holds only them."""
        self._move_legacy_open_batches()
        found = self._table.query(TUIMPRENTA_OPEN_BATCHES_PK, sk_prefix=BATCH_SK_PREFIX)
        items = [BatchItem.from_item(i) for i in found]
        return sorted(items, key=lambda i: i.created_at)

    def _move_legacy_open_batches(self) -> None:
        """Once per table: move open batches an earlier version kept among the closed ones (one read after)."""
        if self._legacy_checked:
            return
        if self._table.get(TUIMPRENTA_OPEN_BATCHES_PK, TUIMPRENTA_LEGACY_MOVED_SK) is None:
            legacy = self._table.query(
                TUIMPRENTA_BATCHES_PK,
                sk_prefix=BATCH_SK_PREFIX,
                filter="#status = :open",
                names={"#status": "status"},
                values={":open": {"S": BATCH_OPEN}},
            )
            for found in list(legacy):
                item = BatchItem.from_item(found)
                self._table.put(item.to_item())
                self._table.delete(found["pk"]["S"], found["sk"]["S"])
            self._table.put({"pk": {"S": TUIMPRENTA_OPEN_BATCHES_PK}, "sk": {"S": TUIMPRENTA_LEGACY_MOVED_SK}})
        self._legacy_checked = True


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
