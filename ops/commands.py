"""What the operator commands do, as functions that return data; `ops.cli` prints it."""

from __future__ import annotations

import json
import time as time_module
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import SecretStr

from invoice_bridge.buildnexion.client import BuildNexionClient
from invoice_bridge.buildnexion.models import Invoice, PurchaseOrder, SalesInvoice, WebhookEvent
from invoice_bridge.buildnexion.signature import SIGNATURE_HEADER, signature_header
from invoice_bridge.config import DESTINATION_OBJECTS, Destination
from invoice_bridge.destinations import PLATFORMS
from invoice_bridge.http import Deadline
from invoice_bridge.keys import backfill_checkpoint_key
from invoice_bridge.ledger import Ledger, LedgerEntry, StateTable, SyncStatus
from invoice_bridge.queues import QueuePublisher
from invoice_bridge.secrets import PLATFORM_SECRETS, BuildNexionSecret
from ops.target import (
    COLLECTIONS,
    ID_PREFIXES,
    QUEUE_LOGICAL_IDS,
    QUEUE_OUTPUTS,
    Target,
    TargetError,
    destination_for_kind,
)

# Attributes the workers add when they dead-letter a message; they are dropped when it is redriven.
FAILURE_ATTRIBUTES = frozenset({"destination", "error_code", "error_message", "failed_at", "attempts"})
# Set on a redriven message so a second dead-lettering still shows when it first failed.
FIRST_FAILED_AT = "first_failed_at"
PEEK_VISIBILITY_SECONDS = 30
# A backfill saves where it stands this often (and when stopped); a hard kill re-sends at most this many
# objects, which the queue's deduplication and the ledger make harmless.
CHECKPOINT_EVERY = 20


# -- status ---------------------------------------------------------------------------------------------


@dataclass
class DestinationStatus:
    """One row of `status`."""

    destination: str
    synced: int = 0
    failed: int = 0
    pending: int = 0
    in_flight: int = 0
    dead_lettered: int = 0
    oldest_waiting_seconds: float | None = None
    last_success: datetime | None = None
    mismatches: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The row for `--json`."""
        return {
            "destination": self.destination,
            "synced": self.synced,
            "failed": self.failed,
            "pending": self.pending,
            "in_flight": self.in_flight,
            "dead_lettered": self.dead_lettered,
            "oldest_waiting_seconds": self.oldest_waiting_seconds,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "totals_mismatches": self.mismatches,
        }


def _ledger(target: Target) -> Ledger:
    return Ledger(StateTable(target.dynamodb(), target.state_table()))


def _depths(target: Target, url: str) -> tuple[int, int]:
    attributes = target.sqs().get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _oldest_age(target: Target, destination: Destination) -> float | None:
    if target.local_url is not None:
        return target.queue_ages.get(QUEUE_LOGICAL_IDS[destination])
    name = target.queue_url(destination).rsplit("/", 1)[1]
    now = datetime.now(UTC)
    points = target.cloudwatch().get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": name}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def status(target: Target) -> list[DestinationStatus]:
    """Per destination: what the ledger says is synced or failed, and what waits on the queues."""
    ledger = _ledger(target)
    rows = []
    for destination in Destination:
        if not target.outputs.get(QUEUE_OUTPUTS[destination][0]):
            continue  # deployed with Deploy<Platform>=false: no queue, nothing to report
        row = DestinationStatus(destination.value)
        for entry in ledger.entries(destination.value):
            if entry.status == SyncStatus.SYNCED:
                row.synced += 1
                if entry.synced_at and (row.last_success is None or entry.synced_at > row.last_success):
                    row.last_success = entry.synced_at
            elif entry.status == SyncStatus.FAILED:
                row.failed += 1
            if entry.totals_mismatch:
                row.mismatches.append(entry.object_id)
        row.pending, row.in_flight = _depths(target, target.queue_url(destination))
        row.dead_lettered = _depths(target, target.dead_letter_queue_url(destination))[0]
        row.oldest_waiting_seconds = _oldest_age(target, destination) if row.pending or row.in_flight else 0.0
        rows.append(row)
    return rows


# -- dead-letter queues ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event."""

    message_id: str
    object_id: str
    event_id: str
    event_type: str
    reason: str
    attempts: int
    first_failure: str
    body: str
    attributes: dict[str, str]
    group_id: str | None
    receipt_handle: str
    is_event: bool = True


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    attributes = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
    system = message.get("Attributes", {})
    is_event = True
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = {}
    try:
        object_id = str(body["data"]["object"]["id"])
        event_id, event_type = str(body["id"]), str(body["type"])
    except (KeyError, TypeError):
        # The tuimprenta poller dead-letters a report of the rejected invoice, not the event itself.
        is_event = False
        report = body if isinstance(body, dict) else {}
        object_id = str(report.get("object_id") or "?")
        event_id = str(report.get("event_id") or attributes.get("event_id") or "?")
        event_type = attributes.get("event_type") or "?"
    sent = system.get("SentTimestamp")
    first = (
        attributes.get(FIRST_FAILED_AT)
        or attributes.get("failed_at")
        or (datetime.fromtimestamp(int(sent) / 1000, tz=UTC).isoformat() if sent else "?")
    )
    return DeadLetter(
        message_id=message["MessageId"],
        object_id=object_id,
        event_id=event_id,
        event_type=event_type,
        reason=attributes.get("error_message") or "failed on every receive (maxReceiveCount reached)",
        attempts=int(attributes.get("attempts") or system.get("ApproximateReceiveCount") or 0),
        first_failure=first,
        body=message["Body"],
        attributes=attributes,
        group_id=system.get("MessageGroupId"),
        receipt_handle=message["ReceiptHandle"],
        is_event=is_event,
    )


def _peek(target: Target, url: str) -> list[DeadLetter]:
    """Every message of a queue, held briefly so each is seen once, then made visible again."""
    sqs = target.sqs()
    seen: dict[str, DeadLetter] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=PEEK_VISIBILITY_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            seen.setdefault(message["MessageId"], _dead_letter(dict(message)))
    return list(seen.values())


def _release(target: Target, url: str, letters: Sequence[DeadLetter]) -> None:
    for start in range(0, len(letters), 10):
        target.sqs().change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
                for i, letter in enumerate(letters[start : start + 10])
            ],
        )


def dlq_list(target: Target, destination: Destination) -> list[DeadLetter]:
    """The dead-lettered events of a destination, oldest failure first (left on the queue)."""
    url = target.dead_letter_queue_url(destination)
    letters = _peek(target, url)
    _release(target, url, letters)
    return sorted(letters, key=lambda letter: letter.first_failure)


@dataclass(frozen=True)
class RedriveResult:
    """What `dlq redrive` did."""

    moved: list[str]
    missing: list[str]
    task_handle: str | None = None
    replay_only: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        """The result for `--json`."""
        return {
            "moved": self.moved,
            "missing": self.missing,
            "replay_only": self.replay_only,
            "task_handle": self.task_handle,
            "dry_run": self.dry_run,
        }


def _redriven_attributes(letter: DeadLetter) -> dict[str, Any]:
    """The message's attributes without the failure's, but keeping when it first failed."""
    kept: dict[str, Any] = {
        k: {"DataType": "String", "StringValue": v}
        for k, v in letter.attributes.items()
        if k not in FAILURE_ATTRIBUTES and v
    }
    if letter.first_failure != "?":
        kept[FIRST_FAILED_AT] = {"DataType": "String", "StringValue": letter.first_failure}
    return kept


def dlq_redrive(
    target: Target, destination: Destination, ids: Sequence[str] = (), *, dry_run: bool = False
) -> RedriveResult:
    """Send dead-lettered events back to their queue: all through SQS's move task where it applies, or by id.

    SQS's message-move task serves a standard dead-letter queue holding only events. tuimprenta's may also
    hold reports of rejected invoices (not events): those are listed as `replay_only` (fix the invoice at
    the source, then `replay` it) and left in place. Everything else is moved message by message, keeping
    each object's FIFO group and its first failure's time (`first_failed_at`). `dry_run` moves nothing and
    lists what would move.
    """
    sqs = target.sqs()
    source_url, dlq_url = target.queue_url(destination), target.dead_letter_queue_url(destination)
    letters = _peek(target, dlq_url)
    wanted = set(ids)
    named = [letter for letter in letters if not wanted or letter.message_id in wanted or letter.object_id in wanted]
    chosen = [letter for letter in named if letter.is_event]
    replay_only = sorted({letter.object_id for letter in named if not letter.is_event})
    found = {letter.message_id for letter in named} | {letter.object_id for letter in named}
    if dry_run:
        _release(target, dlq_url, letters)
        return RedriveResult(
            moved=[letter.message_id for letter in chosen],
            missing=sorted(wanted - found),
            replay_only=replay_only,
            dry_run=True,
        )
    if not wanted and not replay_only and chosen and not dlq_url.endswith(".fifo") and target.local_url is None:
        _release(target, dlq_url, letters)
        arns = [
            sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            for u in (dlq_url, source_url)
        ]
        handle = sqs.start_message_move_task(SourceArn=arns[0], DestinationArn=arns[1])["TaskHandle"]
        return RedriveResult(moved=[], missing=[], task_handle=handle)
    _release(target, dlq_url, [letter for letter in letters if letter not in chosen])
    moved = []
    for letter in chosen:
        request: dict[str, Any] = {
            "QueueUrl": source_url,
            "MessageBody": letter.body,
            "MessageAttributes": _redriven_attributes(letter),
        }
        if source_url.endswith(".fifo"):
            request["MessageGroupId"] = letter.group_id or letter.object_id
            request["MessageDeduplicationId"] = f"redrive-{uuid.uuid4().hex}"
        sqs.send_message(**request)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        moved.append(letter.message_id)
    return RedriveResult(moved=moved, missing=sorted(wanted - found), replay_only=replay_only)


def dlq_drop(target: Target, destination: Destination, ids: Sequence[str], *, dry_run: bool = False) -> RedriveResult:
    """Delete dead-lettered events for good, by message id or object id; `dry_run` deletes nothing."""
    url = target.dead_letter_queue_url(destination)
    letters = _peek(target, url)
    wanted = set(ids)
    chosen = [letter for letter in letters if letter.message_id in wanted or letter.object_id in wanted]
    found = {letter.message_id for letter in chosen} | {letter.object_id for letter in chosen}
    if dry_run:
        _release(target, url, letters)
        return RedriveResult(
            moved=[letter.message_id for letter in chosen], missing=sorted(wanted - found), dry_run=True
        )
    _release(target, url, [letter for letter in letters if letter not in chosen])
    for letter in chosen:
        target.sqs().delete_message(QueueUrl=url, ReceiptHandle=letter.receipt_handle)
    return RedriveResult(moved=[letter.message_id for letter in chosen], missing=sorted(wanted - found))


# -- replay and backfill ----------------------------------------------------------------------------------


def buildnexion(target: Target) -> BuildNexionClient:
    """A BuildNexion client with the stack's API URL and key."""
    secret = target.read_secret("BuildNexionSecretArn")
    api_key = str(secret.get("api_key") or "")
    if not api_key:
        raise TargetError("the BuildNexion secret has no api_key: fill it first (README, Deploying)")
    return BuildNexionClient(target.output("BuildNexionApiUrl"), SecretStr(api_key))


def event_type_for(kind: str, obj: dict[str, Any]) -> str:
    """The event that brings a destination to the object's current state."""
    status = str(obj.get("status", ""))
    if kind == "invoice":
        return "invoice.voided" if status in {"void", "voided"} else "invoice.updated"
    if kind == "sales_invoice":
        return "sales_invoice.canceled" if status in {"canceled", "cancelled"} else "sales_invoice.created"
    return "purchase_order.canceled" if status in {"canceled", "cancelled"} else "purchase_order.updated"


def enqueue_object(target: Target, kind: str, obj: dict[str, Any], event_id: str) -> str:
    """Put the object on its destination's queue as the receiver would, as event `event_id`."""
    destination = destination_for_kind(kind)
    envelope = {
        "id": event_id,
        "type": event_type_for(kind, obj),
        "created": int(datetime.now(UTC).timestamp()),
        "data": {"object": obj},
    }
    body = json.dumps(envelope, ensure_ascii=False)
    event = WebhookEvent.model_validate(envelope)
    QueuePublisher(target.sqs(), {destination: target.queue_url(destination)}).publish(destination, event, body)
    return destination.value


def kind_of(object_id: str, kind: str | None) -> str:
    """The object kind an id names (by its prefix), unless given."""
    if kind:
        return kind
    for prefix, named in ID_PREFIXES.items():
        if object_id.startswith(prefix):
            return named
    raise TargetError(f"cannot tell the kind of {object_id!r} from its prefix; pass --kind")


def replay(
    target: Target, object_ids: Sequence[str], kind: str | None = None, *, dry_run: bool = False
) -> list[tuple[str, str, str]]:
    """Fetch each object's latest state from BuildNexion and enqueue it as a fresh event: (id, type, destination).

    `dry_run` fetches and answers the same, but enqueues nothing.
    """
    client = buildnexion(target)
    fetchers: dict[str, Callable[[str, Deadline], Any]] = {
        "invoice": client.invoice,
        "sales_invoice": client.sales_invoice,
        "purchase_order": client.purchase_order,
    }
    done = []
    for object_id in object_ids:
        object_kind = kind_of(object_id, kind)
        obj = fetchers[object_kind](object_id, Deadline(30)).model_dump(mode="json")
        if dry_run:
            destination = destination_for_kind(object_kind).value
        else:
            destination = enqueue_object(target, object_kind, obj, f"evt_replay_{uuid.uuid4().hex}")
        done.append((object_id, event_type_for(object_kind, obj), destination))
    return done


@dataclass
class Checkpoint:
    """Where a backfill stands, kept in the state table so an interrupted one resumes."""

    destination: str
    since: int
    until: int | None
    cursor: str | None = None
    enqueued: int = 0
    done: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """(pk, sk) of the checkpoint item."""
        return backfill_checkpoint_key(self.destination, self.since, self.until)


def _load_checkpoint(table: StateTable, fresh: Checkpoint) -> Checkpoint:
    item = table.get(*fresh.key)
    if not item:
        return fresh
    saved = json.loads(item["checkpoint"]["S"])
    return Checkpoint(**saved)


def _save_checkpoint(table: StateTable, checkpoint: Checkpoint) -> None:
    pk, sk = checkpoint.key
    table.put(
        {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "checkpoint": {"S": json.dumps(checkpoint.__dict__)},
            "ttl": {"N": str(int(datetime.now(UTC).timestamp()) + 30 * 86400)},
        }
    )


def day_start(day: date) -> int:
    """Unix seconds of a day's start, UTC."""
    return int(datetime.combine(day, time.min, tzinfo=UTC).timestamp())


def backfill(
    target: Target,
    destination: Destination,
    since: date,
    until: date | None = None,
    *,
    page_size: int = 100,
    restart: bool = False,
    dry_run: bool = False,
) -> Generator[Checkpoint]:
    """Page through BuildNexion's list and enqueue each object once; yields the checkpoint after each object.

    Ctrl-C saves the checkpoint, so the next run starts after the last object enqueued. Objects updated on
    or after `until` (exclusive, a day) are left out. `dry_run` pages and counts from where a resumed run
    would start, but enqueues nothing and saves no checkpoint.
    """
    table = StateTable(target.dynamodb(), target.state_table())
    fresh = Checkpoint(destination.value, day_start(since), day_start(until) if until else None)
    checkpoint = fresh if restart else _load_checkpoint(table, fresh)
    if checkpoint.done:
        checkpoint = fresh
    client = buildnexion(target)
    kind = DESTINATION_OBJECTS[destination]
    unsaved = 0
    try:
        while True:
            objects, has_more = client.list_page(
                COLLECTIONS[destination],
                Deadline(30),
                updated_since=checkpoint.since,
                starting_after=checkpoint.cursor,
                limit=page_size,
            )
            for obj in objects:
                updated = datetime.fromisoformat(str(obj["updated_at"]).replace("Z", "+00:00"))
                if checkpoint.until is None or updated.timestamp() < checkpoint.until:
                    # The same object version always gets the same event id: SQS FIFO drops a resent
                    # copy, and the workers' ledger skips a version already in sync.
                    event_id = f"evt_backfill_{obj['id']}_{int(updated.timestamp())}"
                    if not dry_run:
                        enqueue_object(target, kind, obj, event_id)
                    checkpoint.enqueued += 1
                checkpoint.cursor = str(obj["id"])
                unsaved += 1
                if unsaved >= CHECKPOINT_EVERY and not dry_run:
                    _save_checkpoint(table, checkpoint)
                    unsaved = 0
                yield checkpoint
            if not has_more or not objects:
                checkpoint.done = True
                yield checkpoint
                return
    finally:
        # Ctrl-C (or any error) while enqueuing: where it stopped is saved, so the next run resumes there.
        if not dry_run:
            _save_checkpoint(table, checkpoint)


# -- webhook registration and secret rotation -------------------------------------------------------------


def webhook_register(target: Target) -> tuple[str, int]:
    """Register the stack's webhook URL for its routed event types; append the secret. (id, secrets kept)."""
    # Only what a deployed platform takes: a Deploy<Platform>=false stack would answer the rest "ignored".
    events = sorted(
        event_type
        for event_type, destination in target.routing_table.items()
        if destination in {d.value for d in Destination}
        and target.outputs.get(QUEUE_OUTPUTS[Destination(destination)][0])
    )
    if not events:
        raise TargetError("the stack routes no event type to a deployed platform (RoutingTable, Deploy* parameters)")
    registered = buildnexion(target).register_webhook(target.output("WebhookUrl"), events, Deadline(30))
    secret = target.read_secret("BuildNexionSecretArn")
    secrets = [s for s in secret.get("webhook_secrets", []) if s]
    if registered["secret"] not in secrets:
        secrets.append(registered["secret"])  # appended: the old one stays valid until retired
    _write_secret(target, {**secret, "webhook_secrets": secrets})
    return str(registered["id"]), len(secrets)


def webhook_retire_secret(target: Target) -> int:
    """Keep only the newest webhook secret; how many were removed."""
    secret = target.read_secret("BuildNexionSecretArn")
    secrets = [s for s in secret.get("webhook_secrets", []) if s]
    if len(secrets) < 2:
        return 0
    _write_secret(target, {**secret, "webhook_secrets": secrets[-1:]})
    return len(secrets) - 1


def _write_secret(target: Target, value: dict[str, Any]) -> None:
    target.secretsmanager().put_secret_value(
        SecretId=target.output("BuildNexionSecretArn"), SecretString=json.dumps(value)
    )


# -- reconcile ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A synced document whose platform total or version does not agree with BuildNexion."""

    object_id: str
    remote_id: str | None
    problem: str
    # True when the total could not be compared (the platform's total was never recorded): said, not failed.
    unverified: bool = False


def reconcile(target: Target, destination: Destination, since: date | None = None) -> tuple[int, list[Difference]]:
    """Compare each synced document's platform total (as the worker read it back) with BuildNexion's now."""
    ledger = _ledger(target)
    client = buildnexion(target)
    kind = DESTINATION_OBJECTS[destination]
    checked = 0
    differences: list[Difference] = []
    floor = datetime.combine(since, time.min, tzinfo=UTC) if since else None
    for entry in ledger.entries(destination.value):
        if entry.status != SyncStatus.SYNCED or (floor and (entry.synced_at is None or entry.synced_at < floor)):
            continue
        checked += 1
        differences.extend(_compare(entry, client, kind))
    return checked, differences


def _compare(entry: LedgerEntry, client: BuildNexionClient, kind: str) -> list[Difference]:
    found: list[Difference] = []
    fetch: dict[str, Callable[[str, Deadline], Invoice | SalesInvoice | PurchaseOrder]] = {
        "invoice": client.invoice,
        "sales_invoice": client.sales_invoice,
        "purchase_order": client.purchase_order,
    }
    current = fetch[kind](entry.object_id, Deadline(30))
    if entry.source_updated_at and current.updated_at > entry.source_updated_at:
        found.append(Difference(entry.object_id, entry.remote_id, "BuildNexion has a newer version not yet synced"))
    expected = getattr(current, "total_amount", None)
    if expected is None:
        expected = entry.expected_total_cents
    if entry.remote_total_cents is None:
        found.append(
            Difference(
                entry.object_id,
                entry.remote_id,
                "total not compared: the worker recorded no platform total for this document",
                unverified=True,
            )
        )
    elif expected is not None and expected != entry.remote_total_cents:
        found.append(
            Difference(
                entry.object_id,
                entry.remote_id,
                f"total: BuildNexion {expected / 100:.2f}, platform {entry.remote_total_cents / 100:.2f}",
            )
        )
    return found


# -- info and logs ----------------------------------------------------------------------------------------

# Each secret's fields that must be filled before the stack works (values are never read out).
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "BuildNexionSecretArn": tuple(BuildNexionSecret.model_fields),
    **{p.secret_output: tuple(PLATFORM_SECRETS[d].model_fields) for d, p in PLATFORMS.items()},
}
LOG_FUNCTIONS = ("webhook-receiver", "quipu-sync", "tuimprenta-poller", "facturadirecta-exporter")
LOGS_QUERY_TIMEOUT_SECONDS = 60.0


def empty_secret_fields(target: Target) -> dict[str, list[str] | None]:
    """Per secret output: the fields still empty ([] when filled), None when the platform is not deployed."""
    found: dict[str, list[str] | None] = {}
    for output, fields in SECRET_FIELDS.items():
        if not target.outputs.get(output):
            found[output] = None
            continue
        try:
            value = target.read_secret(output)
        except (TargetError, ValueError):
            found[output] = list(fields)  # unreadable or not JSON: nothing in it counts as filled
            continue
        found[output] = [name for name in fields if not value.get(name)]
    return found


def log_query(identifier: str) -> str:
    """The Logs Insights query for every line about one object or event id (the correlation id)."""
    if not identifier.replace("_", "").replace("-", "").isalnum():
        raise TargetError(f"{identifier!r} is not an object or event id (letters, digits, '_' and '-')")
    return (
        "fields @timestamp, @log, level, message, correlation_id, object_id, destination, reason, status"
        f' | filter correlation_id = "{identifier}" or object_id = "{identifier}"'
        " | sort @timestamp asc | limit 500"
    )


def logs(
    target: Target,
    identifier: str,
    since: timedelta,
    functions: Sequence[str] = LOG_FUNCTIONS,
    *,
    sleep: Callable[[float], None] = time_module.sleep,
) -> list[dict[str, str]]:
    """Every log line of the stack's functions about `identifier` within `since`, oldest first."""
    if target.is_local:
        raise TargetError("logs reads CloudWatch Logs of a deployed stack; the local stack's are serve's stderr")
    client = target.logs()
    now = datetime.now(UTC)
    query_id = client.start_query(
        logGroupNames=[f"/aws/lambda/{target.name}-{function}" for function in functions],
        startTime=int((now - since).timestamp()),
        endTime=int(now.timestamp()),
        queryString=log_query(identifier),
    )["queryId"]
    waited = 0.0
    while True:
        answer = client.get_query_results(queryId=query_id)
        if answer["status"] in {"Complete", "Failed", "Cancelled", "Timeout"}:
            break
        if waited >= LOGS_QUERY_TIMEOUT_SECONDS:
            raise TargetError(f"the Logs Insights query {query_id} did not finish within {waited:.0f} s")
        sleep(1.0)  # Logs Insights has no wait call: poll its status once a second, bounded above
        waited += 1.0
    if answer["status"] != "Complete":
        raise TargetError(f"the Logs Insights query ended {answer['status']}")
    return [
        {field["field"]: field["value"] for field in row if not field["field"].startswith("@ptr")}
        for row in answer["results"]
    ]


# -- doctor -----------------------------------------------------------------------------------------------

SMOKE_EVENT_TYPE = "invoice_bridge.smoke_test"


@dataclass(frozen=True)
class Check:
    """One line of `doctor`: what was checked, whether it passed, and what to do when it did not."""

    name: str
    ok: bool
    detail: str


def smoke_event(now: datetime) -> bytes:
    """A BuildNexion envelope of a type no stack routes: a working receiver answers it 200 "ignored"."""
    envelope = {
        "id": f"evt_smoke_{uuid.uuid4().hex}",
        "type": SMOKE_EVENT_TYPE,
        "created": int(now.timestamp()),
        "data": {"object": {"object": "smoke_test", "id": "smoke"}},
    }
    return json.dumps(envelope).encode("utf-8")


def doctor(target: Target, post: Callable[[str, bytes, dict[str, str]], tuple[int, str]]) -> list[Check]:
    """Secrets filled, a webhook secret stored, and a signed smoke event answered "ignored" at WebhookUrl."""
    checks: list[Check] = []
    for output, fields in empty_secret_fields(target).items():
        secret = output.removesuffix("SecretArn")
        if fields is None:
            continue
        checks.append(
            Check(
                f"{secret} secret",
                not fields,
                "filled" if not fields else f"still empty: {', '.join(fields)} (docs/operations.md, secrets)",
            )
        )
    secrets = [s for s in target.read_secret("BuildNexionSecretArn").get("webhook_secrets", []) if s]
    if not secrets:
        checks.append(Check("webhook", False, "no webhook secret stored: run `invoice-bridge webhook register`"))
        return checks
    body = smoke_event(datetime.now(UTC))
    # Signed with every stored secret, as BuildNexion signs during a rotation: any one the receiver knows passes.
    header = signature_header(secrets, int(datetime.now(UTC).timestamp()), body)
    url = target.output("WebhookUrl")
    status, text = post(url, body, {"Content-Type": "application/json", SIGNATURE_HEADER: header})
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {}
    ignored = status == 200 and isinstance(answer, dict) and answer.get("status") == "ignored"
    hint = {
        401: "401: no stored webhook secret is the receiver's; the receiver caches the secret for up to 60 s, "
        "so after a change run doctor again in a minute, else check the BuildNexion secret",
        500: "500: the receiver failed; `invoice-bridge logs` or the Receiver errors section of docs/operations.md",
    }
    checks.append(
        Check(
            "signed smoke event",
            ignored,
            f"{url} answered 200 ignored" if ignored else hint.get(status, f"{url} answered {status} {text[:200]}"),
        )
    )
    return checks
