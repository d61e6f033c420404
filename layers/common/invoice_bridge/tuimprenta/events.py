"""Recorded tuimprenta callbacks: the receiver stores each verified event once; the poller reads them as hints.

A hint makes the poller look at a batch at once instead of waiting for its backoff; the poll stays the
source of truth, so a lost callback only costs latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from invoice_bridge.keys import TUIMPRENTA_EVENTS_PK, event_sk
from invoice_bridge.tuimprenta.webhook import TuimprentaEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from invoice_bridge.ledger import StateTable
    from invoice_bridge.store import StateStore

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
            "sk": {"S": event_sk(self.event_id)},
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


def record_tuimprenta_event(state: StateStore, item: TuimprentaEventItem) -> bool:
    """Store a tuimprenta webhook event once; False when it was already recorded."""
    return state.put_new(item.to_item())


@dataclass(frozen=True)
class Hints:
    """What the recorded callbacks point at: batches by id, and whether some event named no batch."""

    batch_ids: frozenset[str]
    any_batch: bool
    sort_keys: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.batch_ids) or self.any_batch


def read_hints(table: StateTable) -> Hints:
    """Every recorded callback not consumed yet."""
    batch_ids: set[str] = set()
    any_batch = False
    keys: list[str] = []
    for item in table.query(TUIMPRENTA_EVENTS_PK):
        keys.append(item["sk"]["S"])
        if "batch_id" in item:
            batch_ids.add(item["batch_id"]["S"])
        else:
            any_batch = True  # an invoice event: its batch is not named, so every open batch is looked at
    return Hints(frozenset(batch_ids), any_batch, tuple(keys))


def consume_hints(table: StateTable, hints: Hints) -> None:
    """Forget the callbacks acted on (a redelivery later is only one more hint)."""
    for key in hints.sort_keys:
        table.delete(TUIMPRENTA_EVENTS_PK, key)
