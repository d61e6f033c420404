"""The state table's key scheme and the items the receiver writes to it.

One table (pk, sk, ttl) holds the sync ledger, the token cache, the rate-limit windows and the platforms'
own items (tuimprenta's recorded callbacks and batches live in `invoice_bridge.tuimprenta`); the core knows
only the open-batch count `/local/status` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoice_bridge.keys import BATCH_SK_PREFIX, BUILDNEXION_EVENTS_PK, TUIMPRENTA_OPEN_BATCHES_PK, event_sk
from invoice_bridge.ledger import StateTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

BATCH_OPEN = "open"


class StateStore:
    """What the receiver and the local stack read and write in the state table (through `StateTable`)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._table = StateTable(client, table_name)

    def put_new(self, item: dict[str, AttributeValueTypeDef]) -> bool:
        """Store `item` unless an item with its key exists; False when it did."""
        return self._table.put_if(item, "attribute_not_exists(pk)")

    def enqueued(self, event_id: str, now: float) -> bool:
        """Whether a BuildNexion event was enqueued and its record has not expired (a stale read may say no)."""
        # Eventually consistent, at half a consistent read's price: a "no" that is stale only lets a duplicate
        # be enqueued again, which the FIFO queue's deduplication and the workers' ledger both absorb.
        item = self._table.get(BUILDNEXION_EVENTS_PK, event_sk(event_id), consistent=False)
        return item is not None and int(item["ttl"]["N"]) > now

    def remember_enqueued(self, event_id: str, destination: str, message_id: str, now: float, ttl_seconds: int) -> bool:
        """Record that an event was enqueued, for `ttl_seconds`; False when another delivery recorded it first.

        Written only after the message is on its queue, so a delivery that fails or is killed before then
        leaves nothing behind and its retry enqueues it. One write per event, where an in-progress record
        and its completion cost two.
        """
        item: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": BUILDNEXION_EVENTS_PK},
            "sk": {"S": event_sk(event_id)},
            "destination": {"S": destination},
            "message_id": {"S": message_id},
            "ttl": {"N": str(int(now) + ttl_seconds)},
        }
        # An expired record DynamoDB's TTL has not deleted yet no longer counts.
        return self._table.put_if(
            item,
            "attribute_not_exists(pk) OR #ttl <= :now",
            values={":now": {"N": str(int(now))}},
            names={"#ttl": "ttl"},
        )

    def count_open_tuimprenta_batches(self) -> int:
        """How many tuimprenta batches are created and not yet read to the end."""
        return self._table.count(TUIMPRENTA_OPEN_BATCHES_PK, sk_prefix=BATCH_SK_PREFIX)
