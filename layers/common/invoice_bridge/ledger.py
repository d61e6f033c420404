"""The sync ledger: one item per (destination, BuildNexion object), the same scheme for every platform.

It is what makes the workers exactly-once and convergent: the version of the object last applied
(`source_updated_at`), the platform's id of the document, and an intent written before any create, so a
worker that finds an unfinished intent looks the document up instead of creating a second one. Beside it:
references (a supplier's id in a platform, by tax id) and leases (one holder at a time, with expiry).

Every write is conditional on the version read, so two workers never overwrite each other silently.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from invoice_bridge.errors import RetryLater
from invoice_bridge.keys import LEASE_SK, lease_pk, ledger_pk, ledger_sk, reference_lease, reference_pk
from invoice_bridge.observability import count

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


class SyncStatus(StrEnum):
    """Where a document stands in its platform."""

    PENDING = "pending"  # an intent is written: a create may or may not have reached the platform
    SYNCED = "synced"  # the platform holds the object's `source_updated_at` version
    FAILED = "failed"  # the platform refused it for good; the event is in the dead-letter queue


class LedgerConflict(RetryLater):
    """Another worker wrote the entry since it was read: the work is retried from a fresh read."""


def _now() -> datetime:
    return datetime.now(UTC)


class LedgerEntry(BaseModel):
    """One BuildNexion object's state in one destination."""

    model_config = ConfigDict(frozen=True)

    destination: str
    object_id: str
    status: SyncStatus = SyncStatus.PENDING
    source_updated_at: AwareDatetime | None = None
    remote_id: str | None = None
    # Set before a create call, cleared once its outcome is recorded: a unique id for this attempt that
    # platforms can carry (a tag, an idempotency key), and when it was written.
    intent_id: str | None = None
    intent_at: AwareDatetime | None = None
    # Voided / canceled at the source and done at the platform (a credit note, a delete, a cancel).
    closed: bool = False
    last_event_id: str | None = None
    last_event_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    expected_total_cents: int | None = None
    remote_total_cents: int | None = None
    synced_at: AwareDatetime | None = None
    details: dict[str, str] = Field(default_factory=dict)
    version: int = 0

    @property
    def totals_mismatch(self) -> bool:
        """Whether the platform's computed total differs from BuildNexion's."""
        return (
            self.expected_total_cents is not None
            and self.remote_total_cents is not None
            and self.expected_total_cents != self.remote_total_cents
        )

    def is_stale(self, updated_at: datetime) -> bool:
        """Whether an event at `updated_at` is older than what the ledger already holds."""
        return self.source_updated_at is not None and updated_at < self.source_updated_at

    def is_current(self, updated_at: datetime) -> bool:
        """Whether the platform already holds this version (or a later one): nothing to do."""
        return (
            self.status == SyncStatus.SYNCED
            and self.source_updated_at is not None
            and updated_at <= self.source_updated_at
        )

    def with_intent(self, updated_at: datetime, event_id: str | None, event_type: str | None) -> LedgerEntry:
        """This entry with a fresh create intent."""
        return self.model_copy(
            update={
                "status": SyncStatus.PENDING,
                "intent_id": uuid.uuid4().hex,
                "intent_at": _now(),
                "source_updated_at": updated_at if self.source_updated_at is None else self.source_updated_at,
                "last_event_id": event_id,
                "last_event_type": event_type,
            }
        )

    def synced(self, remote_id: str, updated_at: datetime, **changes: Any) -> LedgerEntry:
        """This entry once the platform holds version `updated_at` as `remote_id`."""
        return self.model_copy(
            update={
                "status": SyncStatus.SYNCED,
                "remote_id": remote_id,
                "source_updated_at": updated_at,
                "intent_id": None,
                "intent_at": None,
                "error_code": None,
                "error_message": None,
                "synced_at": _now(),
                **changes,
            }
        )

    def failed(self, code: str | None, message: str, **changes: Any) -> LedgerEntry:
        """This entry once the platform refused the document for good."""
        return self.model_copy(
            update={
                "status": SyncStatus.FAILED,
                "error_code": code,
                "error_message": message[:1000],
                "intent_id": None,
                "intent_at": None,
                **changes,
            }
        )

    def to_item(self) -> dict[str, AttributeValueTypeDef]:
        """The DynamoDB item (document fields as a JSON string, keys and the status queryable)."""
        body = self.model_dump(mode="json", exclude={"version"})
        return {
            "pk": {"S": ledger_pk(self.destination)},
            "sk": {"S": ledger_sk(self.object_id)},
            "status": {"S": self.status.value},
            "entry": {"S": json.dumps(body, sort_keys=True)},
            "version": {"N": str(self.version)},
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LedgerEntry:
        """Read an item written by `to_item`."""
        body = json.loads(item["entry"]["S"])
        return cls.model_validate({**body, "version": int(item["version"]["N"])})


class StateTable:
    """Every read and write of the state table: the one place that calls the DynamoDB client's item methods.

    Reads are consistent unless asked otherwise (a worker acts on what it reads); conditional writes answer
    False instead of raising when their condition fails; queries read every page.
    """

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
        """An item, read consistently unless a reader that tolerates a stale answer asks for half the price."""
        item = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=consistent
        ).get("Item")
        return dict(item) if item else None

    def put(self, item: dict[str, AttributeValueTypeDef]) -> None:
        """Write (or overwrite) `item` (for items one writer owns: a lease holder's, a reference)."""
        self.client.put_item(TableName=self.table_name, Item=item)

    def delete(self, pk: str, sk: str) -> None:
        """Delete an item (gone already is fine)."""
        self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def put_if(
        self,
        item: dict[str, AttributeValueTypeDef],
        condition: str,
        values: dict[str, AttributeValueTypeDef] | None = None,
        names: dict[str, str] | None = None,
    ) -> bool:
        """Put `item` if `condition` holds; False when it does not."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}
        kwargs.update(_expression_arguments(values, names))
        return _unless_condition_fails(lambda: self.client.put_item(**kwargs))

    def delete_if(
        self,
        pk: str,
        sk: str,
        condition: str,
        values: dict[str, AttributeValueTypeDef] | None = None,
        names: dict[str, str] | None = None,
    ) -> bool:
        """Delete an item if `condition` holds; False when it does not."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
            "ConditionExpression": condition,
        }
        kwargs.update(_expression_arguments(values, names))
        return _unless_condition_fails(lambda: self.client.delete_item(**kwargs))

    def query(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        filter: str | None = None,
        values: dict[str, AttributeValueTypeDef] | None = None,
        names: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a partition (whose sort key starts with `sk_prefix`, and that passes `filter`), page by page.

        `filter` may use the placeholders in `values` and `names`; `:pk` and `:sk_prefix` are taken.
        """
        kwargs = self._query_arguments(pk, sk_prefix, filter, values, names)
        for page in self._pages(kwargs):
            yield from (dict(i) for i in page.get("Items", []))

    def count(self, pk: str, *, sk_prefix: str | None = None) -> int:
        """How many items a partition holds (whose sort key starts with `sk_prefix`), without reading them out."""
        kwargs = {**self._query_arguments(pk, sk_prefix, None, None, None), "Select": "COUNT"}
        return sum(int(page["Count"]) for page in self._pages(kwargs))

    def _query_arguments(
        self,
        pk: str,
        sk_prefix: str | None,
        filter_expression: str | None,
        values: dict[str, AttributeValueTypeDef] | None,
        names: dict[str, str] | None,
    ) -> dict[str, Any]:
        key_values: dict[str, AttributeValueTypeDef] = {":pk": {"S": pk}}
        condition = "pk = :pk"
        if sk_prefix is not None:
            condition += " AND begins_with(sk, :sk_prefix)"
            key_values[":sk_prefix"] = {"S": sk_prefix}
        kwargs: dict[str, Any] = {"TableName": self.table_name, "KeyConditionExpression": condition}
        if filter_expression is not None:
            kwargs["FilterExpression"] = filter_expression
        kwargs.update(_expression_arguments({**key_values, **(values or {})}, names))
        return kwargs

    def _pages(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            page = self.client.query(**kwargs)
            yield dict(page)
            if "LastEvaluatedKey" not in page:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def _expression_arguments(
    values: dict[str, AttributeValueTypeDef] | None, names: dict[str, str] | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if values:
        kwargs["ExpressionAttributeValues"] = values
    if names:
        kwargs["ExpressionAttributeNames"] = names
    return kwargs


def _unless_condition_fails(write: Callable[[], object]) -> bool:
    try:
        write()
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


class Ledger:
    """Reads and conditional writes of ledger entries."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def get(self, destination: str, object_id: str) -> LedgerEntry | None:
        """The entry, or None when the object never reached this destination's worker."""
        item = self._table.get(ledger_pk(destination), ledger_sk(object_id))
        return LedgerEntry.from_item(item) if item else None

    def get_or_new(self, destination: str, object_id: str) -> LedgerEntry:
        """The entry, or a new unsaved one (version 0)."""
        return self.get(destination, object_id) or LedgerEntry(destination=destination, object_id=object_id)

    def save(self, entry: LedgerEntry) -> LedgerEntry:
        """Write `entry` if nobody wrote since it was read (its version); the saved entry, one version on."""
        saved = entry.model_copy(update={"version": entry.version + 1})
        if entry.version == 0:
            ok = self._table.put_if(saved.to_item(), "attribute_not_exists(pk)", None)
        else:
            ok = self._table.put_if(saved.to_item(), "version = :v", {":v": {"N": str(entry.version)}})
        if not ok:
            raise LedgerConflict(f"ledger entry {entry.destination}/{entry.object_id} changed meanwhile", retry_after=1)
        if saved.status == SyncStatus.SYNCED and saved.synced_at is not None and saved.intent_id is None:
            # Counted where every worker records a sync, so the figure means the same for each destination.
            count("DocumentSynced", {"destination": saved.destination})
        return saved

    def entries(self, destination: str) -> Iterator[LedgerEntry]:
        """Every entry of a destination."""
        for item in self._table.query(ledger_pk(destination)):
            yield LedgerEntry.from_item(item)


class References:
    """A platform's id for something keyed on our side (a supplier's contact id by tax id)."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def get(self, destination: str, kind: str, key: str) -> str | None:
        """The remembered remote id."""
        item = self._table.get(reference_pk(destination, kind), key)
        return item["remote_id"]["S"] if item else None

    def put(self, destination: str, kind: str, key: str, remote_id: str) -> None:
        """Remember a remote id (overwrites: the platform is the truth)."""
        self._table.put(
            {
                "pk": {"S": reference_pk(destination, kind)},
                "sk": {"S": key},
                "remote_id": {"S": remote_id},
                "at": {"S": _now().isoformat()},
            }
        )


class Leases:
    """Named leases: one holder at a time, each lease expiring so a crashed holder never blocks for ever."""

    def __init__(self, table: StateTable, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    def acquire(self, name: str, owner: str, seconds: float) -> bool:
        """Take (or extend) the lease for `seconds`; False while another owner holds it."""
        return self._acquire(name, owner, self._clock(), seconds)

    def _acquire(self, name: str, owner: str, now: float, seconds: float) -> bool:
        return self._table.put_if(
            {
                "pk": {"S": lease_pk(name)},
                "sk": {"S": LEASE_SK},
                "owner": {"S": owner},
                "expires_at": {"N": f"{now + seconds:.3f}"},
                "ttl": {"N": str(int(now + seconds) + 3600)},
            },
            "attribute_not_exists(pk) OR expires_at < :now OR #owner = :owner",
            values={":now": {"N": f"{now:.3f}"}, ":owner": {"S": owner}},
            names={"#owner": "owner"},
        )

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if we still hold it (another owner's, after ours expired, stays)."""
        self._table.delete_if(
            lease_pk(name), LEASE_SK, "#owner = :owner", values={":owner": {"S": owner}}, names={"#owner": "owner"}
        )


def ensure_reference(
    references: References,
    leases: Leases,
    *,
    destination: str,
    kind: str,
    key: str,
    find: Callable[[], str | None],
    create: Callable[[], str],
    lease_seconds: float = 30.0,
    wait_seconds: float = 4.0,
    poll_seconds: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, bool]:
    """The platform id for `key`, found or created **once** even when workers race; (id, created).

    A remembered id costs no platform call. Otherwise one worker at a time (a lease per key) looks it up
    and creates it when missing. A worker that meets the lease held waits up to `wait_seconds` for the
    holder to remember the id (usually a second or two), then hands its work back to be retried.
    """
    remembered = references.get(destination, kind, key)
    if remembered:
        return remembered, False
    lease = reference_lease(destination, kind, key)
    owner = uuid.uuid4().hex
    waited = 0.0
    while not leases.acquire(lease, owner, lease_seconds):
        if waited >= wait_seconds:
            raise RetryLater(f"another worker is creating {kind} {key} in {destination}", retry_after=2)
        sleep(poll_seconds)
        waited += poll_seconds
        remembered = references.get(destination, kind, key)
        if remembered:
            return remembered, False
    try:
        remembered = references.get(destination, kind, key)  # the previous holder may have just finished
        if remembered:
            return remembered, False
        found = find()
        created = found is None
        remote_id = create() if found is None else found
        references.put(destination, kind, key, remote_id)
        return remote_id, created
    finally:
        leases.release(lease, owner)
