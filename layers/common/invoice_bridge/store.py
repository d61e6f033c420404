"""The state table's key scheme and the items the receiver writes to it.

One table (pk, sk, ttl) holds the sync ledger, the token cache, the rate-limit windows and the platforms'
own items (tuimprenta's recorded callbacks and batches live in `invoice_bridge.tuimprenta`); the core knows
only the open-batch count `/local/status` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoice_bridge.keys import BATCH_SK_PREFIX, TUIMPRENTA_OPEN_BATCHES_PK
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

    def count_open_tuimprenta_batches(self) -> int:
        """How many tuimprenta batches are created and not yet read to the end."""
        return self._table.count(TUIMPRENTA_OPEN_BATCHES_PK, sk_prefix=BATCH_SK_PREFIX)
