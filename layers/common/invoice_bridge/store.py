"""The state table's key scheme and the items the receiver writes to it.

One table (pk, sk, ttl) holds the sync ledger, the token cache, the rate-limit windows and the platforms'
own items (tuimprenta's recorded callbacks and batches live in `invoice_bridge.tuimprenta`); the core knows
only the open-batch count `/local/status` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from invoice_bridge.keys import BATCH_SK_PREFIX, TUIMPRENTA_OPEN_BATCHES_PK

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

BATCH_OPEN = "open"


class StateStore:
    """Reads and writes of the state table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client (platform packages keep their own items through it)."""
        return self._client

    @property
    def table_name(self) -> str:
        """The state table's name."""
        return self._table

    def put_new(self, item: dict[str, AttributeValueTypeDef]) -> bool:
        """Store `item` unless an item with its key exists; False when it did."""
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
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
                KeyConditionExpression="pk = :pk AND begins_with(sk, :batch)",
                ExpressionAttributeValues={":pk": {"S": TUIMPRENTA_OPEN_BATCHES_PK}, ":batch": {"S": BATCH_SK_PREFIX}},
                Select="COUNT",
                **kwargs,  # type: ignore[arg-type]
            )
            total += page["Count"]
            if "LastEvaluatedKey" not in page:
                return total
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
